"""Load order CSVs into SQLite and PostgreSQL for the database-source tests."""

from __future__ import annotations

import csv
import os
import sqlite3
import uuid

import pytest

PG_ENV = "XSELL_TEST_PG_URL"
PG_SKIP_REASON = (
    f"{PG_ENV} is not set: no PostgreSQL server for this run "
    f"(source scripts/ci-postgres.sh to start one)"
)


def pg_url_or_skip() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(PG_SKIP_REASON)
    return url


def read_csv_rows(path: str) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def load_sqlite(csv_path: str, db_path: str, table: str = "orders") -> int:
    """Planted orders into a SQLite table with natural column types; returns rows."""
    header, rows = read_csv_rows(csv_path)
    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(
            f"CREATE TABLE {table} (customer_id TEXT, order_id TEXT, item_id TEXT, "
            f"quantity INTEGER, unit_price REAL, timestamp TIMESTAMP)"
        )
        conn.executemany(
            f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?)",
            [(r[0], r[1], r[2], int(r[3]), float(r[4]), r[5]) for r in rows],
        )
    conn.close()
    return len(rows)


def unique_table(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def load_postgres(url: str, csv_path: str, table: str, timestamp_type: str = "timestamp") -> int:
    """Planted orders into a PostgreSQL table.

    ``timestamp_type``: timestamp, timestamptz or text.
    """
    import psycopg

    header, rows = read_csv_rows(csv_path)
    with psycopg.connect(url) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(
            f"CREATE TABLE {table} (customer_id text, order_id text, item_id text, "
            f"quantity integer, unit_price numeric(10, 2), ts {timestamp_type})"
        )
        with conn.cursor().copy(
            f"COPY {table} (customer_id, order_id, item_id, quantity, unit_price, ts) FROM STDIN"
        ) as copy:
            for r in rows:
                if timestamp_type == "timestamptz":
                    r = r[:5] + [r[5] + "+00:00"]  # explicit zone: independent of server TimeZone
                copy.write_row(r)
    return len(rows)


def drop_postgres(url: str, *tables: str) -> None:
    import psycopg

    with psycopg.connect(url) as conn:
        for table in tables:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
