"""The training pipeline behind ``xsell train``: read, split, fit, evaluate, gate, publish.

1. Read orders (and catalog) with the data report.
2. Split: the last 15% of orders in time (random orders without timestamps).
3. Fit every component of :data:`recsys.models.REGISTRY` on the training
   period through its contract (popularity, co-purchase, ALS, EASE), each
   choosing its own settings on the holdout (ALS's alpha, EASE's setting per
   query kind).
4. Evaluate on the holdout; pick per query kind the blend of the fitted
   components, each blend also with a popularity prior of a few weights
   (automatic selection, no hand tuning; recency is chosen with it).
5. Gate: publish only if the chosen models beat popularity by a margin and do
   not fall too far below the current version's stored metrics.
6. Refit on all data (ALS warm-started from step 3), fit the components of the
   shipped version only (substitutes) and write a version.

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
from recsys.models import REGISTRY, ALSModel, CoPurchaseModel, PopularityModel
from recsys.models.base import FULL, FitContext, no_progress
from recsys.period import TrainingPeriod
from recsys.purchase_dates import ARRAY as PURCHASE_DAYS
from recsys.purchase_dates import last_purchase_days
from recsys.recommender import Recommender
from recsys.rules import build_item_meta
from training import selection
from training.blend_search import (  # noqa: F401 (training.tune and tests import these here)
    Searches,
    choose_als_alpha,
    choose_blend,
    evaluate_blends,
    fit_ease,
)
from training.config import check_config
from training.first_run import enough_to_evaluate, first_run_choice
from training.gate import _current_manifest, _gate, compare_with_current
from training.settings import FittedModels
from training.validation import as_visits, holdout_split

log = logging.getLogger(__name__)


# A progress-bar factory that shows nothing (the Spark engine and the tests use it).
_null_progress_factory = no_progress


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


def fit_models(period, config: dict, progress_factory=None, als_iterations: int | None = None,
               customer_items=None) -> FittedModels:
    """Popularity, co-purchase and ALS (``als_iterations``; default ``als.iterations``) on
    one training period (a :class:`~recsys.period.TrainingPeriod` or its interactions;
    ``customer_items``: its customer x item matrix when the caller has it): the models a
    holdout study starts from (training/tune.py)."""
    period = TrainingPeriod.of(period, customer_items)
    ctx = FitContext(period, config, progress=progress_factory or no_progress)
    als = ALSModel(**config["als"])
    iterations = als_iterations or als.iterations
    bar = ctx.progress("ALS", iterations)
    als.fit(period.customer_items, iterations=iterations, progress=bar)
    bar.close()
    return FittedModels(period.customer_items, PopularityModel.fit_period(ctx),
                        CoPurchaseModel.fit_period(ctx), als)


def serving_rules(config: dict) -> dict:
    """The serving rules a version stores: the relevance floor and the price bands."""
    cfg = config["substitutes"]
    return {"floor": dict(config["floor"]),
            "upsell_band": [float(x) for x in cfg["upsell_band"]],
            "downsell_band": [float(x) for x in cfg["downsell_band"]]}


def _fitted(components: dict) -> dict:
    """``components`` without those that are None or learned nothing."""
    return {name: c for name, c in components.items() if c is not None and c.fitted}


@dataclass
class FittedProduct:
    """The product's components refitted on all given data, with the blend chosen on its
    holdout.

    ``components``: by registry name, fitted on ``period`` (all the data; the training
    period when ``train.refit`` is off); ``settings``: what each component's holdout
    search chose, as the shipped blend uses it (ALS's alpha, EASE's setting per kind,
    the recency half-life, ...): :meth:`Component.parameters` records it."""

    components: dict
    settings: dict
    blend: dict
    metrics: dict
    pop_metrics: dict
    results: dict
    split: object
    # The components fitted on the holdout's training period and the recommender of them.
    holdout_components: dict = field(repr=False, default_factory=dict)
    holdout_rec: Recommender | None = field(repr=False, default=None)
    # Why each kind's blend won (training/selection.py): queries, candidates, the bound.
    selection: dict = field(default_factory=dict)
    # The holdout's scheme and query counts (training/validation.py).
    holdout: dict = field(default_factory=dict)
    # The matrices the components were fitted on (the shipped-only ones are fitted on them).
    period: TrainingPeriod | None = field(repr=False, default=None)
    # The gate's fresh holdout from another engine (training/spark):
    # ``fresh_holdout(since, max_queries)`` -> (fresh lines, EvalData) of the holdout
    # orders placed after ``since``, or None; without it the gate builds them from the lines.
    fresh_holdout: object = field(repr=False, default=None)

    def __post_init__(self):
        self.components = _fitted(self.components)
        self.holdout_components = _fitted(self.holdout_components)

    @property
    def history(self):
        """The customer x item counts of the shipped version."""
        return self.period.customer_items

    # The components and settings by their old names (evaluate, the tests).
    @property
    def models(self) -> FittedModels:
        c = self.components
        return FittedModels(self.history, c["popularity"], c.get("copurchase"), c.get("als"))

    @property
    def ease(self) -> dict:
        return dict(self.components["ease"].models) if "ease" in self.components else {}

    @property
    def ease_settings(self) -> dict:
        return self.settings.get("ease") or {}

    @property
    def als_alpha(self) -> float | None:
        return self.settings.get("als")

    @property
    def half_life(self) -> float | None:
        return self.settings.get("recency")

    @property
    def history_decay(self):
        recency = self.components.get("recency")
        return None if recency is None else recency.decay_

    def recommender(self, inter, meta, **kwargs) -> Recommender:
        """The shippable recommender over ``inter``'s vocabularies with ``meta``."""
        return recommender_of(inter, self.history, self.components, meta,
                              blend=self.blend, **kwargs)


