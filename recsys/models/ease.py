"""EASE: a closed-form item-item model (Steck 2019, "Embarrassingly Shallow Autoencoders").

    B = I - P / diag(P),   P = (X'X + lambda I)^-1,   diag(B) = 0

X is the binary order x item matrix (baskets: what is bought together),
plus ``customer_weight`` times the customer x item matrix, restricted to
items with at least ``min_buyers`` buyers. The dense inverse costs O(n^3),
so the model is only fitted when those items number at most ``max_items``;
above that it stays unfitted and the trainer leaves it out of the blend. Only the ``k`` largest weights (by
absolute value: the negative ones carry information too) of each item are
kept, a sparse matrix like co-purchase's, which bounds the model file and the
scoring cost.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from .base import check_fitted, top_indices_rows

log = logging.getLogger(__name__)


class EASEModel:
    """Item x item EASE weights, top ``k`` by absolute value per item."""

    name = "ease"

    def __init__(self, lam: float = 200.0, k: int = 200, min_buyers: int = 2,
                 max_items: int = 6000, customer_weight: float = 0.0):
        self.lam = lam
        self.k = k
        self.min_buyers = min_buyers
        self.max_items = max_items
        self.customer_weight = customer_weight
        self.similarity_ = None

    def gram(self, customer_items: sp.csr_matrix, order_items: sp.csr_matrix | None
             ) -> tuple[np.ndarray, np.ndarray] | None:
        """(kept item indexes, X'X over them), or None when too many items for a dense inverse."""
        customer_items = customer_items.tocsr()
        buyers = np.bincount(customer_items.indices, minlength=customer_items.shape[1])
        keep = np.flatnonzero(buyers >= self.min_buyers)
        if len(keep) > self.max_items or len(keep) < 2:
            log.info("EASE: %d items with >= %d buyers (max %d): not fitted",
                     len(keep), self.min_buyers, self.max_items)
            return None
        x = customer_items.copy().astype(np.float32)
        x.data[:] = 1.0
        base = order_items if order_items is not None else x
        weight = self.customer_weight if order_items is not None else 0.0
        o = base.tocsr()[:, keep].astype(np.float32)
        o.data[:] = 1.0
        g = (o.T @ o).toarray().astype(np.float64)
        if weight > 0:
            xs = x[:, keep]
            g += weight * (xs.T @ xs).toarray()
        return keep, g

    def fit(self, customer_items: sp.csr_matrix, order_items: sp.csr_matrix | None = None,
            gram: tuple | None = None):
        """Fit; ``gram`` reuses :meth:`gram`'s output (several lambdas on one data set)."""
        n_items = customer_items.shape[1]
        gram = gram if gram is not None else self.gram(customer_items, order_items)
        if gram is None:
            self.similarity_ = None
            return self
        keep, g = gram
        g = g.copy()
        g[np.diag_indices_from(g)] += self.lam
        p = np.linalg.inv(g)
        b = -p / np.diag(p)
        b[np.diag_indices_from(b)] = 0.0
        # The k strongest weights of each row by absolute value (ties: lower column),
        # selected on the dense matrix: no sparse copy of all n^2 entries.
        best = top_indices_rows(np.abs(b).astype(np.float32), self.k, above=0.0)
        rows, slots = np.nonzero(best >= 0)
        cols = best[rows, slots]
        values = b[rows, cols].astype(np.float32)
        self.similarity_ = sp.csr_matrix(
            (values, (keep[rows], keep[cols])), shape=(n_items, n_items), dtype=np.float32)
        return self

    @property
    def fitted(self) -> bool:
        return self.similarity_ is not None

    def score_histories(self, rows: sp.csr_matrix) -> np.ndarray:
        """Dense scores (queries x items) for binary query or history rows."""
        check_fitted(self, "similarity_")
        return (rows @ self.similarity_).toarray()
