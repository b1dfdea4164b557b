"""Explanations: why each item is recommended, and the counts behind it.

A recommendation's ``because_of`` names the query or history items that led
to it: the ones the most customers bought together with it (then the higher
co-purchase similarity), or, where ALS leads a history's blend, the history
items ALS's own explanation credits (``ALSModel.explain_rows``). ``support``,
``confidence`` and ``lift`` of (because_of[0] -> item) are counted over
customers from the buyers matrix (customers x items, column-major), which the
relevance floor reads too. Reads the facade's ``history``, ``_buyers``,
``components``, ``popularity``, ``customers`` and ``meta``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..sparse import csr_values, segments

# Reasons per recommendation.
BECAUSE = 3
# Up to this many evidence items, supports are counted from the raw CSC arrays.
MARK_LIMIT = 64
# Above this many buyer entries on the larger side, a sparse product counts pair supports.
FLAG_ENTRIES = 30000
# Up to this many items on the smaller side, pair supports are counted by marking.
MARK_ITEMS = 3


@dataclass
class Recommendation:
    item_idx: int
    score: float
    because_of: list[int] = field(default_factory=list)
    support: int | None = None  # customers who bought because_of[0] and this item
    lift: float | None = None  # P(item | because_of[0]) / P(item), over customers
    confidence: float | None = None  # P(item | because_of[0])
    price_ratio: float | None = None  # upsell/downsell: price / because_of[0]'s price


class Explanations:
    """Reasons and pair supports (mixed into :class:`recsys.recommender.Recommender`)."""

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
        indptr = buyers.indptr
        big = a_idx if len(a_idx) >= len(b_idx) else b_idx
        if min(len(a_idx), len(b_idx)) > MARK_LIMIT \
                or int((indptr[big + 1] - indptr[big]).sum()) > FLAG_ENTRIES:
            left = buyers[:, a_idx].astype(np.float32)
            both = left.T @ buyers[:, b_idx].astype(np.float32)
            return np.rint(both.toarray()).astype(np.int64)
        if min(len(a_idx), len(b_idx)) <= MARK_ITEMS:
            return self._marked_support(a_idx, b_idx)
        # One side is small (every single query). Give each customer who bought a ``cols``
        # item a row of 0/1 flags (one per cols item), then sum, for each ``rows`` item,
        # the flag rows of its buyers: straight from the CSC arrays, no sparse product.
        swap = len(a_idx) < len(b_idx)  # flag the side with fewer items
        rows, cols = (b_idx, a_idx) if swap else (a_idx, b_idx)
        indices = buyers.indices
        pos, owner = segments(indptr, cols)
        who = indices[pos]
        slot = self._customer_scratch("slot", np.int32, -1)
        try:
            slot[who] = np.arange(len(who), dtype=np.int32)  # one entry stands for each customer
            flags = np.zeros((len(who), len(cols)), dtype=np.int32)
            flags[slot[who], owner] = 1
            pos_r, owner_r = segments(indptr, rows)
            entry = slot[indices[pos_r]]
        finally:
            slot[who] = -1
        hit = entry >= 0
        out = np.zeros((len(rows), len(cols)), dtype=np.int64)
        if hit.any():
            owner_r, entry = owner_r[hit], entry[hit]
            starts = np.flatnonzero(np.r_[True, owner_r[1:] != owner_r[:-1]])
            out[owner_r[starts]] = np.add.reduceat(flags[entry], starts, axis=0)
        return out.T if swap else out

    def _marked_support(self, a_idx: np.ndarray, b_idx: np.ndarray) -> np.ndarray:
        """pair_support for a side of very few items (at most 8, one bit each in a uint8):
        give each buyer of the few one bit per item they bought, read the bits of the other
        side's buyers in one gather, count each bit pattern per item of the other side, and
        add up the patterns holding each bit."""
        swap = len(b_idx) < len(a_idx)
        marked, counted = (b_idx, a_idx) if swap else (a_idx, b_idx)
        if len(marked) > 8:
            raise ValueError(f"_marked_support takes at most 8 items on its small side, "
                             f"not {len(marked)}")
        buyers = self.buyers
        indptr, indices = np.asarray(buyers.indptr), np.asarray(buyers.indices)
        counted = np.asarray(counted, dtype=np.int64)
        marked_list = np.asarray(marked).tolist()
        patterns = 1 << len(marked_list)
        starts, stops = indptr[counted], indptr[counted + 1]
        customers = np.concatenate([indices[lo:hi] for lo, hi in
                                    zip(starts.tolist(), stops.tolist(), strict=True)]) \
            if len(counted) else np.zeros(0, dtype=indices.dtype)
        flags = self._customer_scratch("flags", np.uint8)
        try:
            for r, a in enumerate(marked_list):
                flags[indices[indptr[a]:indptr[a + 1]]] |= np.uint8(1 << r)
            hits = np.take(flags, customers)
        finally:
            for a in marked_list:
                flags[indices[indptr[a]:indptr[a + 1]]] = 0
        owner = np.repeat(np.arange(0, len(counted) * patterns, patterns, dtype=np.int64),
                          stops - starts)
        table = np.bincount(owner + hits, minlength=len(counted) * patterns)
        # (counted x patterns) @ (patterns x marked): pattern p holds bit r -> counts for r.
        holds = (np.arange(patterns)[:, None] >> np.arange(len(marked_list))) & 1
        out = (table.reshape(len(counted), patterns) @ holds).T
        return out.T if swap else out

    def _customer_scratch(self, name: str, dtype, fill: int = 0) -> np.ndarray:
        """A per-thread scratch array over customers, all ``fill`` between uses (each user
        restores what it changed): bit flags (uint8, uint64) or slots (int32, -1)."""
        scratch = self._scratch
        array = getattr(scratch, name, None)
        if array is None or len(array) != self.buyers.shape[0]:
            array = np.full(self.buyers.shape[0], fill, dtype=dtype)
            setattr(scratch, name, array)
        return array

    def _pair_supports(self, cand: np.ndarray, evidence: np.ndarray | None,
                       sources: np.ndarray | None) -> np.ndarray:
        """Supports the floor needs: with each candidate's source (1-D, per candidate) or
        with every evidence item (2-D, evidence x candidates)."""
        if sources is not None:
            if not len(cand):
                return np.zeros(0, dtype=np.int64)
            unique, row = np.unique(sources, return_inverse=True)
            if len(unique) == 1:
                return self.pair_support(unique, cand)[0]
            return self.pair_support(unique, cand)[row, np.arange(len(cand))]
        if evidence is None or not len(evidence):
            return np.zeros(len(cand), dtype=np.int64)
        return self.pair_support(evidence, cand)

    def _explain_many(self, best: np.ndarray, scores: np.ndarray, evidence: np.ndarray | None,
                      mode: str, sources: np.ndarray | None,
                      history_row: sp.csr_matrix | None,
                      support: np.ndarray | None = None) -> list[Recommendation]:
        """Reasons for the chosen items. ``support``: pair supports the floor already
        counted for them (1-D with ``sources``, else evidence x best), or None."""
        recs = [Recommendation(j, s) for j, s in zip(best.tolist(), scores.tolist(), strict=True)]
        if not recs:
            return recs
        both = None  # support of (because_of[0], item) per recommendation with a reason
        if mode == "substitute":
            price = self.meta.price
            p_src, p_best = price[sources].tolist(), price[best].tolist()
            for rec, a, p_a, p_j in zip(recs, sources.tolist(), p_src, p_best, strict=True):
                rec.because_of = [a]
                if p_a > 0 and math.isfinite(p_a) and math.isfinite(p_j):
                    rec.price_ratio = round(p_j / p_a, 4)
            if support is not None and support.ndim == 1:
                both = support
        elif evidence is not None and len(evidence):
            if support is None or support.ndim != 2:
                support = self.pair_support(evidence, best)  # evidence x best
            als_because = self._als_because(history_row, best) if mode == "als" else None
            evidence_list = evidence.tolist()
            first_row = np.full(len(recs), -1, dtype=np.int64)
            if als_because is None or not all(als_because):
                # Evidence items by support, then similarity (stable): the best BECAUSE of
                # them with any evidence; a single query item is always its own reason.
                if len(evidence) == 1:
                    orders = np.zeros((1, len(recs)), dtype=np.int64)
                    valid = np.ones((1, len(recs)), dtype=bool)
                else:
                    sims = np.zeros(support.shape) if self.copurchase is None else \
                        csr_values(self.copurchase.similarity_, evidence, best)
                    orders = np.lexsort((-sims, -support), axis=0)[:BECAUSE]
                    cols = np.arange(len(recs))
                    valid = (support[orders, cols] > 0) | (sims[orders, cols] > 0)
                orders, valid = orders.T.tolist(), valid.T.tolist()
            for col, rec in enumerate(recs):
                because = als_because[col] if als_because else []
                if not because:
                    rows = [o for o, v in zip(orders[col], valid[col], strict=True) if v]
                    because = [evidence_list[o] for o in rows]
                    if because:
                        first_row[col] = rows[0]
                rec.because_of = because
            both = _support_of_first(support, evidence, recs, first_row)
        self._add_statistics(recs, both)
        return recs

    def _als_because(self, history_row, best: np.ndarray) -> list[list[int]]:
        """ALS's explanation of several recommended items of one history at once
        (:meth:`recsys.models.als.ALSModel.explain_rows`)."""
        return self.als.explain_rows(history_row, best, BECAUSE)

    def _add_statistics(self, recs: list[Recommendation], both: np.ndarray | None = None) -> None:
        """support, confidence and lift of (because_of[0] -> item), from customer counts.

        ``both``: the supports already counted, one per recommendation with a reason."""
        pairs = [(r.because_of[0], r.item_idx) for r in recs if r.because_of]
        if not pairs:
            return
        a = np.asarray([p[0] for p in pairs], dtype=np.int64)
        b = np.asarray([p[1] for p in pairs], dtype=np.int64)
        if both is None:
            both = np.zeros(len(pairs), dtype=np.int64)
            for source in np.unique(a):
                at = a == source
                both[at] = self.pair_support([source], b[at])[0]
        counts = self.popularity.counts_
        n_customers = max(len(self.customers), 1)
        n_a, n_b = counts[a].tolist(), counts[b].tolist()
        for rec, support, a_count, b_count in zip((r for r in recs if r.because_of),
                                                  both.tolist(), n_a, n_b, strict=True):
            set_statistics(rec, support, a_count, b_count, n_customers)


def set_statistics(rec: Recommendation, support: int, n_a: int, n_b: int,
                    n_customers: int) -> None:
    """support, confidence and lift of (because_of[0] -> item): ``n_a`` and ``n_b`` are the
    buyers of because_of[0] and of the item, ``n_customers`` all customers."""
    rec.support = support
    if n_a > 0:
        rec.confidence = round(support / n_a, 6)
        if n_b > 0:
            rec.lift = round(rec.confidence / (n_b / n_customers), 6)


def _support_of_first(support: np.ndarray, evidence: np.ndarray, recs: list[Recommendation],
                      first_row: np.ndarray) -> np.ndarray | None:
    """support[(row of because_of[0]), col] for every recommendation with a reason; None when
    a reason's first item is not an evidence item (then it is counted afresh)."""
    cols = [col for col, r in enumerate(recs) if r.because_of]
    rows = first_row[cols]
    need = rows < 0
    if need.any():
        firsts = np.asarray([recs[c].because_of[0] for c in cols], dtype=np.int64)[need]
        order = np.argsort(evidence, kind="stable")
        at = np.minimum(np.searchsorted(evidence[order], firsts), len(evidence) - 1)
        if not (evidence[order][at] == firsts).all():
            return None
        rows = rows.copy()
        rows[need] = order[at]
    return support[rows, cols]

