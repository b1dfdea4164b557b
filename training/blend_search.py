"""Exact holdout scores of many blends at the cost of little more than one.

The trainer chooses, per query kind, a weight vector over its components
(co-purchase, ALS, EASE, a popularity prior) by scoring a grid of them on the
holdout. Scoring each blend over the whole catalogue means a dense
(queries x items) array per component and per blend; on a 40k-item catalogue
that was most of ``xsell train``'s time.

Every component's scores are scaled to [0, 1] by the row maximum and blended
linearly with non-negative weights, so a threshold argument in the manner of
Fagin's algorithm (Fagin, Lotem & Naor 2003) makes a small candidate pool
exact. Take from each component its ``pool`` best items per query and a bound
``t_c`` on the scaled score of any item outside them (the next score down, or
0). An item outside every pool scores at most ``sum_c w_c t_c`` plus the
popularity tie-break; when the k-th best pooled item scores strictly more, the
top k over the pool *is* the top k over the catalogue. The few queries where
that does not hold are scored over the whole catalogue by the recommender's
own path, so every blend's metrics are exactly what the shipped recommender
would answer.

Sparse components (co-purchase and EASE neighbours) are never densified here:
their pools come from the sparse product directly.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
import scipy.sparse as sp

from recsys.evaluation import PRIMARY, evaluate_variants
from recsys.models import REGISTRY, ALSModel
from recsys.models.base import top_indices_rows
from recsys.models.ease import (
    EASEByKind,
    EASEModel,
    ease_dense_items,
    ease_dropouts,
    ease_exponents,
    ease_half_lives,
    ease_head_k,
    ease_tail_neighbours,
)
from recsys.models.ease_large import LargeEASEModel
from recsys.models.recency import decay_weights
from recsys.period import TrainingPeriod
from recsys.recommender import DEFAULT_BLEND, Recommender
from recsys.sparse import rows_matrix
from training.settings import EASESetting, FittedModels

log = logging.getLogger(__name__)

# Items per component and query in the candidate pool.
POOL = 100
# Sparse scores denser than this are handled as a dense array.
_DENSE_FRACTION = 0.05


def _cell_keys(cols: np.ndarray, n_cols: int) -> np.ndarray:
    """Row-major keys (row * n_cols + col) of a (rows x slots) array of column indexes."""
    return np.arange(cols.shape[0], dtype=np.int64)[:, None] * n_cols + cols


def _find(keys: np.ndarray, want: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``want`` in the sorted ``keys`` and whether each is there."""
    if not len(keys):
        return np.zeros(want.shape, dtype=np.int64), np.zeros(want.shape, dtype=bool)
    at = np.minimum(np.searchsorted(keys, want), len(keys) - 1)
    return at, keys[at] == want


