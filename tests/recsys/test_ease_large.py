"""Large-catalogue EASE (recsys/models/ease_large.py): dense EASE where it fits, exact
tail regressions, planted answers, and the sparse weights' storage round trip."""

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.artifacts import VersionWriter, load_version
from recsys.models.ease import EASEByKind, EASEModel, dense_weights
from recsys.models.ease_large import LargeEASEModel, lean_weights, split_head


def _orders(n_orders=600, n_items=40, seed=5):
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8  # item 0 the best-seller
    bought = rng.random((n_orders, n_items)) < 0.5 * pop[None, :]
    return sp.csr_matrix(bought.astype(np.float32))


def _matrix(sim) -> np.ndarray:
    return sim.toarray() if sp.issparse(sim) else np.asarray(sim)


def _fit_split(head_items: int, tail_neighbours: int):
    """(orders, head, tail, the model's weights as a dense array), lambda 4."""
    orders = _orders()
    head, tail = split_head(np.diff(orders.tocsc().indptr), 2, head_items)
    model = LargeEASEModel(lam=4.0, head_items=head_items, tail_neighbours=tail_neighbours,
                           k=1000, dense_items=0).fit(orders, orders)
    return orders, head, tail, _matrix(model.similarity_)


@pytest.mark.parametrize("dense_items", [5000, 0])  # dense store, then CSR with every weight
def test_equals_dense_ease_when_the_head_holds_every_item(dense_items):
    orders = _orders()
    plain = EASEModel(lam=4.0, dense_items=5000).fit(orders, orders)
    large = LargeEASEModel(lam=4.0, head_items=1000, tail_neighbours=10, k=1000,
                           dense_items=dense_items).fit(orders, orders)
    assert large.n_tail_ == 0 and large.topk_error_ == 0.0
    assert sp.issparse(large.similarity_) == (dense_items == 0)
    np.testing.assert_allclose(_matrix(large.similarity_), plain.similarity_,
                               rtol=1e-5, atol=1e-6)


def test_head_is_the_most_bought_items_and_its_columns_are_ease_on_the_head():
    orders = _orders()
    buyers = np.diff(orders.tocsc().indptr)
    head, tail = split_head(buyers, 2, 15)
    assert len(head) == 15 and buyers[head].min() >= buyers[tail].max()
    model = LargeEASEModel(lam=4.0, head_items=15, tail_neighbours=0, k=1000,
                           dense_items=0).fit(orders, orders)
    oh = orders[:, head]
    want = dense_weights((oh.T @ oh).toarray().astype(np.float64), 4.0)
    np.fill_diagonal(want, 0.0)
    got = _matrix(model.similarity_)
    np.testing.assert_allclose(got[np.ix_(head, head)], want, rtol=1e-5, atol=1e-6)
    assert not got[:, tail].any() and not got[tail].any()  # no tail: EASE on the head only


def test_a_tail_column_is_the_ridge_regression_on_its_head_regressors():
    """With as many regressors as head items, a tail item's column is exactly its column
    in dense EASE over the head plus that one item."""
    orders, head, tail, got = _fit_split(15, 15)
    for j in tail[:5]:
        cols = np.r_[head, j]
        o = orders[:, cols]
        want = dense_weights((o.T @ o).toarray().astype(np.float64), 4.0)[:, -1]
        np.testing.assert_allclose(got[head, j], want[:-1], rtol=1e-5, atol=1e-6)
        assert not np.delete(got[:, j], head).any()


def test_a_short_support_regresses_on_the_co_bought_head_items_first():
    orders, head, tail, got = _fit_split(20, 3)
    co = (orders[:, head].T @ orders[:, tail]).toarray()
    pos = {item: i for i, item in enumerate(head)}
    for t, j in enumerate(tail):
        support = np.flatnonzero(got[:, j])
        assert 0 < len(support) <= 3 and set(support) <= set(head)
        if (co[:, t] > 0).sum() >= 3:  # the three heads it is most often bought with
            inside = co[[pos[i] for i in support], t]
            outside = np.delete(co[:, t], [pos[i] for i in support])
            assert inside.min() > 0 and inside.min() >= outside.max()


