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

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone

from recsys import __version__, ann
from recsys.artifacts import (
    VersionWriter,
    clean_temporary,
    set_current,
)
from recsys.data import ItemExclusion, read_catalog, read_orders
from recsys.evaluation import (
    build_eval_data,
    split_interactions,
)
from recsys.models import ALSModel, CoPurchaseModel, PopularityModel
from recsys.models.recency import decay_weights
from recsys.models.substitutes import SubstituteModel
from recsys.period import TrainingPeriod
from recsys.purchase_dates import ARRAY as PURCHASE_DAYS
from recsys.purchase_dates import last_purchase_days
from recsys.recommender import Recommender
from recsys.rules import build_item_meta
from training import selection
from training.blend_search import (  # noqa: F401 (choose_blend: training.tune imports it here)
    choose_als_alpha,
    choose_blend,
    choose_recency,
    evaluate_blends,
    fit_ease,
)
from training.config import (
    check_rules,
    model_params,
)
from training.first_run import enough_to_evaluate, first_run_choice
from training.gate import _current_manifest, _gate, compare_with_current
from training.settings import FittedModels
from training.validation import as_visits, holdout_split

log = logging.getLogger(__name__)


class _NullProgress:
    def __call__(self, n=1):
        pass

    def close(self):
        pass


def _null_progress_factory(desc: str, total: int | None = None):
    return _NullProgress()


def _no_checkpoint(stage: str) -> None:
    pass


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


def fit_neighbours(period, config: dict, progress_factory, customer_items=None):
    """Popularity and co-purchase on one training period (single-threaded work).

    ``period``: a :class:`~recsys.period.TrainingPeriod` (or its interactions);
    ``customer_items``: its customer x item matrix when the caller has it already.
    """
    period = TrainingPeriod.of(period, customer_items)
    customer_items, order_items = period.customer_items, period.order_items
    popularity = PopularityModel().fit(customer_items)
    bar = progress_factory("co-purchase", customer_items.shape[1])
    copurchase = CoPurchaseModel(**config["copurchase"]).fit(customer_items, order_items,
                                                             progress=bar)
    bar.close()
    return customer_items, popularity, copurchase


def fit_models(period, config: dict, progress_factory, warm_start: ALSModel | None = None,
               als_iterations: int | None = None, customer_items=None, neighbours=None):
    """Fit popularity, co-purchase and ALS on one training period.

    ``neighbours``: :func:`fit_neighbours`' result when it was computed already.
    """
    customer_items, popularity, copurchase = (
        neighbours or fit_neighbours(period, config, progress_factory, customer_items))
    als = ALSModel(**config["als"])
    iterations = als_iterations or als.iterations
    bar = progress_factory("ALS", iterations)
    als.fit(customer_items, warm_start=warm_start, iterations=iterations, progress=bar)
    bar.close()
    return FittedModels(customer_items, popularity, copurchase, als)


def fit_substitutes(period, customer_items, popularity, als, meta, config: dict):
    """Upsell/downsell substitutes from the final models, and the serving rules to store."""
    cfg = config["substitutes"]
    period = TrainingPeriod.of(period)
    # The Spark engine's orders stay in Spark: it hands over their basket co-counts.
    baskets = getattr(period.inter, "basket_pairs", None)
    order_items = None if baskets else period.order_items
    candidates = (popularity.counts_ > 0) & meta.recommendable
    subs = SubstituteModel(**model_params(cfg)).fit(
        customer_items, order_items, None if als is None else als.item_factors_,
        meta.category, meta.price, candidates=candidates,
        basket_counts=baskets() if baskets and not period.customer_is_order else None)
    rules = {"floor": dict(config["floor"]),
             "upsell_band": [float(x) for x in cfg["upsell_band"]],
             "downsell_band": [float(x) for x in cfg["downsell_band"]]}
    return subs, rules


