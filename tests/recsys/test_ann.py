"""The ANN index for large catalogues (recsys.ann): recall against exact scoring, filters and
the floor still exact, built by the trainer into the version, checksummed, loaded."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("faiss")

from recsys import ann  # noqa: E402
from recsys.rules import Filters  # noqa: E402
from support.ann_synth import attach_index, synthetic_recommender  # noqa: E402


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    rec = synthetic_recommender(30_000, 3_000, 32, seed=3)
    attach_index(rec, str(tmp_path_factory.mktemp("ann")), overfetch=40)
    return rec


def _recall(rec, ask, queries):
    index, hits, total = rec.ann, 0, 0
    for q in queries:
        rec.ann = None
        exact = ask(q)
        rec.ann = index
        approx = ask(q)
        want = {r.item_idx for r in exact.items}
        hits += len(want & {r.item_idx for r in approx.items})
        total += len(want)
    return hits / total


def test_index_recall_on_customers_it_was_not_tuned_on():
    rec = synthetic_recommender(40_000, 4_000, 32, seed=5)
    items, users = np.asarray(rec.als.item_factors_), np.asarray(rec.als.user_factors_)
    index = ann.build_index(items, seed=0)
    nprobe, tuned = ann.tune_nprobe(index, items, users[:300], target=0.97)
    assert tuned >= 0.97 and nprobe < index.nlist  # it really is approximate
    fresh = users[1000:1300]
    recall = ann.recall_at(index, fresh, ann.exact_top(items, fresh, 10), nprobe)
    assert recall >= 0.95
    # Fewer lists searched find less: the tuning is not vacuous.
    if nprobe > 1:
        assert ann.recall_at(index, fresh, ann.exact_top(items, fresh, 10), 1) < recall


def test_next_best_with_the_index_agrees_with_exact(large):
    rec = large
    queries = range(0, 3_000, 15)
    calls = []
    real = ann.next_best

    def spy(*args):
        out = real(*args)
        calls.append(out is not None)
        return out

    ann.next_best = spy
    try:
        assert _recall(rec, lambda q: rec.next_best(q, 10), queries) >= 0.95
    finally:
        ann.next_best = real
    assert sum(calls) >= 0.9 * len(calls)  # the index answered, not the exact fallback


def test_filters_and_floor_stay_exact_with_the_index(large):
    rec = large
    queries = list(range(7, 3_000, 30))
    filters = Filters(categories=["c03"], max_price=40.0)
    assert _recall(rec, lambda q: rec.next_best(q, 10, filters), queries) >= 0.95
    cat = rec.meta.categories.index("c03")
    for q in queries:
        answer = rec.next_best(q, 10, filters)
        assert len(answer.items) == 10
        bought = set(rec.history[q].indices.tolist())
        for r in answer.items:
            assert rec.meta.category[r.item_idx] == cat and rec.meta.price[r.item_idx] <= 40
            assert r.item_idx not in bought
    # A relevance floor above every candidate's score: an empty answer, as exact says.
    high = Filters(min_score=1.5)
    answer = rec.next_best(3, 10, high)
    rec_ann, rec.ann = rec.ann, None
    try:
        assert [r.item_idx for r in answer.items] == \
            [r.item_idx for r in rec.next_best(3, 10, high).items]
    finally:
        rec.ann = rec_ann


def test_likely_buyers_with_a_customer_index():
    rec = synthetic_recommender(3_000, 30_000, 32, seed=4)
    users, items = np.asarray(rec.als.user_factors_), np.asarray(rec.als.item_factors_)
    index = ann.build_index(users, seed=0)
    nprobe, _ = ann.tune_nprobe(index, users, items[:300], target=0.97)
    rec.ann = ann.AnnIndexes(None, ann.FactorIndex(index, nprobe, len(users)), 40)
    hits = total = 0
    for item in range(0, 3_000, 20):
        approx = ann.likely_buyers(rec, item, 10, None)
        assert approx is not None
        rec_ann, rec.ann = rec.ann, None
        _, exact = rec.likely_buyers(item, 10)
        rec.ann = rec_ann
        buyers = set(rec.buyers[:, [item]].indices.tolist())
        assert not buyers & {c for c, _ in approx[1]}
        hits += len({c for c, _ in exact} & {c for c, _ in approx[1]})
        total += len(exact)
        # Candidates are scored exactly; scores are relative to the best customer found,
        # so where the customers agree the scores differ by one common factor (1 when the
        # index found the best customer).
        exact_scores = dict(exact)
        ratios = [s / exact_scores[c] for c, s in approx[1] if c in exact_scores]
        assert ratios and max(ratios) == pytest.approx(min(ratios), rel=1e-4)
        assert 1 - 1e-5 <= ratios[0] <= 1.1
    assert hits / total >= 0.95
