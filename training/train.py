"""The training pipeline behind ``xsell train``: read, split, fit, evaluate, gate, publish.

1. Read orders (and catalog) with the data report.
2. Split: the last 15% of orders in time (random orders without timestamps).
3. Fit popularity, co-purchase and ALS on the training period, and EASE when
   the items with two or more buyers are few enough for a dense inverse
   (its lambda chosen per query kind on the holdout).
4. Evaluate on the holdout; pick per query kind the blend of the fitted
   components, each blend also with a popularity prior of a few weights
   (automatic selection, no hand tuning).
5. Gate: publish only if the chosen models beat popularity by a margin and do
   not fall too far below the current version's stored metrics.
6. Refit on all data (ALS warm-started from step 3) and write a version.

:func:`fit_product` holds steps 2-4 and 6 so that ``xsell evaluate`` measures
exactly what ``xsell train`` ships, fitted on its own training period.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial

import numpy as np
import scipy.sparse as sp

from recsys import __version__
from recsys.artifacts import (
    VersionWriter,
    clean_temporary,
    current_version,
    load_version,
    read_manifest,
    set_current,
)
from recsys.data import ItemExclusion, read_catalog, read_orders
from recsys.evaluation import (
    PRIMARY,
    PopularityScorer,
    RecommenderScorer,
    build_eval_data,
    evaluate,
    evaluate_variants,
    split,
    split_interactions,
)
from recsys.exceptions import XsellError
from recsys.models import ALSModel, CoPurchaseModel, PopularityModel
from recsys.models.ease import EASEModel
from recsys.models.ease_large import LargeEASEModel
from recsys.models.recency import decay_weights, last_purchase_age, order_decay
from recsys.models.substitutes import SubstituteModel
from recsys.recommender import COMPONENTS, DEFAULT_BLEND, Recommender, _rows_matrix
from recsys.rules import build_item_meta
from training.blend_search import BlendScorer

log = logging.getLogger(__name__)


class _NullProgress:
    def __call__(self, n=1):
        pass

    def close(self):
        pass


def _null_progress_factory(desc: str, total: int | None = None):
    return _NullProgress()


def pause_for_tests(stage: str) -> None:
    """Test-only hook: with XSELL_TEST_PAUSE_AT=<stage>, write the pid to the file named by
    XSELL_TEST_PAUSE_MARKER and sleep (XSELL_TEST_PAUSE_S, default 120), so a crash test
    can SIGKILL the run at that point."""
    if os.environ.get("XSELL_TEST_PAUSE_AT") != stage:
        return
    with open(os.environ["XSELL_TEST_PAUSE_MARKER"], "w", encoding="utf-8") as fh:
        fh.write(str(os.getpid()))
    time.sleep(float(os.environ.get("XSELL_TEST_PAUSE_S", "120")))


class Timer:
    """Wall time of named stages, for the manifest and the summary."""

    def __init__(self):
        self.stages: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = round(self.stages.get(name, 0.0) + time.perf_counter() - start, 3)


def fit_neighbours(inter, config: dict, progress_factory, customer_items=None):
    """Popularity and co-purchase on one set of interactions (single-threaded work).

    ``customer_items``: ``inter.customer_items()`` when the caller has it already.
    """
    customer_items = inter.customer_items() if customer_items is None else customer_items
    order_items = None if inter.customer_is_order else inter.order_items()
    popularity = PopularityModel().fit(customer_items)
    bar = progress_factory("co-purchase", customer_items.shape[1])
    copurchase = CoPurchaseModel(**config["copurchase"]).fit(customer_items, order_items,
                                                             progress=bar)
    bar.close()
    return customer_items, popularity, copurchase


def fit_models(inter, config: dict, progress_factory, warm_start: ALSModel | None = None,
               als_iterations: int | None = None, customer_items=None, neighbours=None):
    """Fit popularity, co-purchase and ALS on one set of interactions.

    ``neighbours``: :func:`fit_neighbours`' result when it was computed already.
    """
    customer_items, popularity, copurchase = (
        neighbours or fit_neighbours(inter, config, progress_factory, customer_items))
    als = ALSModel(**config["als"])
    iterations = als_iterations or als.iterations
    bar = progress_factory("ALS", iterations)
    als.fit(customer_items, warm_start=warm_start, iterations=iterations, progress=bar)
    bar.close()
    return customer_items, popularity, copurchase, als


def blend_candidates(components: tuple[str, ...], levels: list[float]) -> list[tuple]:
    """Every weight vector over ``components`` with weights from ``levels`` summing to 1."""
    out = []
    for ws in itertools.product(sorted(set(float(x) for x in levels)), repeat=len(components)):
        if abs(sum(ws) - 1.0) < 1e-9:
            out.append(tuple(round(w, 4) for w in ws))
    return out


_BANDS = ("upsell_band", "downsell_band")


def _model_params(cfg: dict) -> dict:
    return {k: v for k, v in cfg.items() if k not in _BANDS}


def check_rules(config: dict) -> None:
    """Fail early (before any fitting) on invalid price bands or relevance floor."""
    from recsys.exceptions import ConfigError

    cfg, floor = config["substitutes"], config["floor"]
    try:
        for band in _BANDS:
            values = cfg[band]
            if not (isinstance(values, (list, tuple)) and len(values) == 2
                    and 0 < float(values[0]) <= float(values[1])):
                raise ValueError
        if int(floor["min_support"]) < 0 or not 0 <= float(floor["min_score"]) <= 1:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(
            f"invalid rules: substitutes.upsell_band/downsell_band must be [low, high] with "
            f"0 < low <= high (got {cfg['upsell_band']!r}, {cfg['downsell_band']!r}); "
            f"floor.min_support must be 0 or more (got {floor['min_support']!r}) and "
            f"floor.min_score in [0, 1] (got {floor['min_score']!r})") from None


def fit_substitutes(inter, customer_items, popularity, als, meta, config: dict):
    """Upsell/downsell substitutes from the final models, and the serving rules to store."""
    cfg = config["substitutes"]
    order_items = None if inter.customer_is_order else inter.order_items()
    candidates = (popularity.counts_ > 0) & meta.recommendable
    subs = SubstituteModel(**_model_params(cfg)).fit(
        customer_items, order_items, None if als is None else als.item_factors_,
        meta.category, meta.price, candidates=candidates)
    rules = {"floor": dict(config["floor"]),
             "upsell_band": [float(x) for x in cfg["upsell_band"]],
             "downsell_band": [float(x) for x in cfg["downsell_band"]]}
    return subs, rules


def available_components(rec: Recommender) -> tuple[str, ...]:
    return tuple(name for name in COMPONENTS if getattr(rec, name, None) is not None)


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
    return {tuple(zip(components, ws, strict=True)): r for ws, r in results.items()}


ITEM_KINDS = ("also_bought", "basket")


# Standard errors by which recency must beat full histories on the holdout.
RECENCY_SE = 2.0


def choose_recency(rec: Recommender, inter, data, results: dict, levels: list[float], k: int,
                   popularity_levels, half_lives) -> tuple[float | None, dict]:
    """The next-best recency half-life (days; None = full histories) chosen on the holdout.

    Every half-life of ``half_lives`` (0 = none) weights the histories of
    ``rec`` (fitted on ``inter``) by :mod:`recsys.models.recency` and runs the
    next-best blend search again. A half-life is adopted only if its best
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
    age = last_purchase_age(inter, rec.history) if lives and none is not None else None
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


