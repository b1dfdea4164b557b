"""Baselines that ``xsell evaluate`` measures the product against.

Each family has a small grid of settings; :func:`tune_baseline` scores every
setting on a validation split carved from the training period, keeps the best
per protocol, and refits those on the whole training period. All baselines
answer through the :class:`~recsys.evaluation.Scorer` protocol and break ties
among equal scores by popularity, as the product does.

- popularity: best-sellers of the training period.
- co-occurrence (cosine, Jaccard, lift): item x item co-counts over orders
  (or customers), top neighbours kept per item.
- item-kNN: implicit's ``BM25Recommender`` (BM25-weighted cosine neighbours).
- EASE (Steck 2019): ``B = I - P / diag(P)``, ``P = (X'X + lambda I)^-1``,
  on the items with at least two buyers; above ``max_items`` such items, on the
  ``max_items`` most-bought of them (the dense inverse's memory and time bound the
  size; the rest get no EASE weights), so the comparison always has it.
- ALS: implicit's ALS with a grid over factors, regularisation and alpha (confidence
  scaling).
"""

from __future__ import annotations

import itertools
import logging
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .evaluation import PRIMARY, evaluate
from .models.base import top_indices_rows, topk_per_row

log = logging.getLogger(__name__)

_TIE_BREAK = 1e-6
# The EASE baseline's dense inverse: 12,000 items is one 0.58 GB float32 matrix,
# about half a minute of LAPACK per setting on one idle core.
EASE_MAX_ITEMS = 12000


def _rows(query_lists: list[np.ndarray], n_items: int) -> sp.csr_matrix:
    from .sparse import rows_matrix as _rows_matrix

    return _rows_matrix(query_lists, n_items)


def _binary(m: sp.csr_matrix) -> sp.csr_matrix:
    out = m.tocsr(copy=True).astype(np.float32)
    out.data[:] = 1.0
    return out


class _MaskedTopK:
    """Shared top-k: disallowed and excluded items never appear; popularity breaks ties."""

    def __init__(self, popularity: np.ndarray, allowed: np.ndarray):
        top = max(float(popularity.max(initial=0)), 1.0)
        self.tiebreak = (_TIE_BREAK * popularity / top).astype(np.float32)
        self.allowed = allowed

    def top(self, scores: np.ndarray, exclude: sp.csr_matrix, k: int) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float32) + self.tiebreak
        scores[:, ~self.allowed] = -np.inf
        coo = exclude.tocoo()
        scores[coo.row, coo.col] = -np.inf
        return top_indices_rows(scores, k)


class PopularityBaseline(_MaskedTopK):
    name = "popularity"

    def next_best(self, customer_idx, histories, k):
        return self.top(np.zeros((len(customer_idx), len(self.allowed)), np.float32), histories, k)

    def item_query(self, kind, query_lists, k):
        n = len(self.allowed)
        return self.top(np.zeros((len(query_lists), n), np.float32), _rows(query_lists, n), k)


class ItemSimilarityScorer(_MaskedTopK):
    """Scores = query (or history) rows times an item x item similarity (sparse or dense)."""

    def __init__(self, similarity, popularity: np.ndarray, allowed: np.ndarray):
        super().__init__(popularity, allowed)
        self.similarity = similarity

    def _scores(self, rows: sp.csr_matrix) -> np.ndarray:
        out = rows @ self.similarity
        return out.toarray() if sp.issparse(out) else np.asarray(out)

    def next_best(self, customer_idx, histories, k):
        return self.top(self._scores(_binary(histories)), histories, k)

    def item_query(self, kind, query_lists, k):
        rows = _rows(query_lists, len(self.allowed))
        return self.top(self._scores(rows), rows, k)


class ALSScorer(_MaskedTopK):
    """ALS baseline: customer factors for next-best, folded-in queries for item protocols."""

    def __init__(self, model, popularity: np.ndarray, allowed: np.ndarray):
        super().__init__(popularity, allowed)
        self.model = model

    def next_best(self, customer_idx, histories, k):
        return self.top(self.model.score_customers(customer_idx), histories, k)

    def item_query(self, kind, query_lists, k):
        rows = _rows(query_lists, len(self.allowed))
        return self.top(self.model.score_histories(rows), rows, k)


# ------------------------------------------------------------- similarities


