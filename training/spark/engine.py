"""``xsell train --engine spark``: the local pipeline's steps with Spark doing the heavy ones.

:class:`SparkEngine` plugs into :func:`training.train.train` (``read`` and
``fit_product``). What runs where:

- Spark: reading and validating the lines (the data report), vocabularies,
  the temporal split, the customer x item counts, co-purchase pair counts
  and top-k, ALS (MLlib), EASE's Gram matrices, the basket co-counts of the
  substitutes, and the holdout's candidate queries;
- the driver: the holdout scoring of every blend, on the seeded sample of
  ``train.max_eval_queries`` queries per kind the local engine draws (the
  same queries: :func:`recsys.evaluation.sample_eval_data`), EASE's dense
  inverses, the substitutes, the gate and the version (the local code).

Also as the local engine: ``train.recency_half_lives`` (the ages of the history
pairs taken in Spark, :func:`models.last_purchase_age`) and the gate's
comparison with the current version on the holdout orders it never saw (the
fresh queries drawn in Spark, the scoring on the driver).

Not carried over (said so, not dropped silently): ALS warm starts (the final
ALS runs all ``als.iterations``).
"""

from __future__ import annotations

import json
import logging
import math
import os

import numpy as np
import scipy.sparse as sp

from recsys.data import read_catalog
from recsys.evaluation import random_test_orders, sample_eval_data
from recsys.exceptions import ConfigError
from recsys.models import EASEByKind, PopularityModel, RecencyWeights
from recsys.period import TrainingPeriod
from recsys.recommender import Recommender
from recsys.rules import build_item_meta
from training import selection
from training.blend_search import (
    choose_als_alpha,
    choose_recency,
    evaluate_blends,
    fit_ease,
    has_weights,
)
from training.settings import FittedModels
from training.train import (
    FittedProduct,
    Timer,
    _no_checkpoint,
    _null_progress_factory,
)

from . import models
from .frames import collect_arrays, local_frame, to_csr
from .reader import read_frame, read_orders_spark
from .session import spark_errors, start_session

log = logging.getLogger(__name__)


class _Period:
    """One period's lines in Spark, with the flags the local helpers read."""

    def __init__(self, lines, timestamp, customer_is_order: bool):
        self.lines = lines
        self.timestamp = timestamp
        self.customer_is_order = customer_is_order


class _SparkPeriod(TrainingPeriod):
    """A :class:`TrainingPeriod` whose lines stay in Spark: the recency ages come from there."""

    @property
    def ages(self) -> sp.csr_matrix | None:
        with self._lock:
            if not self._ages_done:
                self._ages = None if self.inter.timestamp is None else \
                    models.last_purchase_age(self.inter.lines, self.customer_items)
                self._ages_done = True
            return self._ages


class SparkSplit:
    """The split as the manifest records it; the line masks stay in Spark."""

    def __init__(self, method: str, cutoff: int | None, train_lines: int, test_lines: int):
        self.method = method
        self.cutoff = cutoff
        # One-element arrays: the manifest sums them (lines on each side).
        self.train = np.array([train_lines])
        self.test = np.array([test_lines])


