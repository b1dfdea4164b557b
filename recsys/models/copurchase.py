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

Cost is quadratic in the items of one customer (or order): a wholesale buyer
with 20,000 distinct items alone would add 400M pairs. So each customer
contributes only their ``max_items_per_customer`` most-bought items, and
orders larger than ``max_basket_size`` (bulk re-stocking, not a basket that
shows what goes together) are left out of the basket counts.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from ..sparse import log_weights
from .base import Component, check_fitted, row_blocks, similarity_row, topk_per_row

log = logging.getLogger(__name__)

# Entries of one block's product; bounds peak memory of the co-count step.
_BLOCK_WORK = 4e7
_SCALE = float(2 ** 26)


class CoPurchaseModel(Component):
    """Item-item co-purchase neighbours (top ``k`` per item) with support counts.

    Histories are read as log(1 + purchases) per item (times the recency factor
    for next-best, when the version has one)."""

    name = "copurchase"
    strategy = "co-purchase"
    blended = True
    config_section = "copurchase"
    config_defaults = {"k": 100, "alpha": 0.5, "shrink": 10.0, "min_support": 2,
                       "basket_weight": 1.0, "max_items_per_customer": 300,
                       "max_basket_size": 100}
    holdout_free = True

    @classmethod
    def fit_period(cls, ctx) -> CoPurchaseModel:
        """On the period's customer x item counts and, for the basket counts, its orders."""
        customer_items = ctx.period.customer_items
        bar = ctx.progress("co-purchase", customer_items.shape[1])
        model = cls(**ctx.section(cls)).fit(customer_items, ctx.period.order_items,
                                            progress=bar)
        bar.close()
        return model
    item_item = True

    def __init__(self, k: int = 100, alpha: float = 0.5, shrink: float = 10.0,
                 min_support: int = 2, basket_weight: float = 1.0,
                 max_items_per_customer: int = 300, max_basket_size: int = 100):
        self.k = k
        self.alpha = alpha
        self.shrink = shrink
        self.min_support = min_support
        self.basket_weight = basket_weight
        self.max_items_per_customer = max_items_per_customer
        self.max_basket_size = max_basket_size
        self.similarity_ = None
        self.support_ = None

    def fit(self, customer_items: sp.csr_matrix, order_items: sp.csr_matrix | None = None,
            progress=None):
        """Learn neighbours from customers x items (and orders x items) matrices."""
        n_items = customer_items.shape[1]
        with_baskets = order_items is not None and self.basket_weight > 0
        # With baskets, one float64 product carries both counts (see below); customers
        # alone stay exact in float32 (counts below 2**24) at half the memory traffic.
        dtype = np.float64 if with_baskets else np.float32
        customers = _binary(topk_per_row(customer_items.tocsr(copy=True),
                                         self.max_items_per_customer), dtype)
        baskets = None
        if with_baskets:
            baskets = _binary(order_items, np.float64)
            too_big = np.flatnonzero(np.diff(baskets.indptr) > self.max_basket_size)
            if len(too_big):
                baskets = _drop_rows(baskets, too_big)
        pairs = [(customers.T.tocsr(), customers)]
        if baskets is not None:
            # One product carries both counts: customers in the low bits, baskets
            # above them (exact in float64 while counts stay below 2**26).
            scaled = baskets.T.tocsr()
            scaled.data *= _SCALE
            pairs.append((scaled, baskets))
        n_customers = np.diff(pairs[0][0].indptr).astype(np.float64)
        pop = n_customers.copy()
        if baskets is not None:
            pop += self.basket_weight * np.diff(pairs[1][0].indptr)
        # Upper bound of each item's row length in the product: sizes the blocks.
        work = sum(_pattern(mt) @ np.diff(m.indptr).astype(np.float64) for mt, m in pairs)
        blocks = row_blocks(np.asarray(work).ravel() + 1, _BLOCK_WORK)
        log.debug("co-purchase: %d items in %d blocks", n_items, len(blocks))
        left = np.power(np.maximum(pop, 1e-12), 1.0 - self.alpha)
        right = np.power(np.maximum(pop, 1e-12), self.alpha)
        rows_out, cols_out, sim_out, sup_out = [], [], [], []
        for start, end in blocks:
            block = pairs[0][0][start:end] @ pairs[0][1]
            if len(pairs) > 1:
                block = block + pairs[1][0][start:end] @ pairs[1][1]
                support = np.mod(block.data, _SCALE)
            else:
                support = block.data
            # Most pairs are seen once: drop them before any other per-entry work.
            keep = support >= self.min_support
            cum = np.r_[0, np.cumsum(keep)]
            per_row = cum[block.indptr[1:]] - cum[block.indptr[:-1]]
            rows = start + np.repeat(np.arange(end - start), per_row)
            cols = block.indices[keep]
            support = support[keep]
            if len(pairs) > 1:
                co = support + self.basket_weight * np.floor_divide(block.data[keep], _SCALE)
            else:
                co = support.astype(np.float64)
            off_diagonal = cols != rows
            rows, cols = rows[off_diagonal], cols[off_diagonal]
            co, support = co[off_diagonal], support[off_diagonal]
            sim = co / (left[rows] * right[cols] + self.shrink)
            top = _top_k_segments(rows - start, cols, sim, end - start, self.k)
            rows_out.append(rows[top])
            cols_out.append(cols[top])
            sim_out.append(sim[top].astype(np.float32))
            sup_out.append(support[top].astype(np.int32))
            if progress is not None:
                progress(end - start)
        rows = np.concatenate(rows_out) if rows_out else np.zeros(0, dtype=np.int64)
        cols = np.concatenate(cols_out) if cols_out else np.zeros(0, dtype=np.int64)
        indptr = np.r_[0, np.cumsum(np.bincount(rows, minlength=n_items))]
        shape = (n_items, n_items)
        sim = np.concatenate(sim_out) if sim_out else np.zeros(0, dtype=np.float32)
        sup = np.concatenate(sup_out) if sup_out else np.zeros(0, dtype=np.int32)
        self.similarity_ = sp.csr_matrix((sim, cols, indptr), shape=shape)
        self.support_ = sp.csr_matrix((sup, cols.copy(), indptr.copy()), shape=shape)
        self.similarity_.sort_indices()
        self.support_.sort_indices()
        return self

    def state(self) -> dict:
        return {"copurchase_similarity": self.similarity_, "copurchase_support": self.support_}

    @classmethod
    def load(cls, loaded, params: dict) -> CoPurchaseModel | None:
        if not loaded.has("copurchase_similarity"):
            return None
        model = cls(**params.get("copurchase", {}))
        model.similarity_ = loaded.sparse("copurchase_similarity")
        model.support_ = loaded.sparse("copurchase_support")
        return model

    def item_scores(self, kind: str, rows: sp.csr_matrix) -> sp.csr_matrix:
        check_fitted(self, "similarity_")
        return rows @ self.similarity_

    def customer_scores(self, customer_idx: np.ndarray, history: sp.csr_matrix,
                        decay: sp.csr_matrix | None) -> sp.csr_matrix:
        rows = log_weights(history[customer_idx])
        if decay is not None:
            rows.data *= np.asarray(decay[customer_idx].data, dtype=np.float32)
        return rows @ self.similarity_

    def history_scores(self, histories: sp.csr_matrix) -> sp.csr_matrix:
        return log_weights(histories) @ self.similarity_

    def buyer_scores(self, item_idx: int, history: sp.csr_matrix) -> np.ndarray:
        column = self.similarity_[:, [item_idx]]
        return np.asarray((log_weights(history) @ column).todense()).ravel()

    def query_row(self, kind: str, query: np.ndarray) -> np.ndarray:
        return similarity_row(self.similarity_, query, None)

    def history_row(self, query: np.ndarray) -> np.ndarray:
        # A history weighs its items log(1 + purchases), here log(2).
        return similarity_row(self.similarity_, query,
                              np.log1p(np.ones(len(query), dtype=np.float32)))

    def customer_row(self, customer_idx: int, row: sp.csr_matrix,
                     decay: np.ndarray | None) -> np.ndarray:
        counts = np.log1p(row.data.astype(np.float32))
        return similarity_row(self.similarity_, np.asarray(row.indices, dtype=np.int64),
                              counts if decay is None else counts * decay)


