"""Orders read and validated in Spark, with the local reader's data report.

The same rules as :func:`recsys.data.read_orders`, as Spark column
expressions: ids as trimmed strings (``17850.0`` -> ``17850``), the same
rejection reasons in the same order (a row counts once, for its first
failing reason), ``--exclude-items`` applied to the item vocabulary, then
``--strict``. The counts per reason come from one Spark aggregation; the
lines stay in Spark as integer indexes (:class:`SparkOrders`). The driver
receives the item and customer vocabularies (the model holds them), the
report and a few totals.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from recsys.data import (
    _FLOAT_INT_RE,
    _NUMBER_RE,
    _TS_SHAPE_RE,
    ORDER_COLUMNS,
    REQUIRED_ORDER_COLUMNS,
    DataReport,
    ItemExclusion,
    _is_database_url,
    _resolve_columns,
    source_label,
)
from recsys.exceptions import ConfigError, DataError
from recsys.vocab import Vocab

from .frames import collect_arrays, local_frame
from .session import spark_errors

log = logging.getLogger(__name__)

_PARQUET = (".parquet", ".pq")
_CSV = (".csv", ".csv.gz", ".txt", ".tsv", ".tsv.gz")
# Unicode-aware trim, as pyarrow's utf8_trim_whitespace.
_TRIM = r"(?U)^\s+|\s+$"


class _Columns:
    """The one attribute of a table :func:`recsys.data._resolve_columns` reads."""

    def __init__(self, names):
        self.column_names = list(names)


class _Sized:
    """A count standing in for a vocabulary that stays in Spark (orders)."""

    def __init__(self, n: int):
        self.n = int(n)

    def __len__(self) -> int:
        return self.n


@dataclass
class SparkOrders:
    """Validated order lines in Spark and what the driver knows of them.

    ``lines`` has one row per used line: ``c`` (customer index, -1 without a
    customer), ``o`` (order index, the local engine's order vocabulary
    order), ``i`` (item index), ``t`` (epoch seconds, null without
    timestamps) and ``price`` (null where unknown). ``timestamp`` is the
    first and last line time only (the manifest's time range).
    """

    lines: object
    customers: Vocab
    orders: _Sized
    items: Vocab
    n_lines: int
    timestamp: np.ndarray | None
    customer_is_order: bool
    prices: np.ndarray

    def item_prices(self) -> np.ndarray:
        return self.prices


def read_frame(spark, source: str):
    """A Spark DataFrame of a CSV / gzip'd CSV / Parquet path (file or folder, any
    filesystem Spark reads), with the local reader's messages for what cannot be read."""
    source = str(source)
    if _is_database_url(source) and not source.lower().startswith(
            ("hdfs://", "s3://", "s3a://", "s3n://", "gs://", "abfs://", "abfss://", "file://",
             "wasb://", "wasbs://", "viewfs://")):
        raise ConfigError(f"{source_label(source)}: --engine spark reads files (local, HDFS, "
                          f"S3, ...); read a database with --engine local")
    lower = source.lower().rstrip("/")
    local = "://" not in source or lower.startswith("file://")
    path = source[len("file://"):] if lower.startswith("file://") else source
    if local and not os.path.exists(path):
        raise DataError(f"{source}: no such file")
    is_dir = local and os.path.isdir(path)
    if not (lower.endswith(_PARQUET + _CSV) or is_dir):
        raise DataError(
            f"{source}: unknown file type; use .csv, .csv.gz or .parquet, or a database URL")
    if local and not is_dir and os.path.getsize(path) == 0:
        raise DataError(f"{source}: the file is empty (no header line)")
    with spark_errors(f"reading {source}"):
        try:
            if lower.endswith(_CSV):
                df = (spark.read.option("header", True).option("multiLine", True)
                      .option("escape", '"').option("encoding", "UTF-8")
                      .option("sep", "\t" if ".tsv" in lower else ",").csv(source))
            else:
                df = spark.read.parquet(source)
        except Exception as exc:  # noqa: BLE001 - AnalysisException and friends
            if type(exc).__module__.startswith("pyspark"):
                first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
                raise DataError(f"{source}: cannot read the file ({first})") from None
            raise
    # A UTF-8 byte order mark stays on the first header name in some Spark versions.
    if df.columns and df.columns[0].startswith("\ufeff"):
        df = df.withColumnRenamed(df.columns[0], df.columns[0].lstrip("\ufeff"))
    if not df.columns:
        raise DataError(f"{source}: the file is empty (no header line)")
    return df


