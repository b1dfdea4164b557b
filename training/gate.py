"""The quality gate: publish a new version only if it beats best-sellers and the current one.

The comparison with the current version is made on the holdout orders newer than
anything it was trained on (:func:`compare_with_current`), or on its stored
metrics when there are none.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from recsys.artifacts import current_version, load_version, read_manifest
from recsys.evaluation import PRIMARY, RecommenderScorer, build_eval_data, evaluate
from recsys.exceptions import XsellError
from recsys.recommender import Recommender
from recsys.sparse import rows_matrix

if TYPE_CHECKING:
    from training.train import FittedProduct

log = logging.getLogger(__name__)

# Fewer fresh queries than this and the gate compares stored metrics instead.
MIN_FRESH_QUERIES = 30


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
    if not newest or not product.split.method.startswith("temporal") \
            or product.holdout_rec is None:
        return None
    fresh_holdout = product.fresh_holdout or (
        lambda since, max_queries: _fresh_holdout(inter, product.split, since, max_queries))
    got = fresh_holdout(int(newest[1]), config["train"]["max_eval_queries"])
    if got is None:
        return None
    fresh_lines, data = got
    try:
        current_rec = Recommender.load(load_version(models_dir, current["version"]))
    except (OSError, ValueError, XsellError) as exc:
        log.warning("current version unreadable, gate uses its stored metrics: %s", exc)
        return None
    ours = evaluate(RecommenderScorer(product.holdout_rec), data, k)
    theirs = evaluate(VersionScorer(current_rec, inter.items, inter.customers), data, k)
    return {"since": int(newest[1]), "fresh_lines": int(fresh_lines), "new": ours,
            "current": theirs}


def _fresh_holdout(inter, split, since: int, max_queries):
    """(fresh lines, EvalData) of the holdout orders placed after ``since``; None if none."""
    times = inter.order_times()
    fresh = split.test & (times[inter.order_idx] > since)
    if not fresh.any():
        return None
    return int(fresh.sum()), build_eval_data(inter.subset(split.train), inter.subset(fresh),
                                             max_queries=max_queries)


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
                                         exclude=rows_matrix(lists, len(self.rec.items))))


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
    # The choice's own value, cross-fitted (training.selection.cross_fitted): the chosen
    # blend's holdout score is the best of many on the queries that chose it.
    fair = metrics[kind].get(f"{PRIMARY[kind]}_cross_fitted@{k}")
    judged = ours if fair is None else min(ours, float(fair))
    passed = judged >= base * (1 + margin) and judged > 0
    reason = (f"{kind} {metric} {ours:.4f}"
              + ("" if fair is None else f" (cross-fitted, the choice itself: {fair:.4f})")
              + f" vs popularity {base:.4f} (needs at least +{margin:.0%})")
    out = {"protocol": kind, "metric": metric, "value": ours, "popularity": base,
           "min_lift": margin}
    if fair is not None:
        out["cross_fitted_value"] = float(fair)
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
