"""The local engine's models, fitted in Spark: the same objects and arrays.

- co-purchase (:func:`copurchase`): Spark SQL pair counts over customers
  (each capped to their ``max_items_per_customer`` most-bought items) and
  over baskets (orders above ``max_basket_size`` items left out), the
  similarity of recsys/models/copurchase.py, the top ``k`` per item by a
  window (ties: lower item index), exact supports. Identical neighbours
  and supports to :class:`recsys.models.CoPurchaseModel` on the same lines.
- ALS (:func:`als`): Spark MLlib's implicit ALS on the same confidences
  (``log1p`` of each customer's order count per item, or the raw count),
  ``alpha`` and factors; MLlib weighs a pair 1 + alpha * r where implicit
  weighs it alpha * r, so each rating is handed over as r - 1 / alpha (the
  same confidence). MLlib's solver still regularises by each row's count
  (ALS-WR), so its factors differ from implicit's: the holdout chooses the
  blend on them all the same.
- EASE's Gram matrix (:func:`ease_gram`): X'WX over orders in Spark, with
  the half-life and size weights of recsys/models/ease.py; the dense
  inverse runs on the driver (``ease.max_items``, 6,000 by default: a 288 MB
  Gram matrix, about a minute of LAPACK per setting).
- basket co-counts for upsell/downsell substitutes (:func:`basket_pairs`).
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from recsys.models import ALSModel, CoPurchaseModel
from recsys.models.recency import DAY

from .frames import collect_arrays, factors, local_frame, to_csr
from .session import spark_errors

log = logging.getLogger(__name__)


def customer_counts(lines):
    """(c, i, n): how many distinct orders of customer c hold item i."""
    from pyspark.sql import functions as F

    return (lines.where(F.col("c") >= 0).select("c", "o", "i").distinct()
            .groupBy("c", "i").agg(F.count(F.lit(1)).cast("int").alias("n")))


def customer_items(lines, n_customers: int, n_items: int, what: str) -> sp.csr_matrix:
    """The customers x items count matrix (:meth:`recsys.data.Interactions.customer_items`)."""
    with spark_errors(f"counting {what}"):
        arrays = collect_arrays(customer_counts(lines), ["c", "i", "n"], what)
    return to_csr(arrays, "c", "i", "n", (n_customers, n_items), np.float32)


def _pair_counts(rows, key: str, name: str, same: str | None = None):
    """(i, j, name): rows of ``rows`` (key, i) holding both i and j, i != j (and, with
    ``same``, both of one ``same`` value)."""
    from pyspark.sql import functions as F

    keys = ["k"] + ([same] if same else [])
    a = rows.select(F.col(key).alias("k"), *keys[1:], F.col("i"))
    b = rows.select(F.col(key).alias("k"), *keys[1:], F.col("i").alias("j"))
    return (a.join(b, keys).where(F.col("i") != F.col("j"))
            .groupBy("i", "j").agg(F.count(F.lit(1)).alias(name)))


def last_purchase_age(lines, history: sp.csr_matrix) -> sp.csr_matrix:
    """:func:`recsys.models.recency.last_purchase_age` with the maxima taken in Spark:
    days from each history pair's last purchase to the customer's last purchase, on
    ``history``'s sparsity pattern (checked)."""
    from pyspark.sql import functions as F

    day = F.col("t").cast("double") / F.lit(DAY)
    with spark_errors("computing the recency ages"):
        known = lines.where(F.col("c") >= 0)
        pair = known.groupBy("c", "i").agg(F.max(day).alias("ti"))
        last = known.groupBy("c").agg(F.max(day).alias("tc"))
        got = collect_arrays(pair.join(last, "c").select(
            "c", "i", (F.col("tc") - F.col("ti")).alias("age")), ["c", "i", "age"],
            "recency ages")
    # The local function's float64 days, then float32 ages.
    got["age"] = np.asarray(got["age"], dtype=np.float64).astype(np.float32)
    out = to_csr(got, "c", "i", "age", history.shape, np.float32)
    hist = history.tocsr()
    hist.sort_indices()
    if out.nnz != hist.nnz or not np.array_equal(out.indptr, hist.indptr) or \
            not np.array_equal(out.indices, hist.indices):
        raise ValueError("recency: the order lines do not match the history matrix")
    return out


