"""``xsell evaluate``: the shipped product against tuned baselines, per EVALUATION.md.

1. Read orders; split: the last 15% of orders in time are the test period
   (a seeded random 20% of orders without timestamps).
2. Carve a validation split out of the training period with the same rule.
3. Each baseline family scores its grid on validation, keeps the best setting
   per protocol, and is refitted on the whole training period.
4. The product is fitted exactly as ``xsell train`` fits it
   (:func:`training.train.fit_product`) but on the training period only, so
   its own blend selection happens on the same validation split.
5. Everything is scored on the test period; the product is compared with the
   best baseline of each protocol by a paired bootstrap over the queries.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from recsys.baselines import EASE_MAX_ITEMS, default_families, fit_data, tune_baseline
from recsys.data import ItemExclusion, read_catalog, read_orders
from recsys.evaluation import (
    PRIMARY,
    RecommenderScorer,
    build_eval_data,
    evaluate,
    paired_bootstrap,
    split,
    split_interactions,
    validation_split,
)
from recsys.exceptions import DataError
from recsys.kinds import KIND
from recsys.rules import build_item_meta

log = logging.getLogger(__name__)

PRODUCT = "xsell (product)"
# The names of an EASE setting's values (training.blend_search.fit_ease), for --json.
EASE_SETTING = ("lambda", "dropout", "half_life_days", "size_exponent", "popularity_exponent")
KIND_LABELS = {kind: KIND[kind].cli for kind in ("next_best", "basket", "also_bought")}
SECONDARY = {"next_best": ("recall", "hr", "map", "coverage"), "basket": ("mrr",),
             "also_bought": ("mrr",)}


def _say(progress, text: str) -> None:
    log.info("%s", text)
    if progress is not None:
        progress(text)


def run_evaluation(orders: str, config: dict, catalog: str | None = None,
                   columns: dict | None = None, k: int = 10, max_queries: int | None = 10000,
                   val_max_queries: int | None = 3000, skip: tuple[str, ...] = (),
                   ease_max_items: int = EASE_MAX_ITEMS, n_boot: int = 1000, progress=None,
                   on_report=None, baseline_cache: str | None = None) -> dict:
    """Run the whole comparison; returns a JSON-able dict (see :func:`format_table`).

    ``baseline_cache``: a JSON file holding the baselines' results (per query
    too) of an earlier run on the same data, split and grids. When it exists
    and matches, the baselines are read from it instead of tuned again (they do
    not depend on the product's settings); otherwise they are tuned and it is
    written. For iterating on the product; the figures are the same either way.
    """
    from training.train import fit_product

    started = time.perf_counter()
    exclude = ItemExclusion(config["data"].get("exclude_items"))
    inter, report = read_orders(orders, columns or config["data"].get("columns"), exclude=exclude)
    cat = cat_report = None
    if catalog:
        cat, cat_report = read_catalog(catalog, columns)
    if on_report:
        on_report(report, cat_report)
    if inter.n_lines == 0:
        raise DataError(f"{orders}: no usable order lines (see the data report)")
    meta = build_item_meta(inter.items, cat, inter.item_prices())

    test_fraction = float(config["train"]["test_fraction"])
    s = split(inter, test_fraction=test_fraction)
    train_part, test_part = split_interactions(inter, s)
    test_data = build_eval_data(train_part, test_part, max_queries=max_queries)
    sv = validation_split(train_part, test_fraction=test_fraction)
    val_train, val_test = split_interactions(train_part, sv)
    val_data = build_eval_data(val_train, val_test, max_queries=val_max_queries)
    if not len(test_data.basket_targets) and not len(test_data.nb_customers):
        raise DataError(f"{orders}: the test period has no evaluation queries (too little data)")

    train_fit = fit_data(train_part, meta.recommendable)
    val_fit = fit_data(val_train, meta.recommendable)

    cache_key = {"orders": orders, "catalog": catalog, "columns": columns,
                 "data": config["data"], "test_fraction": test_fraction, "k": k,
                 "max_queries": max_queries, "val_max_queries": val_max_queries,
                 "skip": sorted(skip), "ease_max_items": ease_max_items,
                 "lines": inter.n_lines, "test_lines": int(s.test.sum()),
                 # 2: results carry the exposure measures (recsys.exposure).
                 "format": 2}
    cached = _read_baseline_cache(baseline_cache, cache_key)
    if cached is not None:
        _say(progress, f"baselines: read from {baseline_cache}")
        models, per_query = cached
    else:
        models = []
        per_query: dict[str, dict] = {}
        for family in default_families(inter.customer_is_order, ease_max_items=ease_max_items,
                                       skip=skip):
            _say(progress, f"baseline {family.name}: tuning {len(family.grid)} setting(s)")
            tuned = tune_baseline(family, val_fit, val_data, train_fit, test_data, k)
            models.append({"name": tuned.name, "kind": "baseline", "results": tuned.results,
                           "settings": tuned.settings, "fit_seconds": tuned.fit_seconds,
                           "tune_seconds": tuned.tune_seconds, "skipped": tuned.skipped,
                           "note": tuned.note})
            per_query[tuned.name] = tuned.per_query
        if baseline_cache:
            _write_baseline_cache(baseline_cache, cache_key, models, per_query)

    _say(progress, "product: fitting as `xsell train` does, on the training period")
    t0 = time.perf_counter()
    product = fit_product(train_part, config)
    fit_seconds = round(time.perf_counter() - t0, 2)
    rec = product.recommender(inter, meta)
    res = evaluate(RecommenderScorer(rec), test_data, k, per_query=True)
    per_query[PRODUCT] = {kind: r.pop("_per_query") for kind, r in res.items()}
    models.append({"name": PRODUCT, "kind": "product", "results": res,
                   "settings": {"blend": product.blend,
                                "recency_half_life_days": product.half_life,
                                "ease": {kind: dict(zip(EASE_SETTING, s, strict=True))
                                         for kind, s in product.ease_settings.items()},
                                "als_alpha": product.als_alpha,
                                "selection": product.selection,
                                "holdout": product.holdout}, "fit_seconds":
                   {kind: fit_seconds for kind in res}, "tune_seconds": 0.0, "skipped": None})

    comparison = compare(models, per_query, k, n_boot)
    return {
        "orders": orders,
        "k": k,
        "data": {
            "report": report.to_dict(),
            "catalog": cat_report.to_dict() if cat_report else None,
            "customers": len(inter.customers), "orders": len(inter.orders),
            "items": len(inter.items), "lines": inter.n_lines,
            "customer_is_order": inter.customer_is_order,
        },
        "split": {"method": s.method, "cutoff": s.cutoff,
                  "train_lines": int(s.train.sum()), "test_lines": int(s.test.sum()),
                  "validation_method": sv.method, "validation_cutoff": sv.cutoff,
                  "max_queries": max_queries, "validation_max_queries": val_max_queries},
        "protocols": {kind: {"queries": r.get("queries"),
                             "unknown_targets": r.get("unknown_targets")}
                      for kind, r in res.items()},
        "models": models,
        "comparison": comparison,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _read_baseline_cache(path: str | None, key: dict):
    """(models, per_query) from ``path`` when it was written for ``key``; else None."""
    import json
    import os

    if not path or not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            stored = json.load(fh)
    except (OSError, ValueError) as exc:
        log.warning("baseline cache %s unreadable (%s): tuning the baselines again", path, exc)
        return None
    if stored.get("key") != jsonable(key):
        log.warning("baseline cache %s is for other data or settings: tuning again", path)
        return None
    per_query = {name: {kind: {m: np.asarray(v) for m, v in metrics.items()}
                        for kind, metrics in kinds.items()}
                 for name, kinds in stored["per_query"].items()}
    return stored["models"], per_query


def _write_baseline_cache(path: str, key: dict, models: list[dict], per_query: dict) -> None:
    import json

    with open(path, "w", encoding="utf-8") as fh:
        json.dump(jsonable({"key": key, "models": models, "per_query": per_query}), fh)


def compare(models: list[dict], per_query: dict, k: int, n_boot: int = 1000) -> dict:
    """Per protocol: the product against the best baseline, with a paired bootstrap."""
    out = {}
    for kind, metric in PRIMARY.items():
        key = f"{metric}@{k}"
        base = [(m["results"][kind][key], m["name"]) for m in models
                if m["kind"] == "baseline" and kind in m["results"]]
        if not base or kind not in per_query.get(PRODUCT, {}):
            continue
        best_value, best = max(base)
        ours = per_query[PRODUCT][kind][metric]
        theirs = per_query[best][kind][metric]
        boot = paired_bootstrap(ours, theirs, n_boot=n_boot)
        out[kind] = {"metric": key, "product": float(ours.mean()), "best_baseline": best,
                     "baseline": best_value, "queries": len(ours),
                     "rel": boot["rel"], "rel_ci": boot["rel_ci"],
                     "diff": boot["diff"], "diff_ci": boot["diff_ci"]}
    return out


def format_table(result: dict) -> str:
    """The comparison as a plain-text table (one row per model)."""
    k = result["k"]
    kinds = [kind for kind in PRIMARY if kind in result["protocols"]]
    cols = []
    for kind in kinds:
        cols.append((kind, f"{PRIMARY[kind]}@{k}"))
        cols.extend((kind, f"{m}@{k}") for m in SECONDARY[kind])
    head1 = f"{'model':<18}" + "".join(f"{KIND_LABELS[kind][:11]:>12}" for kind, _ in cols) \
        + f"{'fit s':>9}"
    head2 = f"{'':<18}" + "".join(f"{m:>12}" for _, m in cols) + f"{'':>9}"
    lines = [head1, head2]
    for m in result["models"]:
        if m.get("skipped"):
            lines.append(f"{m['name']:<18}  skipped: {m['skipped']}")
            continue
        cells = "".join(
            f"{m['results'][kind][metric]:>12.4f}" if kind in m["results"] else f"{'-':>12}"
            for kind, metric in cols)
        fit = max(m["fit_seconds"].values(), default=0.0)
        lines.append(f"{m['name'][:18]:<18}{cells}{fit:>9.1f}")
        if m.get("note"):
            lines.append(f"{'':<18}  {m['note']}")
    lines.append(f"{'queries':<18}" + "".join(
        f"{result['protocols'][kind]['queries']:>12}" for kind, _ in cols))
    lines.append("")
    lines.extend(format_exposure(result))
    for kind, c in result["comparison"].items():
        lo, hi = c["rel_ci"]
        lines.append(
            f"{KIND_LABELS[kind]:<12} {c['metric']}: product {c['product']:.4f} vs best baseline "
            f"{c['best_baseline']} {c['baseline']:.4f}: {c['rel']:+.1%} "
            f"(95% CI {lo:+.1%} .. {hi:+.1%}, {c['queries']} queries)")
    unknown = {kind: p.get("unknown_targets") for kind, p in result["protocols"].items()
               if p.get("unknown_targets") is not None}
    if unknown:
        lines.append("hidden targets unknown to train (cannot be hit): " +
                     ", ".join(f"{KIND_LABELS[kind]} {n}" for kind, n in unknown.items()))
    return "\n".join(lines)


def format_exposure(result: dict) -> list[str]:
    """What users see, per model and kind (recsys.exposure): the most shown item's share
    of the queries' top k, the three best-sellers' shares, coverage, and the primary
    metric on targets outside the most popular 1% of items."""
    k = result["k"]
    kinds = [kind for kind in PRIMARY if kind in result["protocols"]]
    lines = [f"{'exposure':<18}" + "".join(
        f"{KIND_LABELS[kind]:>{EXPOSURE_WIDTH}}" for kind in kinds),
        f"{'':<18}" + "".join(f"{'most  top-3 sellers  cover  tail':>{EXPOSURE_WIDTH}}"
                              for _ in kinds)]
    for m in result["models"]:
        if m.get("skipped"):
            continue
        cells = []
        for kind in kinds:
            r = m["results"].get(kind, {})
            conc = r.get(f"concentration@{k}")
            if conc is None:
                cells.append(f"{'-':>{EXPOSURE_WIDTH}}")
                continue
            shares = "/".join(f"{x:.0%}" for x in r.get(f"best_seller_shares@{k}", []))
            tail = r.get(f"{PRIMARY[kind]}_tail@{k}", 0.0)
            cells.append(f"{conc:>5.1%} {shares:>15} {r.get(f'coverage@{k}', 0):>6.1%} "
                         f"{tail:>6.4f}".rjust(EXPOSURE_WIDTH))
        lines.append(f"{m['name'][:18]:<18}" + "".join(cells))
    for m in result["models"]:
        for kind in kinds:
            r = m.get("results", {}).get(kind, {})
            if f"concentration_all@{k}" in r:  # evidence-gated (training/gating.py)
                lines.append(f"{m['name']} {KIND_LABELS[kind]}: evidence-gated, the figures "
                             f"count claimed slots ({r[f'claimed_share@{k}']:.1%} of all); "
                             f"most shown counting best-seller fills too: "
                             f"{r[f'concentration_all@{k}']:.1%}")
    lines.append("")
    return lines


EXPOSURE_WIDTH = 38


def jsonable(result: dict) -> dict:
    """Tuples and numpy scalars made JSON-friendly (the result is mostly plain already)."""
    import json

    return json.loads(json.dumps(result, default=_default))


def _default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def cli_evaluate(orders: str, config: dict, catalog=None, columns=None, k: int = 10,
                 max_queries: int | None = 10000, skip: tuple[str, ...] = (),
                 ease_max_items: int = EASE_MAX_ITEMS, json_out: str | None = None,
                 report_out: str | None = None,
                 tune_out: str | None = None, on_report=None, echo=None, out=None,
                 baseline_cache: str | None = None) -> dict:
    """What ``xsell evaluate`` does: run, print the table, write JSON / HTML / tuned config."""
    import json

    result = jsonable(run_evaluation(orders, config, catalog=catalog, columns=columns, k=k,
                                     max_queries=max_queries, skip=skip, progress=echo,
                                     ease_max_items=ease_max_items,
                                     on_report=on_report, baseline_cache=baseline_cache))
    (out or print)(format_table(result))
    if json_out:
        with open(json_out, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)
    if report_out:
        from training.report import write_report

        write_report(result, report_out)
    if tune_out:
        from training.tune import tune_to_file

        tune_to_file(orders, config, tune_out, catalog=catalog, columns=columns, k=k,
                     progress=echo)
    return result