class _Part:
    """One component's scores for a batch: its pool, the bound outside it, value lookup."""

    def __init__(self, raw, n: int, pool: int):
        self.n = n
        if sp.issparse(raw) and raw.nnz > _DENSE_FRACTION * raw.shape[0] * raw.shape[1]:
            # Long histories through EASE or co-purchase touch most of the catalogue:
            # a dense array is then cheaper than sorting every stored entry.
            self._init_dense(raw.toarray(), pool)
        elif sp.issparse(raw):
            self._init_sparse(raw.tocsr(), pool)
        elif raw.ndim == 1:
            self._init_vector(np.asarray(raw, dtype=np.float32), pool)
        else:
            self._init_dense(np.asarray(raw, dtype=np.float32), pool)

    def _init_dense(self, raw: np.ndarray, pool: int) -> None:
        self.kind, self.raw = "dense", raw
        idx = top_indices_rows(raw, pool + 1, above=0.0)
        vals = np.where(idx >= 0, np.take_along_axis(raw, np.maximum(idx, 0), 1), 0)
        # The row maximum of the non-negative scores, as Recommender._normalise takes it.
        self.top = np.where(idx[:, 0] >= 0, vals[:, 0], 1).astype(np.float32)
        self.pool = idx[:, :pool]
        self.bound = np.where(idx[:, pool] >= 0, vals[:, pool], 0) / self.top

    def _init_vector(self, raw: np.ndarray, pool: int) -> None:
        self.kind, self.raw = "vector", raw
        idx = top_indices_rows(raw[None, :], pool + 1, above=0.0)[0]
        top = np.float32(raw[idx[0]] if idx[0] >= 0 else 1)
        self.top = np.full(self.n, top, dtype=np.float32)
        self.pool = np.broadcast_to(idx[:pool], (self.n, pool))
        bound = raw[idx[pool]] / top if idx[pool] >= 0 else 0.0
        self.bound = np.full(self.n, bound, dtype=np.float32)

    def _init_sparse(self, raw: sp.csr_matrix, pool: int) -> None:
        self.kind = "sparse"
        raw.sort_indices()
        rows = np.repeat(np.arange(self.n), np.diff(raw.indptr))
        cols, vals = raw.indices, raw.data.astype(np.float32, copy=False)
        # Lookup keys (row-major, ascending since indices are sorted per row).
        self.keys = rows.astype(np.int64) * raw.shape[1] + cols
        self.vals = vals
        positive = vals > 0
        r, c, v = rows[positive], cols[positive], vals[positive]
        order = np.lexsort((c, -v, r))
        r, c, v = r[order], c[order], v[order]
        starts = np.searchsorted(r, np.arange(self.n))
        rank = np.arange(len(r)) - starts[r]
        self.top = np.ones(self.n, dtype=np.float32)
        first = rank == 0
        self.top[r[first]] = v[first]
        self.pool = np.full((self.n, pool), -1, dtype=np.int64)
        inside = rank < pool
        self.pool[r[inside], rank[inside]] = c[inside]
        self.bound = np.zeros(self.n, dtype=np.float32)
        nxt = rank == pool
        self.bound[r[nxt]] = v[nxt] / self.top[r[nxt]]
        self.n_items = raw.shape[1]

    def values(self, cols: np.ndarray) -> np.ndarray:
        """Scaled scores at ``cols`` (queries x pool positions, all valid indexes)."""
        if self.kind == "dense":
            raw = np.take_along_axis(self.raw, cols, 1)
        elif self.kind == "vector":
            raw = self.raw[cols]
        else:
            at, found = _find(self.keys, _cell_keys(cols, self.n_items))
            raw = np.where(found, self.vals[at] if len(self.vals) else 0, 0).astype(np.float32)
        # The same float32 steps as Recommender._normalise, so pooled scores equal its.
        return np.maximum(raw, 0).astype(np.float32) / self.top[:, None]


class BlendScorer:
    """Top k of every weight vector of ``grid``, exact, from one pass over the components.

    ``components`` names the grid's columns (components of ``rec`` and
    ``"popularity"``); :func:`recsys.evaluation.evaluate_variants` drives it.
    """

    def __init__(self, rec: Recommender, grid: list[tuple], components: tuple[str, ...],
                 pool: int = POOL):
        self.rec = rec
        self.grid = grid
        self.components = components
        self.pool = pool
        self.fallback_rows = 0
        self.rows = 0
        self._tie_max = float(rec._pop_tiebreak.max()) if len(rec._pop_tiebreak) else 0.0

    def next_best(self, customer_idx, histories, k):
        raws = {name: self.rec.raw_customer_part(name, customer_idx)
                for name in self.components}
        return self._topk_all(raws, len(customer_idx), histories, k,
                              lambda rows: self.rec.customer_parts(customer_idx[rows],
                                                                   self.components))

    def item_query(self, kind, query_lists, k):
        rows = rows_matrix(query_lists, len(self.rec.items))
        raws = {name: self.rec.raw_item_part(name, kind, rows) for name in self.components}
        return self._topk_all(raws, len(query_lists), rows, k,
                              lambda rows: self.rec.item_parts(
                                  kind, [query_lists[i] for i in rows], self.components))

    def _topk_all(self, raws: dict, n: int, exclude: sp.csr_matrix, k: int, dense_parts):
        rec = self.rec
        parts = {name: _Part(raw, n, self.pool) for name, raw in raws.items()}
        pool = np.concatenate([p.pool for p in parts.values()], axis=1)
        pool.sort(axis=1)
        pool[:, 1:][pool[:, 1:] == pool[:, :-1]] = -1  # each item once per row
        valid = pool >= 0
        safe = np.where(valid, pool, 0)
        blocked = ~rec.known_items[safe] | ~valid
        exclude = exclude.tocsr()
        if exclude.nnz:
            # Excluded (query or history) items: -inf like Recommender.top_k's mask.
            ex_keys = (np.repeat(np.arange(n, dtype=np.int64), np.diff(exclude.indptr))
                       * len(rec.items) + exclude.indices)
            ex_keys.sort()
            blocked |= _find(ex_keys, _cell_keys(safe, len(rec.items)))[1]
        base = np.where(blocked, -np.inf, rec._pop_tiebreak[safe]).astype(np.float32)
        gathered = {name: p.values(safe) for name, p in parts.items()}
        out, unsure_by = {}, {}
        for ws in self.grid:
            scores = base.copy()
            bound = np.full(n, self._tie_max, dtype=np.float64)
            for name, w in zip(self.components, ws, strict=True):
                if w > 0 and name in gathered:
                    scores += np.float32(w) * gathered[name] if w != 1 else gathered[name]
                    bound += w * parts[name].bound.astype(np.float64)
            best = top_indices_rows(scores, k)
            out[ws] = np.where(best >= 0, np.take_along_axis(pool, np.maximum(best, 0), 1), -1)
            kth = np.where(best[:, k - 1] >= 0,
                           np.take_along_axis(scores, np.maximum(best[:, k - 1:k], 0), 1)[:, 0],
                           -np.inf)
            # Strictly above the bound (with a margin for float32 rounding): exact.
            unsure = np.flatnonzero(~(kth > bound * (1 + 1e-5) + 1e-7))
            if len(unsure):
                unsure_by[ws] = unsure
            self.fallback_rows += len(unsure)
            self.rows += n
        if unsure_by:
            # The rest over the whole catalogue, each component computed once for them.
            rows = np.unique(np.concatenate(list(unsure_by.values())))
            dense = dense_parts(rows)
            for ws, unsure in unsure_by.items():
                at = np.searchsorted(rows, unsure)
                sub = {name: part[at] for name, part in dense.items()}
                weights = dict(zip(self.components, ws, strict=True))
                out[ws][unsure] = rec.top_k(rec.combine(sub, weights, len(unsure)), k,
                                            exclude=exclude[unsure])
        return out


