"""Co-purchase: item-to-item association from shared baskets and shared customers.

Raw co-counts favour best-sellers (everything is "bought with" the top item),
so the similarity divides by popularity on both sides, as in item-based
collaborative filtering (Sarwar et al. 2001; Deshpande & Karypis 2004):

    sim(i, j) = co(i, j) / (n_i ** (1 - alpha) * n_j ** alpha + shrink)

``alpha`` = 0.5 is cosine; a larger ``alpha`` punishes popular candidates more.
``shrink`` damps pairs seen only a few times (Koren 2008's shrunk similarity),
and pairs with fewer than ``min_support`` co-buying customers are dropped.
Counts come from customers (bought both, any time) plus ``basket_weight``
times orders (bought both in one basket). Only the ``k`` best neighbours of
each item are kept, with their support (customers who bought both) for
explanations.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from .base import check_fitted, row_blocks, topk_positions

log = logging.getLogger(__name__)

# Entries of one block's product; bounds peak memory of the co-count step.
_BLOCK_WORK = 4e7


class CoPurchaseModel:
    """Item-item co-purchase neighbours (top ``k`` per item) with support counts."""

    name = "co-purchase"

    def __init__(self, k: int = 100, alpha: float = 0.5, shrink: float = 10.0,
                 min_support: int = 2, basket_weight: float = 1.0):
        self.k = k
        self.alpha = alpha
        self.shrink = shrink
        self.min_support = min_support
        self.basket_weight = basket_weight
        self.similarity_ = None
        self.support_ = None

    def fit(self, customer_items: sp.csr_matrix, order_items: sp.csr_matrix | None = None,
            progress=None):
        """Learn neighbours from customers x items (and orders x items) matrices."""
        sources = [(_binary(customer_items), 1.0)]
        if order_items is not None and self.basket_weight > 0:
            sources.append((_binary(order_items), float(self.basket_weight)))
        n_items = customer_items.shape[1]
        # (items x entities, entities x items, weight) for each source
        pairs = [(m.T.tocsr(), m, w) for m, w in sources]
        pop = sum(w * np.diff(mt.indptr).astype(np.float64) for mt, _, w in pairs)
        # Upper bound of each item's row length in the product: sizes the blocks.
        work = sum(mt @ np.diff(m.indptr).astype(np.float64) for mt, m, _ in pairs)
        blocks = row_blocks(np.asarray(work).ravel() + 1, _BLOCK_WORK)
        log.debug("co-purchase: %d items in %d blocks", n_items, len(blocks))
        left = np.power(np.maximum(pop, 1e-12), 1.0 - self.alpha)
        right = np.power(np.maximum(pop, 1e-12), self.alpha)
        sim_parts, sup_parts = [], []
        for start, end in blocks:
            support = _offdiag(pairs[0][0][start:end] @ pairs[0][1], start)
            co = support.astype(np.float32)
            for mt, m, w in pairs[1:]:
                co = co + w * (mt[start:end] @ m)
            co = _offdiag(co.tocsr(), start)
            # Support is counted on customers alone: "N customers bought both".
            sup_at = _values_at(support, co)
            rows = start + np.repeat(np.arange(end - start), np.diff(co.indptr))
            sim = (co.data / (left[rows] * right[co.indices] + self.shrink)).astype(np.float32)
            ok = sup_at >= self.min_support
            co.data = sim
            strong = _filter_entries(co, ok)
            kept, indptr = topk_positions(strong, self.k)
            sim_parts.append(sp.csr_matrix((strong.data[kept], strong.indices[kept], indptr),
                                           shape=co.shape))
            sup_parts.append(sp.csr_matrix((sup_at[ok][kept].astype(np.int32),
                                            strong.indices[kept], indptr), shape=co.shape))
            if progress is not None:
                progress(end - start)
        if not blocks:
            sim_parts = [sp.csr_matrix((0, n_items), dtype=np.float32)]
            sup_parts = [sp.csr_matrix((0, n_items), dtype=np.int32)]
        self.similarity_ = sp.vstack(sim_parts, format="csr")
        self.support_ = sp.vstack(sup_parts, format="csr")
        return self

    def score_items(self, item_idx: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Summed neighbour scores of several query items (a basket), dense over items."""
        check_fitted(self, "similarity_")
        rows = self.similarity_[np.asarray(item_idx, dtype=np.int64)]
        if weights is None:
            return np.asarray(rows.sum(axis=0)).ravel()
        return np.asarray(rows.T @ np.asarray(weights, dtype=np.float32)).ravel()

    def score_histories(self, histories: sp.csr_matrix) -> np.ndarray:
        """Dense scores for a batch of histories (queries x items, weights as values)."""
        check_fitted(self, "similarity_")
        return (histories @ self.similarity_).toarray()

    def support_for(self, source_idx: np.ndarray, target_idx: int) -> np.ndarray:
        """Customers who bought both, for each source item and one target item."""
        check_fitted(self, "support_")
        sub = self.support_[np.asarray(source_idx, dtype=np.int64)][:, [target_idx]]
        return sub.toarray().ravel()


def _binary(m: sp.csr_matrix) -> sp.csr_matrix:
    out = m.tocsr(copy=True)
    out.data = np.ones_like(out.data, dtype=np.float32)
    return out


def _offdiag(m: sp.csr_matrix, row_offset: int) -> sp.csr_matrix:
    """Drop the diagonal of a row block starting at ``row_offset``; sorted indices."""
    m = m.tocsr()
    m.sort_indices()
    rows = row_offset + np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    return _filter_entries(m, m.indices != rows)


def _filter_entries(m: sp.csr_matrix, keep: np.ndarray) -> sp.csr_matrix:
    """The CSR matrix with only the stored entries where ``keep`` is true."""
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    counts = np.bincount(rows[keep], minlength=m.shape[0])
    return sp.csr_matrix((m.data[keep], m.indices[keep], np.r_[0, np.cumsum(counts)]),
                         shape=m.shape)


def _values_at(source: sp.csr_matrix, pattern: sp.csr_matrix) -> np.ndarray:
    """Values of ``source`` at the stored positions of ``pattern`` (0 where absent)."""
    n_cols = pattern.shape[1]
    key = lambda m: np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr)) * n_cols + m.indices
    src_key, pat_key = key(source), key(pattern)
    pos = np.minimum(np.searchsorted(src_key, pat_key), max(len(src_key) - 1, 0))
    if not len(src_key):
        return np.zeros(len(pat_key), dtype=np.float64)
    return np.where(src_key[pos] == pat_key, source.data[pos], 0)
