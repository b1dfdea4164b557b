"""The trainer's EASE grid (training.blend_search.fit_ease) on the holdout: lambda and
dropout per kind, the refit of the chosen settings, and bad settings refused."""

import numpy as np
import pytest

from recsys.exceptions import ConfigError
from recsys.models.ease import EASEModel
from tests.recsys.test_ease import SETTING_LISTS, _matrix


@pytest.fixture(scope="module")
def planted_holdout(planted):
    from recsys.data import read_orders
    from tests.holdout import holdout
    from training.config import load_config

    path, _ = planted
    config = load_config(None, {"als": {"factors": 16, "iterations": 6},
                                "ease": {"lambdas": [50.0, 800.0], "dropouts": [0.0, 0.5],
                                         "half_lives": [0.0], "size_exponents": [0.0],
                                         "popularity_exponents": [0.0]}})
    h = holdout(read_orders(path)[0], config)
    return config, h.train_part, h.data, h.recommender


def test_trainer_keeps_the_best_lambda_and_dropout_per_kind_on_the_holdout(planted_holdout):
    from recsys.evaluation import evaluate_variants
    from training import blend_search as B
    from training import train as T
    from training.blend_search import BlendScorer

    config, train_part, data, make_rec = planted_holdout
    models, chosen = T.fit_ease(train_part, config, data, make_rec, 10,
                                customer_items=data.train_customer_items)
    assert set(models) == set(B.PRIMARY)
    # Score every setting alone, as the trainer should have; the first best wins ties.
    cfg = {k: v for k, v in config["ease"].items() if k not in SETTING_LISTS}
    settings = [(lam, p) for p in (0.0, 0.5) for lam in (50.0, 800.0)]
    scores = []
    for lam, p in settings:
        m = EASEModel(lam=lam, dropout=p, **cfg).fit(data.train_customer_items,
                                                    train_part.order_items())
        scores.append(evaluate_variants(BlendScorer(make_rec(m), [(1.0,)], ("ease",)),
                                        data, 10)[(1.0,)])
    for kind, metric in B.PRIMARY.items():
        values = [r[kind][f"{metric}@10"] for r in scores]
        best = settings[int(np.argmax(values))]
        assert chosen[kind] == best + (0.0, 0.0, 0.0), kind
        assert (models[kind].lam, models[kind].dropout) == best, kind
    # The refit rebuilds exactly the chosen settings.
    refit, _ = T.fit_ease(train_part, config, settings_by_kind=chosen,
                          customer_items=data.train_customer_items)
    for kind in models:
        assert (refit[kind].lam, refit[kind].dropout, refit[kind].half_life,
                refit[kind].size_exponent, refit[kind].popularity_exponent) == chosen[kind]
        np.testing.assert_array_equal(_matrix(refit[kind].similarity_),
                                      _matrix(models[kind].similarity_))


@pytest.mark.parametrize("bad", [[1.0], [-0.1], ["x"], 0.5])
def test_bad_dropouts_are_a_config_error(planted_holdout, bad):
    from training import train as T

    config, train_part, data, make_rec = planted_holdout
    config = dict(config, ease=dict(config["ease"], dropouts=bad))
    with pytest.raises(ConfigError, match="ease.dropouts"):
        T.fit_ease(train_part, config, data, make_rec, 10)


def test_dropout_zero_is_plain_ease_whichever_variant_is_configured(planted_holdout):
    from training import train as T

    config, train_part, data, make_rec = planted_holdout
    dlae = dict(config, ease=dict(config["ease"], zero_diagonal=False))
    settings = {"basket": (50.0, 0.0, 0.0), "next_best": (50.0, 0.5, 0.0)}
    models, _ = T.fit_ease(train_part, dlae, settings_by_kind=settings,
                           customer_items=data.train_customer_items)
    plain = EASEModel(lam=50.0).fit(data.train_customer_items, train_part.order_items())
    np.testing.assert_array_equal(_matrix(models["basket"].similarity_),
                                  _matrix(plain.similarity_))
    assert models["basket"].zero_diagonal
    assert not models["next_best"].zero_diagonal and models["next_best"].dropout == 0.5
