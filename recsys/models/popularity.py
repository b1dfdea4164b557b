"""Popularity: how many distinct customers bought each item. The fallback and first baseline."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .base import Component, check_fitted


class PopularityModel(Component):
    """Scores every item by its number of distinct buyers, scaled to [0, 1].

    The blend's prior: the same row for every query, and the tie-break of
    every answer (:class:`recsys.recommender.Recommender`)."""

    name = "popularity"
    strategy = "popular"
    holdout_free = True

    @classmethod
    def fit_period(cls, ctx) -> PopularityModel:
        return cls().fit(ctx.period.customer_items)

    def __init__(self):
        self.counts_ = None
        self.scores_ = None

    def fit(self, customer_items: sp.csr_matrix):
        self.counts_ = np.diff(customer_items.tocsc().indptr).astype(np.int64)
        top = self.counts_.max() if self.counts_.size and self.counts_.max() > 0 else 1
        self.scores_ = (self.counts_ / top).astype(np.float32)
        return self

    def state(self) -> dict:
        return {"popularity_counts": self.counts_}

    @classmethod
    def load(cls, loaded, params: dict) -> PopularityModel | None:
        if not loaded.has("popularity_counts"):
            return None
        model = cls()
        # A plain ndarray view of the mapped file: indexed per answer, where a memmap
        # subclass would run Python code.
        counts = np.asarray(loaded.array("popularity_counts"))
        model.counts_ = counts
        model.scores_ = (counts / max(int(counts.max(initial=0)), 1)).astype(np.float32)
        return model

    def item_scores(self, kind: str, rows: sp.csr_matrix) -> np.ndarray:
        check_fitted(self, "scores_")
        return self.scores_

    def customer_scores(self, customer_idx, history, decay) -> np.ndarray:
        return self.item_scores("next_best", history)

    def history_scores(self, histories: sp.csr_matrix) -> np.ndarray:
        return self.item_scores("next_best", histories)

    def buyer_scores(self, item_idx: int, history: sp.csr_matrix) -> None:
        return None  # the same for every customer: no say in who buys

    def query_row(self, kind: str, query: np.ndarray) -> np.ndarray:
        return self.score(1)

    def history_row(self, query: np.ndarray) -> np.ndarray:
        return self.score(1)

    def customer_row(self, customer_idx: int, row, decay) -> np.ndarray:
        return self.score(1)

    def score(self, n_queries: int = 1) -> np.ndarray:
        """The same popularity row for each of ``n_queries`` queries."""
        check_fitted(self, "scores_")
        return np.broadcast_to(self.scores_, (n_queries, len(self.scores_)))
