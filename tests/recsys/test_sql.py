"""Orders and catalogs from SQLite and PostgreSQL: same data as from files, in chunks."""

import sqlite3

import numpy as np
import pyarrow as pa
import pytest

from recsys import sql as sqlmod
from recsys.data import read_catalog, read_orders
from recsys.exceptions import DataError
from recsys.sql import read_sql, redact_url
from tests.dbload import drop_postgres, load_postgres, load_sqlite, pg_url_or_skip, unique_table

PG_COLUMNS = {"timestamp": "ts"}


def assert_same_interactions(a, b):
    assert list(a.items.ids) == list(b.items.ids)
    assert list(a.customers.ids) == list(b.customers.ids)
    assert list(a.orders.ids) == list(b.orders.ids)
    # Same lines in the same order (SQL without ORDER BY keeps insertion order here).
    assert np.array_equal(a.items.ids[a.item_idx], b.items.ids[b.item_idx])
    assert np.array_equal(a.customers.ids[a.customer_idx], b.customers.ids[b.customer_idx])
    assert np.array_equal(a.quantity, b.quantity)
    assert np.allclose(a.unit_price, b.unit_price)
    assert np.array_equal(a.timestamp, b.timestamp)


@pytest.fixture(scope="module")
def sqlite_db(planted, tmp_path_factory):
    csv_path, truth = planted
    db = tmp_path_factory.mktemp("sqlite") / "shop.db"
    load_sqlite(csv_path, str(db))
    return str(db), truth


# ---------------------------------------------------------------- redaction


def test_redact_url_hides_passwords_in_user_part_and_parameters():
    assert redact_url("postgresql://bob:s3cr%40t@db:5432/shop") == "postgresql://bob:***@db:5432/shop"
    assert redact_url("postgresql://bob@db/shop") == "postgresql://bob@db/shop"
    shown = redact_url("postgresql://db/shop?user=bob&password=hunter2&sslmode=require")
    assert "hunter2" not in shown and "sslmode=require" in shown and "password=***" in shown
    assert redact_url("sqlite:///orders.db") == "sqlite:///orders.db"


# ---------------------------------------------------------------- SQLite


def test_sqlite_table_name_and_query_give_the_same_orders_as_the_csv(planted, sqlite_db):
    csv_path, truth = planted
    db, _ = sqlite_db
    from_csv, _ = read_orders(csv_path)
    by_table, report = read_orders(f"sqlite:///{db}", query="orders")
    assert report.rows_read == truth["n_rows"] and report.rows_used == truth["n_rows"]
    assert report.source == f"sqlite:///{db}"
    assert_same_interactions(by_table, from_csv)
    by_query, report = read_orders(
        f"sqlite:///{db}", query="SELECT * FROM orders WHERE item_id <> 'P0';")
    p0_lines = int((from_csv.items.ids[from_csv.item_idx] == "P0").sum())
    assert report.rows_read == truth["n_rows"] - p0_lines
    assert "P0" not in by_query.items.ids