@dataclass
class FittedProduct:
    """The product's models refitted on all given data, with the blend chosen on its holdout."""

    models: FittedModels
    blend: dict
    metrics: dict
    pop_metrics: dict
    results: dict
    split: object
    holdout_models: FittedModels | None = field(repr=False, default=None)
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
    # Why each kind's blend won (training/selection.py): queries, candidates, the bound.
    selection: dict = field(default_factory=dict)
    # The holdout's scheme and query counts (training/validation.py).
    holdout: dict = field(default_factory=dict)
    # All the data's matrices (the substitutes are fitted on them).
    period: TrainingPeriod | None = field(repr=False, default=None)
    # The gate's fresh holdout from another engine (training/spark):
    # ``fresh_holdout(since, max_queries)`` -> (fresh lines, EvalData) of the holdout
    # orders placed after ``since``, or None; without it the gate builds them from the lines.
    fresh_holdout: object = field(repr=False, default=None)

    def recommender(self, inter, meta) -> Recommender:
        """The shippable recommender over ``inter``'s vocabularies with ``meta``."""
        hist, pop, cp, als = self.models
        return Recommender(inter.items, inter.customers, hist, pop, cp, als, meta,
                           blend=self.blend, ease=self.ease, history_decay=self.history_decay)


def fit_product(inter, config: dict, progress_factory=None, timer: Timer | None = None,
                checkpoint=None) -> FittedProduct:
    """Split ``inter``, fit on its past, choose the blend on its holdout, refit on all of it.

    ``xsell train`` calls this on all data; ``xsell evaluate`` calls it on the
    training period only, so the product's own choices never see the test period.
    """
    progress_factory = progress_factory or _null_progress_factory
    timer = timer or Timer()
    checkpoint = checkpoint or _no_checkpoint
    train_cfg = config["train"]
    k = int(train_cfg["k"])
    with timer.stage("split"):
        inter, regrouped = as_visits(inter)
        s, baskets, holdout_report = holdout_split(
            inter, train_cfg["test_fraction"], int(train_cfg.get("min_holdout_queries", 300)))
        train_part, test_part = split_interactions(inter, s)
        data = build_eval_data(train_part, test_part, max_queries=train_cfg["max_eval_queries"],
                               baskets=baskets)
        if regrouped:
            holdout_report["orders"] = regrouped
        log.info("holdout: %s", holdout_report)
    # Each period's matrices are built once and shared by every fit and search below.
    period_tr = TrainingPeriod(train_part, data.train_customer_items)
    period = TrainingPeriod(inter)

    total_iterations = int(config["als"]["iterations"])
    holdout_iterations = min(total_iterations, int(train_cfg["holdout_als_iterations"]))
    refit = train_cfg.get("refit", True)
    with ThreadPoolExecutor(max_workers=1) as background:
        with timer.stage("fit_holdout"):
            holdout = fit_models(period_tr, config, progress_factory,
                                 als_iterations=holdout_iterations)
            hist_tr, pop_tr, cp_tr, als_tr = holdout
            checkpoint("fit")
        # The co-purchase model of all data does not depend on the holdout: it is
        # fitted on the second core while EASE and the holdout evaluation (both
        # single-threaded numpy) run here. ALS, which uses every core, is not overlapped.
        full_neighbours = (background.submit(fit_neighbours, period, config, progress_factory)
                           if refit else None)

        with timer.stage("fit_holdout"):
            meta_tr = build_item_meta(inter.items, None, None)
            als_tr, als_alpha = choose_als_alpha(
                inter, config, data, holdout, meta_tr, k,
                holdout_iterations)
            if als_alpha != float(config["als"]["alpha"]):
                config = dict(config, als=dict(config["als"], alpha=als_alpha))

            def make_rec(ease_model):
                return Recommender(inter.items, inter.customers, hist_tr, pop_tr, cp_tr, als_tr,
                                   meta_tr, ease=ease_model)

            ease_tr, ease_chosen = fit_ease(period_tr, config, data, make_rec, k)
            # An EASE without a weight (no basket holds two items) is best-sellers under
            # another name: not a candidate.
            ease_tr = {kind: m for kind, m in ease_tr.items() if _has_weights(m)}
            ease_chosen = {kind: v for kind, v in ease_chosen.items() if kind in ease_tr}

        with timer.stage("evaluate"):
            rec_tr = make_rec(ease_tr)
            levels = [float(w) for w in train_cfg["blend_grid"]]
            pop_levels = train_cfg.get("popularity_grid", [0.0])
            results = evaluate_blends(rec_tr, data, levels, k, pop_levels)
            half_life, results = choose_recency(rec_tr, period_tr, data, results, levels, k,
                                                pop_levels,
                                                train_cfg.get("recency_half_lives", []))
            # The blend search is exact (training/blend_search.py): the chosen blend's
            # holdout metrics are what the shipped recommender answers.
            blend, metrics, reasons, pop_metrics = selection.ship(
                rec_tr, results, k, train_cfg, data, pop_tr.counts_)

        ease_settings = {kind: ease_chosen[kind] for kind, w in blend.items()
                         if w.get("ease", 0) > 0 and kind in ease_chosen}
        with timer.stage("fit_full"):
            if refit:
                models = fit_models(period, config, progress_factory, warm_start=als_tr,
                                    als_iterations=max(1, total_iterations - holdout_iterations),
                                    neighbours=full_neighbours.result())
                ease = {}
                if ease_settings:
                    ease = fit_ease(period, config, settings_by_kind=ease_settings)[0]
            else:
                models = FittedModels(hist_tr, pop_tr, cp_tr, als_tr)
                ease = {kind: ease_tr[kind] for kind in ease_settings}
            decay = None
            if half_life is not None:
                decay = decay_weights((period if refit else period_tr).ages, half_life)
    return FittedProduct(models=models, blend=blend, metrics=metrics, pop_metrics=pop_metrics,
                         results=results, split=s,
                         holdout_models=FittedModels(hist_tr, pop_tr, cp_tr, als_tr),
                         holdout_rec=rec_tr,
                         ease=ease, ease_settings=ease_settings,
                         als_alpha=als_alpha, selection=reasons, holdout=holdout_report,
                         half_life=half_life,
                         history_decay=decay, period=period)


