"""The trainer's choice of EASE's size damping and popularity penalty per kind on its
holdout (training.blend_search.fit_ease), and bad exponents refused."""

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
                                "ease": {"lambdas": [50.0], "half_lives": [0.0],
                                         "size_exponents": [0.0, 0.5],
                                         "popularity_exponents": [0.0, 0.1, 1.0]}})
    h = holdout(read_orders(path)[0], config)
    return config, h.train_part, h.data, h.recommender


def test_trainer_chooses_size_damping_then_the_popularity_penalty_per_kind(planted_holdout):
    """Every size exponent is scored alone; each kind's best then tries every popularity
    exponent and keeps one only if it scores better (ties: none)."""
    from recsys.evaluation import evaluate_variants
    from training import blend_search as B
    from training import train as T
    from training.blend_search import BlendScorer

    config, train_part, data, make_rec = planted_holdout
    models, chosen = T.fit_ease(train_part, config, data, make_rec, 10,
                                customer_items=data.train_customer_items)
    cfg = {k: v for k, v in config["ease"].items() if k not in SETTING_LISTS}

    def score(e, beta):
        m = EASEModel(lam=50.0, size_exponent=e, popularity_exponent=beta, **cfg)
        m.fit(data.train_customer_items, train_part.order_items())
        return evaluate_variants(BlendScorer(make_rec(m), [(1.0,)], ("ease",)), data, 10)[(1.0,)]

    scores = {(e, b): score(e, b) for e in (0.0, 0.5) for b in (0.0, 0.1, 1.0)}
    for kind, metric in B.PRIMARY.items():
        value = {s: r[kind][f"{metric}@10"] for s, r in scores.items()}
        e = 0.5 if value[(0.5, 0.0)] > value[(0.0, 0.0)] else 0.0
        beta = 0.0
        for b in (0.1, 1.0):
            if value[(e, b)] > value[(e, beta)]:
                beta = b
        assert chosen[kind] == (50.0, 0.0, 0.0, e, beta), kind
        assert (models[kind].size_exponent, models[kind].popularity_exponent) == (e, beta)
    # A strong penalty (every weight over buyers ** 1) pushes the planted companions
    # below rare items: some kind must have refused it, so the choice is not a default.
    assert any(s[4] != 1.0 for s in chosen.values())
    # The refit rebuilds exactly the chosen models, also from an older three-value setting.
    refit, _ = T.fit_ease(train_part, config, settings_by_kind=chosen,
                          customer_items=data.train_customer_items)
    for kind in models:
        np.testing.assert_allclose(_matrix(refit[kind].similarity_),
                                   _matrix(models[kind].similarity_), rtol=1e-6)
    old, settings = T.fit_ease(train_part, config, settings_by_kind={"basket": (50.0, 0.0, 0.0)},
                               customer_items=data.train_customer_items)
    assert settings == {"basket": (50.0, 0.0, 0.0, 0.0, 0.0)}
    assert old["basket"].size_exponent == 0.0 and old["basket"].popularity_exponent == 0.0


@pytest.mark.parametrize("key", ["size_exponents", "popularity_exponents"])
@pytest.mark.parametrize("bad", [[-0.5], [3.0], ["x"], 0.5])
def test_bad_exponents_are_a_config_error(planted_holdout, key, bad):
    from training import train as T

    config, train_part, data, make_rec = planted_holdout
    config = dict(config, ease=dict(config["ease"], **{key: bad}))
    with pytest.raises(ConfigError, match=f"ease.{key}"):
        T.fit_ease(train_part, config, data, make_rec, 10)
