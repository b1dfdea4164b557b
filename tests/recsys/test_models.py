"""Models on small hand-checked matrices and on planted synthetic data."""

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.exceptions import NotFittedError
from recsys.models import ALSModel, CoPurchaseModel, PopularityModel
from recsys.models.base import top_indices, top_indices_rows, topk_per_row


def matrix(rows):
    return sp.csr_matrix(np.asarray(rows, dtype=np.float32))


def test_copurchase_similarity_matches_hand_computation():
    # customers x items: item 0 bought by c0,c1,c2; item 1 by c0,c1; item 2 by c2,c3.
    m = matrix([[1, 1, 0], [1, 1, 0], [1, 0, 1], [0, 0, 1]])
    model = CoPurchaseModel(k=10, alpha=0.5, shrink=0.0, min_support=1, basket_weight=0).fit(m)
    sim = model.similarity_.toarray()
    assert sim[0, 1] == pytest.approx(2 / np.sqrt(3 * 2))
    assert sim[0, 2] == pytest.approx(1 / np.sqrt(3 * 2))
    assert sim[1, 2] == 0 and sim[0, 0] == 0
    assert model.support_.toarray()[0, 1] == 2
    assert model.support_.toarray()[0, 2] == 1


def test_copurchase_min_support_shrink_and_topk():
    m = matrix([[1, 1, 0], [1, 1, 0], [1, 0, 1], [0, 0, 1]])
    model = CoPurchaseModel(k=10, shrink=0.0, min_support=2, basket_weight=0).fit(m)
    assert model.similarity_.toarray()[0, 2] == 0  # one shared customer < min_support
    shrunk = CoPurchaseModel(k=10, shrink=5.0, min_support=1, basket_weight=0).fit(m)
    assert shrunk.similarity_.toarray()[0, 1] == pytest.approx(2 / (np.sqrt(6) + 5))
    top1 = CoPurchaseModel(k=1, shrink=0.0, min_support=1, basket_weight=0).fit(m)
    assert np.diff(top1.similarity_.indptr).max() == 1
    assert top1.similarity_.toarray()[0].argmax() == 1


def test_copurchase_alpha_punishes_popular_candidates():
    # item 0 co-bought with popular item 1 (by 2) and rare item 2 (by 2).
    m = matrix([[1, 1, 1], [1, 1, 1], [0, 1, 0], [0, 1, 0], [0, 1, 0], [0, 1, 0]])
    cosine = CoPurchaseModel(alpha=0.5, shrink=0, min_support=1, basket_weight=0).fit(m)
    assert cosine.similarity_[0, 2] > cosine.similarity_[0, 1]


def test_copurchase_blocks_give_the_same_answer(monkeypatch):
    rng = np.random.default_rng(0)
    m = sp.csr_matrix((rng.random((200, 50)) < 0.1).astype(np.float32))
    whole = CoPurchaseModel(k=5, min_support=1).fit(m, m)
    import recsys.models.copurchase as cp
    monkeypatch.setattr(cp, "_BLOCK_WORK", 10.0)  # forces one block per item
    blocked = CoPurchaseModel(k=5, min_support=1).fit(m, m)
    assert (whole.similarity_ != blocked.similarity_).nnz == 0
    assert (whole.support_ != blocked.support_).nnz == 0


def test_popularity_counts_distinct_customers():
    m = matrix([[3, 0], [1, 1], [0, 1]])
    model = PopularityModel().fit(m)
    assert model.counts_.tolist() == [2, 2]
    assert model.score(2).shape == (2, 2)


def test_methods_before_fit_raise_not_fitted():
    with pytest.raises(NotFittedError, match="fit"):
        CoPurchaseModel().item_scores("basket", sp.csr_matrix((1, 3), dtype=np.float32))
    with pytest.raises(NotFittedError):
        ALSModel().score_customers(np.array([0]))
    with pytest.raises(NotFittedError):
        PopularityModel().score()


