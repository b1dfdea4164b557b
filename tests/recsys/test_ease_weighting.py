"""EASE's two weightings (recsys/models/ease.py): order-size damping in X'X and the
popularity penalty on candidates, and the trainer's choice of them on its holdout."""

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.exceptions import ConfigError
from recsys.models.ease import EASEModel, dense_weights, size_weights
from tests.recsys.test_ease import SETTING_LISTS, _matrix

# 4 orders of sizes 2, 2, 3 and 4 over 4 items.
ORDERS = sp.csr_matrix(np.array([[1, 1, 0, 0],
                                 [0, 1, 1, 0],
                                 [1, 0, 1, 1],
                                 [1, 1, 1, 1]], dtype=np.float32))


def test_size_damping_is_x_transpose_w_x_with_the_trace_kept():
    dense = ORDERS.toarray().astype(np.float64)
    sizes = dense.sum(1)
    decay = np.array([0.5, 1.0, 2.0, 0.5])
    for base in (np.ones(4), decay):
        w = base * sizes ** -0.5
        w *= (base * sizes).sum() / (w * sizes).sum()  # by hand: the trace is unchanged
        keep, g = EASEModel(min_buyers=1, size_exponent=0.5).gram(
            ORDERS, ORDERS, None if base is not decay else decay)
        np.testing.assert_allclose(g, dense.T @ np.diag(w) @ dense, rtol=1e-6)
        assert np.trace(g) == pytest.approx((base * sizes).sum())
        # The damping weighs a small order's pairs more than a large one's.
        assert w[0] / base[0] > w[3] / base[3]
    # Exponent 0 is no weighting at all.
    assert size_weights(ORDERS, None, 0.0) is None
    assert size_weights(ORDERS, decay, 0.0) is decay


def _fit(beta=0.0, dense_items=5000, k=2):
    return EASEModel(lam=1.0, k=k, min_buyers=1, dense_items=dense_items,
                     popularity_exponent=beta).fit(CUSTOMERS, ORDERS)


# Buyers per item: 1, 2, 3, 1 (customers x items).
CUSTOMERS = sp.csr_matrix(np.array([[1, 1, 1, 0],
                                    [0, 1, 1, 1],
                                    [0, 0, 1, 0]], dtype=np.float32))


@pytest.mark.parametrize("dense_items", [5000, 0])  # dense store, top-k CSR
def test_popularity_penalty_divides_each_candidate_column_by_its_buyers(dense_items):
    plain = _matrix(_fit(0.0, dense_items).similarity_)
    penalised = _fit(0.5, dense_items)
    buyers = np.array([1.0, 2.0, 3.0, 1.0])
    np.testing.assert_allclose(_matrix(penalised.similarity_), plain * buyers[None, :] ** -0.5,
                               rtol=1e-6)
    # Derived from the unpenalised model without an inverse: the very same weights.
    derived = _fit(0.0, dense_items).with_popularity_exponent(0.5, CUSTOMERS)
    np.testing.assert_array_equal(_matrix(derived.similarity_), _matrix(penalised.similarity_))
    assert derived.popularity_exponent == 0.5
    with pytest.raises(ValueError, match="unpenalised"):
        penalised.with_popularity_exponent(0.2, CUSTOMERS)
    # The plain weights are those of EASE's closed form (the penalty changes nothing else).
    if dense_items:
        b = dense_weights(ORDERS.toarray().T.astype(np.float64) @ ORDERS.toarray(), 1.0)
        np.fill_diagonal(b, 0.0)
        np.testing.assert_allclose(plain, b, rtol=1e-5, atol=1e-6)


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