def test_planted_tail_partner_is_recommended_from_its_head_item():
    """Item 41 (rare: the tail) is bought only with head item 3, always: a cart of item 3
    ranks it first among the tail, and high overall."""
    orders = _orders(n_items=40).toarray()
    planted = np.zeros((orders.shape[0], 2), dtype=np.float32)
    with_3 = np.flatnonzero(orders[:, 3])[:12]
    planted[with_3, 1] = 1  # item 41: 12 orders, all with item 3
    planted[:3, 0] = 1      # item 40: 3 orders, noise
    x = sp.csr_matrix(np.hstack([orders, planted]))
    model = LargeEASEModel(lam=2.0, head_items=30, tail_neighbours=8, k=1000,
                           dense_items=0).fit(x, x)
    cart = sp.csr_matrix(np.eye(1, x.shape[1], 3, dtype=np.float32))
    scores = model.score_histories(cart)[0]
    scores[3] = -np.inf
    assert 41 in np.argsort(-scores)[:5]
    assert scores[41] > scores[40]


def test_top_k_storage_states_its_error_and_survives_a_round_trip(tmp_path):
    orders = _orders()
    full = LargeEASEModel(lam=4.0, head_items=25, tail_neighbours=6, k=1000,
                          dense_items=0).fit(orders, orders)
    cut = LargeEASEModel(lam=4.0, head_items=25, tail_neighbours=6, k=5,
                         dense_items=0).fit(orders, orders)
    assert full.topk_error_ == 0.0 and 0.0 < cut.topk_error_ < 1.0
    a, b = _matrix(full.similarity_), _matrix(cut.similarity_)
    head = split_head(np.diff(orders.tocsc().indptr), 2, 25)[0]
    dropped = np.abs(a[np.ix_(head, head)]).sum() - np.abs(b[np.ix_(head, head)]).sum()
    assert dropped / np.abs(a[np.ix_(head, head)]).sum() == pytest.approx(cut.topk_error_,
                                                                          rel=1e-4)
    # Stored and loaded by the EASE component (EASEByKind) unchanged, like dense EASE's.
    writer = VersionWriter(str(tmp_path))
    EASEByKind({"basket": cut}).save(writer)
    version = writer.commit({})
    component = EASEByKind.load(load_version(str(tmp_path), version), {})
    loaded = component.for_kind("basket").similarity_
    assert (loaded != cut.similarity_).nnz == 0
    rows = sp.csr_matrix(orders[:7])
    np.testing.assert_allclose(np.asarray((rows @ loaded).todense()),
                               cut.score_histories(rows), rtol=1e-6)


def test_popularity_penalty_and_size_damping_apply_as_in_ease():
    orders = _orders()
    plain = EASEModel(lam=4.0, size_exponent=0.5, dense_items=5000).fit(orders, orders)
    large = LargeEASEModel(lam=4.0, size_exponent=0.5, head_items=1000,
                           dense_items=5000).fit(orders, orders)
    np.testing.assert_allclose(large.similarity_, plain.similarity_, rtol=1e-5, atol=1e-6)
    derived = large.with_popularity_exponent(0.2, orders)
    direct = EASEModel(lam=4.0, size_exponent=0.5, popularity_exponent=0.2,
                       dense_items=5000).fit(orders, orders)
    np.testing.assert_allclose(derived.similarity_, direct.similarity_, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("p, zero_diagonal", [(0.0, True), (0.3, True), (0.3, False)])
def test_single_precision_in_place_inverse_matches_the_float64_solve(p, zero_diagonal):
    """EASE, EDLAE and DLAE weights of lean_weights (float32, in place) against
    recsys.models.ease.dense_weights (float64), on a Gram of 300 power-law items."""
    orders = _orders(n_orders=3000, n_items=300, seed=2)
    g = (orders.T @ orders).toarray().astype(np.float64)
    g[np.diag_indices_from(g)] += 1.0  # items never bought stay invertible
    want = dense_weights(g, 10.0, p, zero_diagonal)
    np.fill_diagonal(want, 0.0)
    reg = np.full(300, 10.0) + p / (1 - p) * np.diag(g)
    got = lean_weights(g.astype(np.float32), reg, zero_diagonal, block=64)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max())