# ------------------------------------------------------------------ the searches
# Each setting the trainer chooses on its holdout, in the order fit_product runs them:
# ALS's confidence scale, EASE's settings per kind, the blend per kind, recency.


def blend_candidates(components: tuple[str, ...], levels: list[float]) -> list[tuple]:
    """Every weight vector over ``components`` with weights from ``levels`` summing to 1."""
    out = []
    for ws in itertools.product(sorted(set(float(x) for x in levels)), repeat=len(components)):
        if abs(sum(ws) - 1.0) < 1e-9:
            out.append(tuple(round(w, 4) for w in ws))
    return out


def available_components(rec: Recommender) -> tuple[str, ...]:
    """The blended components of ``rec``, in registry order."""
    return tuple(name for name, cls in REGISTRY.items() if cls.blended and name in rec.components)


def evaluate_blends(rec: Recommender, data, levels: list[float], k: int,
                    popularity_levels: list[float] = (0.0,)) -> dict[tuple, dict]:
    """Holdout metrics for every blend of the fitted components (weights from ``levels``).

    Each blend is also tried with a popularity prior of weight ``p`` from
    ``popularity_levels`` (the others scaled by ``1 - p``): how much a shop's
    best-sellers should pull is a property of its data (groceries: much;
    gifts: little), so it is measured, not assumed. ``p = 1`` is popularity
    alone: where the holdout says no model beats the best-sellers (sparse or
    sampled data), the product answers with them instead of with noise.
    """
    components = available_components(rec)
    grid = []
    for p in sorted(set(float(x) for x in popularity_levels)):
        for ws in blend_candidates(components, levels):
            cand = tuple(round(w * (1 - p), 4) for w in ws) + (round(p, 4),)
            if cand not in grid:  # p = 1 (popularity alone) arises once per blend
                grid.append(cand)
    components = components + ("popularity",)
    results = evaluate_variants(BlendScorer(rec, grid, components), data, k, per_query=True)
    if None in results:  # no holdout queries at all (tiny data): nothing to choose on
        return {}
    return {tuple(zip(components, ws, strict=True)): r for ws, r in results.items()}


# Standard errors by which recency must beat full histories on the holdout.
RECENCY_SE = 2.0