def _within_one_se(best, mine) -> bool:
    """Whether ``mine`` is within one standard error of ``best`` (paired per-query values)."""
    if best is None or mine is None or len(mine) < 2:
        return False
    diff = np.asarray(best) - np.asarray(mine)
    return float(diff.mean()) <= float(diff.std(ddof=1) / np.sqrt(len(diff)))


def choose_blend(results: dict[tuple, dict], k: int,
                 max_item_popularity: float = 1.0) -> tuple[dict, dict]:
    """Per query kind, the blend to ship, chosen on the holdout.

    The blend with the best primary metric wins, unless best-sellers alone
    (popularity weight 1) are as good as the data can tell: within one
    standard error of the best, on the paired per-query differences (Breiman
    et al. 1984's one-standard-error rule, popularity being the simplest
    model). So a model blend ships only where the holdout separates it from
    best-sellers; on data with no signal (line-sampled, or item ids shuffled
    across lines) the product answers with best-sellers, not with the luckiest
    of some sixty blends, and on data with signal it ships the blend measured
    best.

    Before, among the blends within one standard error of the best the one
    closest to an even blend won; on Online Retail that cost 4% nDCG@10 on
    next-best, and on shuffled item ids it shipped a blend below best-sellers
    (docs/RESULTS.md).

    For item-anchored queries (also-bought, basket) popularity may pull at most
    ``max_item_popularity`` (a shop's choice: 1.0 lets the holdout decide, best-
    sellers alone included, which is what wins on sparse or line-sampled data;
    a tiny catalogue, where HR@10 cannot tell models from best-sellers, or a
    shop that wants item pages always anchored on the item, sets e.g. 0.3).
    """
    blend = {kind: dict(weights) for kind, weights in DEFAULT_BLEND.items()}
    chosen_metrics: dict = {}
    for kind, metric in PRIMARY.items():
        cap = max_item_popularity if kind in ITEM_KINDS else 1.0
        candidates = [(key, res[kind]) for key, res in results.items()
                      if kind in res and dict(key).get("popularity", 0.0) <= cap + 1e-9]
        if not candidates:
            continue
        values = [entry[f"{metric}@{k}"] for _, entry in candidates]
        best_i = int(np.argmax(values))
        best_per_query = candidates[best_i][1].get("_per_query", {}).get(metric)

        popular = [i for i, (key, _) in enumerate(candidates)
                   if dict(key).get("popularity", 0.0) >= 1.0 - 1e-9]
        i = best_i
        if popular and (popular[0] == best_i or _within_one_se(
                best_per_query, candidates[popular[0]][1].get("_per_query", {}).get(metric))):
            i = popular[0]
        key, entry = candidates[i]
        blend[kind] = {name: w for name, w in key if w > 0 or name != "popularity"}
        chosen_metrics[kind] = {m: v for m, v in entry.items() if m != "_per_query"}
    return blend, chosen_metrics


