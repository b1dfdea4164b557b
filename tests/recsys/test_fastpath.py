"""recsys.fastpath.select on hand-made data: ranking, the support floor, reasons."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys import fastpath

pytestmark = pytest.mark.skipif(not fastpath.available(), reason="numba is not installed")

# Five customers x six items. Item 0 and item 1 are the evidence (query) items.
#   customer: items bought
#   0: 0 1 2      1: 0 2 3      2: 0 2 4      3: 1 3 4      4: 1 5
BOUGHT = [[0, 1, 2], [0, 2, 3], [0, 2, 4], [1, 3, 4], [1, 5]]
# Supports with item 0 / item 1:  item 2: 3 / 1   item 3: 1 / 1   item 4: 1 / 1   item 5: 0 / 1


def _buyers():
    rows = [c for c, items in enumerate(BOUGHT) for _ in items]
    cols = [i for items in BOUGHT for i in items]
    m = sp.csc_matrix((np.ones(len(rows), dtype=np.uint8), (rows, cols)), shape=(5, 6))
    m.sort_indices()
    return np.asarray(m.indptr), np.asarray(m.indices)


NO_HISTORY = (np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int32))


def _history(buyers: sp.spmatrix):
    """The customers' rows (CSR) of a buyers matrix: select's evidence-side counting."""
    h = sp.csr_matrix(buyers)
    return np.asarray(h.indptr), np.asarray(h.indices)


def _similarity(values: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dense = np.zeros((6, 6), dtype=np.float32)
    for (a, b), v in values.items():
        dense[a, b] = v
    m = sp.csr_matrix(dense)
    return np.asarray(m.indptr), np.asarray(m.indices), np.asarray(m.data)


def _select(scores, limit=10, min_support=0, min_score=-np.inf, evidence=(0, 1),
            allowed=None, sims=None):
    b_indptr, b_indices = _buyers()
    s_indptr, s_indices, s_data = _similarity(sims or {})
    scores = np.asarray(scores, dtype=np.float32)
    allowed = np.ones(6, dtype=bool) if allowed is None else np.asarray(allowed)
    flags = np.zeros(5, dtype=np.uint64)
    out = fastpath.select(scores, allowed, limit, float(min_score), min_support,
                          np.asarray(evidence, dtype=np.int64), b_indptr, b_indices, flags,
                          s_indptr, s_indices, s_data, *NO_HISTORY)
    assert not flags.any()  # the scratch flags are left zeroed for the next query
    return out[:5]


def test_ranks_by_score_then_index_and_skips_disallowed_and_floored_scores():
    scores = [9.0, 9.0, 0.5, 0.7, 0.7, np.nan]
    allowed = [False, False, True, True, True, True]  # the query items themselves
    items, item_scores, _, _, floored = _select(scores, allowed=allowed, evidence=(0,))
    assert items.tolist() == [3, 4, 2]  # ties (0.7) by index; NaN never recommended
    assert item_scores.tolist() == pytest.approx([0.7, 0.7, 0.5])
    assert not floored
    items, _, _, _, floored = _select(scores, allowed=allowed, evidence=(0,), min_score=0.6)
    assert items.tolist() == [3, 4] and floored


def test_support_floor_counts_customers_who_bought_both():
    scores = [0, 0, 0.2, 0.9, 0.8, 1.0]
    allowed = [False, False, True, True, True, True]
    # Best support with {0, 1}: item 5 -> 1, 3 -> 1, 4 -> 1, 2 -> 3.
    items, _, because, first, floored = _select(scores, allowed=allowed, min_support=2)
    assert items.tolist() == [2] and floored
    assert because[0].tolist() == [0, 1, -1]  # by support: item 0 (3 customers), item 1 (1)
    assert first.tolist() == [3]
    items, _, because, first, _ = _select(scores, allowed=allowed, min_support=1, limit=2)
    assert items.tolist() == [5, 3]
    assert because[0].tolist() == [1, -1, -1]  # item 5 was never bought with item 0
    assert first.tolist() == [1, 1]


def test_equal_supports_are_ordered_by_similarity_then_position():
    scores = [0, 0, 0, 1.0, 0, 0]
    allowed = [False, False, True, True, True, True]
    _, _, because, _, _ = _select(scores, allowed=allowed, limit=1)
    assert because[0].tolist() == [0, 1, -1]  # support 1 each: position decides
    _, _, because, _, _ = _select(scores, allowed=allowed, limit=1, sims={(1, 3): 0.5})
    assert because[0].tolist() == [1, 0, -1]


def test_a_single_query_item_is_always_the_reason():
    scores = [0, 0, 0, 0, 0, 1.0]
    allowed = [False, True, True, True, True, True]
    items, _, because, first, _ = _select(scores, allowed=allowed, evidence=(0,), limit=1)
    assert items.tolist() == [5]
    assert because[0].tolist() == [0, -1, -1] and first.tolist() == [0]


def test_the_floor_reads_past_the_first_candidates_when_it_must():
    """Many candidates dropped by the floor: the lazy ranking goes on to the rest, in order."""
    n_items, n_customers = 400, 3
    # Customer 0 bought item 0 and the 5 lowest-scored items; the others bought item 1..
    cols = [0, *range(n_items - 5, n_items)]
    m = sp.csc_matrix((np.ones(len(cols), dtype=np.uint8), ([0] * len(cols), cols)),
                      shape=(n_customers, n_items))
    scores = np.linspace(1.0, 0.5, n_items).astype(np.float32)
    allowed = np.ones(n_items, dtype=bool)
    allowed[0] = False
    empty = np.zeros(0, dtype=np.int32)
    items, _, _, first, floored, supports = fastpath.select(
        scores, allowed, 10, -np.inf, 1, np.asarray([0], dtype=np.int64),
        np.asarray(m.indptr), np.asarray(m.indices), np.zeros(n_customers, dtype=np.uint64),
        empty, empty, np.zeros(0, dtype=np.float32), *NO_HISTORY)
    assert items.tolist() == list(range(n_items - 5, n_items))
    assert first.tolist() == [1] * 5 and floored
    assert supports.tolist() == [[1]] * 5


def test_supports_with_every_evidence_item_are_returned():
    b_indptr, b_indices = _buyers()
    empty = np.zeros(0, dtype=np.int32)
    scores = np.asarray([0, 0, 0.4, 0.3, 0.2, 0.1], dtype=np.float32)
    items, *_, supports = fastpath.select(
        scores, np.asarray([False, False, True, True, True, True]), 4, -np.inf, 0,
        np.asarray([0, 1], dtype=np.int64), b_indptr, b_indices, np.zeros(5, dtype=np.uint64),
        empty, empty, np.zeros(0, dtype=np.float32), *NO_HISTORY)
    assert items.tolist() == [2, 3, 4, 5]
    assert supports.tolist() == [[3, 1], [1, 1], [1, 1], [0, 1]]


@pytest.mark.parametrize("values", [
    [0.5, -1.0, 2.0, 0.0], [-1.0, -2.0], [0.0, 0.0], [3.0], [1.0, np.nan, 2.0],
    [1e-30, 3e-30, -0.0]])
def test_normalise_row_is_the_numpy_normalisation(values):
    from recsys.recommender import Recommender

    row = np.asarray(values, dtype=np.float32)
    want = np.maximum(row, 0)
    top = want.max()
    want = want / (np.float32(1) if top <= 0 else top)
    got = row.copy()
    fastpath.normalise_row(got)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(Recommender._normalise(row[None, :].copy())[0], want)


def test_add_rows_adds_weighted_rows_in_float32():
    m = sp.csr_matrix(np.asarray([[0, 1.5, 0], [2.0, 0, 0.25], [0, 0, 1.0]], dtype=np.float32))
    out = np.zeros(3, dtype=np.float32)
    weights = np.asarray([0.3, 1.0], dtype=np.float32)
    fastpath.add_rows(np.asarray(m.indptr), np.asarray(m.indices), np.asarray(m.data),
                      np.asarray([1, 0], dtype=np.int64), weights, out)
    want = np.asarray([[0.3, 1.0]], dtype=np.float32) @ m[[1, 0]].toarray()
    np.testing.assert_array_equal(out, want[0])


def test_sum_rows_is_add_rows_into_a_new_row():
    m = sp.random(40, 300, density=0.2, format="csr", dtype=np.float32, random_state=3)
    rows = np.asarray([7, 2, 39], dtype=np.int64)
    weights = np.asarray([0.7, 1.0, 0.3], dtype=np.float32)
    arrays = (np.asarray(m.indptr), np.asarray(m.indices), np.asarray(m.data))
    want = np.zeros(300, dtype=np.float32)
    fastpath.add_rows(*arrays, rows, weights, want)
    got = fastpath.sum_rows(*arrays, rows, weights, 300)
    assert got.dtype == np.float32 and got.flags.writeable
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("weight", [1.0, 0.37, 0.1])
def test_blend_into_is_numpy_float32_arithmetic_bit_for_bit(weight):
    """Recommender.combine adds each part as ``out += np.float32(w) * part``; the compiled
    one-row version must round the same way (no fused multiply-add)."""
    rng = np.random.default_rng(7)
    base = rng.random(2000).astype(np.float32) * np.float32(1e-6)
    part = rng.random(2000).astype(np.float32)
    want = base.copy()
    want += np.float32(weight) * part if weight != 1 else part
    got = fastpath.copy_row(fastpath.readonly(base))
    fastpath.blend_into(got, fastpath.readonly(part), np.float32(weight))
    assert got.tobytes() == want.tobytes()
    assert not np.shares_memory(got, base)


def test_kernels_keep_the_gil():
    """Releasing the GIL for a kernel of microseconds costs a gthread worker a thread
    handoff per call (see the module docstring); every kernel is compiled holding it."""
    kernels = [getattr(fastpath, name) for name in dir(fastpath)
               if hasattr(getattr(fastpath, name), "targetoptions")]
    assert len(kernels) >= 8
    assert [k.__name__ for k in kernels if k.targetoptions.get("nogil")] == []


@pytest.mark.parametrize("n_ev", [1, 3, 4, 5, 8, 9, 64, 150])
def test_supports_equal_the_sparse_product_for_any_evidence_count(n_ev):
    """Every counting path (16-bit lanes up to 4 evidence items, 8-bit lanes up to 8,
    bit-planes above, passes of 64 above that), with supports above what a lane or 16
    planes hold (flushes)."""
    rng = np.random.default_rng(n_ev)
    n_customers, n_items = 70_000, n_ev + 6
    density = np.r_[0.995, np.full(n_ev - 1, 0.6), [0.995, 0.5, 0.01, 0.003, 0.9, 0.2]]
    dense = rng.random((n_customers, n_items)) < density
    m = sp.csc_matrix(dense.astype(np.uint8))
    evidence = np.arange(n_ev, dtype=np.int64)
    allowed = np.ones(n_items, dtype=bool)
    allowed[evidence] = False
    scores = rng.random(n_items).astype(np.float32)
    empty = np.zeros(0, dtype=np.int32)
    items, *_, supports = fastpath.select(
        scores, allowed, 6, -np.inf, 0, evidence, np.asarray(m.indptr), np.asarray(m.indices),
        np.zeros(n_customers, dtype=np.uint64), empty, empty, np.zeros(0, dtype=np.float32),
        *NO_HISTORY)
    full = (m.T.astype(np.int64) @ m.astype(np.int64)).toarray()
    assert sorted(items.tolist()) == list(range(n_ev, n_items))
    assert supports.tolist() == full[np.ix_(items, evidence)].tolist()
    # A support above what a 16-bit lane holds: counted right only if lanes are flushed.
    assert supports.max() > 65_535


@pytest.mark.parametrize("limit", [1, 3, 10, 50])
def test_best_candidates_are_the_head_of_the_full_ranking(limit):
    """Without a floor the best `limit` come from one bounded pass: the same items, in the
    same order (score, then position), as a full sort; many ties on purpose."""
    rng = np.random.default_rng(limit)
    neg = -rng.integers(0, 6, 40).astype(np.float64)
    want = sorted(range(40), key=lambda i: (neg[i], i))[:limit]
    assert fastpath._best(neg, limit).tolist() == want


@pytest.mark.parametrize("min_support", [1, 2, 3])
def test_counting_from_the_evidence_side_gives_the_same_answer(min_support):
    """Long-tail query items (few buyers): supports come from their buyers' purchases,
    once for every item, instead of from each candidate's buyers. Same answers."""
    rng = np.random.default_rng(min_support)
    n_customers, n_items = 2000, 300
    dense = rng.random((n_customers, n_items)) < np.linspace(0.2, 0.002, n_items)
    m = sp.csc_matrix(dense.astype(np.uint8))
    b_indptr, b_indices = np.asarray(m.indptr), np.asarray(m.indices)
    h_indptr, h_indices = _history(m)
    evidence = np.asarray([n_items - 3, n_items - 1], dtype=np.int64)  # the rarest items
    allowed = np.ones(n_items, dtype=bool)
    allowed[evidence] = False
    scores = rng.random(n_items).astype(np.float32)
    empty = np.zeros(0, dtype=np.int32)
    first = fastpath._best(-scores.astype(np.float64), 28)
    table = fastpath._evidence_counts(evidence, first, np.arange(n_items), b_indptr, b_indices,
                                      h_indptr, h_indices, n_items)
    assert table.shape == (2, n_items)  # the evidence side is the cheaper one here
    full = (m.T.astype(np.int64) @ m.astype(np.int64)).toarray()
    assert (table == full[evidence]).all()
    answers = [fastpath.select(scores, allowed, 10, -np.inf, min_support, evidence, b_indptr,
                               b_indices, np.zeros(n_customers, dtype=np.uint64), empty, empty,
                               np.zeros(0, dtype=np.float32), *history)
               for history in ((h_indptr, h_indices), NO_HISTORY)]
    for got, want in zip(*answers, strict=True):
        np.testing.assert_array_equal(got, want)
    assert len(answers[0][0])  # some candidates pass the floor