def train(orders: str, models_dir: str, config: dict, catalog: str | None = None,
          columns: dict | None = None, catalog_columns: dict | None = None,
          strict: bool = False, orders_query: str | None = None,
          catalog_query: str | None = None, progress_factory=None,
          on_report=None, checkpoint=None, engine=None) -> dict:
    """Run the whole pipeline; returns the summary (also stored in the manifest).

    ``checkpoint(stage)`` is called as the run reaches "read", "fit", "write" and
    "publish" (the crash tests pause there and kill the process). ``engine``:
    another engine's reader and fitting (training/spark: ``read`` and
    ``fit_product``); the gate, the version and its manifest are this function's."""
    progress_factory = progress_factory or _null_progress_factory
    checkpoint = checkpoint or _no_checkpoint
    timer = Timer()
    train_cfg = config["train"]
    k = int(train_cfg["k"])
    check_rules(config)
    clean_temporary(models_dir)

    with timer.stage("read"):
        exclude = ItemExclusion(config["data"].get("exclude_items"))
        if engine is not None:
            inter, report, cat, cat_report = engine.read(
                orders, columns or config["data"].get("columns"), exclude, strict, catalog,
                catalog_columns or columns, orders_query, catalog_query)
            checkpoint("read")
        else:
            inter, report = read_orders(orders, columns or config["data"].get("columns"),
                                        exclude=exclude, strict=strict, query=orders_query)
            checkpoint("read")
            cat = cat_report = None
            if catalog:
                cat, cat_report = read_catalog(catalog, catalog_columns or columns,
                                               strict=strict, query=catalog_query)
    if on_report:
        on_report(report, cat_report)
    if inter.n_lines == 0:
        from recsys.exceptions import DataError

        raise DataError(f"{report.source}: no usable order lines (see the data report)")

    product = (engine.fit_product if engine is not None else fit_product)(
        inter, config, progress_factory, timer=timer, checkpoint=checkpoint)
    blend, metrics, pop_metrics, results = (product.blend, product.metrics,
                                             product.pop_metrics, product.results)
    hist, pop, cp, als = product.models
    current = _current_manifest(models_dir)
    with timer.stage("evaluate"):
        fresh = compare_with_current(inter, product, models_dir, current, config, k)
    gate = enough_to_evaluate(_gate(metrics, pop_metrics, config["gate"], k, current, fresh),
                              metrics)
    gate, blend, metrics = first_run_choice(gate, current, blend, metrics, pop_metrics)

    with timer.stage("write"):
        meta = build_item_meta(inter.items, cat, inter.item_prices())
    with timer.stage("fit_substitutes"):
        subs, rules = fit_substitutes(product.period, hist, pop, als, meta, config)
    with timer.stage("write"):
        rec = Recommender(inter.items, inter.customers, hist, pop, cp, als, meta, blend=blend,
                          substitutes=subs, rules=rules, ease=product.ease,
                          history_decay=product.history_decay)
        previous = (current or {}).get("version")
        manifest = {
            "xsell_version": __version__,
            "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "data": {
                "orders": report.to_dict(),
                "catalog": cat_report.to_dict() if cat_report else None,
                "customers": len(inter.customers), "orders_count": len(inter.orders),
                "items": len(inter.items), "lines": inter.n_lines,
                "split": product.holdout,
                "time_range": (None if inter.timestamp is None else
                               [int(inter.timestamp.min()), int(inter.timestamp.max())]),
            },
            "parameters": {"copurchase": config["copurchase"],
                           "als": dict(config["als"], alpha=product.als_alpha),
                           "ease": _ease_params(config, product.ease_settings),
                           "recency": {"half_life_days": product.half_life},
                           "train": train_cfg, "substitutes": model_params(config["substitutes"]),
                           "floor": config["floor"]},
            "blend": blend,
            "selection": product.selection,
            "holdout": product.holdout,
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
            # For the dashboard's customer view (the Spark engine's lines stay in Spark).
            days = last_purchase_days(inter, rec.history) if engine is None else None
            if days is not None:
                writer.add_array(PURCHASE_DAYS, days)
            with timer.stage("ann_index"):  # large catalogues only (recsys.ann)
                manifest["ann"] = ann.build_into(writer, rec, config.get("ann"))
            checkpoint("write")
            manifest["timings_s"] = dict(timer.stages)
            version = writer.commit(manifest, make_current=False)
        checkpoint("publish")
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


def _blend_key(weights: tuple) -> str:
    return ",".join(f"{name}={w:g}" for name, w in weights)


def _ease_params(config: dict, settings_by_kind: dict) -> dict:
    """EASE settings for the manifest, with the setting chosen per kind."""
    return dict(config["ease"],
                lambdas_by_kind={kind: s.lam for kind, s in settings_by_kind.items()},
                dropouts_by_kind={kind: s.dropout for kind, s in settings_by_kind.items()},
                half_lives_by_kind={kind: s.half_life for kind, s in settings_by_kind.items()},
                size_exponents_by_kind={kind: s.size_exponent
                                        for kind, s in settings_by_kind.items()},
                popularity_exponents_by_kind={kind: s.popularity_exponent
                                              for kind, s in settings_by_kind.items()})


def _has_weights(model) -> bool:
    """Whether an EASE model has any weight (none when no basket holds two items)."""
    import numpy as np
    import scipy.sparse as sp

    sim = model.similarity_
    return sim is not None and bool(sim.nnz if sp.issparse(sim) else np.any(sim))
