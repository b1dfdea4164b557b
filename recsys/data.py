"""Read orders and catalogs (CSV, gzip'd CSV, Parquet) into validated arrays.

Every row is accounted for: a row is either used or rejected with a named
reason, and the counts go into a :class:`DataReport`. The work is columnar
(pyarrow compute and numpy), never a Python loop over rows.
"""

from __future__ import annotations

import csv
import gzip
import logging
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import scipy.sparse as sp

from .exceptions import ConfigError, DataError, StrictModeError
from .vocab import UNKNOWN, Vocab

log = logging.getLogger(__name__)

ORDER_COLUMNS = ("customer_id", "order_id", "item_id", "quantity", "unit_price", "timestamp")
REQUIRED_ORDER_COLUMNS = ("order_id", "item_id")
CATALOG_COLUMNS = ("item_id", "name", "category", "price", "in_stock", "recommendable")

_NUMBER_RE = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"
_FLOAT_INT_RE = r"^[-+]?\d+\.0*$"
_TS_SHAPE_RE = (
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?\s*(Z|[+-]\d{2}:?\d{2})?$"
)
_TS_ZONE_RE = r"(Z|[+-]\d{2}:?\d{2})$"
_TRUE_VALUES = {"true", "1", "yes", "y", "t"}
_FALSE_VALUES = {"false", "0", "no", "n", "f"}


def parse_column_map(text: str | None) -> dict[str, str]:
    """Parse ``customer_id=CustomerID,item_id=StockCode`` into a dict."""
    mapping: dict[str, str] = {}
    if not text:
        return mapping
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise ConfigError(
                f"--columns entry {part!r} is not of the form name=SourceColumn "
                f"(names: {', '.join(ORDER_COLUMNS + CATALOG_COLUMNS[1:])})"
            )
        key, value = (s.strip() for s in part.split("=", 1))
        if not key or not value:
            raise ConfigError(f"--columns entry {part!r} has an empty side")
        mapping[key] = value
    return mapping


@dataclass
class DataReport:
    """What happened to every row of one input."""

    source: str
    rows_read: int = 0
    rows_used: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    notes: dict[str, int] = field(default_factory=dict)
    unused_columns: list[str] = field(default_factory=list)
    excluded_items: int = 0

    def reject(self, reason: str, count: int) -> None:
        if count:
            self.rejected[reason] = self.rejected.get(reason, 0) + int(count)

    @property
    def rows_rejected(self) -> int:
        return sum(self.rejected.values())

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "rows_read": self.rows_read,
            "rows_used": self.rows_used,
            "rows_rejected": self.rows_rejected,
            "rejected": dict(sorted(self.rejected.items())),
            "notes": dict(sorted(self.notes.items())),
            "excluded_items": self.excluded_items,
            "unused_columns": self.unused_columns,
        }

    def format(self) -> str:
        lines = [
            f"data report for {self.source}",
            f"  rows read      {self.rows_read:>12,}",
            f"  rows used      {self.rows_used:>12,}",
            f"  rows rejected  {self.rows_rejected:>12,}",
        ]
        for reason, count in sorted(self.rejected.items()):
            lines.append(f"    {reason:<28}{count:>12,}")
        for note, count in sorted(self.notes.items()):
            lines.append(f"  note: {note:<24}{count:>12,}")
        if self.excluded_items:
            lines.append(f"  non-product items excluded {self.excluded_items:>8,}")
        if self.unused_columns:
            lines.append(f"  columns not used: {', '.join(self.unused_columns)}")
        return "\n".join(lines)

    def check_strict(self, strict: bool) -> None:
        if strict and self.rows_rejected:
            detail = ", ".join(f"{k}={v}" for k, v in sorted(self.rejected.items()))
            raise StrictModeError(
                f"{self.source}: {self.rows_rejected} rows rejected under --strict ({detail})"
            )


