"""The optimised single-query answer path gives exactly the answers of the pinned,
unoptimised reference (``support/reference_answers.py``): same items in the same
order, same scores, reasons, supports, lift and confidence, for every query method,
several blends and filter combinations, on planted data with known structure."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from recsys import fastpath
from recsys.artifacts import load_version
from recsys.recommender import Recommender
from recsys.recommender.blending import GATE
from recsys.rules import Filters
from support.reference_answers import ReferenceRecommender
from tests.recsys.tiers import write_tiers
from training.config import load_config
from training.train import train

CONFIG = {"als": {"factors": 16, "iterations": 10}, "train": {"max_eval_queries": 300}}


def _fit(orders, models, catalog=None):
    summary = train(orders, models, load_config(None, CONFIG), catalog=catalog)
    return Recommender.load(load_version(models, summary["version"]))


@pytest.fixture(scope="module")
def planted_rec(planted, tmp_path_factory):
    return _fit(planted[0], str(tmp_path_factory.mktemp("equiv_planted") / "models"))


@pytest.fixture(scope="module")
def tiers_rec(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("equiv_tiers")
    orders, catalog = str(tmp / "orders.csv"), str(tmp / "catalog.csv")
    write_tiers(orders, catalog)
    return _fit(orders, str(tmp / "models"), catalog=catalog)


def _filters(rec: Recommender) -> list[Filters | None]:
    items = rec.items.ids
    customer = str(rec.customers.ids[len(rec.customers) // 2])
    prices = np.asarray(rec.meta.price, dtype=np.float64)
    finite = prices[np.isfinite(prices)]
    median = float(np.median(finite)) if len(finite) else 5.0
    categories = [str(c) for c in rec.meta.categories.ids[-1:]]
    return [
        None,
        Filters(min_support=0, min_score=0.0),
        Filters(min_support=1),
        Filters(min_support=50),  # a floor that removes most candidates
        Filters(categories=categories, in_stock=True, max_price=median),
        Filters(max_per_category=1, min_support=0),
        Filters(customer_id=customer, exclude=[str(items[0]), str(items[-1])]),
        Filters(min_price=median, min_score=0.2),
    ]


def _same(got, want, what: str) -> None:
    assert got.strategy == want.strategy, what
    assert got.truncated_by_floor == want.truncated_by_floor, what
    got_items = [dataclasses.asdict(r) for r in got.items]
    want_items = [dataclasses.asdict(r) for r in want.items]
    assert got_items == want_items, what


def _queries(rec: Recommender, rng: np.random.Generator):
    known = np.flatnonzero(rec.known_items)
    n_bought = np.diff(rec.history.indptr)
    customers = np.r_[np.flatnonzero(n_bought > 0)[:3], np.argmax(n_bought),
                      rng.choice(np.flatnonzero(n_bought > 0), 3)]
    singles = np.r_[known[:4], rng.choice(known, 4)]
    baskets = [rng.choice(known, n, replace=False) for n in (1, 2, 3, 5)] + [known]
    for i in singles:
        yield "also_bought", int(i)
        yield "upsell", int(i)
        yield "downsell", int(i)
    for c in customers:
        yield "next_best", int(c)
        yield "customer_upsell", int(c)
    for b in baskets:
        yield "basket", b
        yield "next_best_for_history", b


BLENDS = [
    None,  # as trained
    {"basket": {"copurchase": 0.5, "als": 0.5}, "next_best": {"copurchase": 0.7, "als": 0.3}},
    {"also_bought": {"copurchase": 0.6, "als": 0.4}, "next_best": {"copurchase": 0.0, "als": 1.0}},
    # Every component in every kind (the single-query paths compute each part directly).
    {"also_bought": {"copurchase": 0.2, "ease": 0.4, "als": 0.2, "popularity": 0.2},
     "basket": {"copurchase": 0.1, "ease": 0.5, "als": 0.3, "popularity": 0.1},
     "next_best": {"copurchase": 0.3, "ease": 0.3, "als": 0.3, "popularity": 0.1}},
    # Evidence-gated item kinds (training/gating.py): claimed slots, then best-sellers.
    {"also_bought": {"copurchase": 1.0, GATE: 1}, "basket": {"ease": 0.5, "als": 0.5, GATE: 2}},
]


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "numpy"])
@pytest.mark.parametrize("blend", range(len(BLENDS)))
@pytest.mark.parametrize("model", ["planted_rec", "tiers_rec"])
def test_every_method_matches_the_reference(model, blend, compiled, request):
    """Both finishing paths (recsys.fastpath's compiled one and the numpy one)."""
    rec = request.getfixturevalue(model)
    trained = {k: dict(v) for k, v in rec.blend.items()}
    if compiled and not fastpath.available():
        pytest.skip("numba is not installed")
    rec.compiled = compiled
    try:
        rec.blend.update(BLENDS[blend] or {})
        if blend == 3:  # the models under test have every component fitted
            assert set(rec._weights("basket")) == {"copurchase", "ease", "als", "popularity"}
        ref = ReferenceRecommender.of(rec)
        rng = np.random.default_rng(blend)
        checked = 0
        for kind, query in _queries(rec, rng):
            for filters in _filters(rec):
                for limit in (1, 10):
                    got = getattr(rec, kind)(query, limit, filters)
                    want = getattr(ref, kind)(query, limit, filters)
                    _same(got, want, f"{kind}({query!r}, {limit}, {filters})")
                    checked += len(want.items)
        assert checked > 500  # the comparison saw real answers, not empty lists
    finally:
        rec.blend.clear()
        rec.blend.update(trained)
        rec.compiled = fastpath.available()


def test_popular_and_likely_buyers_match_the_reference(tiers_rec):
    rec = tiers_rec
    ref = ReferenceRecommender.of(rec)
    for compiled in (True, False):
        rec.compiled = compiled and fastpath.available()
        for filters in _filters(rec):
            _same(rec.popular(10, filters, np.asarray([0])),
                  ref.popular(10, filters, np.asarray([0])), f"popular {filters}")
    rec.compiled = fastpath.available()
    for i in np.flatnonzero(rec.known_items)[:5]:
        assert rec.likely_buyers(int(i), 10) == ref.likely_buyers(int(i), 10)


@pytest.mark.parametrize("model", ["planted_rec", "tiers_rec"])
def test_pair_support_matches_the_sparse_product(model, request):
    """Every pair-support path (few evidence items, many, many candidates) is exact."""
    rec = request.getfixturevalue(model)
    buyers = rec.buyers.astype(np.int64)
    full = (buyers.T @ buyers).toarray()
    items = np.arange(len(rec.items))
    for a in (items[:1], items[:3], items, items[::-1][:70]):
        for b in (items[:1], items[5:9], items):
            assert (rec.pair_support(a, b) == full[np.ix_(a, b)]).all()