def _binary(m: sp.csr_matrix, dtype=np.float32) -> sp.csr_matrix:
    out = m.tocsr(copy=True).astype(dtype)
    out.data = np.ones_like(out.data)
    return out


def _top_k_segments(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, n_rows: int,
                    k: int) -> np.ndarray:
    """Positions of each row's ``k`` largest values (ties: lower column); rows are grouped.

    Most rows of a co-count block are short: they are kept whole. Only rows
    longer than ``k`` are cut: a partition finds the k-th largest value and only
    the entries at or above it are sorted, far cheaper than sorting every entry.
    """
    counts = np.bincount(rows, minlength=n_rows)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    keep = np.ones(len(rows), dtype=bool)
    for r in np.flatnonzero(counts > k):
        lo, hi = starts[r], starts[r] + counts[r]
        seg = values[lo:hi]
        kth = -np.partition(-seg, k - 1)[k - 1]
        cand = np.flatnonzero(seg >= kth)
        # Order by value (desc), then column (asc) for ties, like a stable sort would.
        order = cand[np.lexsort((cols[lo:hi][cand], -seg[cand]))]
        keep[lo:hi] = False
        keep[lo + order[:k]] = True
    return np.flatnonzero(keep)


def _pattern(m: sp.csr_matrix) -> sp.csr_matrix:
    return sp.csr_matrix((np.ones(m.nnz), m.indices, m.indptr), shape=m.shape)


def _drop_rows(m: sp.csr_matrix, rows: np.ndarray) -> sp.csr_matrix:
    keep_rows = np.ones(m.shape[0], dtype=bool)
    keep_rows[rows] = False
    entry_rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    return _filter_entries(m, keep_rows[entry_rows])


def _filter_entries(m: sp.csr_matrix, keep: np.ndarray) -> sp.csr_matrix:
    """The CSR matrix with only the stored entries where ``keep`` is true."""
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    counts = np.bincount(rows[keep], minlength=m.shape[0])
    return sp.csr_matrix((m.data[keep], m.indices[keep], np.r_[0, np.cumsum(counts)]),
                         shape=m.shape)
