"""Selection: which scored items may be answered, and which are.

The batch top-k (masks of known items and exclusions) for evaluation and
export, and one query's finish: the item mask of its filters, the relevance
floor (minimum score and customer support), diversity per category and the
cut to ``limit``, then the explanations. :meth:`Selection.answer` runs the
compiled path (``recsys.fastpath.select``, one call) where it applies and the
numpy path otherwise; both give the same answer
(tests/training/test_answer_equivalence.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .. import fastpath
from ..kinds import SUBSTITUTE_STRATEGY
from ..models.base import top_indices_rows
from ..rules import Filters, diversify, item_mask
from ..sparse import row_indices, rows_matrix
from ..vocab import UNKNOWN
from .explanations import Recommendation, set_statistics

# Item masks of recent filter combinations kept per recommender.
MASK_CACHE = 16


@dataclass
class Answer:
    """One recommendation list, in internal indexes, with the strategy that produced it."""

    strategy: str
    items: list[Recommendation]
    # The relevance floor removed candidates and the list is shorter than asked.
    truncated_by_floor: bool = False


class Selection:
    """Masks, floor and cut (mixed into :class:`recsys.recommender.Recommender`)."""

    def top_k(self, scores: np.ndarray, k: int, exclude: sp.csr_matrix | None = None,
              allowed: np.ndarray | None = None) -> np.ndarray:
        """Row-wise best ``k`` item indexes; excluded and disallowed items never appear."""
        scores = np.array(scores, dtype=np.float32, copy=True)
        allowed = self.known_items if allowed is None else allowed
        scores[:, ~allowed] = -np.inf
        if exclude is not None:
            exclude = exclude.tocoo()
            scores[exclude.row, exclude.col] = -np.inf
        return top_indices_rows(scores, k)

    def batch_mask(self, filters: Filters | None) -> np.ndarray | None:
        """The item mask of ``filters`` for the batch methods (None: no filters)."""
        if filters is None:
            return None
        return self._allowed(filters, np.zeros(0, dtype=np.int64))

    def next_best_batch(self, customer_idx: np.ndarray, k: int, allowed: np.ndarray | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` for many known customers, never an item they already bought."""
        scores = self.score_customers(customer_idx)
        idx = self.top_k(scores, k, exclude=self.history[customer_idx], allowed=allowed)
        return idx, _take_scores(scores, idx)

    def item_query_batch(self, kind: str, query_lists: list[np.ndarray], k: int,
                         allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` for many item queries, never an item of the query (a gated kind: the
        claimed slots, then best-sellers at their tie-break score, see :meth:`gated_top_k`)."""
        scores = self.score_items(kind, query_lists)
        if self.gate(kind):
            idx, claimed = self.gated_top_k(kind, query_lists, scores, k, allowed)
            out = _take_scores(scores, idx)
            fill = ~claimed & (idx >= 0)
            out[fill] = self._pop_tiebreak[idx[fill]]
            return idx, out
        idx = self.top_k(scores, k, exclude=rows_matrix(query_lists, len(self.items)),
                         allowed=allowed)
        return idx, _take_scores(scores, idx)

    def query_evidence(self, query_lists: list[np.ndarray]) -> np.ndarray:
        """(queries x items) float32: each item's evidence for each query, how far the
        customers who bought it with the query item (pair support) exceed what chance
        gives, ``(support - e) / max(1, sqrt(e))`` with ``e = buyers(q) buyers(j) /
        customers`` (the most over a basket's items; 0 where nobody bought both). For a
        pair chance alone rarely gives (e < 1) that is about the pair support itself; for
        a best-seller that most customers buy, "co-bought" with everything by chance,
        it is the excess in Poisson standard deviations: no evidence unless the pair
        is really bought together more often.
        """
        n, n_items = len(query_lists), len(self.items)
        out = np.zeros((n, n_items), dtype=np.float32)
        lens = np.fromiter((len(q) for q in query_lists), dtype=np.int64, count=n)
        if not lens.sum():
            return out
        flat = np.concatenate([np.asarray(q, dtype=np.int64) for q in query_lists])
        owner = np.repeat(np.arange(n), lens)
        by_item = getattr(self, "_buyers_by_item", None)
        if by_item is None:  # items x customers and customers x items, int32, built once
            buyers = self.buyers.astype(np.int32)
            by_item = self._buyers_by_item = (buyers.T.tocsr(), buyers.tocsr(),
                                              np.diff(self.buyers.indptr).astype(np.float64))
        items_x, customers_x, n_buyers = by_item
        both = (items_x[flat] @ customers_x).tocoo()
        chance = n_buyers[flat[both.row]] * n_buyers[both.col] / max(customers_x.shape[0], 1)
        excess = ((both.data - chance) / np.sqrt(np.maximum(chance, 1.0))).astype(np.float32)
        if (lens == 1).all():
            out[owner[both.row], both.col] = excess
        else:
            np.maximum.at(out, (owner[both.row], both.col), excess)
        return out

    def claimed(self, kind: str, query_lists: list[np.ndarray], scores: np.ndarray,
                gate: float | None = None, evidence: np.ndarray | None = None
                ) -> np.ndarray:
        """Which items an evidence-gated kind's queries may claim: evidence
        (:meth:`query_evidence`) of at least the gate and a blended score that passes the
        relevance floor's ``min_score``. ``gate``: another level than the kind's;
        ``evidence``: the queries' when the caller has it."""
        gate = self.gate(kind) if gate is None else gate
        if evidence is None:
            evidence = self.query_evidence(query_lists)
        return (evidence >= gate) & (np.asarray(scores) >= self.floor.min_score)

    def gated_top_k(self, kind: str, query_lists: list[np.ndarray], scores: np.ndarray,
                    k: int, allowed: np.ndarray | None = None, gate: float | None = None,
                    evidence: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` of an evidence-gated kind: (item indexes, claimed flags).

        Claimed items (:meth:`claimed`) come first, in blended-score order; where fewer
        than ``k`` are, the rest of the page is best-sellers (unclaimed: the service and
        the export mark them ``"filled": "popular"``). The same answer as :meth:`answer`
        gives one query.
        """
        allowed = self.known_items if allowed is None else allowed
        scores = np.asarray(scores, dtype=np.float32)
        claimed = self.claimed(kind, query_lists, scores, gate, evidence)
        key = np.where(claimed, np.float32(2) + scores, self._pop_scores - np.float32(1))
        key[:, ~allowed] = -np.inf
        queries = rows_matrix(query_lists, len(self.items)).tocoo()
        key[queries.row, queries.col] = -np.inf
        idx = top_indices_rows(key, k)
        flags = (idx >= 0) & np.take_along_axis(claimed, np.maximum(idx, 0), 1)
        return idx, flags

    def _allowed(self, filters: Filters | None, query_idx: np.ndarray) -> np.ndarray:
        """Items a query may return: known, recommendable, passing ``filters``, not the query."""
        if filters is None:
            allowed = self._copy_mask(self.known_items)
        else:
            key = filters.mask_key()
            mask = self._mask_cache.get(key)
            if mask is None:
                mask = item_mask(self.meta, self.items, filters, self.known_items)
                if len(self._mask_cache) >= MASK_CACHE:
                    self._mask_cache.clear()
                self._mask_cache[key] = mask
            allowed = self._copy_mask(mask)
        if len(query_idx):
            allowed[np.asarray(query_idx, dtype=np.int64)] = False
        if filters is not None and filters.customer_id:
            cust = self.customers.index(filters.customer_id)
            if cust != UNKNOWN:
                allowed[row_indices(self.history, cust)] = False
        return allowed

    def _copy_mask(self, mask: np.ndarray) -> np.ndarray:
        """A writable copy of an item mask (compiled where it can be: numpy's copy of an
        array this size releases the GIL, see recsys.fastpath)."""
        if self.compiled and mask.dtype == np.bool_ and mask.ndim == 1:
            return fastpath.copy_row(fastpath.readonly(mask))
        return mask.copy()

    def answer(self, kind: str, scores: np.ndarray, limit: int, filters: Filters | None,
               query_idx: np.ndarray, history_idx: np.ndarray | None = None, *,
               history_row: sp.csr_matrix | None = None) -> Answer:
        """Filter, floor, cut and explain one dense score vector."""
        scores = np.asarray(scores, dtype=np.float32)
        gated = bool(self.gate(kind)) and history_idx is None
        if gated:  # only items with evidence may claim a slot; best-sellers fill the rest
            query = np.asarray(query_idx, dtype=np.int64)
            scores = np.where(self.claimed(kind, [query], scores[None, :])[0], scores,
                              np.float32(-np.inf)).astype(np.float32)
        evidence = np.asarray(query_idx if history_idx is None else history_idx, dtype=np.int64)
        mode = "als" if history_row is not None and self._als_led(kind) else "copurchase"
        out = None
        if self.compiled:
            out = self._compiled_finish(kind, scores, limit, filters, query_idx, evidence,
                                        history_row if mode == "als" else None)
        if out is None:
            cand = np.flatnonzero(np.isfinite(scores))
            out = self._finish(kind, cand, scores[cand], limit, filters, query_idx, evidence,
                               mode, history_row=history_row)
        if gated and len(out.items) < limit:
            out = self._fill_popular(out, limit, filters, query_idx)
        return out

    def _floor_for(self, kind: str, filters: Filters | None) -> tuple[int, float]:
        """(min_support, min_score) of one query: the floor's; a gated kind's gate replaces
        its default minimum support (a request's ``min_support`` still applies)."""
        if kind == "popular":
            return 0, -np.inf
        support, score = self.floor.for_kind(kind, filters)
        if self.gate(kind) and (filters is None or filters.min_support is None):
            support = 0
        return support, score

    def _fill_popular(self, answer: Answer, limit: int, filters: Filters | None,
                      query_idx: np.ndarray) -> Answer:
        """A gated kind's short answer with its free slots filled by best-sellers, at their
        popularity tie-break score and without a reason (so marked ``"filled": "popular"``)."""
        shown = np.asarray([r.item_idx for r in answer.items], dtype=np.int64)
        blocked = np.concatenate([np.asarray(query_idx, dtype=np.int64), shown])
        extra = self.popular(limit - len(answer.items), filters, blocked)
        answer.items += [Recommendation(r.item_idx, float(self._pop_tiebreak[r.item_idx]))
                         for r in extra.items]
        answer.truncated_by_floor = answer.truncated_by_floor and len(answer.items) < limit
        return answer

    def _compiled_finish(self, kind: str, scores: np.ndarray, limit: int,
                         filters: Filters | None, query_idx: np.ndarray,
                         evidence: np.ndarray, als_row: sp.csr_matrix | None = None
                         ) -> Answer | None:
        """``_finish`` through :func:`recsys.fastpath.select` (one compiled call) in
        co-purchase mode, or in ALS mode (``als_row``: the history ALS explains; its reasons
        replace the co-purchase ones where it has any); None where that path does not
        apply (the caller falls back)."""
        if limit < 1 or (filters is not None and filters.max_per_category):
            return None
        min_support, min_score = self._floor_for(kind, filters)
        if min_support > 0 and len(evidence) > fastpath.MAX_EVIDENCE:
            return None
        strategy = self.strategy(kind)
        arrays = self._fast_arrays
        if arrays is None:
            buyers = self.buyers
            sim = self.copurchase.similarity_ if self.copurchase is not None else None
            empty_i, empty_f = np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32)
            # Read-only views always (memory-mapped or not): one compiled signature.
            history = self.history
            arrays = self._fast_arrays = tuple(fastpath.readonly(a) for a in (
                buyers.indptr, buyers.indices,
                sim.indptr if sim is not None else empty_i,
                sim.indices if sim is not None else empty_i,
                sim.data if sim is not None else empty_f,
                history.indptr, history.indices))
        b_indptr, b_indices, s_indptr, s_indices, s_data, h_indptr, h_indices = arrays
        flags = self._customer_scratch("bits", np.uint64)
        items, item_scores, because, first_support, floored, supports = fastpath.select(
            fastpath.writable(scores, np.float32),
            self._allowed(filters, np.asarray(query_idx, dtype=np.int64)), int(limit),
            float(min_score), int(min_support), fastpath.writable(evidence, np.int64),
            b_indptr, b_indices, flags, s_indptr, s_indices, s_data, h_indptr, h_indices)
        als_because = self._als_because(als_row, items) \
            if als_row is not None and len(items) else None
        counts = self.popularity.counts_
        n_customers = max(len(self.customers), 1)
        row_of = {e: r for r, e in enumerate(evidence.tolist())} if als_because else None
        recs = []
        for col, (j, score, reasons, support, n_b) in enumerate(zip(
                items.tolist(), item_scores.tolist(), because.tolist(), first_support.tolist(),
                counts[items].tolist(), strict=True)):
            if als_because and als_because[col]:
                reasons = als_because[col]
                row = row_of.get(reasons[0])
                support = int(supports[col, row]) if row is not None else \
                    int(self.pair_support([reasons[0]], [j])[0, 0])
            else:
                reasons = [r for r in reasons if r >= 0]
            rec = Recommendation(j, score, reasons)
            if reasons:
                set_statistics(rec, support, int(counts[reasons[0]]), n_b, n_customers)
            recs.append(rec)
        return Answer(strategy, recs, truncated_by_floor=bool(floored and len(recs) < limit))

    def _als_led(self, kind: str) -> bool:
        """ALS explains a history's answer when it carries at least as much of the blend as
        the item-item components together (co-purchase and EASE, whose answers the
        customers who bought both items explain)."""
        weights = self._weights(kind)
        als = weights.get("als", 0.0)
        item_item = sum(w for name, w in weights.items() if self.components[name].item_item)
        return self.als is not None and als > 0 and als >= item_item

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
        min_support, min_score = self._floor_for(kind, filters)
        ok = cand_scores >= min_score
        floored = int((~ok).sum())
        cand, cand_scores = cand[ok], cand_scores[ok]
        if sources is not None:
            sources = sources[ok]
        per_category = filters.max_per_category if filters is not None else None

        accepted: list[np.ndarray] = []
        chosen = np.zeros(0, dtype=np.int64)
        # Pair supports the floor counted, kept for the explanations (counted once per answer).
        counted: list[tuple[np.ndarray, np.ndarray]] = []
        for chunk in _ranked_chunks(cand_scores, limit * 4 + 50):
            # The floor counts supports for the best few of a chunk first and for the rest
            # only when too few of those pass: the answer is the same (the first ``limit``
            # passing candidates in rank order), the counting often 4x smaller.
            for pos in _floor_blocks(chunk, limit) if min_support > 0 else (chunk,):
                if min_support > 0:
                    pairs = self._pair_supports(cand[pos], evidence,
                                                None if sources is None else sources[pos])
                    counted.append((pos, pairs))
                    support = _floor_of(pairs)
                    strong = support >= min_support
                    floored += int((~strong).sum())
                    pos = pos[strong]
                accepted.append(pos)
                merged = np.concatenate(accepted) if len(accepted) > 1 else pos
                if per_category:
                    chosen = merged[_diversified(cand[merged], self.meta.category, per_category,
                                                 limit)]
                else:
                    chosen = merged[:limit]
                if len(chosen) >= limit:
                    break
            if len(chosen) >= limit:
                break
        best = cand[chosen]
        scores = cand_scores[chosen]
        src = None if sources is None else sources[chosen]
        items = self._explain_many(best, scores, evidence, mode, src, history_row,
                                   support=_counted_for(counted, len(cand), chosen))
        return Answer(strategy, items, truncated_by_floor=bool(floored and len(items) < limit))


def _take_scores(scores: np.ndarray, idx: np.ndarray) -> np.ndarray:
    safe = np.where(idx >= 0, idx, 0)
    return np.where(idx >= 0, np.take_along_axis(scores, safe, axis=1), np.nan)


def _ranked_chunks(scores: np.ndarray, first: int):
    """Positions of ``scores`` best first (ties: lower position first), in chunks of
    ``first``, then 8x as many, then the rest: a floor that rejects candidates looks
    further down only when it must."""
    n = len(scores)
    done = np.zeros(n, dtype=bool)
    size = first
    while not done.all():
        rest = np.flatnonzero(~done)
        if len(rest) > size:
            part = rest[np.argpartition(-scores[rest], size - 1)[:size]]
        else:
            part = rest
        part = np.sort(part)  # ties in score: the lower position (item index) first
        part = part[np.argsort(-scores[part], kind="stable")]
        done[part] = True
        yield part
        size = n if size > first else first * 8


def _floor_blocks(chunk: np.ndarray, limit: int):
    """A ranked chunk in two blocks for the support floor: the best ``2 * limit + 8``, then
    the rest."""
    first = 2 * limit + 8
    yield chunk[:first]
    if len(chunk) > first:
        yield chunk[first:]


def _diversified(items: np.ndarray, category: np.ndarray, max_per_category: int,
                 limit: int) -> np.ndarray:
    """Positions (into ``items``, ranked) kept by :func:`recsys.rules.diversify`."""
    kept = diversify(np.arange(len(items)), np.asarray(category)[items], max_per_category, limit)
    return kept


def _floor_of(pairs: np.ndarray) -> np.ndarray:
    """The floor's support per candidate: with its source (1-D) or its best evidence (2-D)."""
    if pairs.ndim == 1:
        return pairs
    return pairs.max(axis=0)


def _counted_for(counted: list[tuple[np.ndarray, np.ndarray]], n_cand: int,
                 chosen: np.ndarray) -> np.ndarray | None:
    """The floor's pair supports of the ``chosen`` candidate positions (None: not counted)."""
    if not counted:
        return None
    column = np.full(n_cand, -1, dtype=np.int64)
    start = 0
    for pos, _ in counted:
        column[pos] = np.arange(start, start + len(pos))
        start += len(pos)
    cols = column[chosen]
    if (cols < 0).any():
        return None
    pairs = counted[0][1] if len(counted) == 1 else np.concatenate([p for _, p in counted], axis=-1)
    return pairs[..., cols]