def choose_recency(rec: Recommender, period, data, results: dict, levels: list[float], k: int,
                   popularity_levels, half_lives) -> tuple[float | None, dict]:
    """The next-best recency half-life (days; None = full histories) chosen on the holdout.

    Every half-life of ``half_lives`` (0 = none) weights the histories of
    ``rec`` (fitted on ``period``, a TrainingPeriod or its interactions) by
    :mod:`recsys.models.recency` and runs the next-best blend search again. A half-life is adopted only if its best
    blend beats the best blend on full histories by more than
    ``RECENCY_SE`` standard errors of their paired per-query difference, so
    that a small holdout cannot buy recency on noise (with several half-lives
    tried, one standard error is passed by chance: it was, on the planted data
    with item ids shuffled); among those, the best wins. Returns it and
    ``results`` with the next-best entries of that half-life, and leaves
    ``rec.history_decay`` set accordingly.
    """
    lives = sorted({float(h) for h in half_lives if h and float(h) > 0})
    metric = PRIMARY["next_best"]
    key = f"{metric}@{k}"

    def best_of(res):
        entries = [r["next_best"] for r in res.values() if "next_best" in r]
        return max(entries, key=lambda e: e[key]) if entries else None

    none = best_of(results)
    age = TrainingPeriod.of(period, rec.history).ages \
        if lives and none is not None else None
    if age is None:
        return None, results
    base = np.asarray(none["_per_query"][metric], dtype=np.float64)
    nb_data = data.next_best_only()
    best, chosen, chosen_results = none[key], None, results
    for half_life in lives:
        rec.history_decay = decay_weights(age, half_life)
        res = evaluate_blends(rec, nb_data, levels, k, popularity_levels)
        top = best_of(res)
        diff = np.asarray(top["_per_query"][metric], dtype=np.float64) - base
        se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else np.inf
        log.info("recency half-life %g days: best next-best %s %.4f (full histories %.4f, "
                 "paired difference %+.4f, standard error %.4f)", half_life, key, top[key],
                 none[key], float(diff.mean()), se)
        if float(diff.mean()) > RECENCY_SE * se and top[key] > best:
            best, chosen = top[key], half_life
            chosen_results = {blend: {**results[blend], "next_best": r["next_best"]}
                              for blend, r in res.items()}
    rec.history_decay = None if chosen is None else decay_weights(age, chosen)
    return chosen, chosen_results


def choose_blend(results: dict[tuple, dict], k: int, max_item_popularity: float = 1.0,
                 max_concentration: dict | None = None) -> tuple[dict, dict]:
    """Per query kind, the blend to ship, chosen on the holdout (training/selection.py:
    under a popularity-concentration bound, personalised unless best-sellers are
    clearly better); kinds without holdout queries keep the default blend."""
    from training import selection

    chosen, metrics, _ = selection.choose(results, k, max_item_popularity, max_concentration)
    return {kind: dict(weights) for kind, weights in DEFAULT_BLEND.items()} | chosen, metrics


def score_alone(rec: Recommender, component: str, data, k: int) -> dict:
    """Holdout metrics of one component of ``rec`` alone (a settings choice)."""
    return evaluate_variants(BlendScorer(rec, [(1.0,)], (component,)), data, k)[(1.0,)]