def test_als_learns_two_blocks_and_recalculates_new_users():
    # Checkerboard: customers 0-9 buy items 0-4, customers 10-19 buy items 5-9.
    dense = np.zeros((20, 10), dtype=np.float32)
    dense[:10, :5] = 1
    dense[10:, 5:] = 1
    model = ALSModel(factors=4, iterations=10, regularization=0.01, random_state=0).fit(
        sp.csr_matrix(dense))
    scores = model.score_customers(np.array([0, 15]))
    assert scores[0, :5].min() > scores[0, 5:].max()
    assert scores[1, 5:].min() > scores[1, :5].max()
    new = sp.csr_matrix(np.array([[1, 1, 0, 0, 0, 0, 0, 0, 0, 0]], dtype=np.float32))
    fresh = model.score_histories(new)[0]
    assert fresh[2:5].min() > fresh[5:].max()
    buyers = model.score_buyers(7)
    assert buyers[10:].min() > buyers[:10].max()
    similar = model.score_similar(np.array([1]))
    assert similar[:5].min() > similar[5:].max()


def test_topk_helpers():
    m = sp.csr_matrix(np.array([[0.1, 0.5, 0.3], [0, 0, 0.2]], dtype=np.float32))
    top = topk_per_row(m, 2).toarray()
    assert top[0].tolist() == pytest.approx([0, 0.5, 0.3])
    assert top[1].tolist() == pytest.approx([0, 0, 0.2])
    assert top_indices(np.array([0.1, -np.inf, 0.9, 0.5]), 3).tolist() == [2, 3, 0]
    rows = top_indices_rows(np.array([[1.0, -np.inf, 0.5]]), 4)
    assert rows.tolist() == [[0, 2, -1, -1]]


def test_fold_in_matches_implicits_recalculate_user():
    rng = np.random.default_rng(3)
    counts = sp.csr_matrix((rng.random((60, 30)) < 0.2) * rng.integers(1, 4, (60, 30)),
                           dtype=np.float32)
    model = ALSModel(factors=8, iterations=5, alpha=5.0, regularization=0.1).fit(counts)
    from implicit.cpu.als import AlternatingLeastSquares

    ref = AlternatingLeastSquares(factors=8, regularization=0.1, alpha=5.0, num_threads=1)
    ref.item_factors = model.item_factors_.copy()
    ref.user_factors = model.user_factors_.copy()
    expected = ref.recalculate_user(np.arange(5), model.weight(counts[:5]))
    got = model.user_vectors(counts[:5])
    assert np.allclose(got, expected, atol=1e-3)
    # Read-only (memory-mapped) factors work too.
    frozen = model.item_factors_.copy()
    frozen.setflags(write=False)
    ro = ALSModel(factors=8, alpha=5.0, regularization=0.1).set_factors(model.user_factors_, frozen)
    assert np.allclose(ro.user_vectors(counts[:5]), expected, atol=1e-3)


@pytest.mark.parametrize("alpha", [0.5, 2.0, 40.0])
def test_short_histories_solved_by_woodbury_equal_the_full_system(alpha):
    """solve_user's low-rank path (fewer items than factors) and the full factors x
    factors solve are the same least squares, confidences below 1 included."""
    rng = np.random.default_rng(4)
    model = ALSModel(factors=16, alpha=alpha, regularization=0.05).set_factors(
        rng.normal(size=(5, 16)).astype(np.float32), rng.normal(size=(40, 16)).astype(np.float32))
    factors = np.asarray(model.item_factors_, dtype=np.float64)
    base = factors.T @ factors + 0.05 * np.eye(16)
    for m in (1, 3, 15, 16, 30):
        y = factors[rng.choice(40, m, replace=False)]
        confidence = alpha * np.log1p(rng.integers(1, 5, m)).astype(np.float64)
        want = np.linalg.solve(base + (y.T * (confidence - 1)) @ y, y.T @ confidence)
        np.testing.assert_allclose(model.solve_user(y, confidence), want, rtol=1e-9, atol=1e-9)