def test_trainer_fits_the_head_and_tail_above_max_items_and_chooses_per_kind(planted_inter):
    """Above ease.max_items the trainer's EASE is the large model (head = the max_items
    most-bought items, a regression tail), every setting scored alone per kind on the
    holdout as for dense EASE; the refit rebuilds the chosen weights."""
    from recsys.evaluation import PRIMARY, evaluate_variants
    from recsys.exceptions import ConfigError
    from tests.holdout import holdout
    from training import train as T
    from training.blend_search import BlendScorer
    from training.config import load_config

    config = load_config(None, {"als": {"factors": 8, "iterations": 3},
                                "ease": {"lambdas": [5.0, 50.0], "half_lives": [0.0],
                                         "size_exponents": [0.0], "max_items": 20,
                                         "tail_neighbours": 8,
                                         "popularity_exponents": [0.0]}})
    h = holdout(planted_inter, config)
    customers = h.data.train_customer_items
    models, chosen = T.fit_ease(h.train_part, config, h.data, h.recommender, 10,
                                customer_items=customers)
    assert models and all(isinstance(m, LargeEASEModel) for m in models.values())
    assert all(m.n_head_ == 20 and m.n_tail_ > 0 for m in models.values())
    # ease.head_k 0 (the default): every head weight is stored, nothing is cut.
    assert all(m.topk_error_ == 0.0 for m in models.values())

    def score(lam):
        m = LargeEASEModel(lam=lam, head_items=20, tail_neighbours=8, k=200, dense_items=5000)
        m.fit(customers, h.train_part.order_items())
        return evaluate_variants(BlendScorer(h.recommender(m), [(1.0,)], ("ease",)),
                                 h.data, 10)[(1.0,)]

    scores = {lam: score(lam) for lam in (5.0, 50.0)}
    for kind, metric in PRIMARY.items():
        value = {lam: r[kind][f"{metric}@10"] for lam, r in scores.items()}
        assert chosen[kind][0] == (50.0 if value[50.0] > value[5.0] else 5.0), kind
    refit, _ = T.fit_ease(h.train_part, config, settings_by_kind=chosen,
                          customer_items=customers)
    for kind in models:
        assert (refit[kind].similarity_ != models[kind].similarity_).nnz == 0
    # ease.head_k cuts each head row to its head_k largest weights (the tail's are kept).
    cut_config = dict(config, ease=dict(config["ease"], head_k=5))
    cut, _ = T.fit_ease(h.train_part, cut_config, settings_by_kind=chosen,
                        customer_items=customers)
    for kind, model in cut.items():
        sim, full = model.similarity_, refit[kind].similarity_
        head = np.flatnonzero(np.diff(full.indptr) > 0)
        head_cols = np.isin(sim.indices, head)
        per_row = np.bincount(np.repeat(np.arange(sim.shape[0]), np.diff(sim.indptr)),
                              weights=head_cols, minlength=sim.shape[0])
        assert per_row.max() == 5 and 0.0 < model.topk_error_ < 1.0
        assert sim.nnz < full.nnz
    for setting, value in (("tail_neighbours", -1), ("head_k", 2.5)):
        bad = dict(config, ease=dict(config["ease"], **{setting: value}))
        with pytest.raises(ConfigError, match=f"ease.{setting}"):
            T.fit_ease(h.train_part, bad, h.data, h.recommender, 10)