class SparkEngine:
    """Spark reading and fitting for :func:`training.train.train`; :meth:`close` stops Spark."""

    def __init__(self, config: dict, master: str | None = None):
        self.config = config
        self.master = master
        self.spark = None
        self.owned = False
        # Where the engine's time goes, finer than train()'s stages (bench/spark_bench.py).
        self.steps = Timer()
        # The split's lines, held until close(): the gate draws its fresh queries from them.
        self._held: list = []

    def session(self):
        if self.spark is None:
            from pyspark.sql import SparkSession

            # A session that was running already (a notebook, a test) is not ours to stop.
            self.owned = SparkSession.getActiveSession() is None
            self.spark = start_session(self.config, self.master)
        return self.spark

    def report(self) -> dict:
        """The engine's step times and what the driver collected, largest first."""
        from .frames import COLLECTED

        return {"steps_s": dict(self.steps.stages),
                "collected": [{"what": w, "rows": n, "bytes": b}
                              for w, n, b in sorted(COLLECTED, key=lambda x: -x[2])]}

    def close(self) -> None:
        path = os.environ.get("XSELL_SPARK_REPORT")
        if path:
            with open(path, "w", encoding="utf-8") as fh:
                json.dump(self.report(), fh, indent=1)
        for frame in self._held:
            frame.unpersist()
        self._held = []
        if self.spark is not None:
            try:
                if self.owned:
                    self.spark.stop()
            finally:
                self.spark = None

    # ------------------------------------------------------------ reading
    def read(self, orders, columns, exclude, strict, catalog=None, catalog_columns=None,
             orders_query=None, catalog_query=None):
        if orders_query or catalog_query:
            raise ConfigError("--orders-query/--catalog-query read a database: use --engine "
                              "local for that, or export the tables to Parquet for Spark")
        with self.steps.stage("start Spark"):
            spark = self.session()
        with self.steps.stage("read, validate, index"):
            data, report = read_orders_spark(spark, orders, columns, exclude, strict)
        cat = cat_report = None
        if catalog:
            frame = read_frame(spark, catalog)
            with spark_errors(f"reading {catalog}"):
                table = frame.toArrow() if hasattr(frame, "toArrow") else _arrow(frame)
            # Item metadata is catalogue-sized: validated by the local reader's rules.
            cat, cat_report = read_catalog(catalog, catalog_columns, strict=strict, table=table)
        def basket_pairs(groups=None):
            with self.steps.stage("substitutes' basket pairs"), spark_errors("training"):
                return models.basket_pairs(data.lines, len(data.items), groups)

        data.basket_pairs = basket_pairs
        return data, report, cat, cat_report

    # ------------------------------------------------------------ fitting
    def fit_product(self, data, config: dict, progress_factory=None, timer: Timer | None = None,
                    checkpoint=None) -> FittedProduct:
        """:func:`training.train.fit_product` with the fits in Spark (see the module doc)."""
        with spark_errors("training"):
            return self._fit_product(data, config, progress_factory or _null_progress_factory,
                                     timer or Timer(), checkpoint or _no_checkpoint)

    def _fit_product(self, data, config, progress_factory, timer, checkpoint) -> FittedProduct:
        spark = self.session()
        train_cfg = config["train"]
        k = int(train_cfg["k"])
        n_customers, n_items = len(data.customers), len(data.items)
        step = self.steps.stage
        with timer.stage("split"):
            with step("split"):
                s, train_lines, test_lines = split_lines(
                    data, float(train_cfg["test_fraction"]),
                    int(train_cfg.get("min_holdout_queries", 300)))
            train_part = _Period(train_lines, data.timestamp, data.customer_is_order)
            with step("histories"):
                hist_tr = models.customer_items(train_lines, n_customers, n_items,
                                                "training-period history")
            with step("holdout queries"):
                eval_data = holdout_queries(spark, data, train_lines, test_lines, hist_tr,
                                            train_cfg.get("max_eval_queries"))
            holdout_report = holdout_summary(s, eval_data,
                                             int(train_cfg.get("min_holdout_queries", 300)))
            log.info("holdout: %s", holdout_report)

        total_iterations = int(config["als"]["iterations"])
        holdout_iterations = min(total_iterations, int(train_cfg["holdout_als_iterations"]))
        refit = train_cfg.get("refit", True)
        with timer.stage("fit_holdout"):
            pop_tr = PopularityModel().fit(hist_tr)
            cp_tr, als_tr = self._fit_models(data, train_lines, config, holdout_iterations)
            checkpoint("fit")
            meta_tr = build_item_meta(data.items, None, None)

            def fit_als(alpha):
                with step("ALS (MLlib)"):
                    return models.als(train_lines, n_customers, n_items, config["als"],
                                      holdout_iterations, alpha)

            with step("ALS alphas on the holdout"):
                als_tr, als_alpha = choose_als_alpha(
                    data, config, eval_data, FittedModels(hist_tr, pop_tr, cp_tr, als_tr),
                    meta_tr, k,
                    holdout_iterations, fit_als=fit_als)
            if als_alpha != float(config["als"]["alpha"]):
                config = dict(config, als=dict(config["als"], alpha=als_alpha))

            def make_rec(ease_model):
                return Recommender(data.items, data.customers, hist_tr, pop_tr, cp_tr, als_tr,
                                   meta_tr, ease=ease_model)

            with step("EASE grid on the holdout"):
                ease_tr, ease_chosen = fit_ease(
                    train_part, config, eval_data, make_rec, k, customer_items=hist_tr,
                    gram_fn=self._gram(train_lines, hist_tr))
            # As the local engine: an EASE without a weight is not a candidate.
            ease_tr = {kind: m for kind, m in ease_tr.items() if has_weights(m)}
            ease_chosen = {kind: v for kind, v in ease_chosen.items() if kind in ease_tr}

        with timer.stage("evaluate"):
            rec_tr = make_rec(ease_tr)
            levels = [float(w) for w in train_cfg["blend_grid"]]
            pop_levels = train_cfg.get("popularity_grid", [0.0])
            results = evaluate_blends(rec_tr, eval_data, levels, k, pop_levels)
            with step("recency half-lives on the holdout"):
                half_life, results = choose_recency(
                    rec_tr, _SparkPeriod(train_part, hist_tr), eval_data, results, levels, k,
                    pop_levels, train_cfg.get("recency_half_lives", []))
            blend, metrics, reasons, pop_metrics = selection.ship(
                rec_tr, results, k, train_cfg, eval_data, pop_tr.counts_)

        ease_settings = {kind: ease_chosen[kind] for kind, w in blend.items()
                         if w.get("ease", 0) > 0 and kind in ease_chosen}
        with timer.stage("fit_full"):
            if refit:
                lines = data.lines
                with step("histories"):
                    hist = models.customer_items(lines, n_customers, n_items, "history")
                cp, als = self._fit_models(data, lines, config, total_iterations)
                fitted = FittedModels(hist, PopularityModel().fit(hist), cp, als)
                ease = {}
                if ease_settings:
                    ease = fit_ease(_Period(lines, data.timestamp, data.customer_is_order),
                                    config, settings_by_kind=ease_settings,
                                    customer_items=hist, gram_fn=self._gram(lines, hist))[0]
            else:
                hist = hist_tr
                fitted = FittedModels(hist_tr, pop_tr, cp_tr, als_tr)
                ease = {kind: ease_tr[kind] for kind in ease_settings}
            recency = None
            if half_life is not None:
                with step("recency ages"):
                    recency = RecencyWeights(half_life).fit(
                        _SparkPeriod(_Period(data.lines if refit else train_lines,
                                             data.timestamp, data.customer_is_order),
                                     hist).ages)
        self._held += [train_lines, test_lines]

        def fresh_holdout(since: int, max_queries):
            """The gate's queries: holdout orders placed after ``since`` (None: none)."""
            from pyspark.sql import functions as F

            with self.steps.stage("gate's fresh holdout"), \
                    spark_errors("comparing with the current version"):
                newer = (test_lines.groupBy("o").agg(F.min("t").alias("ot"))
                         .where(F.col("ot") > F.lit(int(since))).select("o"))
                fresh = test_lines.join(newer, "o")
                n = fresh.count()
                if not n:
                    return None
                return n, holdout_queries(spark, data, train_lines, fresh, hist_tr,
                                          max_queries)

        # Components by registry name, with the settings their parameters record.
        return FittedProduct(components={"popularity": fitted.popularity,
                                         "copurchase": fitted.copurchase, "als": fitted.als,
                                         "ease": EASEByKind(ease), "recency": recency},
                             settings={"als": als_alpha, "ease": ease_settings,
                                       "recency": half_life},
                             blend=blend, metrics=metrics,
                             pop_metrics=pop_metrics, results=results, split=s,
                             holdout_components={"popularity": pop_tr, "copurchase": cp_tr,
                                                 "als": als_tr, "ease": EASEByKind(ease_tr),
                                                 "recency": rec_tr.components.get("recency")},
                             holdout_rec=rec_tr, selection=reasons, holdout=holdout_report,
                             # The substitutes' basket co-counts come from Spark
                             # (data.basket_pairs): the period holds no order rows here.
                             period=TrainingPeriod(data, hist), fresh_holdout=fresh_holdout)

    def _fit_models(self, data, lines, config: dict, iterations: int) -> tuple:
        """(co-purchase, ALS) on ``lines``."""
        with self.steps.stage("co-purchase"):
            cp = models.copurchase(self.spark, lines, len(data.items), data.customer_is_order,
                                   config["copurchase"])
        with self.steps.stage("ALS (MLlib)"):
            als = models.als(lines, len(data.customers), len(data.items), config["als"],
                             iterations)
        return cp, als

    def _gram(self, lines, customer_items: sp.csr_matrix):
        buyers = np.bincount(customer_items.tocsr().indices, minlength=customer_items.shape[1])

        def gram(half_life: float, size_exponent: float, cfg: dict):
            with self.steps.stage("EASE Gram matrices"):
                return models.ease_gram(self.spark, lines, buyers, cfg, half_life,
                                        size_exponent, float(cfg.get("customer_weight", 0.0)))

        return gram