def copurchase(spark, lines, n_items: int, customer_is_order: bool, params: dict
               ) -> CoPurchaseModel:
    """:class:`CoPurchaseModel` fitted from Spark SQL pair counts (see the module doc)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    model = CoPurchaseModel(**params)
    with spark_errors("counting co-purchases"):
        counts = customer_counts(lines)
        by_count = Window.partitionBy("c").orderBy(F.col("n").desc(), F.col("i").asc())
        capped = (counts.withColumn("r", F.row_number().over(by_count))
                  .where(F.col("r") <= model.max_items_per_customer).select("c", "i"))
        capped = capped.cache()
        pop_parts = [capped.groupBy("i").agg(F.count(F.lit(1)).cast("double").alias("p"))]
        pairs = _pair_counts(capped, "c", "support")
        with_baskets = not customer_is_order and model.basket_weight > 0
        if with_baskets:
            baskets = lines.select("o", "i").distinct()
            small = (baskets.groupBy("o").agg(F.count(F.lit(1)).alias("size"))
                     .where(F.col("size") <= model.max_basket_size).select("o"))
            baskets = baskets.join(small, "o").cache()
            pop_parts.append(baskets.groupBy("i").agg(
                (F.count(F.lit(1)) * F.lit(float(model.basket_weight))).alias("p")))
            pairs = pairs.join(_pair_counts(baskets, "o", "baskets"), ["i", "j"], "full")
            pairs = pairs.fillna(0, ["support", "baskets"])
            co = F.col("support").cast("double") + F.lit(float(model.basket_weight)) * \
                F.col("baskets").cast("double")
        else:
            co = F.col("support").cast("double")
        # Popularity on the driver: the exponents are numpy's, so similarities are bit-equal.
        pop = np.zeros(n_items, dtype=np.float64)
        for part in pop_parts:
            got = collect_arrays(part, ["i", "p"], "co-purchase popularity")
            np.add.at(pop, got["i"].astype(np.int64), got["p"].astype(np.float64))
        left = np.power(np.maximum(pop, 1e-12), 1.0 - model.alpha)
        right = np.power(np.maximum(pop, 1e-12), model.alpha)
        bought = np.flatnonzero(pop > 0)
        sides = local_frame(spark, i=bought.astype(np.int32), left=left[bought],
                            right=right[bought])
        scored = (pairs.where(F.col("support") >= model.min_support)
                  .join(F.broadcast(sides.select("i", "left")), "i")
                  .join(F.broadcast(sides.select(F.col("i").alias("j"), "right")), "j")
                  .withColumn("sim", co / (F.col("left") * F.col("right")
                                           + F.lit(float(model.shrink)))))
        by_sim = Window.partitionBy("i").orderBy(F.col("sim").desc(), F.col("j").asc())
        top = (scored.withColumn("r", F.row_number().over(by_sim))
               .where(F.col("r") <= model.k).select("i", "j", "sim", "support"))
        got = collect_arrays(top, ["i", "j", "sim", "support"], "co-purchase neighbours")
        capped.unpersist()
        if with_baskets:
            baskets.unpersist()
    shape = (n_items, n_items)
    model.similarity_ = to_csr(got, "i", "j", "sim", shape, np.float32)
    model.support_ = to_csr(got, "i", "j", "support", shape, np.int32)
    return model


def basket_pairs(lines, n_items: int, groups: np.ndarray | None = None) -> sp.csr_matrix:
    """Items x items: orders holding both (every order; the substitutes' basket share).

    With ``groups`` (each item's group, -1: none; :func:`recsys.models.substitutes.
    scored_groups`) only pairs within one group are counted and collected: the pairs
    the substitutes score, not every co-bought pair (items^2-bounded)."""
    from pyspark.sql import functions as F

    shape = (n_items, n_items)
    with spark_errors("counting basket pairs"):
        rows, same = lines.select("o", "i").distinct(), None
        if groups is not None:
            scored = np.flatnonzero(np.asarray(groups) >= 0)
            if not len(scored):
                return sp.csr_matrix(shape, dtype=np.float32)
            side = local_frame(lines.sparkSession, i=scored.astype(np.int32),
                               g=np.asarray(groups)[scored].astype(np.int32))
            rows, same = rows.join(F.broadcast(side), "i"), "g"
        got = collect_arrays(_pair_counts(rows, "o", "n", same), ["i", "j", "n"],
                             "basket pairs")
    return to_csr(got, "i", "j", "n", shape, np.float32)


def als(lines, n_customers: int, n_items: int, params: dict, iterations: int,
        alpha: float | None = None) -> ALSModel:
    """:class:`ALSModel` with factors from Spark MLlib's implicit ALS."""
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import functions as F

    from recsys.exceptions import ConfigError

    model = ALSModel(**dict(params, **({} if alpha is None else {"alpha": alpha})))
    if model.confidence not in ("log", "raw"):
        raise ConfigError(f"als.confidence {model.confidence!r} is not available with "
                          f"--engine spark; use log or raw")
    rating = F.log1p(F.col("n")) if model.confidence == "log" else F.col("n").cast("double")
    # MLlib's confidence is 1 + alpha * r, implicit's alpha * r: r - 1 / alpha makes them
    # equal (kept above 0, where MLlib would read a negative preference).
    rating = F.greatest(rating - F.lit(1.0 / float(model.alpha)), F.lit(1e-6))
    with spark_errors("fitting ALS"):
        ratings = customer_counts(lines).select("c", "i", rating.cast("float").alias("r"))
        fitted = ALS(rank=model.factors, maxIter=int(iterations),
                     regParam=float(model.regularization), implicitPrefs=True,
                     alpha=float(model.alpha), seed=int(model.random_state or 0),
                     userCol="c", itemCol="i", ratingCol="r",
                     coldStartStrategy="drop").fit(ratings)
        users = collect_arrays(fitted.userFactors, ["id", "features"], "ALS customer factors")
        items = collect_arrays(fitted.itemFactors, ["id", "features"], "ALS item factors")
    return model.set_factors(factors(users, n_customers, model.factors),
                             factors(items, n_items, model.factors))


def ease_gram(spark, lines, buyers: np.ndarray, cfg: dict, half_life: float,
              size_exponent: float, customer_weight: float = 0.0):
    """What :meth:`recsys.models.ease.EASEModel.gram` returns, the pair sums in Spark:
    (kept items, X'WX over them); or, when ``cfg`` names ``head_items`` (the trainer's
    large-catalogue split), what :meth:`recsys.models.ease_large.LargeEASEModel.gram`
    returns: the head's dense Gram and the tail x head co-counts (tail x tail pairs are
    never formed). None under 2 items. The inverse and the tail solves run on the driver.
    """
    from pyspark.sql import functions as F

    from recsys.models.ease_large import LargeEASEGram, split_head

    min_buyers = int(cfg.get("min_buyers", 2))
    keep = np.flatnonzero(buyers >= min_buyers)
    large = cfg.get("head_items") is not None
    if large:
        head, tail = split_head(buyers, min_buyers, int(cfg["head_items"]))
        if not int(cfg.get("tail_neighbours") or 0):
            tail = tail[:0]
        keep = np.concatenate([head, tail])
        n_head = len(head)
    elif len(keep) > int(cfg.get("max_items", 12000)):
        log.info("EASE: %d items with enough buyers (max %s): not fitted", len(keep),
                 cfg.get("max_items"))
        return None
    else:
        n_head = len(keep)
    if n_head < 2:
        return None
    position = local_frame(spark, i=keep.astype(np.int32),
                           k=np.arange(len(keep), dtype=np.int32))

    def pair_sums(rows, weight, what: str) -> dict:
        """(k, l, g): the sum of ``weight`` over the rows (orders or customers) holding
        kept item k and head item l, k <= l within the head (the Gram is symmetric)."""
        a = rows.select("o", "k", weight.alias("w"))
        b = rows.where(F.col("k") < F.lit(n_head)).select("o", F.col("k").alias("l"))
        pairs = a.join(b, "o").where((F.col("k") >= F.lit(n_head)) | (F.col("k") <= F.col("l")))
        return collect_arrays(pairs.groupBy("k", "l").agg(F.sum("w").alias("g")),
                              ["k", "l", "g"], what)

    with spark_errors("computing EASE's Gram matrix"):
        rows = lines.select("o", "i").distinct().join(F.broadcast(position), "i")
        orders = rows.groupBy("o").agg(F.count(F.lit(1)).cast("double").alias("size"))
        base = F.lit(1.0)
        if half_life > 0:
            times = lines.groupBy("o").agg(F.min("t").alias("t"))
            newest = times.agg(F.max("t")).collect()[0][0]
            decay = F.pow(F.lit(0.5), (F.lit(newest) - F.col("t")) / F.lit(DAY * half_life))
            mean = times.agg(F.avg(decay)).collect()[0][0]
            orders = orders.join(times.select("o", (decay / F.lit(mean)).alias("base")), "o")
            base = F.col("base")
        weight = base
        if size_exponent:
            weight = base * F.pow(F.greatest(F.col("size"), F.lit(1.0)),
                                  F.lit(-float(size_exponent)))
        orders = orders.select("o", "size", base.alias("base"), weight.alias("w"))
        if size_exponent:
            sums = orders.agg(F.sum(F.col("base") * F.col("size")),
                              F.sum(F.col("w") * F.col("size"))).collect()[0]
            if sums[1] > 0:
                orders = orders.withColumn("w", F.col("w") * F.lit(sums[0] / sums[1]))
        parts = [(pair_sums(rows.join(orders.select("o", "w"), "o"), F.col("w"),
                            "EASE Gram matrix"), 1.0)]
        if customer_weight > 0:
            cust = (lines.where(F.col("c") >= 0).select(F.col("c").alias("o"), "i")
                    .distinct().join(F.broadcast(position), "i"))
            parts.append((pair_sums(cust, F.lit(1.0), "EASE customer Gram matrix"),
                          float(customer_weight)))
    g = np.zeros((n_head, n_head), dtype=np.float64)
    tail_parts = []
    for got, scale in parts:
        k, l, v = (got["k"].astype(np.int64), got["l"].astype(np.int64),
                   scale * got["g"].astype(np.float64))
        in_head = k < n_head
        g[k[in_head], l[in_head]] += v[in_head]
        g[l[in_head], k[in_head]] = g[k[in_head], l[in_head]]
        tail_parts.append((k[~in_head] - n_head, l[~in_head], v[~in_head]))
    if not large:
        return keep, g
    t, h, v = (np.concatenate(x) for x in zip(*tail_parts, strict=True))
    g_tail = sp.csr_matrix((v, (t, h)), shape=(len(keep) - n_head, n_head))
    g_tail.sum_duplicates()
    log.info("large EASE (Spark): %d head items (dense), %d tail items", n_head,
             len(keep) - n_head)
    return LargeEASEGram(head, keep[n_head:], g, g_tail, buyers)