def test_woodbury_solve_is_the_least_squares_and_stops_on_a_zero_pivot():
    """The compiled Woodbury fold-in equals the direct solve of (B + Y'(C - I)Y) u = Y'c
    (to float64 rounding; float32 vectors equal), and reports a zero pivot instead of
    dividing by it."""
    rng = np.random.default_rng(3)
    f = 8
    base = rng.normal(size=(40, f))
    b_matrix = base.T @ base + 0.05 * np.eye(f)
    inverse = fastpath.readonly(np.linalg.inv(b_matrix))
    for m in (1, 2, 5, 7):
        y = rng.normal(size=(m, f))
        confidence = rng.uniform(2.0, 12.0, size=m)
        want = np.linalg.solve(b_matrix + (y.T * (confidence - 1.0)) @ y, y.T @ confidence)
        got, ok = fastpath.woodbury_solve(fastpath.readonly(y), fastpath.readonly(confidence),
                                          inverse)
        assert ok
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
        assert np.array_equal(got.astype(np.float32), want.astype(np.float32))
    # C - I = -1 on both items and Y B^-1 Y' = I: the m x m system is all zeros.
    y = np.eye(2, f)
    _, ok = fastpath.woodbury_solve(fastpath.readonly(y), fastpath.readonly(np.zeros(2)),
                                    fastpath.readonly(np.eye(f)))
    assert not ok
