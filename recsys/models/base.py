"""Shared helpers for models: the fitted check and sparse top-k selection."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..exceptions import NotFittedError


def check_fitted(model, attribute: str) -> None:
    if getattr(model, attribute, None) is None:
        raise NotFittedError(
            f"{type(model).__name__} is not fitted yet: call fit() or load a model version first"
        )


def topk_positions(m: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (into ``m.data``) of the ``k`` largest entries of every row, and the new indptr.

    ``m`` must have sorted indices; ties keep the lower column.
    """
    counts = np.diff(m.indptr)
    if len(counts) == 0 or counts.max() <= k:
        return np.arange(m.nnz), m.indptr.copy()
    rows = np.repeat(np.arange(m.shape[0]), counts)
    order = np.lexsort((-m.data, rows))
    rank = np.arange(len(order)) - np.repeat(m.indptr[:-1], counts)
    kept = np.sort(order[rank < k])
    return kept, np.r_[0, np.cumsum(np.minimum(counts, k))]


def topk_per_row(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` largest entries of every row of a CSR matrix."""
    m.sort_indices()
    kept, indptr = topk_positions(m, k)
    return sp.csr_matrix((m.data[kept], m.indices[kept], indptr), shape=m.shape)


def row_blocks(work: np.ndarray, budget: float) -> list[tuple[int, int]]:
    """Split rows into consecutive blocks whose summed ``work`` stays near ``budget``."""
    n = len(work)
    if n == 0:
        return []
    cum = np.cumsum(work, dtype=np.float64)
    blocks, start = [], 0
    while start < n:
        base = cum[start - 1] if start else 0.0
        end = int(np.searchsorted(cum, base + budget, side="right"))
        end = max(end, start + 1)
        blocks.append((start, min(end, n)))
        start = end
    return blocks


def top_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indexes of the ``k`` best scores of a 1-D array, best first (-inf entries never returned)."""
    k = min(k, int(np.isfinite(scores).sum()))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.argsort(-scores[part], kind="stable")]


def top_indices_rows(scores: np.ndarray, k: int, above: float | None = None) -> np.ndarray:
    """Row-wise top-k of a 2-D array, best first; -1 where a row has fewer finite scores.

    With ``above``, only entries strictly greater than it count (the rest as -inf),
    without a masked copy of ``scores``.

    Exact, and much faster than a row-wise argpartition for wide rows: split each
    row into blocks and take the k-th largest block maximum as a threshold. The
    k blocks with the largest maxima hold at least k entries at or above it, so
    every top-k entry is at or above it too; only those candidates are sorted.
    """
    n_rows, n_cols = scores.shape
    if n_rows == 0 or k <= 0:
        return np.full((n_rows, max(k, 0)), -1, dtype=np.int64)
    # Blocks of about 8-30 columns: few candidates survive the threshold.
    n_blocks = max(64, 16 * k)
    if n_cols < 8 * n_blocks:
        if above is not None:
            scores = np.where(scores > above, scores, -np.inf)
        return _top_rows_partition(scores, k)
    floor = -np.inf if above is None else above
    width = n_cols // n_blocks
    main = width * n_blocks
    # Block maxima; reduceat is about twice as fast as a max over a reshaped short axis.
    head = np.maximum.reduceat(scores[:, :main], np.arange(0, main, width), axis=1)
    threshold = np.partition(head, n_blocks - k, axis=1)[:, n_blocks - k]
    # Candidates: entries >= threshold inside blocks whose maximum reaches it,
    # plus the few tail columns that do not fill a whole block.
    threshold = np.maximum(threshold, np.nextafter(np.float32(floor), np.float32(np.inf))) \
        if above is not None else threshold
    block_rows, block_ids = np.nonzero((head >= threshold[:, None]) & (head > floor))
    cols = block_ids[:, None] * width + np.arange(width)
    values = scores[block_rows[:, None], cols]
    hit_r, hit_c = np.nonzero(values >= threshold[block_rows][:, None])
    rows, cols = block_rows[hit_r], cols[hit_r, hit_c]
    if main < n_cols:
        tail = scores[:, main:]
        tail_r, tail_c = np.nonzero((tail >= threshold[:, None]) & (tail > floor))
        rows, cols = np.concatenate([rows, tail_r]), np.concatenate([cols, tail_c + main])
    values = scores[rows, cols]
    finite = np.isfinite(values) & (values > floor)
    rows, cols, values = rows[finite], cols[finite], values[finite]
    order = np.lexsort((cols, -values, rows))
    rows, cols = rows[order], cols[order]
    starts = np.searchsorted(rows, np.arange(n_rows))
    rank = np.arange(len(rows)) - starts[rows]
    keep = rank < k
    out = np.full((n_rows, k), -1, dtype=np.int64)
    out[rows[keep], rank[keep]] = cols[keep]
    return out


def _top_rows_partition(scores: np.ndarray, k: int) -> np.ndarray:
    """Narrow rows: the k-th largest value by partition, then the entries at or above it
    ordered by value, ties by column (as the block path, so both agree on ties)."""
    n_rows, n_cols = scores.shape
    k_eff = min(k, n_cols)
    out = np.full((n_rows, k), -1, dtype=np.int64)
    if k_eff == 0:
        return out
    kth = -np.partition(-scores, k_eff - 1, axis=1)[:, k_eff - 1]
    rows, cols = np.nonzero((scores >= kth[:, None]) & np.isfinite(scores))
    values = scores[rows, cols]
    order = np.lexsort((cols, -values, rows))
    rows, cols = rows[order], cols[order]
    starts = np.searchsorted(rows, np.arange(n_rows))
    rank = np.arange(len(rows)) - starts[rows]
    keep = rank < k_eff
    out[rows[keep], rank[keep]] = cols[keep]
    return out