def test_sqlite_chunked_reading_gives_identical_tables(sqlite_db):
    db, truth = sqlite_db
    whole = read_sql(f"sqlite:///{db}", "orders", chunk_rows=10**9)
    chunked = read_sql(f"sqlite:///{db}", "orders", chunk_rows=37)
    assert chunked.num_rows == truth["n_rows"]
    assert chunked.column("order_id").num_chunks == -(-truth["n_rows"] // 37)
    assert chunked.combine_chunks().equals(whole.combine_chunks())
    assert chunked.schema.field("quantity").type == pa.int64()
    assert chunked.schema.field("unit_price").type == pa.float64()


def test_reading_never_holds_more_than_one_chunk_of_rows():
    class Cursor:
        description = [("order_id",), ("item_id",)]
        fetched = 0
        largest = 0

        def fetchmany(self, n):
            end = min(self.fetched + n, 1000)
            rows = [(f"O{i}", f"I{i % 7}") for i in range(self.fetched, end)]
            self.fetched += len(rows)
            self.largest = max(self.largest, len(rows))
            return rows

        def fetchall(self):
            raise AssertionError("fetchall would materialise every row at once")

    cur = Cursor()
    table = sqlmod._fetch_table(cur, 64, "test")
    assert table.num_rows == 1000 and cur.largest == 64
    assert table.column("item_id")[999].as_py() == "I5"


def test_sqlite_float_ids_mixed_types_and_integer_timestamps(tmp_path):
    db = tmp_path / "typed.db"
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("CREATE TABLE lines (cust REAL, inv INTEGER, sku, qty REAL, at INTEGER)")
        conn.executemany("INSERT INTO lines VALUES (?, ?, ?, ?, ?)", [
            (17850.0, 536365, "85123A", 6.0, 1291191960),
            (17850.0, 536365, 71053, 6.0, 1291191960),      # an int in a mostly-text column
            (13047.0, 536366, "22633", 2.0, 1291192000),
        ])
    conn.close()
    inter, report = read_orders(
        f"sqlite:///{db}", query="lines",
        columns={"customer_id": "cust", "order_id": "inv", "item_id": "sku",
                 "quantity": "qty", "timestamp": "at"})
    assert report.rows_used == 3
    assert sorted(inter.customers.ids) == ["13047", "17850"]
    assert sorted(inter.orders.ids) == ["536365", "536366"]
    assert sorted(inter.items.ids) == ["22633", "71053", "85123A"]
    assert sorted(inter.timestamp) == [1291191960, 1291191960, 1291192000]


def test_sqlite_catalog_from_a_query(tmp_path):
    db = tmp_path / "cat.db"
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("CREATE TABLE products (sku TEXT, title TEXT, price REAL, stock INTEGER)")
        conn.executemany("INSERT INTO products VALUES (?, ?, ?, ?)",
                         [("A1", "Mug", 4.5, 1), ("B2", "Teapot", 20.0, 0)])
    conn.close()
    cat, report = read_catalog(f"sqlite:///{db}",
                               {"item_id": "sku", "name": "title", "in_stock": "stock"},
                               query="SELECT * FROM products ORDER BY sku")
    assert report.rows_used == 2
    assert list(cat.ids) == ["A1", "B2"]
    assert list(cat.name) == ["Mug", "Teapot"]
    assert list(cat.in_stock) == [True, False]
    assert list(cat.price) == [4.5, 20.0]


@pytest.mark.parametrize("url, query, fragment", [
    ("sqlite:///{db}", None, "--orders-query"),
    ("sqlite:///{db}", "   ", "--orders-query"),
    ("sqlite:///{db}", "no_such_table", "no such table: no_such_table"),
    ("sqlite:///{db}", "SELEC item_id FROM orders", "syntax error"),
    ("sqlite:///{db}", "SELECT nope FROM orders", "no such column: nope"),
    ("sqlite:///{missing}", "orders", "no such SQLite database file"),
    ("mysql://u:pw@host/db", "orders", "unsupported database URL scheme 'mysql'"),
])
def test_sqlite_and_url_errors_are_one_clear_data_error(sqlite_db, tmp_path, url, query, fragment):
    db, _ = sqlite_db
    url = url.format(db=db, missing=tmp_path / "nope.db")
    with pytest.raises(DataError) as err:
        read_orders(url, query=query)
    assert fragment in str(err.value)
    assert "pw@" not in str(err.value)


def test_a_missing_sqlite_file_is_not_created(tmp_path):
    with pytest.raises(DataError):
        read_sql(f"sqlite:///{tmp_path}/shop.db", "orders")
    assert not (tmp_path / "shop.db").exists()


def test_missing_required_column_from_sql_names_the_column(sqlite_db):
    db, _ = sqlite_db
    with pytest.raises(DataError, match="required column 'item_id' is missing"):
        read_orders(f"sqlite:///{db}", query="SELECT order_id, customer_id FROM orders")


# ---------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="module")
def pg_tables(planted):
    url = pg_url_or_skip()
    csv_path, truth = planted
    tables = {kind: unique_table(f"orders_{kind}") for kind in ("timestamp", "timestamptz", "text")}
    for kind, table in tables.items():
        load_postgres(url, csv_path, table, timestamp_type=kind)
    yield url, tables, truth
    drop_postgres(url, *tables.values())


@pytest.mark.parametrize("kind", ["timestamp", "timestamptz", "text"])
def test_postgres_orders_equal_the_csv_for_every_timestamp_type(planted, pg_tables, kind):
    url, tables, truth = pg_tables
    csv_path, _ = planted
    from_csv, _ = read_orders(csv_path)
    inter, report = read_orders(url, columns=PG_COLUMNS,
                                query=f"SELECT * FROM {tables[kind]} ORDER BY ctid")
    assert report.rows_read == truth["n_rows"] and report.rows_rejected == 0
    assert_same_interactions(inter, from_csv)


def test_postgres_column_types_map_to_arrow(pg_tables):
    url, tables, _ = pg_tables
    table = read_sql(url, tables["timestamptz"], chunk_rows=100)
    assert table.schema.field("quantity").type == pa.int64()
    assert table.schema.field("unit_price").type == pa.float64()  # numeric(10,2)
    assert table.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert table.column("ts").num_chunks > 1


def test_postgres_float_id_column_becomes_integer_strings(pg_tables):
    url, _, _ = pg_tables
    inter, report = read_orders(url, query=(
        "SELECT * FROM (VALUES (17850.0::float8, 536365::bigint, '85123A', 1.5::numeric), "
        "(13047.0::float8, 536366::bigint, '22633', 2.0::numeric)) "
        "AS t(customer_id, order_id, item_id, unit_price)"))
    assert report.rows_used == 2
    assert sorted(inter.customers.ids) == ["13047", "17850"]
    assert sorted(inter.orders.ids) == ["536365", "536366"]
    assert sorted(inter.unit_price.tolist()) == [1.5, 2.0]


def test_postgres_errors_are_clear_and_never_show_the_password(pg_tables):
    url, tables, _ = pg_tables
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    password = parts.password
    bad_auth = url.replace(f":{password}@", ":wrong-Secret-123@")
    with pytest.raises(DataError) as err:
        read_orders(bad_auth, query=tables["text"])
    message = str(err.value)
    assert "wrong-Secret-123" not in message and "password authentication failed" in message
    assert ":***@" in message

    with pytest.raises(DataError) as err:
        read_orders(url, query="no_such_table_xyz")
    assert 'relation "no_such_table_xyz" does not exist' in str(err.value)
    assert password not in str(err.value)

    with pytest.raises(DataError, match="syntax error"):
        read_orders(url, query="SELEC 1")

    closed_port = url.replace(f":{parts.port}/", ":1/")
    with pytest.raises(DataError, match="cannot connect"):
        read_orders(closed_port, query="orders")


def test_postgres_reading_is_read_only(pg_tables):
    import psycopg

    url, tables, _ = pg_tables
    seq = unique_table("xsell_seq")
    with psycopg.connect(url) as conn:
        conn.execute(f"CREATE SEQUENCE {seq}")
    try:
        # nextval() writes; in our read-only transaction the server refuses it.
        with pytest.raises(DataError, match="read-only transaction"):
            read_sql(url, f"SELECT nextval('{seq}') AS n")
    finally:
        with psycopg.connect(url) as conn:
            conn.execute(f"DROP SEQUENCE {seq}")