def fit_ease(period, config: dict, holdout_data=None, rec_factory=None, k: int = 10,
             settings_by_kind: dict | None = None, customer_items=None,
             gram_fn=None) -> tuple[dict, dict]:
    """EASE models per query kind on a training period (a :class:`TrainingPeriod` or its
    interactions; ``customer_items`` when the caller has them) and the setting of each.

    A setting is an :class:`~training.settings.EASESetting`. With ``holdout_data``,
    every setting of ``ease.half_lives`` x ``ease.size_exponents`` x
    ``ease.dropouts`` x ``ease.lambdas`` is scored there alone and each kind
    keeps its best (baskets like a weaker prior than customer histories;
    dropout 0 is plain EASE, above 0 the dropout regulariser of DLAE/EDLAE; a
    half-life above 0 weights each order by its age,
    recsys.models.recency.order_decay; a size exponent above 0 damps large
    orders). Then each kind's model is scored with every popularity exponent
    of ``ease.popularity_exponents`` above 0 (no inverse: the same weights
    with each candidate column divided by buyers ** beta), and keeps one only
    if it scores better. Ties go to the earlier setting: no decay before a
    decay, no size damping before damping, plain EASE before a dropout
    variant, no popularity penalty before a penalty. With
    ``settings_by_kind`` those are refitted (three-value settings from older
    manifests mean exponents 0). One Gram matrix is computed per (half-life,
    size exponent), and one is held at a time; each setting is one dense
    inverse. Above ``ease.dense_items`` kept items (and above ``ease.max_items``
    when that is lower) the model is :class:`~recsys.models.ease_large.LargeEASEModel`
    with the same settings: exact EASE on the ``ease.max_items`` most-bought items,
    a regression tail for the rest.
    Returns ({}, {}) when EASE is disabled or there are too many items for a
    dense inverse. ``gram_fn(half_life, size_exponent, settings)``: the Gram
    matrix from elsewhere (the Spark engine), as :meth:`EASEModel.gram` returns it.
    """
    cfg = dict(config["ease"])
    lambdas = [float(x) for x in cfg.pop("lambdas")]
    dropouts = ease_dropouts(cfg.pop("dropouts", [0.0]))
    half_lives = ease_half_lives(cfg.pop("half_lives", [0.0]))
    size_exponents = ease_exponents(cfg.pop("size_exponents", [0.0]), "ease.size_exponents")
    pop_exponents = ease_exponents(cfg.pop("popularity_exponents", [0.0]),
                                    "ease.popularity_exponents")
    # ease.zero_diagonal chooses EDLAE (true) or DLAE (false) for dropouts above 0;
    # dropout 0 is always plain EASE (a DLAE without dropout is a ridge regression
    # that reconstructs each item from itself).
    zero_diagonal = bool(cfg.pop("zero_diagonal", True))
    tail_neighbours = ease_tail_neighbours(cfg.pop("tail_neighbours", 0))
    head_k = ease_head_k(cfg.pop("head_k", 0))
    if "dense_items" in cfg:
        cfg["dense_items"] = ease_dense_items(cfg["dense_items"])
    if not cfg.pop("enabled", True):
        return {}, {}

    period = TrainingPeriod.of(period, customer_items)
    customer_items = period.customer_items
    # Catalogues stored sparse (above ease.dense_items kept items) are fitted by
    # recsys/models/ease_large.py, with the same settings: EASE exactly up to
    # ease.max_items items (in float32, a quarter of the memory), above that on the
    # max_items most-bought ones with the regression tail.
    model_class = EASEModel
    buyers = np.bincount(customer_items.tocsr().indices, minlength=customer_items.shape[1])
    limit = min(cfg.get("dense_items", 5000), cfg.get("max_items", 12000))
    gram_cfg = cfg
    if (buyers >= cfg.get("min_buyers", 2)).sum() > limit:
        model_class = partial(LargeEASEModel, head_items=cfg.get("max_items", 12000),
                              tail_neighbours=tail_neighbours)
        cfg["k"] = head_k or cfg.get("max_items", 12000)
        # gram_fn (the Spark engine) then returns the LargeEASEGram of that split.
        gram_cfg = dict(cfg, head_items=cfg.get("max_items", 12000),
                        tail_neighbours=tail_neighbours)
    if period.inter.timestamp is None:
        half_lives = [0.0]
    # Orders are the rows the decay weighs. When every order is its own customer, the
    # customer x item matrix is the order one: it serves unless a decay needs the rows
    # in order index (and customer_weight has nothing to add).
    order_items = None if gram_fn is not None else period.order_items
    if period.customer_is_order:
        cfg["customer_weight"] = 0.0
    # One dense Gram matrix at a time (288 MB at the 6,000-item cap): the settings come
    # grouped by (half-life, size exponent), so each is built once.
    held: dict = {}

    def gram(half_life: float, size_exponent: float):
        nonlocal order_items
        key = (half_life, size_exponent)
        if key not in held and gram_fn is not None:
            held.clear()
            held[key] = gram_fn(half_life, size_exponent, gram_cfg)
        if key not in held:
            weights = None
            if half_life > 0:
                weights = period.order_weights(half_life)
                order_items = period.order_rows if order_items is None else order_items
            held.clear()
            held[key] = model_class(size_exponent=size_exponent, **cfg).gram(
                customer_items, order_items, weights)
        return held[key]

    def fit(setting: EASESetting, weighted: tuple | None = None) -> EASEModel:
        weighted = gram(setting.half_life, setting.size_exponent) if weighted is None \
            else weighted
        return model_class(lam=setting.lam, dropout=setting.dropout,
                           zero_diagonal=zero_diagonal or setting.dropout == 0,
                           half_life=setting.half_life, size_exponent=setting.size_exponent,
                           popularity_exponent=setting.popularity_exponent,
                           **cfg).fit(customer_items, order_items, gram=weighted)

    settings = [EASESetting(lam, p, h, e, 0.0) for h in half_lives for e in size_exponents
                for p in dropouts for lam in lambdas]
    if settings_by_kind is None and (holdout_data is None or (len(settings) == 1
                                                              and len(pop_exponents) == 1)):
        settings_by_kind = {kind: settings[0] for kind in PRIMARY}
    wanted = None
    if settings_by_kind is not None:
        wanted = {kind: EASESetting.of(s) for kind, s in settings_by_kind.items()}
        settings = sorted(set(wanted.values()), key=lambda s: (s.half_life, s.size_exponent, s))
    # Too many items for a dense inverse: no Gram matrix, no EASE.
    if not settings or gram(settings[0].half_life, settings[0].size_exponent) is None:
        return {}, {}
    if wanted is not None:
        fitted = {s: fit(s) for s in settings}
        return {kind: fitted[s] for kind, s in wanted.items()}, wanted

    def scored_alone(model: EASEModel, setting: EASESetting) -> dict:
        res = score_alone(rec_factory(model), "ease", holdout_data, k)
        log.info("EASE lambda %g dropout %g half-life %g size exponent %g popularity "
                 "exponent %g on the holdout: %s", *setting,
                 {kind: round(r[f"{PRIMARY[kind]}@{k}"], 4) for kind, r in res.items()
                  if kind in PRIMARY})
        return res

    # The dense inverses (LAPACK, which lets go of the GIL) of the next two settings run
    # on two threads while the holdout scores the current one, so the grid keeps both
    # cores busy. Gram matrices are built here, one thread only; only the models in
    # flight and each kind's best so far are held (a dense model is n^2 floats).
    models, chosen, best = {}, {}, {}
    todo, in_flight = iter(settings), deque()
    with ThreadPoolExecutor(max_workers=2) as pool:

        def submit_next():
            setting = next(todo, None)
            if setting is not None:
                weighted = gram(setting.half_life, setting.size_exponent)
                in_flight.append((setting, pool.submit(fit, setting, weighted)))

        submit_next()
        submit_next()
        while in_flight:
            setting, future = in_flight.popleft()
            model = future.result()
            submit_next()
            res = scored_alone(model, setting)
            for kind, metric in PRIMARY.items():
                if kind in res and (kind not in best
                                    or res[kind][f"{metric}@{k}"] > best[kind]):
                    best[kind] = res[kind][f"{metric}@{k}"]
                    chosen[kind], models[kind] = setting, model
            del model
    # The popularity penalty on each kind's model: one holdout pass per (model, beta),
    # kept only where it beats the unpenalised weights.
    bases: dict = {}  # each chosen setting: its model and the kinds that chose it
    for kind, setting in chosen.items():
        bases.setdefault(setting, (models[kind], []))[1].append(kind)
    for base, (model, kinds) in bases.items():
        for beta in pop_exponents[1:]:
            setting = base._replace(popularity_exponent=beta)
            penalised = model.with_popularity_exponent(beta, customer_items)
            res = scored_alone(penalised, setting)
            for kind in kinds:
                value = res[kind][f"{PRIMARY[kind]}@{k}"]
                if value > best[kind]:
                    best[kind], chosen[kind], models[kind] = value, setting, penalised
    return models, chosen


