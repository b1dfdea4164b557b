"""Read a table or query result from a SQL database into Arrow, in chunks.

Sources are URLs:

- ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` (the
  SQLAlchemy convention: three slashes then the path). The file is opened
  read-only and must exist; stdlib :mod:`sqlite3`, nothing to install.
- ``postgresql://user[:password]@host[:port]/dbname[?param=value]`` (also
  ``postgres://`` and ``postgresql+psycopg://``), read through psycopg 3 with
  a server-side cursor in a read-only transaction. Prefer ``PGPASSWORD`` or a
  ``~/.pgpass`` file (libpq reads both) to a password in the URL.

``query`` is either a SQL ``SELECT`` or a bare table name (``orders``,
``shop.orders``); a missing query is an error, never a guess.

Rows are fetched ``chunk_rows`` at a time and each chunk becomes Arrow arrays
at once, so at most one chunk of Python objects exists: a 20M-line table needs
20M rows of Arrow memory, not 20M Python tuples. Column types follow the
database: integers -> int64, floats and NUMERIC -> float64, timestamps ->
Arrow timestamps (``timestamptz`` in UTC), text -> string. A column whose
values have mixed types (possible in SQLite) becomes strings.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import pyarrow as pa
import pyarrow.compute as pc

from .exceptions import DataError

log = logging.getLogger(__name__)

CHUNK_ROWS = 50_000
_TABLE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")
_SECRET_PARAMS = {"password", "pass", "pwd", "sslpassword", "secret", "token"}


def redact_url(url: str) -> str:
    """The URL with any password (in the user part or a query parameter) replaced by ``***``."""
    text = str(url)
    if "://" not in text:
        return text
    scheme, rest = text.split("://", 1)
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    netloc, tail = rest[:cut], rest[cut:]
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = f"{userinfo}@{host}"
    if "?" in tail:
        path, query = tail.split("?", 1)
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in _SECRET_PARAMS for k, _ in pairs):
            query = urlencode([(k, "***" if k.lower() in _SECRET_PARAMS else v)
                               for k, v in pairs], safe="*")
        tail = f"{path}?{query}"
    return f"{scheme}://{netloc}{tail}"


def _secrets_of(url: str) -> list[str]:
    """Every secret string in the URL, raw and percent-decoded, for scrubbing messages."""
    found = []
    try:
        parts = urlsplit(url)
        if parts.password:
            found.append(parts.password)
        found += [v for k, v in parse_qsl(parts.query) if k.lower() in _SECRET_PARAMS and v]
    except ValueError:
        pass
    found += [unquote(s) for s in found]
    return [s for s in set(found) if s]


def _scrub(message: str, url: str) -> str:
    for secret in _secrets_of(url):
        message = message.replace(secret, "***")
    return " ".join(str(message).split())


def _select(query: str | None, url_shown: str) -> str:
    if query is None or not str(query).strip():
        raise DataError(
            f"{url_shown}: a database source needs a query or a table name; pass "
            f"--orders-query 'SELECT ... FROM ...' (or --orders-query TABLE), and "
            f"--catalog-query for a catalog read from a database"
        )
    query = str(query).strip().rstrip(";").strip()
    if _TABLE_NAME_RE.match(query):
        # Only letters, digits, _ and $ can reach here, so the name is safe unquoted,
        # and unquoted it folds case the way the database's own SQL would.
        return f"SELECT * FROM {query}"
    return query


def read_sql(url: str, query: str | None, chunk_rows: int = CHUNK_ROWS) -> pa.Table:
    """Run ``query`` (a SELECT or a table name) against the database at ``url``."""
    url = str(url)
    shown = redact_url(url)
    scheme = url.split("://", 1)[0].lower()
    driver = scheme.split("+", 1)[0]
    sql = _select(query, shown)
    if driver == "sqlite":
        return _read_sqlite(url, sql, shown, chunk_rows)
    if driver in ("postgresql", "postgres"):
        return _read_postgres(url, sql, shown, chunk_rows)
    raise DataError(
        f"{shown}: unsupported database URL scheme {scheme!r}; use sqlite:///path.db or "
        f"postgresql://user@host/dbname"
    )


# ---------------------------------------------------------------- SQLite


def _sqlite_path(url: str, shown: str) -> str:
    rest = url.split("://", 1)[1]
    if not rest.startswith("/"):
        raise DataError(f"{shown}: a SQLite URL is sqlite:///relative.db or sqlite:////abs/path.db")
    path = rest[1:].split("?", 1)[0]
    if not path or path == ":memory:":
        raise DataError(f"{shown}: give the path of a SQLite database file")
    return unquote(path)


def _read_sqlite(url: str, sql: str, shown: str, chunk_rows: int) -> pa.Table:
    path = _sqlite_path(url, shown)
    if not os.path.isfile(path):
        raise DataError(
            f"{shown}: no such SQLite database file {os.path.abspath(path)!r} "
            f"(sqlite:///relative.db, sqlite:////absolute/path.db)"
        )
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise DataError(f"{shown}: cannot open the SQLite database ({exc})") from None
    try:
        cur = conn.execute(sql)
        return _fetch_table(cur, chunk_rows, shown)
    except sqlite3.Error as exc:
        raise DataError(f"{shown}: query failed: {exc} (query: {_short(sql)})") from None
    finally:
        conn.close()


# ---------------------------------------------------------------- PostgreSQL


def _read_postgres(url: str, sql: str, shown: str, chunk_rows: int) -> pa.Table:
    try:
        import psycopg
    except ImportError:
        raise DataError(
            f"{shown}: reading PostgreSQL needs psycopg 3: pip install 'psycopg[binary]'"
        ) from None
    conninfo = "postgresql://" + url.split("://", 1)[1]
    kwargs = {"application_name": "xsell"}
    if "connect_timeout" not in url:
        kwargs["connect_timeout"] = 15
    try:
        conn = psycopg.connect(conninfo, **kwargs)
    except psycopg.Error as exc:
        raise DataError(f"{shown}: cannot connect: {_scrub(str(exc), url)}") from None
    except Exception as exc:  # a malformed URL surfaces as various errors inside libpq
        raise DataError(f"{shown}: invalid database URL ({_scrub(str(exc), url)})") from None
    try:
        conn.read_only = True
        # A named cursor lives on the server: rows come over chunk by chunk.
        with conn.cursor(name="xsell_read") as cur:
            cur.itersize = chunk_rows
            cur.execute(sql)
            return _fetch_table(cur, chunk_rows, shown)
    except psycopg.Error as exc:
        raise DataError(
            f"{shown}: query failed: {_scrub(str(exc), url)} (query: {_short(sql)})"
        ) from None
    finally:
        conn.close()


# ---------------------------------------------------------------- rows -> Arrow


def _short(sql: str, limit: int = 200) -> str:
    sql = " ".join(sql.split())
    return sql if len(sql) <= limit else sql[:limit] + "..."


def _fetch_table(cur, chunk_rows: int, shown: str) -> pa.Table:
    """Drain a DB-API cursor ``chunk_rows`` at a time into one Arrow table."""
    if cur.description is None:
        raise DataError(f"{shown}: the query returns no rows or columns (is it a SELECT?)")
    names = [d[0] for d in cur.description]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataError(
            f"{shown}: the query returns column(s) {', '.join(dupes)} more than once; "
            f"give them distinct names with AS"
        )
    chunks: list[list[pa.Array]] = [[] for _ in names]
    total = 0
    while True:
        rows = cur.fetchmany(chunk_rows)
        if not rows:
            break
        total += len(rows)
        for i, values in enumerate(zip(*rows, strict=True)):
            chunks[i].append(_to_arrow(values))
        del rows
    log.info("read %d rows from %s", total, shown)
    columns = [_unify(parts) for parts in chunks]
    return pa.Table.from_arrays(columns, names=names)


def _to_arrow(values: tuple) -> pa.Array:
    try:
        arr = pa.array(values)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        # Mixed types in one column (SQLite allows it): keep every value as text.
        arr = pa.array([None if v is None else str(v) for v in values], type=pa.string())
    t = arr.type
    if pa.types.is_decimal(t):
        arr = pc.cast(arr, pa.float64())
    elif pa.types.is_timestamp(t) and t.tz is not None and t.tz != "UTC":
        arr = pc.cast(arr, pa.timestamp(t.unit, tz="UTC"))
    elif pa.types.is_time(t) or pa.types.is_duration(t):
        arr = pa.array([None if v is None else str(v) for v in values], type=pa.string())
    return arr


def _unify(parts: list[pa.Array]) -> pa.ChunkedArray:
    """One column from its chunks, whose inferred types may differ."""
    if not parts:
        return pa.chunked_array([], type=pa.null())
    types = {p.type for p in parts if not pa.types.is_null(p.type)}
    if not types:
        return pa.chunked_array(parts, type=pa.null())
    if len(types) == 1:
        target = types.pop()
    elif all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in types):
        target = pa.float64()
    elif all(pa.types.is_timestamp(t) for t in types):
        target = pa.timestamp("us", tz="UTC") if any(t.tz for t in types) else pa.timestamp("us")
    else:
        target = pa.string()
    try:
        return pa.chunked_array([p if p.type == target else pc.cast(p, target) for p in parts],
                                type=target)
    except pa.ArrowException:
        return pa.chunked_array([pc.cast(p, pa.string()) for p in parts], type=pa.string())


__all__ = ["CHUNK_ROWS", "read_sql", "redact_url"]