def cooccurrence_similarity(matrix: sp.csr_matrix, measure: str, neighbours: int = 200,
                            min_count: int = 1) -> sp.csr_matrix:
    """Item x item similarity from an entities x items matrix (binary co-counts)."""
    x = _binary(matrix)
    xt = x.T.tocsr()
    co = (xt @ x).tocsr()
    co.setdiag(0)
    co.eliminate_zeros()
    if min_count > 1:
        co.data[co.data < min_count] = 0
        co.eliminate_zeros()
    n = np.diff(xt.indptr).astype(np.float64)
    rows = np.repeat(np.arange(co.shape[0]), np.diff(co.indptr))
    cols = co.indices
    c = co.data.astype(np.float64)
    if measure == "cosine":
        sim = c / np.sqrt(n[rows] * n[cols])
    elif measure == "jaccard":
        sim = c / (n[rows] + n[cols] - c)
    elif measure == "lift":
        sim = c * x.shape[0] / (n[rows] * n[cols])
    else:
        raise ValueError(f"unknown co-occurrence measure {measure!r}")
    co.data = sim.astype(np.float32)
    return topk_per_row(co, neighbours)


def bm25_similarity(customer_items: sp.csr_matrix, neighbours: int, k1: float, b: float
                    ) -> sp.csr_matrix:
    """implicit's BM25Recommender neighbours (item x item)."""
    from implicit.nearest_neighbours import BM25Recommender

    model = BM25Recommender(K=neighbours, K1=k1, B=b, num_threads=1)
    with warnings.catch_warnings():
        # implicit weights a transposed copy internally and warns about its own COO matrix
        warnings.simplefilter("ignore")
        model.fit(customer_items.tocsr().astype(np.float32), show_progress=False)
    return model.similarity.tocsr().astype(np.float32)


def ease_similarity(customer_items: sp.csr_matrix, lam: float, max_items: int = EASE_MAX_ITEMS
                    ) -> _Embedded:
    """EASE weights (Steck 2019) on the items with >= 2 buyers, or on the ``max_items``
    most-bought of them when there are more (ties: lower index); ``eligible`` on the
    result says how many there were."""
    from .models.ease_large import lean_weights, split_head

    x = _binary(customer_items)
    buyers = np.diff(x.tocsc().indptr)
    keep, rest = split_head(buyers, 2, max_items)
    xs = x[:, keep]
    # Single precision, in place (one n x n float32 matrix: 0.58 GB at 12,000 items).
    bsub = lean_weights((xs.T @ xs).toarray(), np.full(len(keep), float(lam)))
    out = _Embedded(keep, bsub, x.shape[1])
    out.eligible += len(rest)
    return out


class _Embedded:
    """A dense similarity over a subset of items, applied to full-width query rows."""

    def __init__(self, keep: np.ndarray, weights: np.ndarray, n_items: int):
        self.keep = keep
        self.weights = weights
        self.n_items = n_items
        self.eligible = len(keep)

    def __rmatmul__(self, rows: sp.csr_matrix) -> np.ndarray:
        out = np.zeros((rows.shape[0], self.n_items), dtype=np.float32)
        out[:, self.keep] = np.asarray(rows[:, self.keep] @ self.weights)
        return out


# --------------------------------------------------------------- the families


@dataclass
class FitData:
    """What a baseline may be fitted on: one period's matrices and its popularity."""

    customer_items: sp.csr_matrix
    order_items: sp.csr_matrix
    popularity: np.ndarray
    allowed: np.ndarray
    customer_is_order: bool


def fit_data(inter, recommendable: np.ndarray | None = None) -> FitData:
    hist = inter.customer_items()
    orders = inter.order_items()
    pop = np.diff(hist.tocsc().indptr).astype(np.float64)
    if inter.customer_is_order:
        pop = np.diff(orders.tocsc().indptr).astype(np.float64)
    allowed = pop > 0
    if recommendable is not None:
        allowed &= recommendable
    return FitData(hist, orders, pop, allowed, inter.customer_is_order)


@dataclass
class Family:
    """A baseline family: a name, its grid, and how to build a scorer from one setting."""

    name: str
    grid: list[dict]
    build: object  # (FitData, setting) -> scorer or None (skipped)
    note: str = ""


def _cooc_family(measure: str, with_customers: bool) -> Family:
    units = ["order", "customer"] if with_customers else ["order"]
    grid = [{"unit": u, "neighbours": 200, "min_count": m}
            for u in units for m in ([1, 3] if measure == "lift" else [1])]

    def build(d: FitData, s: dict):
        m = d.order_items if s["unit"] == "order" else d.customer_items
        sim = cooccurrence_similarity(m, measure, s["neighbours"], s["min_count"])
        return ItemSimilarityScorer(sim, d.popularity, d.allowed)

    return Family(f"cooc-{measure}", grid, build)


def _bm25_family(with_customers: bool) -> Family:
    units = ["order", "customer"] if with_customers else ["order"]
    grid = [{"unit": u, "neighbours": kn, "k1": 1.2, "b": 0.75}
            for u in units for kn in (50, 200)]

    def build(d: FitData, s: dict):
        m = d.order_items if s["unit"] == "order" else d.customer_items
        sim = bm25_similarity(m, s["neighbours"], s["k1"], s["b"])
        return ItemSimilarityScorer(sim, d.popularity, d.allowed)

    return Family("item-knn-bm25", grid, build)