@dataclass
class Interactions:
    """Validated order lines as integer-indexed arrays.

    ``customer_idx`` is ``-1`` on lines without a customer (kept for basket
    co-purchase only). ``timestamp`` is seconds since the epoch, or None when
    the input had no timestamp column.
    """

    customers: Vocab
    orders: Vocab
    items: Vocab
    customer_idx: np.ndarray
    order_idx: np.ndarray
    item_idx: np.ndarray
    quantity: np.ndarray
    unit_price: np.ndarray
    timestamp: np.ndarray | None
    customer_is_order: bool = False

    @property
    def n_lines(self) -> int:
        return len(self.item_idx)

    def order_times(self) -> np.ndarray | None:
        """Earliest timestamp of each order (seconds), or None without timestamps."""
        if self.timestamp is None:
            return None
        times = np.full(len(self.orders), np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(times, self.order_idx, self.timestamp)
        return times

    def subset(self, line_mask: np.ndarray) -> Interactions:
        """The same vocabularies with only the lines in ``line_mask``."""
        ts = None if self.timestamp is None else self.timestamp[line_mask]
        return Interactions(
            self.customers, self.orders, self.items,
            self.customer_idx[line_mask], self.order_idx[line_mask], self.item_idx[line_mask],
            self.quantity[line_mask], self.unit_price[line_mask], ts, self.customer_is_order,
        )

    def customer_items(self, binary: bool = False) -> sp.csr_matrix:
        """Customers x items: how many distinct orders of the customer hold the item."""
        has = self.customer_idx >= 0
        pairs = _unique_pairs(self.order_idx[has], self.item_idx[has], len(self.items))
        cust = np.full(len(self.orders), UNKNOWN, dtype=np.int64)
        cust[self.order_idx[has]] = self.customer_idx[has]
        rows = cust[pairs[0]]
        data = np.ones(len(rows), dtype=np.float32)
        m = sp.csr_matrix((data, (rows, pairs[1])), shape=(len(self.customers), len(self.items)))
        m.sum_duplicates()
        if binary:
            m.data[:] = 1.0
        return m

    def order_items(self) -> sp.csr_matrix:
        """Orders x items, binary."""
        orders, items = _unique_pairs(self.order_idx, self.item_idx, len(self.items))
        data = np.ones(len(orders), dtype=np.float32)
        return sp.csr_matrix((data, (orders, items)), shape=(len(self.orders), len(self.items)))

    def item_prices(self) -> np.ndarray:
        """Median unit price per item over its lines (NaN where never priced)."""
        prices = np.full(len(self.items), np.nan, dtype=np.float32)
        ok = ~np.isnan(self.unit_price)
        if not ok.any():
            return prices
        items = self.item_idx[ok]
        values = self.unit_price[ok]
        order = np.lexsort((values, items))
        items, values = items[order], values[order]
        starts = np.flatnonzero(np.r_[True, items[1:] != items[:-1]])
        ends = np.r_[starts[1:], len(items)]
        lo = values[starts + (ends - starts - 1) // 2]
        hi = values[starts + (ends - starts) // 2]
        prices[items[starts]] = (lo + hi) / 2
        return prices


def _unique_pairs(a: np.ndarray, b: np.ndarray, b_size: int) -> tuple[np.ndarray, np.ndarray]:
    key = a.astype(np.int64) * b_size + b.astype(np.int64)
    key.sort()  # sort + diff: several times faster than numpy 2's hash-based np.unique here
    key = key[np.r_[True, key[1:] != key[:-1]]] if len(key) else key
    return key // b_size, key % b_size


@dataclass
class Catalog:
    """Item metadata keyed by item id (arrays aligned with ``ids``)."""

    ids: np.ndarray
    name: np.ndarray | None = None
    category: np.ndarray | None = None
    price: np.ndarray | None = None
    in_stock: np.ndarray | None = None
    recommendable: np.ndarray | None = None
    extra: dict[str, list] = field(default_factory=dict)


# ---------------------------------------------------------------- reading


def _is_database_url(source: str) -> bool:
    return "://" in str(source)


def source_label(source: str) -> str:
    """How a source is shown in reports and messages: database passwords redacted."""
    if _is_database_url(source):
        from .sql import redact_url

        return redact_url(str(source))
    return str(source)


def _csv_header(path: str) -> list[str]:
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rt", newline="", encoding="utf-8-sig") as fh:
            return next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise DataError(f"{path}: cannot read as CSV ({exc})") from None


def read_table(source: str, query: str | None = None) -> pa.Table:
    """Read a whole CSV / gzip'd CSV / Parquet file (or a database query) as a table."""
    source = str(source)
    if _is_database_url(source):
        from .sql import read_sql  # imported lazily: database drivers are optional

        return read_sql(source, query)
    if not os.path.exists(source):
        raise DataError(f"{source}: no such file")
    lower = source.lower()
    try:
        if lower.endswith((".parquet", ".pq")):
            return pq.read_table(source)
        if lower.endswith((".csv", ".csv.gz", ".txt", ".tsv", ".tsv.gz")):
            header = _csv_header(source)
            if not header:
                raise DataError(f"{source}: the file is empty (no header line)")
            delimiter = "\t" if ".tsv" in lower else ","
            return pacsv.read_csv(
                source,
                parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(
                    column_types={name: pa.string() for name in header},
                    strings_can_be_null=True,
                    null_values=[""],
                ),
            )
    except DataError:
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(f"{source}: cannot read the file ({exc})") from None
    raise DataError(
        f"{source}: unknown file type; use .csv, .csv.gz or .parquet, or a database URL"
    )


def _resolve_columns(
    table: pa.Table, source: str, mapping: dict[str, str], wanted: tuple[str, ...],
    required: tuple[str, ...],
) -> dict[str, str]:
    """Map canonical names to the table's column names, failing clearly."""
    names = set(table.column_names)
    resolved: dict[str, str] = {}
    unknown_keys = set(mapping) - set(wanted)
    if unknown_keys:
        raise ConfigError(
            f"--columns names {sorted(unknown_keys)} are not known; known names: {', '.join(wanted)}"
        )
    for key in wanted:
        column = mapping.get(key, key)
        if column in names:
            resolved[key] = column
        elif key in mapping:
            raise DataError(
                f"{source}: column {column!r} (given for {key}) is not in the file; "
                f"columns present: {', '.join(table.column_names)}"
            )
    for key in required:
        if key not in resolved:
            raise DataError(
                f"{source}: required column {key!r} is missing; columns present: "
                f"{', '.join(table.column_names)}. Map it with --columns {key}=YourColumn"
            )
    return resolved


def _id_strings(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Ids as strings; ``17850.0`` from a float column becomes ``17850``."""
    t = col.type
    if pa.types.is_floating(t):
        values = col.to_numpy(zero_copy_only=False)
        ok = ~np.isnan(values)
        integral = np.all(np.mod(values[ok], 1) == 0) if ok.any() else True
        if integral:
            ints = pa.array(np.where(ok, values, 0).astype(np.int64), mask=~ok)
            return pa.chunked_array([pc.cast(ints, pa.string())])
        return pc.cast(col, pa.string())
    if pa.types.is_integer(t) or pa.types.is_decimal(t):
        return pc.cast(col, pa.string())
    if pa.types.is_dictionary(t):
        col = pc.cast(col, t.value_type)
        t = col.type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        col = pc.cast(col, pa.string())
    col = pc.cast(col, pa.string())
    col = pc.utf8_trim_whitespace(col)
    # A CSV exported from a float column: every value looks like "123.0".
    non_null = pc.drop_null(col)
    if len(non_null) and pc.all(pc.match_substring_regex(non_null, _FLOAT_INT_RE)).as_py():
        col = pc.replace_substring_regex(col, r"\.0*$", "")
    return pc.if_else(pc.equal(col, ""), pa.scalar(None, pa.string()), col)


def _numbers(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(float64 values, mask of present-but-unparsable)."""
    t = col.type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        values = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
        return np.asarray(values, dtype=np.float64), np.zeros(len(col), dtype=bool)
    s = pc.cast(col, pa.string())
    valid = pc.fill_null(pc.match_substring_regex(s, _NUMBER_RE), False)
    cleaned = pc.if_else(valid, pc.utf8_trim_whitespace(s), pa.scalar(None, pa.string()))
    values = pc.cast(cleaned, pa.float64()).to_numpy(zero_copy_only=False)
    present = pc.is_valid(s).to_numpy(zero_copy_only=False)
    bad = present & ~valid.to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.float64), bad


def _timestamps(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(int64 epoch seconds, mask missing, mask present-but-unparsable)."""
    n = len(col)
    t = col.type
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        if pa.types.is_date(t):
            col = pc.cast(col, pa.timestamp("s"))
        elif t.tz is not None:
            col = pc.cast(col, pa.timestamp(t.unit, tz="UTC"))
        secs = pc.cast(pc.cast(col, pa.timestamp("s", tz=None) if t.tz is None else pa.timestamp("s", tz="UTC")), pa.int64())
        arr = secs.to_numpy(zero_copy_only=False)
        missing = pc.is_null(col).to_numpy(zero_copy_only=False)
        values = np.where(missing, 0, np.nan_to_num(arr.astype(np.float64))).astype(np.int64)
        return values, missing, np.zeros(n, dtype=bool)
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        values, bad = _numbers(col)
        missing = np.isnan(values) & ~bad
        return np.nan_to_num(values).astype(np.int64), missing, bad
    s = pc.utf8_trim_whitespace(pc.cast(col, pa.string()))
    s = s.combine_chunks() if isinstance(s, pa.ChunkedArray) else s
    missing = pc.is_null(s).to_numpy(zero_copy_only=False) | (
        pc.fill_null(pc.equal(s, ""), False).to_numpy(zero_copy_only=False)
    )
    shape_ok = pc.fill_null(pc.match_substring_regex(s, _TS_SHAPE_RE), False).to_numpy(
        zero_copy_only=False
    )
    zoned = pc.fill_null(pc.match_substring_regex(s, _TS_ZONE_RE), False).to_numpy(
        zero_copy_only=False
    )
    values = np.zeros(n, dtype=np.int64)
    bad = ~missing & ~shape_ok
    for mask, target in ((shape_ok & ~zoned, pa.timestamp("us")),
                         (shape_ok & zoned, pa.timestamp("us", tz="UTC"))):
        idx = np.flatnonzero(mask)
        if not len(idx):
            continue
        part = s.take(pa.array(idx))
        try:
            parsed = pc.cast(part, target)
            values[idx] = pc.cast(parsed, pa.int64()).to_numpy(zero_copy_only=False) // 1_000_000
        except pa.ArrowException:
            for i, text in zip(idx, part.to_pylist(), strict=True):
                secs = _parse_one_timestamp(text)
                if secs is None:
                    bad[i] = True
                else:
                    values[i] = secs
    return values, missing, bad


def _parse_one_timestamp(text: str) -> int | None:
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp())


def _booleans(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(bool values with missing as True, mask present-but-unparsable)."""
    if pa.types.is_boolean(col.type):
        return pc.fill_null(col, True).to_numpy(zero_copy_only=False), np.zeros(len(col), bool)
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        v = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
        return np.where(np.isnan(v), True, v != 0), np.zeros(len(col), bool)
    s = pc.utf8_lower(pc.utf8_trim_whitespace(pc.cast(col, pa.string())))
    values = np.array(pc.fill_null(s, "").to_pylist(), dtype=object)
    true = np.isin(values, list(_TRUE_VALUES))
    false = np.isin(values, list(_FALSE_VALUES))
    missing = values == ""
    return true | missing, ~(true | false | missing)


class ItemExclusion:
    """Ids that are not products: a file of ids, or a regular expression over ids."""

    def __init__(self, spec: str | None = None, ids: set[str] | None = None):
        self.spec = spec
        self.ids = set(ids or ())
        self.pattern = None
        if spec:
            if os.path.isfile(spec):
                with open(spec, encoding="utf-8") as fh:
                    self.ids |= {line.strip() for line in fh if line.strip()}
            else:
                try:
                    self.pattern = re.compile(spec)
                except re.error as exc:
                    raise ConfigError(
                        f"--exclude-items {spec!r} is neither a file nor a valid regular "
                        f"expression ({exc})"
                    ) from None

    def mask(self, ids: np.ndarray) -> np.ndarray:
        """True for each id that is not a product."""
        out = np.isin(ids, list(self.ids)) if self.ids else np.zeros(len(ids), dtype=bool)
        if self.pattern is not None:
            out |= np.fromiter((self.pattern.search(i) is not None for i in ids), bool, len(ids))
        return out


def read_orders(
    source: str,
    columns: dict[str, str] | None = None,
    exclude: ItemExclusion | None = None,
    strict: bool = False,
    query: str | None = None,
    table: pa.Table | None = None,
) -> tuple[Interactions, DataReport]:
    """Read and validate order lines; every rejected row is counted by reason."""
    if table is None:
        table = read_table(source, query)
    report = DataReport(source=source_label(source), rows_read=table.num_rows)
    cols = _resolve_columns(table, report.source, columns or {}, ORDER_COLUMNS, REQUIRED_ORDER_COLUMNS)
    report.unused_columns = [c for c in table.column_names if c not in cols.values()]
    n = table.num_rows
    keep = np.ones(n, dtype=bool)

    def reject(reason: str, mask: np.ndarray) -> None:
        nonlocal keep
        hit = keep & mask
        report.reject(reason, int(hit.sum()))
        keep &= ~mask

    order_ids = _id_strings(table[cols["order_id"]])
    item_ids = _id_strings(table[cols["item_id"]])
    reject("missing_order_id", pc.is_null(order_ids).to_numpy(zero_copy_only=False))
    reject("missing_item_id", pc.is_null(item_ids).to_numpy(zero_copy_only=False))

    if "quantity" in cols:
        quantity, bad = _numbers(table[cols["quantity"]])
        reject("unparsable_quantity", bad)
        quantity = np.where(np.isnan(quantity), 1.0, quantity)
        reject("non_positive_quantity", quantity <= 0)
    else:
        quantity = np.ones(n)

    if "unit_price" in cols:
        price, bad = _numbers(table[cols["unit_price"]])
        reject("unparsable_unit_price", bad)
        reject("negative_unit_price", np.nan_to_num(price) < 0)
    else:
        price = np.full(n, np.nan)

    timestamp = None
    if "timestamp" in cols:
        timestamp, missing, bad = _timestamps(table[cols["timestamp"]])
        if n and missing.all():
            # A column with no value on any line (a common export shape) means "no
            # timestamps": the seeded random holdout, not every line rejected.
            timestamp = None
            report.notes["timestamp_column_empty_random_holdout"] = 1
        else:
            reject("missing_timestamp", missing)
            reject("unparsable_timestamp", bad)

    customer_is_order = "customer_id" not in cols
    if customer_is_order:
        report.notes["no_customer_column_each_order_is_a_customer"] = 1
        customer_ids = order_ids
    else:
        customer_ids = _id_strings(table[cols["customer_id"]])

    # A stray double quote in an id (a CSV quoting slip) is kept as part of the id, and
    # counted, so that "85123A" and 85123A" are not two items without anyone knowing.
    quoted = np.zeros(n, dtype=bool)
    for ids in (order_ids, item_ids) + (() if customer_is_order else (customer_ids,)):
        quoted |= pc.fill_null(pc.match_substring(ids, '"'), False).to_numpy(
            zero_copy_only=False)
    if (quoted & keep).any():
        report.notes["ids_with_stray_quote_kept_as_is"] = int((quoted & keep).sum())

    # Encode ids over kept rows only, so rejected rows add no vocabulary.
    keep_arr = pa.array(keep)
    order_kept = pc.filter(order_ids, keep_arr)
    item_kept = pc.filter(item_ids, keep_arr)
    cust_kept = pc.filter(customer_ids, keep_arr)

    items, item_idx = _encode(item_kept)
    if exclude is not None and len(items):
        not_product = exclude.mask(items.ids)
        if not_product.any():
            line_excluded = not_product[item_idx]
            report.reject("not_a_product", int(line_excluded.sum()))
            report.excluded_items = int(not_product.sum())
            sub = ~line_excluded
            sub_arr = pa.array(sub)
            order_kept, item_kept, cust_kept = (
                pc.filter(order_kept, sub_arr), pc.filter(item_kept, sub_arr),
                pc.filter(cust_kept, sub_arr),
            )
            kept_positions = np.flatnonzero(keep)
            keep[kept_positions[line_excluded]] = False
            items, item_idx = _encode(item_kept)

    orders, order_idx = _encode(order_kept)
    customers, customer_idx = _encode(cust_kept)
    no_customer = customer_idx < 0
    if no_customer.any():
        report.notes["rows_without_customer_used_for_baskets_only"] = int(no_customer.sum())

    report.rows_used = int(keep.sum())
    report.check_strict(strict)
    inter = Interactions(
        customers=customers, orders=orders, items=items,
        customer_idx=customer_idx.astype(np.int32),
        order_idx=order_idx.astype(np.int32),
        item_idx=item_idx.astype(np.int32),
        quantity=quantity[keep].astype(np.float32),
        unit_price=price[keep].astype(np.float32),
        timestamp=None if timestamp is None else timestamp[keep],
        customer_is_order=customer_is_order,
    )
    log.info("read %d lines: %d customers, %d orders, %d items", inter.n_lines,
             len(customers), len(orders), len(items))
    return inter, report


def _encode(values: pa.ChunkedArray) -> tuple[Vocab, np.ndarray]:
    """Dictionary-encode string ids into a sorted Vocab and int64 indexes (-1 for null)."""
    if len(values) == 0:
        return Vocab(np.array([], dtype=str)), np.zeros(0, dtype=np.int64)
    enc = pc.dictionary_encode(values).combine_chunks()
    dictionary = enc.dictionary.to_numpy(zero_copy_only=False).astype(str)
    valid = enc.indices.is_valid().to_numpy(zero_copy_only=False)
    raw = pc.fill_null(enc.indices, 0).to_numpy(zero_copy_only=False)
    vocab, remap = Vocab.from_unsorted(dictionary)
    idx = np.where(valid, remap[raw], UNKNOWN)
    return vocab, idx


def read_catalog(
    source: str, columns: dict[str, str] | None = None, strict: bool = False,
    query: str | None = None,
) -> tuple[Catalog, DataReport]:
    """Read item metadata; unknown extra columns are kept as metadata."""
    table = read_table(source, query)
    report = DataReport(source=source_label(source), rows_read=table.num_rows)
    mapping = {k: v for k, v in (columns or {}).items() if k in CATALOG_COLUMNS}
    cols = _resolve_columns(table, report.source, mapping, CATALOG_COLUMNS, ("item_id",))
    n = table.num_rows
    keep = np.ones(n, dtype=bool)
    ids_arr = _id_strings(table[cols["item_id"]])
    missing = pc.is_null(ids_arr).to_numpy(zero_copy_only=False)
    report.reject("missing_item_id", int(missing.sum()))
    keep &= ~missing
    ids = np.array(pc.fill_null(ids_arr, "").to_pylist(), dtype=str)

    price = None
    if "price" in cols:
        price, bad = _numbers(table[cols["price"]])
        report.reject("unparsable_price", int((bad & keep).sum()))
        price = np.where(bad, np.nan, price)
    in_stock = recommendable = None
    if "in_stock" in cols:
        in_stock, bad = _booleans(table[cols["in_stock"]])
        report.reject("unparsable_in_stock", int((bad & keep).sum()))
    if "recommendable" in cols:
        recommendable, bad = _booleans(table[cols["recommendable"]])
        report.reject("unparsable_recommendable", int((bad & keep).sum()))

    # Later rows win for a duplicated id: the usual "latest export line" rule.
    rev = np.flatnonzero(keep)[::-1]
    _, first = np.unique(ids[rev], return_index=True)
    chosen = np.sort(rev[first])
    report.reject("duplicate_item_id", int(keep.sum() - len(chosen)))
    report.rows_used = len(chosen)

    def text(key: str) -> np.ndarray | None:
        if key not in cols:
            return None
        values = pc.cast(table[cols[key]], pa.string()).to_pylist()
        return np.array(["" if v is None else v for v in values], dtype=object)[chosen]

    used = set(cols.values())
    extra = {
        name: [_jsonable(v) for v in np.array(table[name].to_pylist(), dtype=object)[chosen]]
        for name in table.column_names if name not in used
    }
    catalog = Catalog(
        ids=ids[chosen],
        name=text("name"),
        category=text("category"),
        price=None if price is None else price[chosen],
        in_stock=None if in_stock is None else in_stock[chosen],
        recommendable=None if recommendable is None else recommendable[chosen],
        extra=extra,
    )
    report.check_strict(strict)
    return catalog, report


def _jsonable(value):
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, float) and np.isnan(value):
        return None
    return str(value)


def read_text_lines(path: str) -> list[str]:
    """Non-empty stripped lines of a text file (ids for export)."""
    try:
        with open(path, encoding="utf-8") as fh:
            return [line.strip() for line in fh if line.strip()]
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None


__all__ = [
    "Catalog", "DataReport", "Interactions", "ItemExclusion", "parse_column_map",
    "read_catalog", "read_orders", "read_table", "read_text_lines",
]