def score_alone(rec: Recommender, component: str, data, k: int) -> dict:
    """Holdout metrics of one component of ``rec`` alone (a settings choice)."""
    return evaluate_variants(BlendScorer(rec, [(1.0,)], (component,)), data, k)[(1.0,)]


def fit_ease(inter, config: dict, holdout_data=None, rec_factory=None, k: int = 10,
             settings_by_kind: dict | None = None, customer_items=None) -> tuple[dict, dict]:
    """EASE models per query kind on ``inter`` and the setting of each.

    A setting is ``(lambda, dropout, half_life, size_exponent,
    popularity_exponent)`` (recsys/models/ease.py). With ``holdout_data``,
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
    inverse.
    Returns ({}, {}) when EASE is disabled or there are too many items for a
    dense inverse.
    """
    cfg = dict(config["ease"])
    lambdas = [float(x) for x in cfg.pop("lambdas")]
    dropouts = _ease_dropouts(cfg.pop("dropouts", [0.0]))
    half_lives = _ease_half_lives(cfg.pop("half_lives", [0.0]))
    size_exponents = _ease_exponents(cfg.pop("size_exponents", [0.0]), "ease.size_exponents")
    pop_exponents = _ease_exponents(cfg.pop("popularity_exponents", [0.0]),
                                    "ease.popularity_exponents")
    # ease.zero_diagonal chooses EDLAE (true) or DLAE (false) for dropouts above 0;
    # dropout 0 is always plain EASE (a DLAE without dropout is a ridge regression
    # that reconstructs each item from itself).
    zero_diagonal = bool(cfg.pop("zero_diagonal", True))
    tail_neighbours = _ease_tail_neighbours(cfg.pop("tail_neighbours", 0))
    if "dense_items" in cfg:
        cfg["dense_items"] = _ease_dense_items(cfg["dense_items"])
    if not cfg.pop("enabled", True):
        return {}, {}

    customer_items = inter.customer_items() if customer_items is None else customer_items
    # Catalogues stored sparse (above ease.dense_items kept items) are fitted by
    # recsys/models/ease_large.py, with the same settings: EASE exactly up to
    # ease.max_items items (in float32, a quarter of the memory), above that on the
    # max_items most-bought ones with the regression tail.
    model_class = EASEModel
    buyers = np.bincount(customer_items.tocsr().indices, minlength=customer_items.shape[1])
    limit = min(cfg.get("dense_items", 5000), cfg.get("max_items", 12000))
    if (buyers >= cfg.get("min_buyers", 2)).sum() > limit:
        model_class = partial(LargeEASEModel, head_items=cfg.get("max_items", 12000),
                              tail_neighbours=tail_neighbours)
    if inter.timestamp is None:
        half_lives = [0.0]
    # Orders are the rows the decay weighs. When every order is its own customer, the
    # customer x item matrix is the order one: it serves unless a decay needs the rows
    # in order index (and customer_weight has nothing to add).
    order_items = None if inter.customer_is_order else inter.order_items()
    if inter.customer_is_order:
        cfg["customer_weight"] = 0.0
    # One dense Gram matrix at a time (288 MB at the 6,000-item cap): the settings come
    # grouped by (half-life, size exponent), so each is built once.
    held: dict = {}

    def gram(half_life: float, size_exponent: float):
        nonlocal order_items
        key = (half_life, size_exponent)
        if key not in held:
            weights = None
            if half_life > 0:
                weights = order_decay(inter, half_life)
                order_items = inter.order_items() if order_items is None else order_items
            held.clear()
            held[key] = model_class(size_exponent=size_exponent, **cfg).gram(
                customer_items, order_items, weights)
        return held[key]

    def fit(setting: tuple, weighted: tuple | None = None) -> EASEModel:
        lam, p, half_life, size_exponent, beta = setting
        weighted = gram(half_life, size_exponent) if weighted is None else weighted
        return model_class(lam=lam, dropout=p, zero_diagonal=zero_diagonal or p == 0,
                         half_life=half_life, size_exponent=size_exponent,
                         popularity_exponent=beta, **cfg).fit(customer_items, order_items,
                                                              gram=weighted)

    settings = [(lam, p, h, e, 0.0) for h in half_lives for e in size_exponents
                for p in dropouts for lam in lambdas]
    if settings_by_kind is None and (holdout_data is None or (len(settings) == 1
                                                              and len(pop_exponents) == 1)):
        settings_by_kind = {kind: settings[0] for kind in PRIMARY}
    wanted = None
    if settings_by_kind is not None:
        wanted = {kind: _full_setting(s) for kind, s in settings_by_kind.items()}
        settings = sorted(set(wanted.values()), key=lambda s: (s[2], s[3], s))
    # Too many items for a dense inverse: no Gram matrix, no EASE.
    if not settings or gram(settings[0][2], settings[0][3]) is None:
        return {}, {}
    if wanted is not None:
        fitted = {s: fit(s) for s in settings}
        return {kind: fitted[s] for kind, s in wanted.items()}, wanted

    def scored_alone(model: EASEModel, setting: tuple) -> dict:
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
                weighted = gram(setting[2], setting[3])
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
            setting = (*base[:4], beta)
            penalised = model.with_popularity_exponent(beta, customer_items)
            res = scored_alone(penalised, setting)
            for kind in kinds:
                value = res[kind][f"{PRIMARY[kind]}@{k}"]
                if value > best[kind]:
                    best[kind], chosen[kind], models[kind] = value, setting, penalised
    return models, chosen