def _arrow(frame):
    import pyarrow as pa

    return pa.Table.from_pandas(frame.toPandas(), preserve_index=False)


def holdout_summary(s: SparkSplit, eval_data, min_queries: int) -> dict:
    """The manifest's holdout report (training/validation.py's keys) of the global cut.

    The local engine's fallbacks when the cut leaves fewer than ``min_queries``
    queries of a kind (leave-last-out, held-out lines grouped into visits,
    line-by-line exports regrouped into visits) are not carried over: the
    report says so instead."""
    nb, n_item = (int(n) for n in eval_data.candidates)  # before the sample, as local
    scheme = "; ".join(s.scheme)
    if n_item < min_queries:
        scheme += (f" ({n_item} item queries, fewer than {min_queries}: the local engine's "
                   "grouping of held-out lines into visits is not available with --engine "
                   "spark)")
    return {"scheme": scheme, "method": s.method, "cutoff": s.cutoff,
            "train_lines": int(s.train.sum()), "test_lines": int(s.test.sum()),
            "next_best_customers": nb, "item_query_baskets": n_item,
            "min_queries": min_queries, "engine": "spark"}


def split_lines(data, test_fraction: float, min_queries: int | None = None):
    """(SparkSplit, training lines, test lines): :func:`recsys.evaluation.split` in Spark.

    Temporal: the last ``test_fraction`` of orders by their earliest line, the
    cutoff the local split computes (the order at position floor(n * (1 - f))).
    Without timestamps: the local engine's seeded draw of 20% of orders, made on the
    driver (one draw per order, in chunks: orders, not lines) and joined to the lines.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    lines = data.lines
    if data.timestamp is not None:
        times = lines.groupBy("o").agg(F.min("t").alias("ot"))
        n = times.count()
        first_test = min(n - 1, int(math.floor(n * (1 - test_fraction))))
        cutoff = times.select("ot").orderBy("ot").offset(first_test).limit(1).collect()[0][0]
        tagged = lines.join(times, "o").withColumn("test", F.col("ot") >= F.lit(int(cutoff)))
        method = "temporal"
    else:
        held_out = random_test_orders(len(data.orders))
        held = local_frame(lines.sparkSession, o=held_out,
                           test=np.ones(len(held_out), dtype=bool))
        tagged = (lines.join(held, "o", "left")
                  .withColumn("test", F.coalesce(F.col("test"), F.lit(False))))
        cutoff, method = None, "random"
    scheme = [f"{method} cut"]
    if min_queries is not None and not data.customer_is_order:
        extra = _last_visits(tagged, data.timestamp is not None, min_queries)
        if extra is not None:
            tagged, note = extra
            method = f"{method}+last-order"
            scheme.append(note)
    tagged = tagged.select("c", "o", "i", "t", "price", "test").persist(
        StorageLevel.MEMORY_AND_DISK)
    counts = {r["test"]: r["n"] for r in tagged.groupBy("test").agg(
        F.count(F.lit(1)).alias("n")).collect()}
    train = tagged.where(~F.col("test")).drop("test")
    test = tagged.where(F.col("test")).drop("test")
    s = SparkSplit(method, None if cutoff is None else int(cutoff), int(counts.get(False, 0)),
                   int(counts.get(True, 0)))
    s.scheme = scheme
    return s, train, test


def _last_visits(tagged, timed: bool, min_queries: int):
    """training/validation.py's leave-last-out step in Spark: (lines re-tagged, note), or
    None when the cut gives ``min_queries`` next-best queries (or no customer qualifies).

    Customers with two or more visits (a day of their orders by the order's earliest
    line; without timestamps, an order), none after the cut, have their last visit held
    out: a seeded sample (the local draw, on the sorted eligible customers) of 20% of
    them but at least ``2 x min_queries``."""
    from pyspark.sql import functions as F

    from training.validation import _DAY, LAST_SHARE

    train = tagged.where(~F.col("test") & (F.col("c") >= 0))
    test = tagged.where(F.col("test") & (F.col("c") >= 0))
    before = train.select("c", "i").distinct()
    new = test.select("c", "i").distinct().join(before, ["c", "i"], "left_anti")
    nb = new.select("c").distinct().join(before.select("c").distinct(), "c").count()
    if nb >= min_queries:
        return None
    visit = F.floor(F.col("ot") / F.lit(_DAY)).cast("long") if timed \
        else F.col("o").cast("long")
    tagged = tagged.withColumn("visit", visit)
    per = (tagged.where(~F.col("test") & (F.col("c") >= 0)).groupBy("c")
           .agg(F.countDistinct("visit").alias("n"), F.max("visit").alias("last"))
           .join(test.select("c").distinct(), "c", "left_anti").where(F.col("n") >= 2))
    got = collect_arrays(per.select("c", "last"), ["c", "last"], "leave-last-out customers")
    order = np.argsort(got["c"], kind="stable")
    eligible, last = got["c"][order].astype(np.int64), got["last"][order].astype(np.int64)
    if not len(eligible):
        return None
    n_eligible = len(eligible)
    want = max(int(LAST_SHARE * n_eligible), 2 * min_queries)
    pick = np.arange(n_eligible)
    if n_eligible > want:
        chosen = np.random.default_rng(0).choice(eligible, want, replace=False)
        pick = np.searchsorted(eligible, chosen)
    spark = tagged.sparkSession
    chosen_df = local_frame(spark, c=eligible[pick].astype(np.int32),
                            last=last[pick].astype(np.int64))
    tagged = (tagged.join(F.broadcast(chosen_df), "c", "left")
              .withColumn("test", F.col("test") | (F.col("visit") == F.col("last")))
              .fillna(False, subset=["test"]).drop("last", "visit"))
    note = (f"the last visit of {len(pick)} of {n_eligible} customers whose visits all "
            f"precede the cut ({nb} next-best queries from the cut alone, fewer than "
            f"{min_queries})")
    return tagged, note


def holdout_queries(spark, data, train, test, hist: sp.csr_matrix, max_queries):
    """The holdout's :class:`recsys.evaluation.EvalData`: the candidates counted in Spark,
    only the sampled queries fetched (the local engine's draw, query for query)."""
    from pyspark.sql import functions as F

    n_items = hist.shape[1]
    active = new = None
    if not data.customer_is_order:
        before = train.where(F.col("c") >= 0).select("c", "i").distinct()
        after = test.where(F.col("c") >= 0).select("c", "i").distinct()
        new = after.join(before, ["c", "i"], "left_anti")
        with_history = before.select("c").distinct()
        got = collect_arrays(new.select("c").distinct().join(with_history, "c"), ["c"],
                             "next-best candidate customers")
        active = np.sort(got["c"].astype(np.int64))

    def new_rows(customers: np.ndarray) -> sp.csr_matrix:
        chosen = local_frame(spark, c=np.asarray(customers, dtype=np.int32),
                             row=np.arange(len(customers), dtype=np.int32))
        got = collect_arrays(new.join(F.broadcast(chosen), "c").withColumn("v", F.lit(1.0)),
                             ["row", "i", "v"], "next-best truths (sampled)")
        return to_csr(got, "row", "i", "v", (len(customers), n_items), np.float32)

    baskets = test.select("o", "i").distinct()
    sizes = collect_arrays(baskets.groupBy("o").agg(F.count(F.lit(1)).alias("n"))
                           .where(F.col("n") >= 2), ["o", "n"], "test order sizes")
    order = np.argsort(sizes["o"], kind="stable")
    rows, row_sizes = sizes["o"][order].astype(np.int64), sizes["n"][order].astype(np.int64)

    def order_items(chosen: np.ndarray) -> list[np.ndarray]:
        if not len(chosen):
            return []
        wanted = local_frame(spark, o=np.asarray(chosen, dtype=np.int64))
        got = collect_arrays(baskets.join(F.broadcast(wanted), "o"), ["o", "i"],
                             "basket queries (sampled)")
        o, i = got["o"].astype(np.int64), got["i"].astype(np.int64)
        by = np.lexsort((i, o))
        o, i = o[by], i[by]
        starts = np.searchsorted(o, chosen)
        ends = np.searchsorted(o, chosen, side="right")
        return [i[a:b] for a, b in zip(starts, ends, strict=True)]

    return sample_eval_data(hist, active, new_rows, rows, row_sizes, order_items, seed=0,
                            max_queries=max_queries)