def test_blocked_row_topk_is_exact_on_wide_rows():
    rng = np.random.default_rng(7)
    scores = (rng.random((50, 5003)) ** 3).astype(np.float32)
    scores[:, ::2] = 0.0
    scores[3] = -np.inf
    scores[4, 7:] = -np.inf  # fewer finite entries than k
    scores[5, 4000:] = 5.0  # the best entries sit in the tail and a late block
    got = top_indices_rows(scores, 10)
    for row in range(50):
        finite = np.flatnonzero(np.isfinite(scores[row]))
        expected = finite[np.lexsort((finite, -scores[row, finite]))][:10]
        assert got[row, : len(expected)].tolist() == expected.tolist()
        assert (got[row, len(expected):] == -1).all()


def test_row_topk_above_a_floor_matches_masking_first():
    rng = np.random.default_rng(8)
    scores = np.where(rng.random((40, 6000)) < 0.01, rng.random((40, 6000)), 0.0).astype(np.float32)
    scores[2] = 0.0  # nothing above the floor
    got = top_indices_rows(scores, 100, above=0.0)
    expected = top_indices_rows(np.where(scores > 0, scores, -np.inf), 100)
    assert got.tolist() == expected.tolist()
    assert (got[2] == -1).all()


def test_top_rows_break_ties_by_column_on_narrow_and_wide_rows():
    rng = np.random.default_rng(11)
    for n_cols in (30, 5000):  # the partition path and the block path
        scores = rng.integers(0, 4, size=(50, n_cols)).astype(np.float32)  # many ties
        scores[0, :] = -np.inf
        got = top_indices_rows(scores, 12)
        for r in range(50):
            finite = np.flatnonzero(np.isfinite(scores[r]))
            expected = finite[np.lexsort((finite, -scores[r, finite]))][:12]
            assert list(got[r][got[r] >= 0]) == list(expected)


def test_copurchase_row_cut_keeps_the_k_best_with_ties_by_column():
    from recsys.models.copurchase import _top_k_segments

    rng = np.random.default_rng(12)
    counts = rng.integers(0, 40, size=30)
    rows = np.repeat(np.arange(30), counts)
    cols = np.concatenate([rng.choice(1000, c, replace=False) for c in counts])
    values = rng.integers(0, 5, size=len(rows)).astype(np.float64)
    kept = _top_k_segments(rows, cols, values, 30, 7)
    for r in range(30):
        seg = np.flatnonzero(rows == r)
        expected = seg[np.lexsort((cols[seg], -values[seg]))][:7]
        assert sorted(kept[rows[kept] == r]) == sorted(expected)


def test_als_warm_start_runs_the_extra_iterations_only_when_it_applies():
    rng = np.random.default_rng(13)
    counts = sp.random(60, 40, density=0.1, random_state=14, format="csr", dtype=np.float32)
    counts.data = rng.integers(1, 4, counts.nnz).astype(np.float32)
    first = ALSModel(factors=8, iterations=6, use_gpu=False).fit(counts)

    def iterations_run(warm_start, matrix):
        done = []
        ALSModel(factors=8, iterations=6, use_gpu=False).fit(
            matrix, warm_start=warm_start, iterations=2, progress=done.append)
        return len(done)

    assert iterations_run(first, counts) == 2  # continues from the given factors
    bigger = sp.vstack([counts, counts[:5]]).tocsr()  # other shape: cannot continue
    assert iterations_run(first, bigger) == 6


def test_sorted_distinct_equals_numpy_unique_for_short_and_long_queries():
    import numpy as np

    from recsys.sparse import DIRECT_ROWS, sorted_distinct

    rng = np.random.default_rng(0)
    for n in (0, 1, 3, DIRECT_ROWS, DIRECT_ROWS + 1, 500):
        values = rng.integers(0, 40, n)
        got = sorted_distinct(values.tolist() if n % 2 else values)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, np.unique(values.astype(np.int64)))
