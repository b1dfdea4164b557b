"""The training pipeline behind ``xsell train``: read, split, fit, evaluate, gate, publish.

1. Read orders (and catalog) with the data report.
2. Split: the last 15% of orders in time (random orders without timestamps).
3. Fit popularity, co-purchase and ALS on the training period.
4. Evaluate on the holdout; pick per query kind the blend weight of ALS vs
   co-purchase that scores best (automatic selection, no hand tuning).
5. Gate: publish only if the chosen models beat popularity by a margin.
6. Refit on all data (ALS warm-started from step 3) and write a version.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from datetime import datetime, timezone

from recsys import __version__
from recsys.artifacts import VersionWriter, clean_temporary, current_version, set_current
from recsys.data import ItemExclusion, read_catalog, read_orders
from recsys.evaluation import (PRIMARY, PopularityScorer, build_eval_data, evaluate,
                               evaluate_variants, split, split_interactions)
from recsys.models import ALSModel, CoPurchaseModel, PopularityModel
from recsys.models.substitutes import SubstituteModel
from recsys.recommender import DEFAULT_BLEND, Recommender, _rows_matrix
from recsys.rules import build_item_meta

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


def fit_models(inter, config: dict, progress_factory, warm_start: ALSModel | None = None,
               als_iterations: int | None = None):
    """Fit popularity, co-purchase and ALS on one set of interactions."""
    customer_items = inter.customer_items()
    order_items = None if inter.customer_is_order else inter.order_items()
    popularity = PopularityModel().fit(customer_items)
    bar = progress_factory("co-purchase", customer_items.shape[1])
    copurchase = CoPurchaseModel(**config["copurchase"]).fit(customer_items, order_items,
                                                             progress=bar)
    bar.close()
    als = ALSModel(**config["als"])
    iterations = als_iterations or als.iterations
    bar = progress_factory("ALS", iterations)
    als.fit(customer_items, warm_start=warm_start, iterations=iterations, progress=bar)
    bar.close()
    return customer_items, popularity, copurchase, als


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


class BlendScorer:
    """Scores every ALS weight of ``grid`` from one computation of the component scores."""

    def __init__(self, rec: Recommender, grid: list[float]):
        self.rec = rec
        self.grid = grid

    def _topk_all(self, parts, n, exclude, k):
        return {w: self.rec.top_k(self.rec.combine(parts, {"copurchase": 1.0 - w, "als": w}, n),
                                  k, exclude=exclude)
                for w in self.grid}

    def next_best(self, customer_idx, histories, k):
        return self._topk_all(self.rec.customer_parts(customer_idx, ("copurchase", "als")),
                              len(customer_idx), histories, k)

    def item_query(self, kind, query_lists, k):
        parts = self.rec.item_parts(kind, query_lists, ("copurchase", "als"))
        return self._topk_all(parts, len(query_lists),
                              _rows_matrix(query_lists, len(self.rec.items)), k)


def evaluate_blends(rec: Recommender, data, grid: list[float], k: int) -> dict[float, dict]:
    """Holdout metrics for every ALS weight of ``grid``."""
    return evaluate_variants(BlendScorer(rec, grid), data, k)


def choose_blend(results: dict[float, dict], k: int) -> tuple[dict, dict]:
    """Per query kind, the weight with the best primary metric (ties: fewer ALS)."""
    blend = {kind: dict(weights) for kind, weights in DEFAULT_BLEND.items()}
    chosen_metrics: dict = {}
    for kind, metric in PRIMARY.items():
        scored = [(res[kind][f"{metric}@{k}"], -w, w) for w, res in results.items() if kind in res]
        if not scored:
            continue
        _, _, best = max(scored)
        blend[kind] = {"copurchase": round(1.0 - best, 4), "als": round(best, 4)}
        chosen_metrics[kind] = results[best][kind]
    return blend, chosen_metrics


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

    with timer.stage("split"):
        s = split(inter, test_fraction=train_cfg["test_fraction"])
        train_part, test_part = split_interactions(inter, s)
        data = build_eval_data(train_part, test_part, max_queries=train_cfg["max_eval_queries"])

    total_iterations = int(config["als"]["iterations"])
    holdout_iterations = min(total_iterations, int(train_cfg["holdout_als_iterations"]))
    with timer.stage("fit_holdout"):
        hist_tr, pop_tr, cp_tr, als_tr = fit_models(train_part, config, progress_factory,
                                                    als_iterations=holdout_iterations)
        pause_for_tests("fit")

    with timer.stage("evaluate"):
        meta_tr = build_item_meta(inter.items, None, None)
        rec_tr = Recommender(inter.items, inter.customers, hist_tr, pop_tr, cp_tr, als_tr, meta_tr)
        grid = [float(w) for w in train_cfg["blend_grid"]]
        results = evaluate_blends(rec_tr, data, grid, k)
        blend, metrics = choose_blend(results, k)
        pop_metrics = evaluate(PopularityScorer(pop_tr.counts_, rec_tr.known_items), data, k)

    gate = _gate(metrics, pop_metrics, config["gate"], k)

    with timer.stage("fit_full"):
        if train_cfg.get("refit", True):
            hist, pop, cp, als = fit_models(
                inter, config, progress_factory, warm_start=als_tr,
                als_iterations=max(1, total_iterations - holdout_iterations))
        else:
            hist, pop, cp, als = hist_tr, pop_tr, cp_tr, als_tr

    with timer.stage("write"):
        meta = build_item_meta(inter.items, cat, inter.item_prices())
    with timer.stage("fit_substitutes"):
        subs, rules = fit_substitutes(inter, hist, pop, als, meta, config)
    with timer.stage("write"):
        rec = Recommender(inter.items, inter.customers, hist, pop, cp, als, meta, blend=blend,
                          substitutes=subs, rules=rules)
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
            },
            "parameters": {"copurchase": config["copurchase"], "als": config["als"],
                           "train": train_cfg, "substitutes": _model_params(config["substitutes"]),
                           "floor": config["floor"]},
            "blend": blend,
            "metrics": metrics,
            "baselines": {"popularity": pop_metrics},
            "blend_search": {str(w): r for w, r in results.items()},
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


def _gate(metrics: dict, pop_metrics: dict, gate_cfg: dict, k: int) -> dict:
    """Publish only if the primary protocol beats popularity by the configured margin."""
    margin = float(gate_cfg.get("min_lift_over_popularity", 0.0))
    kind = "next_best" if "next_best" in metrics else ("basket" if "basket" in metrics else None)
    if kind is None:
        return {"passed": False, "reason": "no evaluation queries in the holdout: too little data"}
    metric = f"{PRIMARY[kind]}@{k}"
    ours, base = metrics[kind][metric], pop_metrics[kind][metric]
    passed = ours >= base * (1 + margin) and ours > 0
    reason = (f"{kind} {metric} {ours:.4f} vs popularity {base:.4f} "
              f"(needs at least +{margin:.0%})")
    return {"passed": bool(passed), "protocol": kind, "metric": metric, "value": ours,
            "popularity": base, "min_lift": margin, "reason": reason}