def choose_als_alpha(inter, config: dict, data, models: FittedModels, meta, k: int,
                     iterations: int, fit_als=None) -> tuple:
    """(holdout ALS, its alpha): the confidence scale of ``train.als_alphas`` whose ALS
    alone scores the best next-best nDCG on the holdout.

    ALS is the product's customer model (next-best, likely buyers; the item
    kinds lean on co-purchase and EASE), and one ALS serves every kind, so the
    choice is made on next-best; without next-best queries (every order its
    own customer) or with fewer than two alphas, the configured ``als.alpha``
    stays. Ties go to the configured alpha. Each extra alpha costs one holdout
    ALS fit of ``iterations`` and one next-best pass. ``fit_als(alpha)``: that fit
    done elsewhere (the Spark engine).
    """
    hist, pop, cp, als = models
    configured = float(config["als"]["alpha"])
    alphas = [float(a) for a in config["train"].get("als_alphas", [])]
    if len(set(alphas) | {configured}) < 2 or not len(data.nb_customers):
        return als, configured
    nb_only = data.next_best_only()
    candidates = [(configured, als)] + [(a, None) for a in dict.fromkeys(alphas)
                                        if a != configured]
    best = None
    for alpha, model in candidates:
        if model is None and fit_als is not None:
            model = fit_als(alpha)
        if model is None:
            model = ALSModel(**dict(config["als"], alpha=alpha))
            model.fit(hist, iterations=iterations)
        rec = Recommender(inter.items, inter.customers, hist, pop, cp, model, meta)
        res = score_alone(rec, "als", nb_only, k)
        value = res["next_best"][f"{PRIMARY['next_best']}@{k}"]
        log.info("ALS alpha %g alone on the holdout: next-best %s@%d %.4f", alpha,
                 PRIMARY["next_best"], k, value)
        if best is None or value > best[0]:
            best = (value, alpha, model)
    return best[2], best[1]