def _full_setting(setting) -> tuple:
    """An EASE setting as (lambda, dropout, half-life, size exponent, popularity exponent);
    the shorter settings of older manifests have exponents 0."""
    values = tuple(float(x) for x in setting)
    return values + (0.0,) * (5 - len(values))


def choose_als_alpha(inter, config: dict, data, models: tuple, meta, k: int,
                     iterations: int) -> tuple:
    """(holdout ALS, its alpha): the confidence scale of ``train.als_alphas`` whose ALS
    alone scores the best next-best nDCG on the holdout.

    ALS is the product's customer model (next-best, likely buyers; the item
    kinds lean on co-purchase and EASE), and one ALS serves every kind, so the
    choice is made on next-best; without next-best queries (every order its
    own customer) or with fewer than two alphas, the configured ``als.alpha``
    stays. Ties go to the configured alpha. Each extra alpha costs one holdout
    ALS fit of ``iterations`` and one next-best pass.
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


def _setting_floats(values, setting: str, valid, expected: str) -> list[float]:
    """A list setting as floats that all pass ``valid``; a clear config error otherwise."""
    from recsys.exceptions import ConfigError

    try:
        out = [float(x) for x in values] if isinstance(values, (list, tuple)) else None
        if out is not None and all(valid(x) for x in out):
            return out
    except (TypeError, ValueError):
        pass
    raise ConfigError(f"{setting} must be a list of {expected} (got {values!r})")


def _zero_first(values, setting: str, valid, expected: str) -> list[float]:
    """A list setting whose 0 means "none": 0 first (it wins ties), then the listed
    values above 0 in their order, each once."""
    out = _setting_floats(values, setting, valid, expected)
    return [0.0] + [x for x in dict.fromkeys(out) if x > 0]


def _ease_half_lives(values) -> list[float]:
    """``ease.half_lives`` as days >= 0 (0: no decay), no decay first."""
    return _zero_first(values, "ease.half_lives", lambda x: x >= 0, "half-lives in days >= 0")


def _ease_exponents(values, setting: str) -> list[float]:
    """``ease.size_exponents`` / ``ease.popularity_exponents``: exponents in [0, 2], 0 first."""
    return _zero_first(values, setting, lambda x: 0.0 <= x <= 2.0, "exponents in [0, 2]")


def _ease_count(value, setting: str, zero_means: str) -> int:
    """A whole number >= 0 of the ``ease`` section (``zero_means``: what 0 does)."""
    from recsys.exceptions import ConfigError

    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{setting} must be a whole number of items >= 0 (0: {zero_means}; "
                          f"got {value!r})")
    return value


def _ease_dense_items(value) -> int:
    """``ease.dense_items``: the catalogue size up to which EASE keeps every weight."""
    return _ease_count(value, "ease.dense_items", "always the top ease.k weights per item")


def _ease_tail_neighbours(value) -> int:
    """``ease.tail_neighbours``: head regressors per tail item (0: no tail)."""
    return _ease_count(value, "ease.tail_neighbours",
                       "EASE on the ease.max_items most-bought items only")


def _ease_dropouts(values) -> list[float]:
    """``ease.dropouts`` as floats in [0, 1) (empty: plain EASE)."""
    return _setting_floats(values, "ease.dropouts", lambda x: 0.0 <= x < 1.0,
                           "probabilities in [0, 1)") or [0.0]


@dataclass
class FittedProduct:
    """The product's models refitted on all given data, with the blend chosen on its holdout."""

    models: tuple
    blend: dict
    metrics: dict
    pop_metrics: dict
    results: dict
    split: object
    holdout_models: tuple = field(repr=False, default=())
    holdout_rec: Recommender | None = field(repr=False, default=None)
    ease: dict = field(default_factory=dict)
    # EASE per kind in the blend: (lambda, dropout, half-life, size exponent, popularity
    # exponent) chosen on the holdout.
    ease_settings: dict = field(default_factory=dict)
    # ALS confidence scale chosen on the holdout (train.als_alphas; else als.alpha).
    als_alpha: float | None = None
    # Next-best recency: the half-life chosen on the holdout (None: full histories) and
    # the factors of the refitted history.
    half_life: float | None = None
    history_decay: object = field(repr=False, default=None)

    def recommender(self, inter, meta) -> Recommender:
        """The shippable recommender over ``inter``'s vocabularies with ``meta``."""
        hist, pop, cp, als = self.models
        return Recommender(inter.items, inter.customers, hist, pop, cp, als, meta,
                           blend=self.blend, ease=self.ease, history_decay=self.history_decay)


