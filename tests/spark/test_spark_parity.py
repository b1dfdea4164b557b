"""The Spark engine against the local one on the same planted lines: same vocabularies,
report, split, holdout queries, co-purchase neighbours and supports; EASE's Gram matrix."""

import numpy as np
import pytest

from recsys.data import ItemExclusion, read_orders
from recsys.evaluation import build_eval_data, split, split_interactions
from recsys.models import CoPurchaseModel
from recsys.models.ease import EASEModel
from recsys.models.recency import order_decay
from training.spark import models
from training.spark.engine import holdout_queries, holdout_summary, split_lines
from training.spark.frames import collect_arrays
from training.spark.reader import read_orders_spark
from training.validation import holdout_split


@pytest.fixture(scope="module")
def both(spark, planted):
    path, _ = planted
    exclude = ItemExclusion("^P19$")
    local, local_report = read_orders(path, exclude=exclude)
    remote, remote_report = read_orders_spark(spark, path, exclude=exclude)
    return local, local_report, remote, remote_report


def test_report_and_vocabularies_match(both):
    local, local_report, remote, remote_report = both
    assert remote_report.to_dict() == local_report.to_dict()
    assert remote_report.excluded_items == 1 and remote_report.rejected["not_a_product"] > 0
    assert list(remote.items.ids) == list(local.items.ids)
    assert list(remote.customers.ids) == list(local.customers.ids)
    assert len(remote.orders) == len(local.orders) and remote.n_lines == local.n_lines
    assert list(remote.timestamp) == [local.timestamp.min(), local.timestamp.max()]
    np.testing.assert_allclose(remote.item_prices(), local.item_prices(), rtol=1e-6)
    hist = models.customer_items(remote.lines, len(remote.customers), len(remote.items), "h")
    assert (hist != local.customer_items()).nnz == 0


def test_split_and_holdout_queries_match(spark, both):
    local, _, remote, _ = both
    _assert_split_and_queries_match(spark, local, remote)


def test_random_split_without_timestamps_matches(spark, planted, tmp_path):
    """No timestamps: the local engine's seeded draw of orders, not another random 20%."""
    local, remote, _ = _both_without(spark, planted, tmp_path, "timestamp")
    assert local.timestamp is None and remote.timestamp is None
    s = _assert_split_and_queries_match(spark, local, remote)
    assert s.method == "random" and 0.15 < s.test.mean() < 0.25


def _both_without(spark, planted, tmp_path, column: str):
    """The planted lines without ``column``, read by both engines: (local, remote, its report)."""
    import pyarrow.csv as pacsv

    path = str(tmp_path / f"no_{column}.csv")
    pacsv.write_csv(pacsv.read_csv(planted[0]).drop([column]), path)
    local, _ = read_orders(path)
    remote, report = read_orders_spark(spark, path)
    return local, remote, report


def _assert_split_and_queries_match(spark, local, remote):
    s = split(local)
    ss, train, test = split_lines(remote, 0.15)
    assert (ss.method, ss.cutoff) == (s.method, s.cutoff)
    assert (ss.train.sum(), ss.test.sum()) == (s.train.sum(), s.test.sum())
    train_part, test_part = split_interactions(local, s)
    # A cap below the candidates' count: the sample is drawn, and must be the same draw.
    for max_queries in (None, 50):
        want = build_eval_data(train_part, test_part, max_queries=max_queries)
        hist = models.customer_items(train, len(remote.customers), len(remote.items), "h")
        got = holdout_queries(spark, remote, train, test, hist, max_queries)
        assert np.array_equal(got.nb_customers, want.nb_customers)
        assert (got.nb_truth != want.nb_truth).nnz == 0
        assert np.array_equal(got.basket_targets, want.basket_targets)
        assert np.array_equal(got.also_queries, want.also_queries)
        assert len(got.basket_queries) == len(want.basket_queries) > 0
        for a, b in zip(got.basket_queries, want.basket_queries, strict=True):
            assert np.array_equal(a, b)
        assert len(want.nb_customers) > 0
        # The manifest's holdout report counts the queries before the sample, as local.
        report = holdout_summary(ss, got, 0)
        _, _, local_report = holdout_split(local, 0.15, min_queries=0)
        for key in ("next_best_customers", "item_query_baskets", "train_lines", "test_lines"):
            assert report[key] == local_report[key], key
    test_orders = np.unique(local.order_idx[s.test])
    got_orders = np.sort(collect_arrays(test.select("o").distinct(), ["o"], "test orders")["o"])
    assert np.array_equal(got_orders, test_orders)
    return s