class Searches:
    """The trainer's searches as the components reach them (``FitContext.search``):
    a component's :meth:`~recsys.models.base.Component.search` or ``search_blend``
    calls the one it needs, with the holdout (``data``, ``k``, ``meta``) held here.

    ``inter``: all the data (its vocabularies); ``data``: the holdout queries (None on
    all data, where only EASE's refit is asked for); ``gram_fn`` / ``fit_als``: EASE's
    Gram matrices and ALS fits from elsewhere (the Spark engine)."""

    def __init__(self, inter, data=None, k: int = 10, meta=None, gram_fn=None,
                 fit_als=None):
        self.inter, self.data, self.k, self.meta = inter, data, k, meta
        self.gram_fn, self.fit_als = gram_fn, fit_als

    def recommender(self, ctx, ease=None) -> Recommender:
        """A recommender over ``ctx.fitted`` (and ``ease``: one EASE model or one per kind)."""
        fitted = ctx.fitted
        return Recommender(self.inter.items, self.inter.customers, ctx.period.customer_items,
                           fitted["popularity"], None, None, self.meta, ease=ease,
                           components={name: c for name, c in fitted.items()
                                       if name != "popularity"})

    def als_alpha(self, ctx, model: ALSModel) -> tuple[ALSModel, float]:
        """:func:`choose_als_alpha` from the holdout's plain ALS fit ``model``."""
        fitted = ctx.fitted
        return choose_als_alpha(
            self.inter, ctx.config, self.data,
            FittedModels(ctx.period.customer_items, fitted["popularity"],
                         fitted.get("copurchase"), model),
            self.meta, self.k, ALSModel.holdout_iterations(ctx.config), fit_als=self.fit_als)

    def ease(self, ctx) -> tuple[EASEByKind | None, dict]:
        """EASE per kind: on the holdout, :func:`fit_ease`'s grid (a kind whose model has no
        weight, no basket holding two items, is left out: best-sellers under another
        name); on all data, the models of ``ctx.setting``."""
        period = ctx.period
        if ctx.stage == "holdout":
            models, chosen = fit_ease(
                period, ctx.config, self.data,
                lambda model: self.recommender(ctx, ease=model), self.k,
                customer_items=period.customer_items, gram_fn=self.gram_fn)
            models = {kind: m for kind, m in models.items() if has_weights(m)}
            chosen = {kind: v for kind, v in chosen.items() if kind in models}
        else:
            models, chosen = fit_ease(period, ctx.config, settings_by_kind=ctx.setting,
                                      customer_items=period.customer_items,
                                      gram_fn=self.gram_fn)
        return EASEByKind(models), chosen

    def recency(self, ctx, rec: Recommender, results: dict) -> tuple[float | None, dict]:
        """:func:`choose_recency` on the next-best blends of ``rec``."""
        train = ctx.config["train"]
        return choose_recency(rec, ctx.period, self.data, results,
                              [float(w) for w in train["blend_grid"]], self.k,
                              train.get("popularity_grid", [0.0]),
                              train.get("recency_half_lives", []))


def has_weights(model) -> bool:
    """Whether an EASE model has any weight (none when no basket holds two items)."""
    sim = model.similarity_
    return sim is not None and bool(sim.nnz if sp.issparse(sim) else np.any(sim))