def fit_product(inter, config: dict, progress_factory=None, timer: Timer | None = None
                ) -> FittedProduct:
    """Split ``inter``, fit on its past, choose the blend on its holdout, refit on all of it.

    ``xsell train`` calls this on all data; ``xsell evaluate`` calls it on the
    training period only, so the product's own choices never see the test period.
    """
    progress_factory = progress_factory or _null_progress_factory
    timer = timer or Timer()
    train_cfg = config["train"]
    k = int(train_cfg["k"])
    with timer.stage("split"):
        s = split(inter, test_fraction=train_cfg["test_fraction"])
        train_part, test_part = split_interactions(inter, s)
        data = build_eval_data(train_part, test_part, max_queries=train_cfg["max_eval_queries"])

    total_iterations = int(config["als"]["iterations"])
    holdout_iterations = min(total_iterations, int(train_cfg["holdout_als_iterations"]))
    refit = train_cfg.get("refit", True)
    with ThreadPoolExecutor(max_workers=1) as background:
        with timer.stage("fit_holdout"):
            hist_tr, pop_tr, cp_tr, als_tr = fit_models(train_part, config, progress_factory,
                                                        customer_items=data.train_customer_items,
                                                        als_iterations=holdout_iterations)
            pause_for_tests("fit")
        # The co-purchase model of all data does not depend on the holdout: it is
        # fitted on the second core while EASE and the holdout evaluation (both
        # single-threaded numpy) run here. ALS, which uses every core, is not overlapped.
        full_neighbours = (background.submit(fit_neighbours, inter, config, progress_factory)
                           if refit else None)

        with timer.stage("fit_holdout"):
            meta_tr = build_item_meta(inter.items, None, None)
            als_tr, als_alpha = choose_als_alpha(
                inter, config, data, (hist_tr, pop_tr, cp_tr, als_tr), meta_tr, k,
                holdout_iterations)
            if als_alpha != float(config["als"]["alpha"]):
                config = dict(config, als=dict(config["als"], alpha=als_alpha))

            def make_rec(ease_model):
                return Recommender(inter.items, inter.customers, hist_tr, pop_tr, cp_tr, als_tr,
                                   meta_tr, ease=ease_model)

            ease_tr, ease_chosen = fit_ease(train_part, config, data, make_rec, k,
                                     customer_items=data.train_customer_items)

        with timer.stage("evaluate"):
            rec_tr = make_rec(ease_tr)
            levels = [float(w) for w in train_cfg["blend_grid"]]
            pop_levels = train_cfg.get("popularity_grid", [0.0])
            results = evaluate_blends(rec_tr, data, levels, k, pop_levels)
            half_life, results = choose_recency(rec_tr, train_part, data, results, levels, k,
                                                pop_levels,
                                                train_cfg.get("recency_half_lives", []))
            # The blend search is exact (training/blend_search.py): the chosen blend's
            # holdout metrics are what the shipped recommender answers.
            blend, metrics = choose_blend(results, k,
                                          float(train_cfg.get("max_item_popularity", 1.0)))
            rec_tr.blend = {kind: dict(w) for kind, w in blend.items()}
            pop_metrics = evaluate(PopularityScorer(pop_tr.counts_, rec_tr.known_items), data, k)

        ease_settings = {kind: ease_chosen[kind] for kind, w in blend.items()
                         if w.get("ease", 0) > 0 and kind in ease_chosen}
        with timer.stage("fit_full"):
            if refit:
                models = fit_models(inter, config, progress_factory, warm_start=als_tr,
                                    als_iterations=max(1, total_iterations - holdout_iterations),
                                    neighbours=full_neighbours.result())
                ease = {}
                if ease_settings:
                    ease = fit_ease(inter, config, settings_by_kind=ease_settings,
                                    customer_items=models[0])[0]
            else:
                models = (hist_tr, pop_tr, cp_tr, als_tr)
                ease = {kind: ease_tr[kind] for kind in ease_settings}
            decay = None
            if half_life is not None:
                decay = decay_weights(last_purchase_age(inter if refit else train_part,
                                                        models[0]), half_life)
    return FittedProduct(models=models, blend=blend, metrics=metrics, pop_metrics=pop_metrics,
                         results=results, split=s, holdout_models=(hist_tr, pop_tr, cp_tr, als_tr),
                         holdout_rec=rec_tr,
                         ease=ease, ease_settings=ease_settings,
                         als_alpha=als_alpha,
                         half_life=half_life,
                         history_decay=decay)