def recommender_of(inter, history, components: dict, meta, **kwargs) -> Recommender:
    """A :class:`Recommender` of ``components`` (by registry name) over ``inter``'s
    vocabularies."""
    return Recommender(inter.items, inter.customers, history, components["popularity"], None,
                       None, meta, components={name: c for name, c in components.items()
                                               if name != "popularity"}, **kwargs)


def fit_product(inter, config: dict, progress_factory=None, timer: Timer | None = None,
                checkpoint=None) -> FittedProduct:
    """Split ``inter``, fit on its past, choose the blend on its holdout, refit on all of it.

    ``xsell train`` calls this on all data; ``xsell evaluate`` calls it on the
    training period only, so the product's own choices never see the test period.

    Every component of :data:`recsys.models.REGISTRY` is fitted through its contract
    (``fit_period``, ``search``, ``search_blend``; recsys/models/base.py), in registry
    order: on the holdout's training period first (a plain fit, then its search), the
    blend search, then on all data with the settings chosen. Components whose fit on
    all data depends on no holdout choice (``holdout_free``) are fitted on the second
    core meanwhile. Those fitted only for the shipped version (``fit_stage == "ship"``)
    are :func:`train`'s.
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
    refit = train_cfg.get("refit", True)
    trained = {name: cls for name, cls in REGISTRY.items() if cls.fit_stage != "ship"}
    search = Searches(inter, data, k, build_item_meta(inter.items, None, None))

    def on_holdout(name: str, holdout: dict) -> FitContext:
        """The context of ``name`` on the holdout: the components before it."""
        before = list(trained)[:list(trained).index(name)]
        return FitContext(period_tr, config, {n: holdout[n] for n in before if n in holdout},
                          search=search, progress=progress_factory)

    def fit_free() -> dict:
        """The holdout-free components on all data (run on the second core)."""
        out: dict = {}
        for name, cls in trained.items():
            if cls.holdout_free:
                out[name] = cls.fit_period(FitContext(period, config, _fitted(out), stage=FULL,
                                                      progress=progress_factory))
        return out

    holdout, settings = {}, {}
    with ThreadPoolExecutor(max_workers=1) as background:
        with timer.stage("fit_holdout"):
            for name, cls in trained.items():
                if cls.fit_stage == "holdout" and not cls.search_fits:
                    holdout[name] = cls.fit_period(on_holdout(name, holdout))
            checkpoint("fit")
        # The holdout-free components of all data (popularity, co-purchase) are fitted on
        # the second core while the searches and the holdout evaluation (single-threaded
        # numpy) run here. ALS, which uses every core, is not overlapped.
        free = background.submit(fit_free) if refit else None

        with timer.stage("fit_holdout"):
            for name, cls in trained.items():
                if cls.fit_stage == "holdout":
                    holdout[name], settings[name] = cls.search(on_holdout(name, holdout),
                                                               holdout.get(name))
                    holdout = _fitted(holdout)

        with timer.stage("evaluate"):
            rec_tr = search.recommender(FitContext(period_tr, config, holdout))
            levels = [float(w) for w in train_cfg["blend_grid"]]
            pop_levels = train_cfg.get("popularity_grid", [0.0])
            results = evaluate_blends(rec_tr, data, levels, k, pop_levels)
            for name, cls in trained.items():
                if cls.fit_stage == "blend":
                    settings[name], results = cls.search_blend(on_holdout(name, holdout),
                                                               rec_tr, results)
                    holdout[name] = rec_tr.components.get(name)
            holdout = _fitted(holdout)
            # The blend search is exact (training/blend_search.py): the chosen blend's
            # holdout metrics are what the shipped recommender answers.
            blend, metrics, reasons, pop_metrics = selection.ship(
                rec_tr, results, k, train_cfg, data, holdout["popularity"].counts_)

        settings = {name: cls.shipped_setting(settings.get(name), blend)
                    for name, cls in trained.items()}
        with timer.stage("fit_full"):
            if refit:
                done = free.result()
                components: dict = {}
                for name, cls in trained.items():
                    components[name] = done[name] if name in done else cls.fit_period(
                        FitContext(period, config, _fitted(components), stage=FULL,
                                   setting=settings[name], previous=holdout.get(name),
                                   blend=blend, search=Searches(inter, k=k),
                                   progress=progress_factory))
            else:
                period = period_tr
                components = {name: c.reuse(settings.get(name)) for name, c in holdout.items()}
    return FittedProduct(components=components, settings=settings, blend=blend,
                         metrics=metrics, pop_metrics=pop_metrics, results=results, split=s,
                         holdout_components=holdout, holdout_rec=rec_tr,
                         selection=reasons, holdout=holdout_report, period=period)


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
    check_config(config)
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
    current = _current_manifest(models_dir)
    with timer.stage("evaluate"):
        fresh = compare_with_current(inter, product, models_dir, current, config, k)
    gate = enough_to_evaluate(_gate(metrics, pop_metrics, config["gate"], k, current, fresh),
                              metrics)
    gate, blend, metrics = first_run_choice(gate, current, blend, metrics, pop_metrics)

    with timer.stage("write"):
        meta = build_item_meta(inter.items, cat, inter.item_prices())
    components = dict(product.components)
    with timer.stage("fit_substitutes"):  # the components fitted for the shipped version only
        for name, cls in REGISTRY.items():
            if cls.fit_stage == "ship":
                components[name] = cls.fit_period(FitContext(
                    product.period, config, _fitted(components), stage=FULL, meta=meta,
                    progress=progress_factory))
    with timer.stage("write"):
        rec = recommender_of(inter, product.history, _fitted(components), meta, blend=blend,
                             rules=serving_rules(config))
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
            # Each component's settings as it records them (what its load reads back).
            "parameters": {**_parameters(config, product.settings),
                           "train": train_cfg, "floor": config["floor"]},
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


def _parameters(config: dict, settings: dict) -> dict:
    """The manifest's parameters of every component that records some."""
    out = {}
    for name, cls in REGISTRY.items():
        section = config[cls.config_section] if cls.config_section else {}
        recorded = cls.parameters(section, settings.get(name))
        if recorded is not None:
            out[name] = recorded
    return out