def _ease_family(with_customers: bool, max_items: int) -> Family:
    units = ["order", "customer"] if with_customers else ["order"]
    # Each setting is one dense inverse: leave the grid to lambda when items are many.
    grid = [{"unit": u, "lambda": lam, "max_items": max_items}
            for u in units for lam in (50.0, 200.0, 800.0)]

    def build(d: FitData, s: dict):
        m = d.order_items if s["unit"] == "order" else d.customer_items
        sim = ease_similarity(m, s["lambda"], max_items)
        family.note = ""
        if sim.eligible > len(sim.keep):
            family.note = (f"ease: fitted on the {len(sim.keep):,} most-bought of the "
                           f"{sim.eligible:,} items with two or more buyers (dense inverse "
                           f"limit --ease-max-items)")
            log.info("%s", family.note)
        return ItemSimilarityScorer(sim, d.popularity, d.allowed)

    family = Family("ease", grid, build)
    return family


def _als_family(iterations: int) -> Family:
    grid = [{"factors": f, "regularization": r, "alpha": a, "iterations": iterations}
            for f, r, a in itertools.product((64, 128), (0.01, 0.1), (2.0, 15.0))]

    def build(d: FitData, s: dict):
        from .models.als import ALSModel

        model = ALSModel(factors=s["factors"], regularization=s["regularization"],
                         alpha=s["alpha"], iterations=s["iterations"], confidence="log",
                         use_gpu=False).fit(d.customer_items)
        return ALSScorer(model, d.popularity, d.allowed)

    return Family("als", grid, build)


def default_families(customer_is_order: bool, ease_max_items: int = EASE_MAX_ITEMS,
                     als_iterations: int = 15, skip: tuple[str, ...] = ()) -> list[Family]:
    """Every baseline family, with grids sized for a laptop-class machine."""
    with_customers = not customer_is_order
    families = [
        Family("popularity", [{}], lambda d, s: PopularityBaseline(d.popularity, d.allowed)),
        _cooc_family("cosine", with_customers),
        _cooc_family("jaccard", with_customers),
        _cooc_family("lift", with_customers),
        _bm25_family(with_customers),
        _ease_family(with_customers, ease_max_items),
        _als_family(als_iterations),
    ]
    return [f for f in families if f.name not in skip]


@dataclass
class TunedBaseline:
    """A family's result on the test period, each protocol with the setting chosen for it."""

    name: str
    results: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    fit_seconds: dict = field(default_factory=dict)
    tune_seconds: float = 0.0
    skipped: str | None = None
    per_query: dict = field(default_factory=dict)
    note: str | None = None


def tune_baseline(family: Family, val_fit: FitData, val_data, train_fit: FitData, test_data,
                  k: int = 10) -> TunedBaseline:
    """Choose the best setting per protocol on validation, refit those on train, score on test."""
    out = TunedBaseline(family.name)
    start = time.perf_counter()
    scored = []
    for setting in family.grid:
        scorer = family.build(val_fit, setting)
        if scorer is None:
            out.skipped = (f"{family.name}: too many items for a dense model on this machine "
                           f"(more than {setting.get('max_items', EASE_MAX_ITEMS)} items with "
                           f"two or more buyers); skipped")
            log.warning("%s", out.skipped)
            return out
        res = evaluate(scorer, val_data, k)
        scored.append((setting, res))
        log.info("baseline %s %s: %s", family.name, setting,
                 {kind: round(r.get(f"{PRIMARY[kind]}@{k}", 0), 4) for kind, r in res.items()})
    out.tune_seconds = round(time.perf_counter() - start, 2)
    chosen: dict[str, dict] = {}
    for kind in PRIMARY:
        metric = f"{PRIMARY[kind]}@{k}"
        cands = [(res[kind][metric], -i) for i, (_, res) in enumerate(scored) if kind in res]
        if cands:
            _, neg_i = max(cands)
            chosen[kind] = scored[-neg_i][0]
    # Refit each distinct chosen setting once on the whole training period.
    distinct: list[dict] = []
    for setting in chosen.values():
        if setting not in distinct:
            distinct.append(setting)
    for setting in distinct:
        t0 = time.perf_counter()
        scorer = family.build(train_fit, setting)
        seconds = round(time.perf_counter() - t0, 2)
        res = evaluate(scorer, test_data, k, per_query=True)
        for kind, kind_setting in chosen.items():
            if kind_setting == setting and kind in res:
                entry = dict(res[kind])
                out.per_query[kind] = entry.pop("_per_query")
                out.results[kind] = entry
                out.settings[kind] = setting
                out.fit_seconds[kind] = seconds
    out.note = family.note or None  # of the refit on the training period
    return out