def _id_strings(df, name: str, integral_flag):
    """The id column as trimmed strings, empty as null (see recsys.data._id_strings)."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    col = F.col(f"`{name}`")
    dtype = df.schema[name].dataType
    if isinstance(dtype, (T.FloatType, T.DoubleType)):
        out = F.when(F.lit(integral_flag), col.cast("long").cast("string")).otherwise(
            col.cast("string"))
        return F.when(F.isnan(col), F.lit(None)).otherwise(out)
    if isinstance(dtype, (T.IntegralType, T.DecimalType)):
        return col.cast("string")
    s = F.regexp_replace(col.cast("string"), _TRIM, "")
    if integral_flag:
        s = F.regexp_replace(s, r"\.0*$", "")
    return F.when(s == "", F.lit(None)).otherwise(s)


def _integral_checks(df, names: list[str]):
    """Per id column, whether every value is integral (floats) or looks like ``123.0``."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    exprs = []
    for name in names:
        col = F.col(f"`{name}`")
        dtype = df.schema[name].dataType
        if isinstance(dtype, (T.FloatType, T.DoubleType)):
            ok = F.when(col.isNull() | F.isnan(col), True).otherwise(col % 1 == 0)
        elif isinstance(dtype, (T.IntegralType, T.DecimalType)):
            exprs.append(F.lit(False).alias(name))
            continue
        else:
            s = F.regexp_replace(col.cast("string"), _TRIM, "")
            ok = F.when(s.isNull(), True).otherwise(s.rlike(_FLOAT_INT_RE))
            # All-null columns: the local reader leaves them alone.
            exprs.append((F.min(ok.cast("int")).eqNullSafe(1) & (F.count(s) > 0)).alias(name))
            continue
        exprs.append(F.min(ok.cast("int")).eqNullSafe(1).alias(name))
    row = df.agg(*exprs).collect()[0]
    return {name: bool(row[name]) for name in names}


def _numbers(df, name: str):
    """(double value or null, present-but-unparsable) as in recsys.data._numbers."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    col = F.col(f"`{name}`")
    if isinstance(df.schema[name].dataType, (T.NumericType,)):
        value = col.cast("double")
        return F.when(F.isnan(value), F.lit(None)).otherwise(value), F.lit(False)
    s = col.cast("string")
    valid = F.coalesce(s.rlike(_NUMBER_RE), F.lit(False))
    value = F.when(valid, F.regexp_replace(s, _TRIM, "").cast("double"))
    return value, s.isNotNull() & ~valid


def _timestamps(df, name: str):
    """(epoch seconds or null, missing, present-but-unparsable) as recsys.data._timestamps."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    col = F.col(f"`{name}`")
    dtype = df.schema[name].dataType
    if isinstance(dtype, (T.TimestampType, T.TimestampNTZType, T.DateType)):
        ts = col.cast("timestamp")
        return F.unix_seconds(ts), col.isNull(), F.lit(False)
    if isinstance(dtype, T.NumericType):
        value, bad = _numbers(df, name)
        return F.floor(value).cast("long"), value.isNull() & ~bad, bad
    s = F.regexp_replace(col.cast("string"), _TRIM, "")
    missing = s.isNull() | (s == "")
    shape_ok = F.coalesce(s.rlike(_TS_SHAPE_RE), F.lit(False))
    parsed = F.when(shape_ok, F.unix_micros(s.cast("timestamp")))
    seconds = F.floor(parsed / F.lit(1_000_000)).cast("long")
    bad = ~missing & (~shape_ok | parsed.isNull())
    return seconds, missing, bad


