"""A pinned copy of the unoptimised single-query answer path (xsell main, 0d89dc2; the
evidence gate of issue 16 added in its own plain form).

The optimised :class:`recsys.recommender.Recommender` must give exactly the same
answers (items, order, scores, reasons, supports, lift, confidence) as this
reference; ``tests/training/test_answer_equivalence.py`` checks that and
``bench/query_bench.py`` times both in one run. Only the answer/explain/support
code is pinned: scoring (``score_items`` etc.) is shared with the real class.
Do not optimise this file.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import scipy.sparse as sp
from scipy.linalg import cho_factor, cho_solve

from recsys.recommender import (
    _BECAUSE,
    _MARK_LIMIT,
    _MASK_CACHE,
    SUBSTITUTE_STRATEGY,
    Answer,
    Recommendation,
    Recommender,
    _csr_values,
    _diversified,
    _ranked_chunks,
    _row_indices,
    _rows_matrix,
    _segments,
)
from recsys.rules import Filters, item_mask
from recsys.vocab import UNKNOWN

log = logging.getLogger(__name__)


class ReferenceRecommender(Recommender):
    """:class:`Recommender` with the original (pre-optimisation) answer path."""

    @classmethod
    def of(cls, rec: Recommender) -> ReferenceRecommender:
        """A reference sharing ``rec``'s fitted state (arrays are not copied)."""
        ref = cls.__new__(cls)
        ref.__dict__.update(rec.__dict__)
        ref._mask_cache = {}
        ref._als_gram = None  # the reference's own cache of Y'Y (see _als_because below)
        return ref

    def _allowed(self, filters: Filters | None, query_idx: np.ndarray) -> np.ndarray:
        """Items a query may return: known, recommendable, passing ``filters``, not the query."""
        if filters is None:
            allowed = self.known_items.copy()
        else:
            key = filters.mask_key()
            mask = self._mask_cache.get(key)
            if mask is None:
                mask = item_mask(self.meta, self.items, filters, self.known_items)
                if len(self._mask_cache) >= _MASK_CACHE:
                    self._mask_cache.clear()
                self._mask_cache[key] = mask
            allowed = mask.copy()
        if len(query_idx):
            allowed[np.asarray(query_idx, dtype=np.int64)] = False
        if filters is not None and filters.customer_id:
            cust = self.customers.index(filters.customer_id)
            if cust != UNKNOWN:
                allowed[_row_indices(self.history, cust)] = False
        return allowed

    def answer(self, kind: str, scores: np.ndarray, limit: int, filters: Filters | None,
               query_idx: np.ndarray, history_idx: np.ndarray | None = None, *,
               history_row: sp.csr_matrix | None = None) -> Answer:
        """Filter, floor, cut and explain one dense score vector."""
        scores = np.asarray(scores, dtype=np.float32)
        gated = bool(self.gate(kind)) and history_idx is None
        asked = filters
        if gated:
            # Pinned with the evidence gate (issue 16, training/gating.py): only items whose
            # evidence with the query reaches the gate may claim a slot, the gate replaces
            # the floor's default support, and best-sellers fill the free slots.
            keep = (self._evidence(np.asarray(query_idx, dtype=np.int64)) >= self.gate(kind)) \
                & (scores >= self.floor.min_score)
            scores = np.where(keep, scores, -np.inf).astype(np.float32)
            if filters is None or filters.min_support is None:
                filters = dataclasses.replace(filters or Filters(), min_support=0)
        cand = np.flatnonzero(np.isfinite(scores))
        evidence = np.asarray(query_idx if history_idx is None else history_idx, dtype=np.int64)
        mode = "als" if history_row is not None and self._als_led(kind) else "copurchase"
        answer = self._finish(kind, cand, scores[cand], limit, filters, query_idx, evidence, mode,
                              history_row=history_row)
        if gated and len(answer.items) < limit:
            shown = [r.item_idx for r in answer.items]
            extra = self.popular(limit - len(shown), asked,
                                 np.asarray(list(query_idx) + shown, dtype=np.int64))
            answer.items += [Recommendation(r.item_idx, float(self._pop_tiebreak[r.item_idx]))
                             for r in extra.items]
            answer.truncated_by_floor = answer.truncated_by_floor and len(answer.items) < limit
        return answer

    def _evidence(self, query: np.ndarray) -> np.ndarray:
        """Each item's evidence with ``query`` (co-buyers beyond chance, in Poisson standard
        deviations where chance gives one or more; the most over the query's items)."""
        items = np.arange(len(self.items))
        both = self.pair_support(query, items).astype(np.float64)
        n_buyers = np.diff(self.buyers.indptr).astype(np.float64)
        chance = n_buyers[query][:, None] * n_buyers[None, :] / max(self.buyers.shape[0], 1)
        z = ((both - chance) / np.sqrt(np.maximum(chance, 1.0))).astype(np.float32)
        z[both == 0] = 0
        return z.max(axis=0)

    def _als_led(self, kind: str) -> bool:
        """ALS explains a history's answer when it carries at least as much of the blend as
        the item-item components together (co-purchase and EASE, whose answers the
        customers who bought both items explain)."""
        weights = self._weights(kind)
        als = weights.get("als", 0.0)
        return self.als is not None and als > 0 and \
            als >= weights.get("copurchase", 0.0) + weights.get("ease", 0.0)

    def _finish(self, kind: str, cand: np.ndarray, cand_scores: np.ndarray, limit: int,
                filters: Filters | None, query_idx: np.ndarray, evidence: np.ndarray | None,
                mode: str, sources: np.ndarray | None = None,
                history_row: sp.csr_matrix | None = None) -> Answer:
        """Masks, relevance floor, diversity and the cut over candidate arrays; then explain.

        ``mode``: "copurchase" (evidence = query/history items), "als" (implicit's
        explain over ``history_row``) or "substitute" (one source item per candidate).
        """
        strategy = SUBSTITUTE_STRATEGY.get(kind) or self.strategy(kind)
        if limit < 1:
            return Answer(strategy, [])
        allowed = self._allowed(filters, np.asarray(query_idx, dtype=np.int64))
        keep = allowed[cand] & np.isfinite(cand_scores)
        cand, cand_scores = cand[keep], cand_scores[keep]
        if sources is not None:
            sources = sources[keep]
        if kind == "popular":
            min_support, min_score = 0, -np.inf
        else:
            min_support, min_score = self.floor.for_kind(kind, filters)
        ok = cand_scores >= min_score
        floored = int((~ok).sum())
        cand, cand_scores = cand[ok], cand_scores[ok]
        if sources is not None:
            sources = sources[ok]
        per_category = filters.max_per_category if filters is not None else None

        accepted: list[np.ndarray] = []
        chosen = np.zeros(0, dtype=np.int64)
        for pos in _ranked_chunks(cand_scores, limit * 4 + 50):
            if min_support > 0:
                support = self._floor_support(cand[pos], evidence,
                                              None if sources is None else sources[pos])
                strong = support >= min_support
                floored += int((~strong).sum())
                pos = pos[strong]
            accepted.append(pos)
            merged = np.concatenate(accepted)
            if per_category:
                chosen = merged[_diversified(cand[merged], self.meta.category, per_category, limit)]
            else:
                chosen = merged[:limit]
            if len(chosen) >= limit:
                break
        best = cand[chosen]
        scores = cand_scores[chosen]
        src = None if sources is None else sources[chosen]
        items = self._explain_many(best, scores, evidence, mode, src, history_row)
        return Answer(strategy, items, truncated_by_floor=bool(floored and len(items) < limit))

    # ------------------------------------------------------- evidence, reasons
    @property
    def buyers(self) -> sp.csc_matrix:
        """Customers x items, binary (uint8), column-major: who bought each item.

        Stored in the version (memory-mapped, shared by service workers); built
        from the history on first use for versions written without it.
        """
        if self._buyers is None:
            h = self.history.tocsc()
            self._buyers = sp.csc_matrix((np.ones(h.nnz, dtype=np.uint8), h.indices, h.indptr),
                                         shape=h.shape)
        return self._buyers

    def pair_support(self, a_idx: np.ndarray, b_idx: np.ndarray) -> np.ndarray:
        """Customers who bought both, for every (a, b) pair: an int array len(a) x len(b)."""
        a_idx = np.asarray(a_idx, dtype=np.int64)
        b_idx = np.asarray(b_idx, dtype=np.int64)
        if not len(a_idx) or not len(b_idx):
            return np.zeros((len(a_idx), len(b_idx)), dtype=np.int64)
        buyers = self.buyers
        if len(a_idx) > _MARK_LIMIT:
            left = buyers[:, a_idx].astype(np.float32)
            both = left.T @ buyers[:, b_idx].astype(np.float32)
            return np.rint(both.toarray()).astype(np.int64)
        # Few evidence items (every single query): mark each one's buyers and count the
        # marks among each candidate's buyers, straight from the CSC arrays.
        indptr, indices = buyers.indptr, buyers.indices
        pos, owner = _segments(indptr, b_idx)
        customers = indices[pos]
        out = np.zeros((len(a_idx), len(b_idx)), dtype=np.int64)
        mark = np.zeros(buyers.shape[0], dtype=bool)
        for r, a in enumerate(a_idx):
            theirs = indices[indptr[a]:indptr[a + 1]]
            mark[theirs] = True
            out[r] = np.bincount(owner[mark[customers]], minlength=len(b_idx))
            mark[theirs] = False
        return out

    def _floor_support(self, cand: np.ndarray, evidence: np.ndarray | None,
                       sources: np.ndarray | None) -> np.ndarray:
        """Support used by the floor: with the item's source, or the best evidence item."""
        if sources is not None:
            out = np.zeros(len(cand), dtype=np.int64)
            for s in np.unique(sources):
                at = sources == s
                out[at] = self.pair_support([s], cand[at])[0]
            return out
        if evidence is None or not len(evidence):
            return np.zeros(len(cand), dtype=np.int64)
        return self.pair_support(evidence, cand).max(axis=0)

    def _explain_many(self, best: np.ndarray, scores: np.ndarray, evidence: np.ndarray | None,
                      mode: str, sources: np.ndarray | None,
                      history_row: sp.csr_matrix | None) -> list[Recommendation]:
        recs = [Recommendation(int(j), float(s)) for j, s in zip(best, scores, strict=True)]
        if not recs:
            return recs
        if mode == "substitute":
            for rec, a in zip(recs, sources, strict=True):
                rec.because_of = [int(a)]
                p_a, p_j = float(self.meta.price[a]), float(self.meta.price[rec.item_idx])
                if p_a > 0 and np.isfinite(p_a) and np.isfinite(p_j):
                    rec.price_ratio = round(p_j / p_a, 4)
        elif evidence is not None and len(evidence):
            support = self.pair_support(evidence, best)  # evidence x best
            sims = None
            if self.copurchase is not None:
                sims = _csr_values(self.copurchase.similarity_, evidence, best)
            als_because = self._als_because(history_row, best) if mode == "als" else None
            for col, rec in enumerate(recs):
                because = als_because[col] if als_because else []
                if not because:
                    sim_col = sims[:, col] if sims is not None else np.zeros(len(evidence))
                    order = np.lexsort((-sim_col, -support[:, col]))[:_BECAUSE]
                    order = order[(support[order, col] > 0) | (sim_col[order] > 0)]
                    if not len(order) and len(evidence) == 1:
                        order = np.zeros(1, dtype=np.int64)
                    because = [int(evidence[o]) for o in order]
                rec.because_of = because
        self._add_statistics(recs)
        return recs

    def _als_because(self, history_row: sp.csr_matrix, best: np.ndarray) -> list[list[int]]:
        """implicit's ALS ``explain`` for several recommended items at once.

        Hu, Koren & Volinsky (2008), section 5: history item j contributes
        ``c_j * y_j' W_u y_i`` to the score of item i, with
        ``W_u = (Y'Y + Y'(C_u - I)Y + reg I)^-1``. The same arithmetic as
        implicit's ``explain`` (``ALSModel.explain``), with ``W_u`` factorised
        once per answer instead of once per item.
        """
        als = self.als
        weighted = als.weight(history_row).tocsr()
        history = np.asarray(weighted.indices, dtype=np.int64)
        if not len(history):
            return [[] for _ in best]
        confidence = als.alpha * np.asarray(weighted.data, dtype=np.float64)
        factors = np.asarray(als.item_factors_)
        y_hist = factors[history].astype(np.float64)
        if self._als_gram is None:
            full = factors.astype(np.float64)
            self._als_gram = full.T @ full
        a = self._als_gram + als.regularization * np.eye(factors.shape[1]) \
            + (y_hist.T * (confidence - 1.0)) @ y_hist
        try:
            weighted_items = cho_solve(cho_factor(a), factors[best].astype(np.float64).T)
        except np.linalg.LinAlgError as exc:  # explain is an aid: never fail an answer for it
            log.debug("ALS explain: %s", exc)
            return [[] for _ in best]
        contributions = (y_hist @ weighted_items) * confidence[:, None]  # history x best
        out = []
        for col in range(len(best)):
            order = np.argsort(-contributions[:, col], kind="stable")[:_BECAUSE]
            out.append([int(history[o]) for o in order if contributions[o, col] > 0])
        return out

    def _add_statistics(self, recs: list[Recommendation]) -> None:
        """support, confidence and lift of (because_of[0] -> item), from customer counts."""
        pairs = [(r.because_of[0], r.item_idx) for r in recs if r.because_of]
        if not pairs:
            return
        a = np.asarray([p[0] for p in pairs], dtype=np.int64)
        b = np.asarray([p[1] for p in pairs], dtype=np.int64)
        both = np.zeros(len(pairs), dtype=np.int64)
        for source in np.unique(a):
            at = a == source
            both[at] = self.pair_support([source], b[at])[0]
        counts = self.popularity.counts_
        n_customers = max(len(self.customers), 1)
        at = 0
        for rec in recs:
            if not rec.because_of:
                continue
            support, n_a, n_b = int(both[at]), int(counts[a[at]]), int(counts[b[at]])
            at += 1
            rec.support = support
            if n_a > 0:
                rec.confidence = round(support / n_a, 6)
                if n_b > 0:
                    rec.lift = round(rec.confidence / (n_b / n_customers), 6)

    def popular(self, limit: int, filters: Filters | None, query_idx: np.ndarray) -> Answer:
        scores = self.popularity.scores_.astype(np.float32)
        cand = np.flatnonzero(np.isfinite(scores))
        answer = self._finish("popular", cand, scores[cand], limit, filters, query_idx, None,
                              "copurchase")
        answer.strategy = "popular-fallback"
        for rec in answer.items:
            rec.support = int(self.popularity.counts_[rec.item_idx])
        return answer

    def also_bought(self, item_idx: int, limit: int = 10, filters: Filters | None = None) -> Answer:
        query = np.asarray([item_idx])
        return self.answer("also_bought", self.score_items("also_bought", [query])[0], limit,
                           filters, query)

    def basket(self, item_idx: np.ndarray, limit: int = 10,
               filters: Filters | None = None) -> Answer:
        query = np.unique(np.asarray(item_idx, dtype=np.int64))
        return self.answer("basket", self.score_items("basket", [query])[0], limit, filters, query)

    def next_best(self, customer_idx: int, limit: int = 10,
                  filters: Filters | None = None) -> Answer:
        scores = self.score_customers(np.asarray([customer_idx]))[0]
        row = self.history[customer_idx]
        bought = row.indices.astype(np.int64)
        return self.answer("next_best", scores, limit, filters, bought, history_idx=bought,
                           history_row=row)

    def next_best_for_history(self, item_idx: np.ndarray, limit: int = 10,
                              filters: Filters | None = None) -> Answer:
        query = np.unique(np.asarray(item_idx, dtype=np.int64))
        row = _rows_matrix([query], len(self.items))
        scores = self.score_histories(row)[0]
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
        owned = _row_indices(self.history, int(customer_idx)).astype(np.int64)
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
        pos, r = _segments(sim_matrix.indptr, src)
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
