"""Blending: each component's scores scaled to [0, 1] and added with the kind's weights.

Which components answer which kind, and with what weight, is the table the
trainer chose on its holdout (``Recommender.blend``). Every component's raw
scores (:class:`recsys.models.base.Component`) are scaled per query by their
maximum and added with their weights; a popularity tie-break orders the rest.
One-query forms (``_query_scores``) give the batch scores bit for bit without
building sparse matrices. Reads the facade's ``components``, ``blend``,
``history``, ``history_decay``, ``items``, ``customers`` and ``compiled``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .. import fastpath
from ..sparse import DIRECT_ROWS, rows_matrix

DEFAULT_BLEND = {
    "also_bought": {"copurchase": 1.0, "als": 0.0},
    "basket": {"copurchase": 1.0, "als": 0.0},
    "next_best": {"copurchase": 0.5, "als": 0.5},
    "likely_buyers": {"copurchase": 0.0, "als": 1.0},
}
# Popularity breaks ties among equal (often zero) model scores.
TIE_BREAK = 1e-6
# A kind's blend may carry this key (not a component): the evidence gate. Its slots are
# claimed only by items whose evidence with the query item (co-buyers beyond chance,
# Selection.query_evidence) reaches it; the slots left are best-sellers, marked filled
# (recsys.recommender.selection, training.gating).
GATE = "evidence_gate"


class Blending:
    """The blend of component scores (mixed into :class:`recsys.recommender.Recommender`)."""

    def _weights(self, kind: str) -> dict[str, float]:
        weights = {}
        for name, w in self.blend.get(kind, {}).items():
            if w > 0 and name in self.components:
                weights[name] = float(w)
        return weights

    def gate(self, kind: str) -> float:
        """The kind's evidence gate (the least evidence that claims a slot); 0: none."""
        return float(self.blend.get(kind, {}).get(GATE, 0) or 0)

    def strategy(self, kind: str) -> str:
        weights = self._weights(kind)
        if not weights:
            return "popular-fallback"
        if len(weights) == 1:
            return self.components[next(iter(weights))].strategy
        return "blend"

    @staticmethod
    def _normalise(scores: np.ndarray) -> np.ndarray:
        """Scale each row to [0, 1] by its maximum (in place for float32 arrays)."""
        scores = np.asarray(scores, dtype=np.float32)
        if not scores.flags.writeable:
            scores = scores.copy()
        if scores.ndim == 2 and scores.shape[0] == 1 and scores.flags.c_contiguous \
                and fastpath.available():
            fastpath.normalise_row(scores[0])  # one query: one compiled pass, same result
            return scores
        np.maximum(scores, 0, out=scores)
        if scores.size:
            top = scores.max(axis=-1, keepdims=True)
            top[top <= 0] = 1.0
            scores /= top
        return scores

    def raw_item_part(self, name: str, kind: str, rows: sp.csr_matrix):
        """One component's unnormalised scores for item-based queries (``rows``: binary
        queries x items): a sparse matrix (co-purchase, EASE), a dense array (ALS) or
        one row for every query (popularity). :meth:`item_parts` densifies and scales it."""
        return self.components[name].item_scores(kind, rows)

    def raw_customer_part(self, name: str, customer_idx: np.ndarray):
        """:meth:`raw_item_part` for the next-best scores of known customers."""
        return self.components[name].customer_scores(customer_idx, self.history,
                                                     self.history_decay)

    def raw_history_part(self, name: str, histories: sp.csr_matrix):
        """:meth:`raw_item_part` for the next-best scores of unseen customers' histories."""
        return self.components[name].history_scores(histories)

    def _dense_part(self, raw, n: int) -> np.ndarray:
        if sp.issparse(raw):
            return self._normalise(raw.toarray())
        if raw.ndim == 1:
            return self._normalise(np.broadcast_to(raw, (n, len(raw))))
        return self._normalise(raw)

    def item_parts(self, kind: str, query_lists: list[np.ndarray],
                   names: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        """Each component's normalised scores (queries x items) for item-based queries."""
        rows = rows_matrix(query_lists, len(self.items))
        return {name: self._dense_part(self.raw_item_part(name, kind, rows), len(query_lists))
                for name in names or tuple(self._weights(kind))}

    def customer_parts(self, customer_idx: np.ndarray, names: tuple[str, ...] | None = None
                       ) -> dict[str, np.ndarray]:
        """Each component's normalised next-best scores for known customers."""
        return {name: self._dense_part(self.raw_customer_part(name, customer_idx),
                                       len(customer_idx))
                for name in names or tuple(self._weights("next_best"))}

    def history_parts(self, histories: sp.csr_matrix) -> dict[str, np.ndarray]:
        n = histories.shape[0]
        return {name: self._dense_part(self.raw_history_part(name, histories), n)
                for name in self._weights("next_best")}

    def combine(self, parts: dict[str, np.ndarray], weights: dict[str, float], n: int) -> np.ndarray:
        """Blend normalised component scores; popularity breaks the remaining ties."""
        if n == 1 and self.compiled:
            # One query: compiled copy and adds, which keep the GIL (recsys.fastpath).
            used = [(np.asarray(parts[name])[0], w) for name, w in weights.items()
                    if w > 0 and name in parts]
            if all(part.dtype == np.float32 and part.flags.c_contiguous for part, _ in used):
                row = fastpath.copy_row(self._pop_tiebreak)
                for part, w in used:
                    fastpath.blend_into(row, fastpath.readonly(part), np.float32(w))
                return row[None, :]
        out = np.empty((n, len(self.items)), dtype=np.float32)
        out[:] = self._pop_tiebreak
        for name, w in weights.items():
            if w > 0 and name in parts:
                out += np.float32(w) * parts[name] if w != 1 else parts[name]
        return out

    def score_items(self, kind: str, query_lists: list[np.ndarray]) -> np.ndarray:
        """Dense scores (queries x items) for item-based queries (also-bought, basket)."""
        return self.combine(self.item_parts(kind, query_lists), self._weights(kind),
                            len(query_lists))

    def score_customers(self, customer_idx: np.ndarray) -> np.ndarray:
        """Dense next-best scores (customers x items) for known customers."""
        return self.combine(self.customer_parts(customer_idx), self._weights("next_best"),
                            len(customer_idx))

    def score_histories(self, histories: sp.csr_matrix) -> np.ndarray:
        """Dense next-best scores for customers the model has not seen."""
        return self.combine(self.history_parts(histories), self._weights("next_best"),
                            histories.shape[0])

    def score_buyers(self, item_idx: int) -> np.ndarray:
        """Scores over all known customers for one item."""
        out = np.zeros(len(self.customers), dtype=np.float32)
        for name, w in self._weights("likely_buyers").items():
            part = self.components[name].buyer_scores(item_idx, self.history)
            if part is not None:  # None: no say in who buys (popularity)
                out += w * self._normalise(part)
        return out

    def _query_scores(self, kind: str, query: np.ndarray) -> np.ndarray:
        """One query's blended scores (``query`` sorted, distinct): ``score_items(kind,
        [query])[0]`` for an item kind, ``score_histories`` of the binary history row for
        ``kind="history"``. Each part is computed from the model arrays directly (no sparse
        matrices); parts without a direct form come from ``item_parts`` / ``history_parts``."""
        history = kind == "history"
        weights = self._weights("next_best" if history else kind)
        if len(query) > DIRECT_ROWS:
            if history:
                return self.score_histories(rows_matrix([query], len(self.items)))[0]
            return self.score_items(kind, [query])[0]
        parts = {}
        for name in weights:
            component = self.components[name]
            part = component.history_row(query) if history else component.query_row(kind, query)
            if part is not None:
                parts[name] = self._normalise(part)
        rest = tuple(name for name in weights if name not in parts)
        if rest:
            if history:
                histories = rows_matrix([query], len(self.items))
                parts.update({name: part for name, part in self.history_parts(histories).items()
                              if name in rest})
            else:
                parts.update(self.item_parts(kind, [query], names=rest))
        return self.combine(parts, weights, 1)[0]
