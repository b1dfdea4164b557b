"""The recommender: fitted models + vocabularies + item metadata, answering shop queries.

Training builds one and saves it as a model version; export and the service
load it back (memory-mapped) and ask it the kinds of question: also-bought,
basket completion, next-best products, likely buyers, and upsell/downsell
(substitutes in a price band). Every answer goes through the same business
filters and relevance floor and carries a reason per item. Which
model answers which kind is a table of blend weights chosen by the trainer's
evaluation (see ``training.train``), stored in the manifest.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.linalg.lapack import dpotrf as _potrf
from scipy.linalg.lapack import dpotrs as _potrs

from . import fastpath
from .artifacts import LoadedVersion, VersionWriter
from .exceptions import ComponentError
from .kinds import BLEND_KINDS
from .models import BLENDED, REGISTRY, Component
from .models.als import ALSModel
from .models.base import NEEDS, top_indices, top_indices_rows
from .models.copurchase import CoPurchaseModel
from .models.ease import EASEByKind, EASEModel
from .models.popularity import PopularityModel
from .models.recency import RecencyWeights
from .models.substitutes import SubstituteModel
from .sparse import BinaryRow as _BinaryRow
from .sparse import DIRECT_ROWS as _DIRECT_ROWS
from .sparse import as_csr as _as_csr
from .sparse import csr_row as _csr_row
from .sparse import csr_values as _csr_values
from .sparse import row_indices as _row_indices
from .sparse import rows_matrix as _rows_matrix
from .sparse import segments as _segments
from .sparse import sorted_distinct as _sorted_distinct
from .rules import (
    Filters,
    Floor,
    ItemMeta,
    diversify,
    item_info,
    item_mask,
    read_item_meta,
    write_item_meta,
)
from .vocab import UNKNOWN, Vocab

log = logging.getLogger(__name__)

KINDS = BLEND_KINDS
COMPONENTS = BLENDED
DEFAULT_BLEND = {
    "also_bought": {"copurchase": 1.0, "als": 0.0},
    "basket": {"copurchase": 1.0, "als": 0.0},
    "next_best": {"copurchase": 0.5, "als": 0.5},
    "likely_buyers": {"copurchase": 0.0, "als": 1.0},
}
# Popularity breaks ties among equal (often zero) model scores.
_TIE_BREAK = 1e-6
# Upsell: 1.1x-3x the item's price. Downsell: the mirror image (1/3 to 1/1.1 = 0.909x), so
# that B is an upsell of A exactly when A is a downsell of B; at least ~9% cheaper (a saving
# a customer notices), at most 3x cheaper (still the same class of product).
DEFAULT_UPSELL_BAND = (1.1, 3.0)
DEFAULT_DOWNSELL_BAND = (round(1 / 3.0, 4), round(1 / 1.1, 4))
SUBSTITUTE_STRATEGY = {"upsell": "upsell", "downsell": "downsell", "customer_upsell": "upsell"}
_BECAUSE = 3
_MASK_CACHE = 16
# Up to this many evidence items, supports are counted from the raw CSC arrays.
_MARK_LIMIT = 64
# Above this many buyer entries on the larger side, a sparse product counts pair supports.
_FLAG_ENTRIES = 30000
# Up to this many items on the smaller side, pair supports are counted by marking.
_MARK_ITEMS = 3
_EMPTY_INDEX = np.zeros(0, dtype=np.int64)


@dataclass
class Recommendation:
    item_idx: int
    score: float
    because_of: list[int] = field(default_factory=list)
    support: int | None = None  # customers who bought because_of[0] and this item
    lift: float | None = None  # P(item | because_of[0]) / P(item), over customers
    confidence: float | None = None  # P(item | because_of[0])
    price_ratio: float | None = None  # upsell/downsell: price / because_of[0]'s price


@dataclass
class Answer:
    """One recommendation list, in internal indexes, with the strategy that produced it."""

    strategy: str
    items: list[Recommendation]
    # The relevance floor removed candidates and the list is shorter than asked.
    truncated_by_floor: bool = False


class Recommender:
    """Answers shop queries from fitted models; the only object the service and export use."""

    def __init__(self, items: Vocab, customers: Vocab, history: sp.csr_matrix,
                 popularity: PopularityModel, copurchase: CoPurchaseModel | None,
                 als: ALSModel | None, meta: ItemMeta, blend: dict | None = None,
                 version: str | None = None, manifest: dict | None = None,
                 substitutes: SubstituteModel | None = None, rules: dict | None = None,
                 ease: EASEModel | dict[str, EASEModel] | None = None,
                 history_decay: sp.csr_matrix | None = None,
                 components: dict[str, Component | None] | None = None):
        self.items = items
        self.customers = customers
        self.history = history
        # EASE: one model or one per query kind (each kind may have its own
        # regularisation). ``components`` adds (or replaces) components by registry name.
        if isinstance(ease, EASEModel):
            ease = {"next_best": ease}
        given = {"popularity": popularity, "copurchase": copurchase, "als": als,
                 "ease": EASEByKind(ease) if isinstance(ease, dict) else ease,
                 "recency": RecencyWeights.of(history_decay), "substitutes": substitutes,
                 **(components or {})}
        unknown = sorted(set(given) - set(REGISTRY))
        if unknown:
            raise ComponentError(f"unknown component(s) {unknown}: the registry "
                                 f"(recsys.models.REGISTRY) has {sorted(REGISTRY)}")
        # The components present, in registry order (EASE only with a fitted model).
        self.components: dict[str, Component] = {
            name: given[name] for name in REGISTRY
            if given.get(name) is not None and (name != "ease" or given[name].fitted)}
        popularity = self.components["popularity"]
        self.meta = meta
        self.blend = blend or DEFAULT_BLEND
        self.version = version
        self.manifest = manifest or {}
        # Items that can be recommended at all: real products seen in training.
        self.known_items = (popularity.counts_ > 0) & meta.recommendable
        self.known_items.flags.writeable = False
        # The popularity prior as a float32 row, built once (queries read it, never copy it).
        self._pop_scores = np.array(popularity.scores_, dtype=np.float32)
        self._pop_scores.flags.writeable = False
        self._pop_tiebreak = (_TIE_BREAK * popularity.scores_).astype(np.float32)
        self._pop_tiebreak.flags.writeable = False
        rules = rules or {}
        self.rules = rules
        self.floor = Floor.from_dict(rules.get("floor"))
        self.upsell_band = tuple(rules.get("upsell_band", DEFAULT_UPSELL_BAND))
        self.downsell_band = tuple(rules.get("downsell_band", DEFAULT_DOWNSELL_BAND))
        self._has_categories = bool((np.asarray(meta.category) >= 0).any())
        self._mask_cache: dict = {}
        self._buyers = None
        self._scratch = threading.local()
        # Single-query answers through the compiled path (recsys.fastpath) where it applies;
        # False forces the numpy path (the tests compare the two).
        self.compiled = fastpath.available()
        self._fast_arrays = None

    # ------------------------------------------------------------ components
    @property
    def popularity(self) -> PopularityModel:
        return self.components["popularity"]

    @property
    def copurchase(self) -> CoPurchaseModel | None:
        return self.components.get("copurchase")

    @property
    def als(self) -> ALSModel | None:
        return self.components.get("als")

    @property
    def substitutes(self) -> SubstituteModel | None:
        return self.components.get("substitutes")

    @property
    def ease_by_kind(self) -> dict[str, EASEModel]:
        ease = self.components.get("ease")
        return ease.models if ease is not None else {}

    @property
    def ease(self) -> EASEModel | None:
        return next(iter(self.ease_by_kind.values()), None)

    @property
    def history_decay(self) -> sp.csr_matrix | None:
        """Recency factors of the history pairs for next-best (recsys.models.recency),
        with exactly ``history``'s sparsity pattern; None = full histories."""
        recency = self.components.get("recency")
        return None if recency is None else recency.decay_

    @history_decay.setter
    def history_decay(self, decay: sp.csr_matrix | None) -> None:
        self.components.pop("recency", None)
        if decay is not None:
            self.components["recency"] = RecencyWeights.of(decay)

    @property
    def blend(self) -> dict[str, dict[str, float]]:
        """Weights per query kind by component name, as the trainer chose them."""
        return self._blend

    @blend.setter
    def blend(self, blend: dict) -> None:
        blend = {k: dict(v) for k, v in blend.items()}
        for kind, weights in blend.items():
            for name, w in weights.items():
                component = self.components.get(name)
                if w > 0 and component is not None and not component.supports(kind):
                    raise ComponentError(
                        f"the blend weighs component {name!r} for {kind} queries, which it "
                        f"cannot score (it lacks one of {', '.join(NEEDS[kind])})")
        self._blend = blend

    # ---------------------------------------------------------------- blend
    def _weights(self, kind: str) -> dict[str, float]:
        weights = {}
        for name, w in self.blend.get(kind, {}).items():
            if w > 0 and name in self.components:
                weights[name] = float(w)
        return weights

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
        rows = _rows_matrix(query_lists, len(self.items))
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

    # ------------------------------------------------------------ batch top-k
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
        """Top ``k`` for many item queries, never an item of the query."""
        scores = self.score_items(kind, query_lists)
        idx = self.top_k(scores, k, exclude=_rows_matrix(query_lists, len(self.items)),
                         allowed=allowed)
        return idx, _take_scores(scores, idx)

    def history_batch(self, histories: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = self.score_histories(histories)
        idx = self.top_k(scores, k, exclude=histories)
        return idx, _take_scores(scores, idx)

    # ------------------------------------------------------------- one query
    def _allowed(self, filters: Filters | None, query_idx: np.ndarray) -> np.ndarray:
        """Items a query may return: known, recommendable, passing ``filters``, not the query."""
        if filters is None:
            allowed = self._copy_mask(self.known_items)
        else:
            key = filters.mask_key()
            mask = self._mask_cache.get(key)
            if mask is None:
                mask = item_mask(self.meta, self.items, filters, self.known_items)
                if len(self._mask_cache) >= _MASK_CACHE:
                    self._mask_cache.clear()
                self._mask_cache[key] = mask
            allowed = self._copy_mask(mask)
        if len(query_idx):
            allowed[np.asarray(query_idx, dtype=np.int64)] = False
        if filters is not None and filters.customer_id:
            cust = self.customers.index(filters.customer_id)
            if cust != UNKNOWN:
                allowed[_row_indices(self.history, cust)] = False
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
        evidence = np.asarray(query_idx if history_idx is None else history_idx, dtype=np.int64)
        mode = "als" if history_row is not None and self._als_led(kind) else "copurchase"
        if self.compiled:
            fast = self._compiled_finish(kind, scores, limit, filters, query_idx, evidence,
                                         history_row if mode == "als" else None)
            if fast is not None:
                return fast
        cand = np.flatnonzero(np.isfinite(scores))
        return self._finish(kind, cand, scores[cand], limit, filters, query_idx, evidence, mode,
                            history_row=history_row)

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
        if kind == "popular":
            min_support, min_score = 0, -np.inf
        else:
            min_support, min_score = self.floor.for_kind(kind, filters)
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
                _set_statistics(rec, support, int(counts[reasons[0]]), n_b, n_customers)
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
        indptr = buyers.indptr
        big = a_idx if len(a_idx) >= len(b_idx) else b_idx
        if min(len(a_idx), len(b_idx)) > _MARK_LIMIT \
                or int((indptr[big + 1] - indptr[big]).sum()) > _FLAG_ENTRIES:
            left = buyers[:, a_idx].astype(np.float32)
            both = left.T @ buyers[:, b_idx].astype(np.float32)
            return np.rint(both.toarray()).astype(np.int64)
        if min(len(a_idx), len(b_idx)) <= _MARK_ITEMS:
            return self._marked_support(a_idx, b_idx)
        # One side is small (every single query). Give each customer who bought a ``cols``
        # item a row of 0/1 flags (one per cols item), then sum, for each ``rows`` item,
        # the flag rows of its buyers: straight from the CSC arrays, no sparse product.
        swap = len(a_idx) < len(b_idx)  # flag the side with fewer items
        rows, cols = (b_idx, a_idx) if swap else (a_idx, b_idx)
        indices = buyers.indices
        pos, owner = _segments(indptr, cols)
        who = indices[pos]
        slot = self._customer_scratch("slot", np.int32, -1)
        try:
            slot[who] = np.arange(len(who), dtype=np.int32)  # one entry stands for each customer
            flags = np.zeros((len(who), len(cols)), dtype=np.int32)
            flags[slot[who], owner] = 1
            pos_r, owner_r = _segments(indptr, rows)
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

    def _floor_support(self, cand: np.ndarray, evidence: np.ndarray | None,
                       sources: np.ndarray | None) -> np.ndarray:
        """Support used by the floor: with the item's source, or the best evidence item."""
        return _floor_of(self._pair_supports(cand, evidence, sources))

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
                # Evidence items by support, then similarity (stable): the best _BECAUSE of
                # them with any evidence; a single query item is always its own reason.
                if len(evidence) == 1:
                    orders = np.zeros((1, len(recs)), dtype=np.int64)
                    valid = np.ones((1, len(recs)), dtype=bool)
                else:
                    sims = np.zeros(support.shape) if self.copurchase is None else \
                        _csr_values(self.copurchase.similarity_, evidence, best)
                    orders = np.lexsort((-sims, -support), axis=0)[:_BECAUSE]
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

    def _als_because(self, history_row: sp.csr_matrix, best: np.ndarray) -> list[list[int]]:
        """implicit's ALS ``explain`` for several recommended items at once.

        Hu, Koren & Volinsky (2008), section 5: history item j contributes
        ``c_j * y_j' W_u y_i`` to the score of item i, with
        ``W_u = (Y'Y + Y'(C_u - I)Y + reg I)^-1``. The same arithmetic as
        implicit's ``explain`` (``ALSModel.explain``), with ``W_u`` factorised
        once per answer instead of once per item.
        """
        als = self.als
        if als.confidence == "log" and history_row.shape[0] == 1:
            # als.weight for one row, without building sparse matrices: log(1 + count).
            history = np.asarray(history_row.indices, dtype=np.int64)
            values = np.log1p(np.asarray(history_row.data, dtype=np.float32))
        else:
            weighted = als.weight(_as_csr(history_row)).tocsr()
            history = np.asarray(weighted.indices, dtype=np.int64)
            values = weighted.data
        if not len(history):
            return [[] for _ in best]
        confidence = als.alpha * np.asarray(values, dtype=np.float64)
        factors = np.asarray(als.item_factors_)
        y_hist = factors[history].astype(np.float64)
        a = als.base_matrix() + (y_hist.T * (confidence - 1.0)) @ y_hist
        # cho_solve(cho_factor(a), b) without scipy's per-call checks and batching layer:
        # the same LAPACK routines (potrf upper, potrs) on the same arrays.
        factor, info = _potrf(a, lower=0, clean=0, overwrite_a=1) \
            if np.isfinite(a).all() else (None, -1)
        if info != 0:  # explain is an aid: never fail an answer for it
            log.debug("ALS explain: the matrix cannot be factorised (potrf info %d)", info)
            return [[] for _ in best]
        weighted_items, info = _potrs(factor, factors[best].astype(np.float64).T, lower=0)
        if info != 0:
            log.debug("ALS explain: potrs info %d", info)
            return [[] for _ in best]
        contributions = (y_hist @ weighted_items) * confidence[:, None]  # history x best
        order = np.argsort(-contributions, axis=0, kind="stable")[:_BECAUSE]
        positive = np.take_along_axis(contributions, order, axis=0) > 0
        history_list = history.tolist()
        return [[history_list[o] for o, p in zip(col_order, col_ok, strict=True) if p]
                for col_order, col_ok in zip(order.T.tolist(), positive.T.tolist(), strict=True)]

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
            _set_statistics(rec, support, a_count, b_count, n_customers)

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
        query = _sorted_distinct(item_idx)
        return self.answer("basket", self._query_scores("basket", query), limit, filters, query)

    def next_best(self, customer_idx: int, limit: int = 10, filters: Filters | None = None) -> Answer:
        customer_idx = int(customer_idx)
        row = _csr_row(self.history, customer_idx)
        weights = self._weights("next_best")
        if row.nnz <= _DIRECT_ROWS:
            # The recency factors of the row, when the version has them.
            decay = None if self.history_decay is None else np.asarray(
                _csr_row(self.history_decay, customer_idx).data, dtype=np.float32)
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

    def _query_scores(self, kind: str, query: np.ndarray) -> np.ndarray:
        """One query's blended scores (``query`` sorted, distinct): ``score_items(kind,
        [query])[0]`` for an item kind, ``score_histories`` of the binary history row for
        ``kind="history"``. Each part is computed from the model arrays directly (no sparse
        matrices); parts without a direct form come from ``item_parts`` / ``history_parts``."""
        history = kind == "history"
        weights = self._weights("next_best" if history else kind)
        if len(query) > _DIRECT_ROWS:
            if history:
                return self.score_histories(_rows_matrix([query], len(self.items)))[0]
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
                histories = _rows_matrix([query], len(self.items))
                parts.update({name: part for name, part in self.history_parts(histories).items()
                              if name in rest})
            else:
                parts.update(self.item_parts(kind, [query], names=rest))
        return self.combine(parts, weights, 1)[0]

    def next_best_for_history(self, item_idx: np.ndarray, limit: int = 10,
                              filters: Filters | None = None) -> Answer:
        query = _sorted_distinct(item_idx)
        row = _BinaryRow(query, len(self.items))
        scores = self._query_scores("history", query)
        return self.answer("next_best", scores, limit, filters, query, history_idx=query,
                           history_row=row)

    # ------------------------------------------------------ upsell, downsell
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

    def likely_buyers(self, item_idx: int, limit: int = 10, min_score: float | None = None
                      ) -> tuple[str, list[tuple[int, float]]]:
        """Customers most likely to buy ``item_idx`` next, excluding those who already did."""
        scores = self.score_buyers(item_idx)
        column = self.history[:, [item_idx]].tocoo()
        scores[column.row] = -np.inf
        if min_score is not None:
            scores[scores < min_score] = -np.inf
        best = top_indices(scores, limit)
        return self.strategy("likely_buyers"), [(int(c), float(scores[c])) for c in best]

    # ----------------------------------------------------------- persistence
    def save(self, writer: VersionWriter) -> None:
        writer.add_array("items", self.items.ids)
        writer.add_array("customers", self.customers.ids)
        writer.add_sparse("history", self.history.astype(np.float32))
        buyers = self.buyers
        writer.add_array("buyers.indptr", np.asarray(buyers.indptr, dtype=np.int64))
        writer.add_array("buyers.indices", np.asarray(buyers.indices, dtype=np.int32))
        for component in self.components.values():
            component.save(writer)
        writer.add_json("serving_rules", {
            "floor": {"min_support": self.floor.min_support, "min_score": self.floor.min_score,
                      "support_kinds": list(self.floor.support_kinds)},
            "upsell_band": list(self.upsell_band), "downsell_band": list(self.downsell_band),
        })
        write_item_meta(writer, self.meta)

    @classmethod
    def load(cls, loaded: LoadedVersion) -> Recommender:
        manifest = loaded.manifest
        params = manifest.get("parameters", {})
        components = {name: component.load(loaded, params)
                      for name, component in REGISTRY.items()}
        files = manifest.get("files", {})
        rules = loaded.json("serving_rules") if "serving_rules.json" in files else None
        history = loaded.sparse("history")
        rec = cls(
            items=Vocab(loaded.array("items")), customers=Vocab(loaded.array("customers")),
            history=history, popularity=None, copurchase=None, als=None,
            meta=read_item_meta(loaded), blend=manifest.get("blend"), version=loaded.version,
            manifest=manifest, rules=rules, components=components)
        if "buyers.indices.npy" in files:
            indices = np.asarray(loaded.array("buyers.indices"))
            # The values are all 1: a broadcast view, no memory per entry.
            ones = np.broadcast_to(np.uint8(1), indices.shape)
            rec._buyers = sp.csc_matrix((ones, indices, np.asarray(loaded.array("buyers.indptr"))),
                                        shape=history.shape)
        return rec


def _set_statistics(rec: Recommendation, support: int, n_a: int, n_b: int,
                    n_customers: int) -> None:
    """support, confidence and lift of (because_of[0] -> item): ``n_a`` and ``n_b`` are the
    buyers of because_of[0] and of the item, ``n_customers`` all customers."""
    rec.support = support
    if n_a > 0:
        rec.confidence = round(support / n_a, 6)
        if n_b > 0:
            rec.lift = round(rec.confidence / (n_b / n_customers), 6)


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