@pytest.mark.parametrize("params", [
    {},  # the defaults
    # Caps that bite on the planted data: heavy buyers and large baskets are cut.
    {"max_items_per_customer": 3, "max_basket_size": 2, "k": 4, "min_support": 1},
    {"basket_weight": 0.0, "alpha": 0.8, "shrink": 0.0, "k": 3},
])
def test_copurchase_neighbours_and_supports_identical(spark, both, params):
    local, _, remote, _ = both
    cfg = dict(CoPurchaseModel().__dict__, **params)
    cfg = {k: v for k, v in cfg.items() if not k.endswith("_")}
    want = CoPurchaseModel(**cfg).fit(local.customer_items(), local.order_items())
    got = models.copurchase(spark, remote.lines, len(remote.items), False, cfg)
    assert want.similarity_.nnz > 0
    assert np.array_equal(got.similarity_.indptr, want.similarity_.indptr)
    assert np.array_equal(got.similarity_.indices, want.similarity_.indices)
    assert np.array_equal(got.support_.data, want.support_.data)
    np.testing.assert_array_equal(got.similarity_.data, want.similarity_.data)


def test_copurchase_every_order_its_own_customer(spark, planted, tmp_path):
    local, remote, report = _both_without(spark, planted, tmp_path, "customer_id")
    assert remote.customer_is_order and report.notes
    want = CoPurchaseModel().fit(local.customer_items(), None)
    got = models.copurchase(spark, remote.lines, len(remote.items), True,
                            {k: v for k, v in CoPurchaseModel().__dict__.items()
                             if not k.endswith("_")})
    assert np.array_equal(got.similarity_.indices, want.similarity_.indices)
    assert np.array_equal(got.support_.data, want.support_.data)


def test_substitutes_from_spark_basket_pairs_identical(spark, both):
    """Substitutes fitted from Spark's basket pairs, counted for the pairs they score
    only (one category, priced items), are those fitted from the orders (local)."""
    from recsys.models.substitutes import SubstituteModel

    local, _, remote, _ = both
    n = len(local.items)
    rng = np.random.default_rng(0)
    category = rng.integers(-1, 3, n)  # three categories, and items without one
    price = local.item_prices().astype(np.float64)
    price[rng.random(n) < 0.2] = np.nan
    params = {"als_weight": 0.0, "min_similarity": 0.0, "max_basket_share": 1.0}
    want = SubstituteModel(**params).fit(local.customer_items(), local.order_items(), None,
                                         category, price)
    asked = []

    def baskets(groups):
        asked.append(groups)
        return models.basket_pairs(remote.lines, n, groups)

    got = SubstituteModel(**params).fit(local.customer_items(), None, None, category, price,
                                        basket_counts=baskets)
    assert want.similarity_.nnz > 0 and want.basket_support_.data.max() > 0
    for name in ("similarity_", "support_", "basket_support_"):
        a, b = getattr(got, name), getattr(want, name)
        assert np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
        np.testing.assert_array_equal(a.data, b.data)
    # Only pairs within one scored group crossed to the driver, fewer than all of them.
    (groups,) = asked
    counted = models.basket_pairs(remote.lines, n, groups)
    i, j = counted.nonzero()
    assert (groups[i] >= 0).all() and (groups[i] == groups[j]).all()
    assert 0 < counted.nnz < models.basket_pairs(remote.lines, n).nnz