def train(orders: str, models_dir: str, config: dict, catalog: str | None = None,
          columns: dict | None = None, catalog_columns: dict | None = None,
          strict: bool = False, orders_query: str | None = None,
          catalog_query: str | None = None, progress_factory=None,
          on_report=None) -> dict:
    """Run the whole pipeline; returns the summary (also stored in the manifest)."""
    progress_factory = progress_factory or _null_progress_factory
    timer = Timer()
    train_cfg = config["train"]
    k = int(train_cfg["k"])
    check_rules(config)
    clean_temporary(models_dir)

    with timer.stage("read"):
        exclude = ItemExclusion(config["data"].get("exclude_items"))
        inter, report = read_orders(orders, columns or config["data"].get("columns"),
                                    exclude=exclude, strict=strict, query=orders_query)
        pause_for_tests("read")
        cat = cat_report = None
        if catalog:
            cat, cat_report = read_catalog(catalog, catalog_columns or columns, strict=strict,
                                           query=catalog_query)
    if on_report:
        on_report(report, cat_report)
    if inter.n_lines == 0:
        from recsys.exceptions import DataError

        raise DataError(f"{report.source}: no usable order lines (see the data report)")

    product = fit_product(inter, config, progress_factory, timer=timer)
    s, blend, metrics, pop_metrics, results = (product.split, product.blend, product.metrics,
                                                product.pop_metrics, product.results)
    hist, pop, cp, als = product.models
    current = _current_manifest(models_dir)
    with timer.stage("evaluate"):
        fresh = compare_with_current(inter, product, models_dir, current, config, k)
    gate = _gate(metrics, pop_metrics, config["gate"], k, current, fresh)

    with timer.stage("write"):
        meta = build_item_meta(inter.items, cat, inter.item_prices())
    with timer.stage("fit_substitutes"):
        subs, rules = fit_substitutes(inter, hist, pop, als, meta, config)
    with timer.stage("write"):
        rec = Recommender(inter.items, inter.customers, hist, pop, cp, als, meta, blend=blend,
                          substitutes=subs, rules=rules, ease=product.ease,
                          history_decay=product.history_decay)
        previous = current_version(models_dir)
        manifest = {
            "xsell_version": __version__,
            "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "data": {
                "orders": report.to_dict(),
                "catalog": cat_report.to_dict() if cat_report else None,
                "customers": len(inter.customers), "orders_count": len(inter.orders),
                "items": len(inter.items), "lines": inter.n_lines,
                "split": {"method": s.method, "cutoff": s.cutoff,
                          "train_lines": int(s.train.sum()), "test_lines": int(s.test.sum())},
                "time_range": (None if inter.timestamp is None else
                               [int(inter.timestamp.min()), int(inter.timestamp.max())]),
            },
            "parameters": {"copurchase": config["copurchase"],
                           "als": dict(config["als"], alpha=product.als_alpha),
                           "ease": _ease_params(config, product.ease_settings),
                           "recency": {"half_life_days": product.half_life},
                           "train": train_cfg, "substitutes": _model_params(config["substitutes"]),
                           "floor": config["floor"]},
            "blend": blend,
            "metrics": metrics,
            "baselines": {"popularity": pop_metrics},
            "blend_search": {_blend_key(w): {kind: {m: v for m, v in entry.items()
                                                    if m != "_per_query"}
                                             for kind, entry in r.items()}
                             for w, r in results.items()},
            "gate": gate,
            "published": gate["passed"],
            "previous_version": previous,
        }
        writer = VersionWriter(models_dir)
        with writer:
            rec.save(writer)
            pause_for_tests("write")
            manifest["timings_s"] = dict(timer.stages)
            version = writer.commit(manifest, make_current=False)
        pause_for_tests("publish")
        if gate["passed"]:
            set_current(models_dir, version)

    return {
        "version": version,
        "published": gate["passed"],
        "metrics": metrics,
        "baseline_popularity": {kind: {m: v for m, v in r.items() if m != "queries"}
                                for kind, r in pop_metrics.items()},
        "gate": gate,
        "blend": blend,
        "data": {"rows_read": report.rows_read, "rows_used": report.rows_used,
                 "rows_rejected": report.rows_rejected},
        "timings_s": timer.stages,
    }


