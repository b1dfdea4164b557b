"""The query kinds a shop asks: one method per kind, each a score then a finish.

Also-bought, basket, next-best (known customer or a history), popular,
likely buyers, and upsell/downsell (substitutes in a price band of the
item's price, in its category) and the customer's upsell. Each blends its
scores (:mod:`.blending`) and hands them to the selection (:mod:`.selection`).
"""

from __future__ import annotations

import numpy as np

from .. import ann
from ..models.base import top_indices
from ..rules import Filters, item_info
from ..sparse import DIRECT_ROWS, BinaryRow, count_row, row_indices, segments, sorted_distinct
from .selection import Answer

# Upsell: 1.1x-3x the item's price. Downsell: the mirror image (1/3 to 1/1.1 = 0.909x), so
# that B is an upsell of A exactly when A is a downsell of B; at least ~9% cheaper (a saving
# a customer notices), at most 3x cheaper (still the same class of product).
DEFAULT_UPSELL_BAND = (1.1, 3.0)
DEFAULT_DOWNSELL_BAND = (round(1 / 3.0, 4), round(1 / 1.1, 4))
_EMPTY_INDEX = np.zeros(0, dtype=np.int64)


class QueryKinds:
    """The shop's questions (mixed into :class:`recsys.recommender.Recommender`)."""

    def describe(self, item_idx: int) -> dict:
        """Catalog metadata of an item: name, category, price, in_stock, metadata."""
        return item_info(self.meta, int(item_idx))

    def popular(self, limit: int, filters: Filters | None, query_idx: np.ndarray) -> Answer:
        scores = self._pop_scores
        answer = self._compiled_finish("popular", scores, limit, filters, query_idx,
                                       _EMPTY_INDEX) if self.compiled else None
        if answer is None:
            cand = np.flatnonzero(np.isfinite(scores))
            answer = self._finish("popular", cand, scores[cand], limit, filters, query_idx,
                                  None, "copurchase")
        answer.strategy = "popular-fallback"
        for rec in answer.items:
            rec.support = int(self.popularity.counts_[rec.item_idx])
        return answer

    def also_bought(self, item_idx: int, limit: int = 10, filters: Filters | None = None) -> Answer:
        query = np.asarray([item_idx])
        return self.answer("also_bought", self._query_scores("also_bought", query), limit,
                           filters, query)

    def basket(self, item_idx: np.ndarray, limit: int = 10, filters: Filters | None = None) -> Answer:
        query = sorted_distinct(item_idx)
        return self.answer("basket", self._query_scores("basket", query), limit, filters, query)

    def next_best(self, customer_idx: int, limit: int = 10, filters: Filters | None = None) -> Answer:
        customer_idx = int(customer_idx)
        if self.ann is not None:  # a large catalogue: candidates from the index (recsys.ann)
            answer = ann.next_best(self, customer_idx, limit, filters)
            if answer is not None:
                return answer
        row = count_row(self.history, customer_idx)
        weights = self._weights("next_best")
        if row.nnz <= DIRECT_ROWS or self.compiled:
            # One customer's parts from the model arrays (a customer_row per component),
            # the same sums in the same order as the sparse products below; compiled, any
            # history length (a customer's stored ALS factor: no fold-in). Without numba
            # the rows are added in Python, so long histories take the sparse products.
            # The recency factors of the row, when the version has them.
            decay = None if self.history_decay is None else np.asarray(
                count_row(self.history_decay, customer_idx).data, dtype=np.float32)
            parts = {}
            for name in weights:
                part = self.components[name].customer_row(customer_idx, row, decay)
                if part is not None:
                    parts[name] = self._normalise(part)
            rest = tuple(name for name in weights if name not in parts)
            if rest:
                parts.update(self.customer_parts(np.asarray([customer_idx]), names=rest))
            scores = self.combine(parts, weights, 1)[0]
        else:
            scores = self.score_customers(np.asarray([customer_idx]))[0]
        bought = row.indices.astype(np.int64)
        return self.answer("next_best", scores, limit, filters, bought, history_idx=bought,
                           history_row=row)

    def next_best_for_history(self, item_idx: np.ndarray, limit: int = 10,
                              filters: Filters | None = None) -> Answer:
        query = sorted_distinct(item_idx)
        row = BinaryRow(query, len(self.items))
        scores = self._query_scores("history", query)
        return self.answer("next_best", scores, limit, filters, query, history_idx=query,
                           history_row=row)

    def _in_band(self, source: np.ndarray, cand: np.ndarray,
                 band: tuple[float, float]) -> np.ndarray:
        """Candidates priced within ``band`` times their source's price, in its category."""
        price = self.meta.price
        p_src = price[source].astype(np.float64)
        p_cand = price[cand].astype(np.float64)
        with np.errstate(invalid="ignore"):
            ok = (p_cand >= band[0] * p_src * (1 - 1e-6)) & (p_cand <= band[1] * p_src * (1 + 1e-6))
        ok &= p_src > 0
        if self._has_categories:
            c_src = self.meta.category[source]
            ok &= (c_src >= 0) & (self.meta.category[cand] == c_src)
        return ok

    def _item_substitutes(self, kind: str, item_idx: int, limit: int, filters: Filters | None
                          ) -> Answer:
        band = self.upsell_band if kind == "upsell" else self.downsell_band
        query = np.asarray([item_idx], dtype=np.int64)
        if self.substitutes is None:
            return Answer(kind, [])
        cand, sim = self.substitutes.neighbours(item_idx)
        ok = self._in_band(np.full(len(cand), item_idx), cand, band)
        cand, sim = cand[ok], sim[ok]
        scores = sim * (0.5 + 0.5 * self._buyers_affinity(item_idx, cand)) \
            + self._pop_tiebreak[cand]
        return self._finish(kind, cand, scores, limit, filters, query, query, "substitute",
                            sources=np.full(len(cand), item_idx, dtype=np.int64))

    def _buyers_affinity(self, item_idx: int, cand: np.ndarray) -> np.ndarray:
        """How much the item's buyers like each candidate: the ALS score of their mean
        factor vector, clipped to [0, 1] (1 when there is no ALS model)."""
        if self.als is None or not len(cand):
            return np.ones(len(cand), dtype=np.float32)
        buyers = self.buyers
        who = buyers.indices[buyers.indptr[item_idx]:buyers.indptr[item_idx + 1]]
        if not len(who):
            return np.ones(len(cand), dtype=np.float32)
        centre = np.asarray(self.als.user_factors_[np.asarray(who)]).mean(axis=0)
        return np.clip(np.asarray(self.als.item_factors_[cand]) @ centre, 0.0, 1.0)

    def upsell(self, item_idx: int, limit: int = 10, filters: Filters | None = None) -> Answer:
        """Pricier substitutes of an item (same category, price in the upsell band).

        Ranked by how likely a buyer of the item is to accept, never by price:
        substitute similarity x (0.5 + 0.5 x the item's buyers' ALS affinity).
        """
        return self._item_substitutes("upsell", int(item_idx), limit, filters)

    def downsell(self, item_idx: int, limit: int = 10, filters: Filters | None = None) -> Answer:
        """Cheaper substitutes of an item (same category, price in the downsell band)."""
        return self._item_substitutes("downsell", int(item_idx), limit, filters)

    def customer_upsell(self, customer_idx: int, limit: int = 10,
                        filters: Filters | None = None) -> Answer:
        """The next tier of what a customer already bought, ranked by their affinity.

        Sources are the customer's priciest item of each category (a customer
        who owns the pro plan is not offered pro again via their old basic
        one); candidates are the sources' upsells, never an item they own.
        Score: substitute similarity x (0.25 + 0.75 x ALS affinity in [0, 1]).
        """
        owned = row_indices(self.history, int(customer_idx)).astype(np.int64)
        if self.substitutes is None or not len(owned):
            return Answer("upsell", [])
        price = self.meta.price[owned].astype(np.float64)
        src = owned[np.isfinite(price)]
        price = price[np.isfinite(price)]
        codes = self.meta.category[src].astype(np.int64)
        if self._has_categories and len(src):
            top = np.full(len(self.meta.categories) + 1, -np.inf)
            np.maximum.at(top, codes[codes >= 0], price[codes >= 0])
            src = src[(codes < 0) | (price >= top[np.maximum(codes, 0)])]
        sim_matrix = self.substitutes.similarity_
        pos, r = segments(sim_matrix.indptr, src)
        j = np.asarray(sim_matrix.indices[pos], dtype=np.int64)
        s = np.asarray(sim_matrix.data[pos], dtype=np.float32)
        ok = self._in_band(src[r], j, self.upsell_band)
        r, j, s = r[ok], j[ok], s[ok]
        # Best source per candidate.
        order = np.lexsort((-s, j))
        first = order[np.r_[True, j[order][1:] != j[order][:-1]]] if len(order) else order
        cand, sim, sources = j[first], s[first], src[r[first]]
        affinity = np.ones(len(cand), dtype=np.float32)
        if self.als is not None and len(cand):
            user = np.asarray(self.als.user_factors_[int(customer_idx)])
            affinity = np.clip(np.asarray(self.als.item_factors_[cand]) @ user, 0.0, 1.0)
        scores = (sim * (0.25 + 0.75 * affinity)).astype(np.float32) + self._pop_tiebreak[cand]
        return self._finish("customer_upsell", cand, scores, limit, filters, owned, None,
                            "substitute", sources=sources)

    def likely_buyers(self, item_idx: int, limit: int = 10, min_score: float | None = None
                      ) -> tuple[str, list[tuple[int, float]]]:
        """Customers most likely to buy ``item_idx`` next, excluding those who already did."""
        if self.ann is not None:  # many customers: candidates from the index (recsys.ann)
            found = ann.likely_buyers(self, item_idx, limit, min_score)
            if found is not None:
                return found
        scores = self.score_buyers(item_idx)
        column = self.history[:, [item_idx]].tocoo()
        scores[column.row] = -np.inf
        if min_score is not None:
            scores[scores < min_score] = -np.inf
        best = top_indices(scores, limit)
        return self.strategy("likely_buyers"), [(int(c), float(scores[c])) for c in best]