def read_orders_spark(spark, source: str, columns: dict | None = None,
                      exclude: ItemExclusion | None = None, strict: bool = False
                      ) -> tuple[SparkOrders, DataReport]:
    """Read and validate order lines in Spark; every rejected row counted by reason."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    df = read_frame(spark, source)
    report = DataReport(source=source_label(source))
    cols = _resolve_columns(_Columns(df.columns), report.source, columns or {}, ORDER_COLUMNS,
                            REQUIRED_ORDER_COLUMNS)
    report.unused_columns = [c for c in df.columns if c not in cols.values()]
    customer_is_order = "customer_id" not in cols
    id_keys = [k for k in ("order_id", "item_id", "customer_id") if k in cols]

    with spark_errors(f"validating {source}"):
        integral = _integral_checks(df, [cols[k] for k in id_keys])
        oid = _id_strings(df, cols["order_id"], integral[cols["order_id"]])
        iid = _id_strings(df, cols["item_id"], integral[cols["item_id"]])
        cid = oid if customer_is_order else _id_strings(df, cols["customer_id"],
                                                        integral[cols["customer_id"]])
        checks = [("missing_order_id", oid.isNull()), ("missing_item_id", iid.isNull())]
        if "quantity" in cols:
            qty, bad = _numbers(df, cols["quantity"])
            checks += [("unparsable_quantity", bad),
                       ("non_positive_quantity", F.coalesce(qty, F.lit(1.0)) <= 0)]
        price = F.lit(None).cast("double")
        if "unit_price" in cols:
            price, bad = _numbers(df, cols["unit_price"])
            checks += [("unparsable_unit_price", bad),
                       ("negative_unit_price", F.coalesce(price, F.lit(0.0)) < 0)]
        ts = F.lit(None).cast("long")
        if "timestamp" in cols:
            ts, missing, bad = _timestamps(df, cols["timestamp"])
            checks += [("missing_timestamp", missing), ("unparsable_timestamp", bad)]
        reason = F.lit(None).cast("string")
        for name, failed in reversed(checks):
            reason = F.when(failed, F.lit(name)).otherwise(reason)
        rows = df.select(cid.alias("cid"), oid.alias("oid"), iid.alias("iid"),
                         ts.alias("t"), price.alias("price"), reason.alias("reason"))
        rows = rows.persist(StorageLevel.MEMORY_AND_DISK)

        # Pass 1: the items of the kept rows (the vocabulary, and --exclude-items on it).
        kept = rows.where(F.col("reason").isNull())
        item_ids = np.array([r[0] for r in kept.select("iid").distinct().collect()], dtype=str)
        excluded = np.zeros(len(item_ids), dtype=bool)
        if exclude is not None and len(item_ids):
            excluded = exclude.mask(item_ids)
        items, _ = Vocab.from_unsorted(item_ids[~excluded])
        if excluded.any():
            report.excluded_items = int(excluded.sum())
            bad_items = local_frame(spark, iid=item_ids[excluded]).withColumn("x", F.lit(True))
            rows = rows.join(F.broadcast(bad_items), "iid", "left").select(
                "cid", "oid", "iid", "t", "price",
                F.when(F.col("reason").isNull() & F.col("x"), F.lit("not_a_product"))
                .otherwise(F.col("reason")).alias("reason"))

        # Pass 2: counts per reason, rows without a customer, time range.
        stats = rows.groupBy("reason").agg(
            F.count(F.lit(1)).alias("n"),
            F.sum(F.col("cid").isNull().cast("long")).alias("no_customer"),
            F.min("t").alias("t_min"), F.max("t").alias("t_max")).collect()
    report.rows_read = int(sum(r["n"] for r in stats))
    used = next((r for r in stats if r["reason"] is None), None)
    for r in stats:
        if r["reason"] is not None:
            report.reject(r["reason"], int(r["n"]))
    report.rows_used = int(used["n"]) if used else 0
    if customer_is_order:
        report.notes["no_customer_column_each_order_is_a_customer"] = 1
    elif used and used["no_customer"]:
        report.notes["rows_without_customer_used_for_baskets_only"] = int(used["no_customer"])
    report.check_strict(strict)

    with spark_errors(f"indexing {source}"):
        good = rows.where(F.col("reason").isNull()).drop("reason")
        item_map = local_frame(spark, iid=np.asarray(items.ids, dtype=str),
                               i=np.arange(len(items), dtype=np.int32))
        customers, customer_map = _sorted_index(spark, good.select("cid").where(
            F.col("cid").isNotNull()).distinct(), "cid", "c", collect=True)
        n_orders, order_map = _sorted_index(spark, good.select("oid").distinct(), "oid", "o")
        lines = (good.join(F.broadcast(item_map), "iid")
                 .join(order_map, "oid")
                 .join(customer_map, "cid", "left")
                 .select(F.coalesce(F.col("c"), F.lit(-1)).cast("int").alias("c"),
                         F.col("o").cast("long").alias("o"), "i", "t", "price"))
        lines = lines.persist(StorageLevel.MEMORY_AND_DISK)
        n_lines = lines.count()
        rows.unpersist()
        prices = np.full(len(items), np.nan, dtype=np.float32)
        for r in (lines.where(F.col("price").isNotNull()).groupBy("i")
                  .agg(F.percentile("price", 0.5).alias("p")).collect()):
            prices[r["i"]] = r["p"]
    timestamp = None
    if "timestamp" in cols and used is not None:
        timestamp = np.array([used["t_min"], used["t_max"]], dtype=np.int64)
    orders = SparkOrders(lines=lines, customers=customers, orders=_Sized(n_orders),
                         items=items, n_lines=int(n_lines), timestamp=timestamp,
                         customer_is_order=customer_is_order, prices=prices)
    log.info("read %d lines in Spark: %d customers, %d orders, %d items", n_lines,
             len(customers), n_orders, len(items))
    return orders, report


def _sorted_index(spark, ids, name: str, index: str, collect: bool = False):
    """(Vocab or count, DataFrame of id -> position in sorted order), sorted in Spark.

    Spark orders strings by their UTF-8 bytes, which is code point order:
    numpy's order, so the positions are the local engine's indexes. The sort
    range-partitions the ids; each partition numbers its rows and adds the
    sizes of the partitions before it (one small collect), so no partition
    ever holds all ids.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    ranked = ids.orderBy(name).withColumn("_p", F.spark_partition_id()).cache()
    sizes = dict((r[0], r[1]) for r in ranked.groupBy("_p").count().collect())
    offsets, total = {}, 0
    for p in sorted(sizes):
        offsets[p], total = total, total + sizes[p]
    starts = local_frame(spark, _p=np.asarray(list(offsets) or [0], dtype=np.int32),
                         _start=np.asarray(list(offsets.values()) or [0], dtype=np.int64))
    within = Window.partitionBy("_p").orderBy(name)
    frame = (ranked.join(F.broadcast(starts), "_p")
             .select(name, (F.col("_start") + F.row_number().over(within) - 1).alias(index)))
    frame = frame.cache()
    frame.count()
    ranked.unpersist()
    if not collect:
        return total, frame
    values = collect_arrays(frame.orderBy(index), [name], f"{name} vocabulary")[name]
    return Vocab(np.asarray(values, dtype=str)), frame