def _current_manifest(models_dir: str) -> dict | None:
    """The current version's manifest, or None (none yet, or unreadable: no comparison)."""
    try:
        version = current_version(models_dir)
        if version is None:
            return None
        manifest = read_manifest(models_dir, version)
        return {"version": version, "metrics": manifest.get("metrics"),
                "time_range": (manifest.get("data") or {}).get("time_range")}
    except (OSError, ValueError, XsellError) as exc:
        log.warning("current version unreadable, gate skips the comparison: %s", exc)
        return None


def _blend_key(weights: tuple) -> str:
    return ",".join(f"{name}={w:g}" for name, w in weights)


def _ease_params(config: dict, settings_by_kind: dict) -> dict:
    """EASE settings for the manifest, with the setting chosen per kind."""
    return dict(config["ease"],
                lambdas_by_kind={kind: s[0] for kind, s in settings_by_kind.items()},
                dropouts_by_kind={kind: s[1] for kind, s in settings_by_kind.items()},
                half_lives_by_kind={kind: s[2] for kind, s in settings_by_kind.items()},
                size_exponents_by_kind={kind: s[3] for kind, s in settings_by_kind.items()},
                popularity_exponents_by_kind={kind: s[4]
                                              for kind, s in settings_by_kind.items()})


# Fewer fresh queries than this and the gate compares stored metrics instead.
MIN_FRESH_QUERIES = 30


def compare_with_current(inter, product: FittedProduct, models_dir: str,
                         current: dict | None, config: dict, k: int) -> dict | None:
    """The current version and the new models scored on the same new holdout queries.

    Only holdout orders placed after the current version's newest line are
    used: the current version was trained on everything before that, so on
    older holdout orders it would be scored on purchases it has seen. The new
    models are the ones fitted on the training period (they have seen none of
    the holdout). Returns None when there is nothing fair to compare on (no
    current version, no timestamps, a version without a recorded time range,
    or no newer orders); the gate then uses the current version's stored metrics.
    """
    newest = (current or {}).get("time_range")
    if not newest or product.split.method != "temporal" or product.holdout_rec is None:
        return None
    times = inter.order_times()
    fresh = product.split.test & (times[inter.order_idx] > int(newest[1]))
    if not fresh.any():
        return None
    try:
        current_rec = Recommender.load(load_version(models_dir, current["version"]))
    except (OSError, ValueError, XsellError) as exc:
        log.warning("current version unreadable, gate uses its stored metrics: %s", exc)
        return None
    data = build_eval_data(inter.subset(product.split.train), inter.subset(fresh),
                           max_queries=config["train"]["max_eval_queries"])
    ours = evaluate(RecommenderScorer(product.holdout_rec), data, k)
    theirs = evaluate(VersionScorer(current_rec, inter.items, inter.customers), data, k)
    return {"since": int(newest[1]), "fresh_lines": int(fresh.sum()), "new": ours,
            "current": theirs}


