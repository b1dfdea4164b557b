"""Explanations: because_of names real query/history items; support, confidence and lift
match counts computed here straight from the written order rows."""

from collections import defaultdict

import numpy as np
import pytest

from recsys.artifacts import load_version
from recsys.recommender import Recommender
from recsys.rules import Filters


@pytest.fixture(scope="module")
def tiers(tier_model):
    models, version, truth = tier_model
    buyers = defaultdict(set)
    for customer, _, item, *_ in truth["rows"]:
        buyers[str(item)].add(customer)
    return models, version, truth, buyers


def load(tiers, next_best_blend=None):
    rec = Recommender.load(load_version(tiers[0], tiers[1]))
    if next_best_blend is not None:
        rec.blend["next_best"] = next_best_blend
    return rec


def check_counts(rec, buyers, n_customers, r, because_pool):
    name = rec.items.id_of
    assert r.because_of, f"no reason for {name(r.item_idx)}"
    assert set(r.because_of) <= set(because_pool)
    a, j = name(r.because_of[0]), name(r.item_idx)
    both = len(buyers[a] & buyers[j])
    assert r.support == both
    assert r.confidence == pytest.approx(both / len(buyers[a]), rel=1e-5)
    assert r.lift == pytest.approx(both / len(buyers[a]) / (len(buyers[j]) / n_customers), rel=1e-5)


def n_customers(truth):
    return len({row[0] for row in truth["rows"]})


def test_also_bought_reasons(tiers):
    rec = load(tiers)
    _, _, truth, buyers = tiers
    basic = rec.items.index("BASIC")
    answer = rec.also_bought(basic, 10, Filters(min_support=0, min_score=0.0))
    assert len(answer.items) == 10
    for r in answer.items:
        assert r.because_of == [basic]
        check_counts(rec, buyers, n_customers(truth), r, [basic])
    assert answer.items[0].support == len(buyers["BASIC"]) == 240  # ADDON: always with BASIC


def test_basket_reasons_lead_with_strongest_evidence(tiers):
    rec = load(tiers)
    _, _, truth, buyers = tiers
    query = [rec.items.index("BASIC"), rec.items.index("ENT")]
    answer = rec.basket(query, 8, Filters(min_support=0, min_score=0.0))
    assert answer.items
    for r in answer.items:
        check_counts(rec, buyers, n_customers(truth), r, query)
        j = rec.items.id_of(r.item_idx)
        best = max(len(buyers[rec.items.id_of(q)] & buyers[j]) for q in query)
        assert r.support == best


@pytest.mark.parametrize("blend", [{"copurchase": 0.0, "als": 1.0},
                                   {"copurchase": 1.0, "als": 0.0}])
def test_next_best_reasons_are_in_the_history(tiers, blend):
    rec = load(tiers, blend)
    _, _, truth, buyers = tiers
    checked = 0
    for customer_id in truth["stay_basic"][:5] + ["P1", "E3"]:
        c = rec.customers.index(customer_id)
        history = rec.history[c].indices
        answer = rec.next_best(c, 5)
        for r in answer.items:
            check_counts(rec, buyers, n_customers(truth), r, history)
            checked += 1
    assert checked >= 5


def test_als_reasons_are_implicits_explain(tiers):
    rec = load(tiers, {"copurchase": 0.0, "als": 1.0})
    checked = 0
    for customer_id in ("P1", "P2", "B0", "B3", "E3", "B10", "P7"):
        c = rec.customers.index(customer_id)
        row = rec.history[c]
        answer = rec.next_best(c, 5, Filters(min_score=0.0))
        assert answer.strategy == "als" and answer.items
        for r in answer.items:
            expected = [i for i, w in rec.als.explain(row, r.item_idx, top=3) if w > 0]
            if expected:  # items with no positive contribution fall back to co-buying
                assert r.because_of == expected
                checked += 1
    assert checked >= 10


def test_history_query_reasons(tiers):
    rec = load(tiers)
    _, _, truth, buyers = tiers
    query = [rec.items.index("PRO"), rec.items.index("N3")]
    answer = rec.next_best_for_history(query, 5)
    assert answer.items
    for r in answer.items:
        check_counts(rec, buyers, n_customers(truth), r, query)


def test_substitute_and_fallback_reasons(tiers):
    rec = load(tiers)
    _, _, truth, buyers = tiers
    pro = rec.items.index("PRO")
    for answer in (rec.upsell(pro), rec.downsell(pro)):
        for r in answer.items:
            assert r.because_of == [pro]
            check_counts(rec, buyers, n_customers(truth), r, [pro])
    popular = rec.popular(3, None, np.zeros(0, dtype=np.int64))
    assert [r.support for r in popular.items] == sorted(
        (len(b) for b in buyers.values()), reverse=True)[:3]


def test_pair_support_fast_path_matches_sparse_product(tiers):
    rec = load(tiers)
    items = np.flatnonzero(rec.known_items)
    b = rec.buyers[:, items].astype(np.float64)
    expected = np.rint((b.T @ b).toarray()).astype(int)
    assert (rec.pair_support(items[:5], items) == expected[:5]).all()  # marking path
    many = np.resize(items, 70)  # above the marking limit: the sparse product path
    assert (rec.pair_support(many, items[:4]) == expected[np.searchsorted(items, many)][:, :4]).all()


def test_stored_buyers_match_history(tiers):
    rec = load(tiers)
    assert "buyers.indices.npy" in load_version(tiers[0], tiers[1]).manifest["files"]
    stored = rec.buyers
    rec._buyers = None  # rebuilt from the history, as for versions written without it
    rebuilt = rec.buyers
    assert stored is not rebuilt
    assert (stored.indptr == rebuilt.indptr).all() and (stored.indices == rebuilt.indices).all()


@pytest.mark.parametrize("blend, als_explains", [
    ({"copurchase": 0.0, "als": 0.5, "ease": 0.5}, True),
    ({"copurchase": 0.25, "als": 0.25, "ease": 0.5}, False),
    ({"copurchase": 0.0, "als": 0.25, "ease": 0.75}, False),
    ({"copurchase": 0.5, "als": 0.5, "ease": 0.0}, True),
])
def test_als_explains_only_what_it_leads(tiers, blend, als_explains, monkeypatch):
    """ALS's explain answers for a history only when ALS weighs at least as much as the
    item-item components (co-purchase + EASE) together; otherwise the reasons are the
    co-bought history items, like every item-item answer's."""
    from recsys.models.ease import EASEModel

    rec = load(tiers, blend)
    if "next_best" not in rec.ease_by_kind:
        rec.ease_by_kind["next_best"] = EASEModel(lam=10.0, min_buyers=1).fit(rec.history)
    calls = []
    original = rec._als_because
    monkeypatch.setattr(rec, "_als_because", lambda *a: calls.append(1) or original(*a))
    _, _, truth, buyers = tiers
    for customer_id in ("P1", "B0", "E3"):
        c = rec.customers.index(customer_id)
        answer = rec.next_best(c, 5)
        assert answer.items
        if not als_explains:
            for r in answer.items:
                check_counts(rec, buyers, n_customers(truth), r, rec.history[c].indices)
    assert bool(calls) == als_explains