@pytest.mark.parametrize("half_life,size_exponent", [(0.0, 0.0), (30.0, 0.5)])
def test_ease_gram_matches_local(spark, both, half_life, size_exponent):
    local, _, remote, _ = both
    hist = local.customer_items()
    order_items = local.order_items()
    weights = order_decay(local, half_life) if half_life else None
    keep, want = EASEModel(size_exponent=size_exponent).gram(hist, order_items, weights)
    buyers = np.bincount(hist.indices, minlength=hist.shape[1])
    got_keep, got = models.ease_gram(spark, remote.lines, buyers, {"min_buyers": 2},
                                     half_life, size_exponent)
    assert np.array_equal(got_keep, keep)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_recency_ages_identical(spark, both):
    """train.recency_half_lives: the ages of the history pairs, taken in Spark."""
    from recsys.models.recency import last_purchase_age

    local, _, remote, _ = both
    hist = local.customer_items()
    want = last_purchase_age(local, hist)
    got = models.last_purchase_age(remote.lines, hist)
    assert want.nnz > 0 and (want.data > 0).any() and (want.data == 0).any()
    assert np.array_equal(got.indptr, want.indptr) and np.array_equal(got.indices, want.indices)
    np.testing.assert_array_equal(got.data, want.data)


@pytest.mark.parametrize("half_life,size_exponent,customer_weight",
                         [(0.0, 0.0, 0.0), (30.0, 0.5, 0.5)])
def test_large_ease_gram_matches_local(spark, both, half_life, size_exponent,
                                       customer_weight):
    """The large-catalogue split (ease.max_items head items, the rest a regression
    tail): the head's Gram and the tail x head co-counts from Spark, as the local model
    builds them."""
    from recsys.models.ease_large import LargeEASEModel

    local, _, remote, _ = both
    hist = local.customer_items()
    weights = order_decay(local, half_life) if half_life else None
    model = LargeEASEModel(head_items=8, tail_neighbours=3, size_exponent=size_exponent,
                           customer_weight=customer_weight)
    want = model.gram(hist, local.order_items(), weights)
    buyers = np.bincount(hist.indices, minlength=hist.shape[1])
    got = models.ease_gram(spark, remote.lines, buyers,
                           {"min_buyers": 2, "head_items": 8, "tail_neighbours": 3},
                           half_life, size_exponent, customer_weight)
    assert len(want.tail) > 0 and want.g_tail.nnz > 0
    assert np.array_equal(got.head, want.head) and np.array_equal(got.tail, want.tail)
    np.testing.assert_allclose(got.g_head, want.g_head, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got.g_tail.toarray(), want.g_tail.toarray(), rtol=1e-5,
                               atol=1e-5)
    # No tail regressors: EASE on the head alone, the tail left out.
    got = models.ease_gram(spark, remote.lines, buyers,
                           {"min_buyers": 2, "head_items": 8, "tail_neighbours": 0},
                           half_life, size_exponent, customer_weight)
    assert len(got.tail) == 0 and got.g_tail.shape == (0, 8)


def test_large_ease_fit_matches_local(spark, both):
    """The trainer's fit_ease with the Gram from Spark picks the large-catalogue model above
    ease.dense_items kept items, as the local engine does, with the same weights."""
    from recsys.models.ease_large import LargeEASEModel
    from training.blend_search import fit_ease
    from training.config import load_config
    from training.settings import EASESetting
    from training.spark.engine import _Period

    local, _, remote, _ = both
    cfg = load_config(None, {"ease": {"max_items": 8, "dense_items": 8,
                                      "tail_neighbours": 3}})
    chosen = {"basket": EASESetting(50.0, 0.0, 30.0, 0.5, 0.0)}
    want = fit_ease(local, cfg, settings_by_kind=chosen)[0]["basket"]
    hist = local.customer_items()
    buyers = np.bincount(hist.indices, minlength=hist.shape[1])

    def gram(half_life, size_exponent, settings):
        return models.ease_gram(spark, remote.lines, buyers, settings, half_life,
                                size_exponent, float(settings.get("customer_weight", 0.0)))

    got = fit_ease(_Period(remote.lines, remote.timestamp, remote.customer_is_order), cfg,
                   settings_by_kind=chosen, customer_items=hist, gram_fn=gram)[0]["basket"]
    assert isinstance(want, LargeEASEModel) and isinstance(got, LargeEASEModel)
    assert got.n_tail_ == want.n_tail_ > 0
    np.testing.assert_allclose(got.similarity_.toarray(), want.similarity_.toarray(),
                               rtol=1e-3, atol=1e-5)