class VersionScorer:
    """Scores a version trained on other vocabularies on queries in today's indexes.

    Ids are mapped both ways; query items the version does not know are
    dropped, customers it does not know are scored from their history, and
    items it recommends that today's data lacks count as misses.
    """

    def __init__(self, rec: Recommender, items, customers):
        self.rec = rec
        self.to_theirs = rec.items.indices(items.ids)
        self.to_ours = items.indices(rec.items.ids)
        self.customers = rec.customers.indices(customers.ids)

    def _theirs(self, m) -> sp.csr_matrix:
        coo = m.tocoo()
        cols = self.to_theirs[coo.col]
        keep = cols >= 0
        return sp.csr_matrix((coo.data[keep], (coo.row[keep], cols[keep])),
                             shape=(m.shape[0], len(self.rec.items)))

    def _ours(self, recs: np.ndarray) -> np.ndarray:
        return np.where(recs >= 0, self.to_ours[np.maximum(recs, 0)], -1)

    def next_best(self, customer_idx, histories, k):
        theirs = self.customers[customer_idx]
        hist = self._theirs(histories)
        out = np.full((len(customer_idx), k), -1, dtype=np.int64)
        known = np.flatnonzero(theirs >= 0)
        new = np.flatnonzero(theirs < 0)
        if len(known):
            out[known] = self.rec.top_k(self.rec.score_customers(theirs[known]), k,
                                        exclude=hist[known])
        if len(new):
            out[new] = self.rec.top_k(self.rec.score_histories(hist[new]), k, exclude=hist[new])
        return self._ours(out)

    def item_query(self, kind, query_lists, k):
        lists = [self.to_theirs[q][self.to_theirs[q] >= 0] for q in query_lists]
        scores = self.rec.score_items(kind, lists)
        return self._ours(self.rec.top_k(scores, k,
                                         exclude=_rows_matrix(lists, len(self.rec.items))))


def _gate(metrics: dict, pop_metrics: dict, gate_cfg: dict, k: int,
          current: dict | None = None, fresh: dict | None = None) -> dict:
    """Publish only if the primary protocol beats popularity by the configured margin and,
    when a current version exists, is not worse than it beyond ``max_drop_vs_current``.

    The comparison with the current version is made on the same new holdout
    queries (``fresh``, from :func:`compare_with_current`: the holdout orders
    newer than anything the current version was trained on). Without such
    orders (a retrain on the same data, no timestamps) it falls back to the
    metrics stored in the current version's manifest, measured on its own
    holdout by models that had not seen it.
    """
    margin = float(gate_cfg.get("min_lift_over_popularity", 0.0))
    tolerance = float(gate_cfg.get("max_drop_vs_current", 0.1))
    kind = "next_best" if "next_best" in metrics else ("basket" if "basket" in metrics else None)
    if kind is None:
        return {"passed": False, "reason": "no evaluation queries in the holdout: too little data"}
    metric = f"{PRIMARY[kind]}@{k}"
    ours, base = metrics[kind][metric], pop_metrics[kind][metric]
    passed = ours >= base * (1 + margin) and ours > 0
    reason = (f"{kind} {metric} {ours:.4f} vs popularity {base:.4f} "
              f"(needs at least +{margin:.0%})")
    out = {"protocol": kind, "metric": metric, "value": ours, "popularity": base,
           "min_lift": margin}
    fresh_new = ((fresh or {}).get("new") or {}).get(kind, {})
    fresh_cur = ((fresh or {}).get("current") or {}).get(kind, {})
    if fresh_new.get("queries", 0) >= MIN_FRESH_QUERIES and metric in fresh_cur:
        mine, theirs = float(fresh_new[metric]), float(fresh_cur[metric])
        out |= {"current_version": current.get("version"), "current_value": theirs,
                "value_on_same_queries": mine, "same_queries": int(fresh_new["queries"]),
                "compared_on": "new holdout orders after the current version's data",
                "max_drop_vs_current": tolerance}
        if mine < theirs * (1 - tolerance):
            passed = False
        reason += (f"; on the {fresh_new['queries']} holdout queries newer than the current "
                   f"version's data: {mine:.4f} vs current version {theirs:.4f} "
                   f"(may drop at most {tolerance:.0%})")
        return {"passed": bool(passed), **out, "reason": reason}
    previous = ((current or {}).get("metrics") or {}).get(kind, {}).get(metric)
    if previous is not None:
        floor = float(previous) * (1 - tolerance)
        out |= {"current_version": current.get("version"), "current_value": float(previous),
                "compared_on": "the current version's stored metrics (no newer holdout orders)",
                "max_drop_vs_current": tolerance}
        if ours < floor:
            passed = False
        reason += (f"; current version {float(previous):.4f} on its own holdout "
                   f"(may drop at most {tolerance:.0%})")
    return {"passed": bool(passed), **out, "reason": reason}
