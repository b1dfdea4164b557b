"""The recommender: fitted models + vocabularies + item metadata, answering shop queries.

Training builds one and saves it as a model version; export and the service
load it back (memory-mapped) and ask it the four kinds of question:
also-bought, basket completion, next-best products, likely buyers. Which
model answers which kind is a table of blend weights chosen by the trainer's
evaluation (see ``training.train``), stored in the manifest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .artifacts import LoadedVersion, VersionWriter
from .models.als import ALSModel
from .models.base import top_indices, top_indices_rows
from .models.copurchase import CoPurchaseModel
from .models.popularity import PopularityModel
from .rules import Filters, ItemMeta, diversify, item_mask
from .vocab import UNKNOWN, Vocab

log = logging.getLogger(__name__)

KINDS = ("also_bought", "basket", "next_best", "likely_buyers")
COMPONENTS = ("copurchase", "als")
STRATEGY_NAMES = {"copurchase": "co-purchase", "als": "als"}
DEFAULT_BLEND = {
    "also_bought": {"copurchase": 1.0, "als": 0.0},
    "basket": {"copurchase": 1.0, "als": 0.0},
    "next_best": {"copurchase": 0.5, "als": 0.5},
    "likely_buyers": {"copurchase": 0.0, "als": 1.0},
}
# Popularity breaks ties among equal (often zero) model scores.
_TIE_BREAK = 1e-6


@dataclass
class Recommendation:
    item_idx: int
    score: float
    because_of: list[int] = field(default_factory=list)
    support: int | None = None


@dataclass
class Answer:
    """One recommendation list, in internal indexes, with the strategy that produced it."""

    strategy: str
    items: list[Recommendation]


class Recommender:
    """Answers shop queries from fitted models; the only object the service and export use."""

    def __init__(self, items: Vocab, customers: Vocab, history: sp.csr_matrix,
                 popularity: PopularityModel, copurchase: CoPurchaseModel | None,
                 als: ALSModel | None, meta: ItemMeta, blend: dict | None = None,
                 version: str | None = None, manifest: dict | None = None):
        self.items = items
        self.customers = customers
        self.history = history
        self.popularity = popularity
        self.copurchase = copurchase
        self.als = als
        self.meta = meta
        self.blend = {k: dict(v) for k, v in (blend or DEFAULT_BLEND).items()}
        self.version = version
        self.manifest = manifest or {}
        # Items that can be recommended at all: real products seen in training.
        self.known_items = (popularity.counts_ > 0) & meta.recommendable
        self._pop_tiebreak = (_TIE_BREAK * popularity.scores_).astype(np.float32)

    # ---------------------------------------------------------------- blend
    def _weights(self, kind: str) -> dict[str, float]:
        weights = {}
        for name, w in self.blend.get(kind, {}).items():
            if w > 0 and getattr(self, name, None) is not None:
                weights[name] = float(w)
        return weights

    def strategy(self, kind: str) -> str:
        weights = self._weights(kind)
        if not weights:
            return "popular-fallback"
        if len(weights) == 1:
            return STRATEGY_NAMES[next(iter(weights))]
        return "blend"

    @staticmethod
    def _normalise(scores: np.ndarray) -> np.ndarray:
        """Scale each row to [0, 1] by its maximum (in place for float32 arrays)."""
        scores = np.asarray(scores, dtype=np.float32)
        if not scores.flags.writeable:
            scores = scores.copy()
        np.maximum(scores, 0, out=scores)
        if scores.size:
            top = scores.max(axis=-1, keepdims=True)
            top[top <= 0] = 1.0
            scores /= top
        return scores

    def item_parts(self, kind: str, query_lists: list[np.ndarray],
                   names: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        """Each component's normalised scores (queries x items) for item-based queries."""
        parts = {}
        for name in names or tuple(self._weights(kind)):
            if name == "copurchase":
                rows = _rows_matrix(query_lists, len(self.items))
                part = (rows @ self.copurchase.similarity_).toarray()
            elif kind == "basket":
                part = self.als.score_histories(_rows_matrix(query_lists, len(self.items)))
            else:
                part = self.als.score_similar_rows(_rows_matrix(query_lists, len(self.items)))
            parts[name] = self._normalise(part)
        return parts

    def customer_parts(self, customer_idx: np.ndarray, names: tuple[str, ...] | None = None
                       ) -> dict[str, np.ndarray]:
        """Each component's normalised next-best scores for known customers."""
        parts = {}
        for name in names or tuple(self._weights("next_best")):
            if name == "copurchase":
                part = self.copurchase.score_histories(_log_weights(self.history[customer_idx]))
            else:
                part = self.als.score_customers(customer_idx)
            parts[name] = self._normalise(part)
        return parts

    def history_parts(self, histories: sp.csr_matrix) -> dict[str, np.ndarray]:
        parts = {}
        for name in self._weights("next_best"):
            if name == "copurchase":
                part = self.copurchase.score_histories(_log_weights(histories))
            else:
                part = self.als.score_histories(histories)
            parts[name] = self._normalise(part)
        return parts

    def combine(self, parts: dict[str, np.ndarray], weights: dict[str, float], n: int) -> np.ndarray:
        """Blend normalised component scores; popularity breaks the remaining ties."""
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
            if name == "copurchase":
                column = self.copurchase.similarity_[:, [item_idx]]
                part = np.asarray((_log_weights(self.history) @ column).todense()).ravel()
            else:
                part = self.als.score_buyers(item_idx)
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

    def next_best_batch(self, customer_idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` for many known customers, never an item they already bought."""
        scores = self.score_customers(customer_idx)
        idx = self.top_k(scores, k, exclude=self.history[customer_idx])
        return idx, _take_scores(scores, idx)

    def item_query_batch(self, kind: str, query_lists: list[np.ndarray], k: int
                         ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` for many item queries, never an item of the query."""
        scores = self.score_items(kind, query_lists)
        idx = self.top_k(scores, k, exclude=_rows_matrix(query_lists, len(self.items)))
        return idx, _take_scores(scores, idx)

    def history_batch(self, histories: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = self.score_histories(histories)
        idx = self.top_k(scores, k, exclude=histories)
        return idx, _take_scores(scores, idx)

    # ------------------------------------------------------------- one query
    def answer(self, kind: str, scores: np.ndarray, limit: int, filters: Filters | None,
               query_idx: np.ndarray, history_idx: np.ndarray | None = None) -> Answer:
        """Filter, cut and explain one score vector."""
        allowed = item_mask(self.meta, self.items, filters, self.known_items)
        if len(query_idx):
            allowed[query_idx] = False
        if filters is not None and filters.customer_id:
            cust = self.customers.index(filters.customer_id)
            if cust != UNKNOWN:
                allowed[self.history[cust].indices] = False
        masked = np.where(allowed, scores, -np.inf)
        if filters is not None and filters.max_per_category:
            ranked = top_indices(masked, min(len(masked), limit * 20 + 100))
            best = diversify(ranked, self.meta.category, filters.max_per_category, limit)
        else:
            best = top_indices(masked, limit)
        evidence = query_idx if history_idx is None else history_idx
        return Answer(self.strategy(kind), [self._explain(int(j), float(scores[j]), evidence)
                                            for j in best])

    def _explain(self, item_idx: int, score: float, evidence: np.ndarray) -> Recommendation:
        rec = Recommendation(item_idx, score)
        if self.copurchase is None or not len(evidence):
            return rec
        sim = self.copurchase.similarity_[np.asarray(evidence, dtype=np.int64)][:, [item_idx]]
        sims = sim.toarray().ravel()
        if sims.max(initial=0) <= 0:
            return rec
        order = np.argsort(-sims)[:3]
        order = order[sims[order] > 0]
        rec.because_of = [int(evidence[o]) for o in order]
        rec.support = int(self.copurchase.support_for(np.asarray([rec.because_of[0]]), item_idx)[0])
        return rec

    def popular(self, limit: int, filters: Filters | None, query_idx: np.ndarray) -> Answer:
        answer = self.answer("popular", self.popularity.scores_.astype(np.float32), limit,
                             filters, query_idx)
        answer.strategy = "popular-fallback"
        for rec in answer.items:
            rec.support = int(self.popularity.counts_[rec.item_idx])
        return answer

    def also_bought(self, item_idx: int, limit: int = 10, filters: Filters | None = None) -> Answer:
        query = np.asarray([item_idx])
        return self.answer("also_bought", self.score_items("also_bought", [query])[0], limit,
                           filters, query)

    def basket(self, item_idx: np.ndarray, limit: int = 10, filters: Filters | None = None) -> Answer:
        query = np.asarray(item_idx, dtype=np.int64)
        return self.answer("basket", self.score_items("basket", [query])[0], limit, filters, query)

    def next_best(self, customer_idx: int, limit: int = 10, filters: Filters | None = None) -> Answer:
        scores = self.score_customers(np.asarray([customer_idx]))[0]
        bought = self.history[customer_idx].indices.astype(np.int64)
        return self.answer("next_best", scores, limit, filters, bought, history_idx=bought)

    def next_best_for_history(self, item_idx: np.ndarray, limit: int = 10,
                              filters: Filters | None = None) -> Answer:
        query = np.unique(np.asarray(item_idx, dtype=np.int64))
        scores = self.score_histories(_rows_matrix([query], len(self.items)))[0]
        return self.answer("next_best", scores, limit, filters, query, history_idx=query)

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
        writer.add_array("popularity_counts", self.popularity.counts_)
        if self.copurchase is not None:
            writer.add_sparse("copurchase_similarity", self.copurchase.similarity_)
            writer.add_sparse("copurchase_support", self.copurchase.support_)
        if self.als is not None:
            writer.add_array("als_user_factors", self.als.user_factors_)
            writer.add_array("als_item_factors", self.als.item_factors_)
        meta = self.meta
        writer.add_array("item_name", meta.name.astype(str))
        writer.add_array("item_category", meta.category.astype(np.int32))
        writer.add_array("categories", meta.categories.ids)
        writer.add_array("item_price", meta.price.astype(np.float32))
        writer.add_array("item_in_stock", meta.in_stock.astype(bool))
        writer.add_array("item_recommendable", meta.recommendable.astype(bool))
        writer.add_json("item_extra", meta.extra)

    @classmethod
    def load(cls, loaded: LoadedVersion) -> "Recommender":
        manifest = loaded.manifest
        params = manifest.get("parameters", {})
        popularity = PopularityModel()
        counts = loaded.array("popularity_counts", mmap=False)
        popularity.counts_ = counts
        popularity.scores_ = (counts / max(int(counts.max(initial=0)), 1)).astype(np.float32)
        copurchase = None
        if loaded.has("copurchase_similarity"):
            copurchase = CoPurchaseModel(**params.get("copurchase", {}))
            copurchase.similarity_ = loaded.sparse("copurchase_similarity")
            copurchase.support_ = loaded.sparse("copurchase_support")
        als = None
        if loaded.has("als_item_factors"):
            als = ALSModel(**params.get("als", {}))
            als.set_factors(loaded.array("als_user_factors"), loaded.array("als_item_factors"))
        meta = ItemMeta(
            name=loaded.array("item_name"),
            category=loaded.array("item_category"),
            categories=Vocab(loaded.array("categories")),
            price=loaded.array("item_price"),
            in_stock=loaded.array("item_in_stock"),
            recommendable=loaded.array("item_recommendable"),
            extra=loaded.json("item_extra") if loaded.has("item_extra") or
            "item_extra.json" in manifest.get("files", {}) else {},
        )
        return cls(
            items=Vocab(loaded.array("items")), customers=Vocab(loaded.array("customers")),
            history=loaded.sparse("history"), popularity=popularity, copurchase=copurchase,
            als=als, meta=meta, blend=manifest.get("blend"), version=loaded.version,
            manifest=manifest,
        )


def _rows_matrix(query_lists: list[np.ndarray], n_items: int) -> sp.csr_matrix:
    """A binary (queries x items) matrix from lists of item indexes."""
    lengths = [len(q) for q in query_lists]
    indptr = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    indices = np.concatenate([np.asarray(q, dtype=np.int64) for q in query_lists]) \
        if query_lists and sum(lengths) else np.zeros(0, dtype=np.int64)
    m = sp.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr),
                      shape=(len(query_lists), n_items))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def _log_weights(counts: sp.csr_matrix) -> sp.csr_matrix:
    """A history weighted by log(1 + purchases): repeat buys count, but with diminishing weight."""
    out = counts.tocsr(copy=True).astype(np.float32)
    out.data = np.log1p(out.data)
    return out


def _take_scores(scores: np.ndarray, idx: np.ndarray) -> np.ndarray:
    safe = np.where(idx >= 0, idx, 0)
    return np.where(idx >= 0, np.take_along_axis(scores, safe, axis=1), np.nan)
