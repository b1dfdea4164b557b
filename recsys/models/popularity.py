"""Popularity: how many distinct customers bought each item. The fallback and first baseline."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .base import check_fitted


class PopularityModel:
    """Scores every item by its number of distinct buyers, scaled to [0, 1]."""

    name = "popular"

    def __init__(self):
        self.counts_ = None
        self.scores_ = None

    def fit(self, customer_items: sp.csr_matrix):
        self.counts_ = np.diff(customer_items.tocsc().indptr).astype(np.int64)
        top = self.counts_.max() if self.counts_.size and self.counts_.max() > 0 else 1
        self.scores_ = (self.counts_ / top).astype(np.float32)
        return self

    def score(self, n_queries: int = 1) -> np.ndarray:
        """The same popularity row for each of ``n_queries`` queries."""
        check_fitted(self, "scores_")
        return np.broadcast_to(self.scores_, (n_queries, len(self.scores_)))
