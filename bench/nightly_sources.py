"""Time a full ``xsell nightly`` run from a Parquet file, from SQLite and from PostgreSQL.

The Parquet run is the baseline: the script prints, per source, the total run
time, the time of the "read" stage, its share of the run, and the ratio of
each database run's read time (and total) to the Parquet run's.

    source scripts/ci-postgres.sh      # or export XSELL_TEST_PG_URL=postgresql://...
    python bench/nightly_sources.py demo/online_retail.parquet --config demo/online_retail.toml
    python bench/nightly_sources.py /work/shared/data/instacart/order_products__train.parquet \
        --columns item_id=product_id --select order_id,product_id

The data is loaded into a throwaway table (dropped at the end) and a
temporary SQLite file; nothing is written anywhere else.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PG_TYPES = [(pa.types.is_integer, "bigint"), (pa.types.is_floating, "double precision"),
            (pa.types.is_timestamp, "timestamp"), (pa.types.is_boolean, "boolean")]


def pg_type(t: pa.DataType) -> str:
    return next((name for test, name in PG_TYPES if test(t)), "text")


def load_postgres(url: str, table: pa.Table, name: str) -> float:
    import psycopg

    start = time.perf_counter()
    cols = ", ".join(f'"{f.name}" {pg_type(f.type)}' for f in table.schema)
    with psycopg.connect(url) as conn:
        conn.execute(f"CREATE UNLOGGED TABLE {name} ({cols})")
        with conn.cursor().copy(f"COPY {name} FROM STDIN WITH (FORMAT csv, HEADER true)") as copy:
            for i, batch in enumerate(table.to_batches(max_chunksize=200_000)):
                buf = io.BytesIO()
                pacsv.write_csv(pa.Table.from_batches([batch]), buf)
                data = buf.getvalue()
                if i:
                    data = data.split(b"\n", 1)[1]  # one header line for the whole COPY
                copy.write(data)
        conn.execute(f"ANALYZE {name}")
    return time.perf_counter() - start


def load_sqlite(path: str, table: pa.Table, name: str) -> float:
    start = time.perf_counter()
    conn = sqlite3.connect(path)
    cols = ", ".join(f'"{f.name}"' for f in table.schema)
    marks = ", ".join("?" for _ in table.schema)
    conn.execute(f"CREATE TABLE {name} ({cols})")
    for batch in table.to_batches(max_chunksize=100_000):
        columns = [c.to_pylist() for c in batch.columns]
        rows = [tuple(v.isoformat(sep=" ") if hasattr(v, "isoformat") else v for v in r)
                for r in zip(*columns, strict=True)]
        conn.executemany(f"INSERT INTO {name} VALUES ({marks})", rows)
    conn.commit()
    conn.close()
    return time.perf_counter() - start


def nightly(orders: str, models: str, args, query: str | None) -> dict:
    cmd = [sys.executable, "-m", "training.cli", "nightly", "--orders", orders,
           "--models", models, "--keep", "1"]
    if query:
        cmd += ["--orders-query", query]
    if args.config:
        cmd += ["--config", args.config]
    if args.columns:
        cmd += ["--columns", args.columns]
    env = dict(os.environ, PYTHONPATH=REPO, OPENBLAS_NUM_THREADS="1")
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 3):
        sys.exit(f"nightly from {orders.split('@')[-1]} failed (exit {proc.returncode}):\n"
                 f"{proc.stderr[-2000:]}")
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"wall_s": wall, "run_s": record["duration_s"], "read_s": record["timings_s"]["read"],
            "exit": proc.returncode, "rows": record["data"]["rows_used"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parquet")
    parser.add_argument("--config")
    parser.add_argument("--columns")
    parser.add_argument("--select", help="comma-separated columns to load and read (default: all)")
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args()
    url = os.environ.get("XSELL_TEST_PG_URL")
    if not url:
        sys.exit("set XSELL_TEST_PG_URL (source scripts/ci-postgres.sh)")

    table = pq.read_table(args.parquet, columns=args.select.split(",") if args.select else None)
    table = table.replace_schema_metadata(None)
    name = f"bench_orders_{uuid.uuid4().hex[:8]}"
    work = tempfile.mkdtemp(prefix="xsell-bench-")
    base_file = os.path.join(work, "orders.parquet")
    pq.write_table(table, base_file)
    print(f"{args.parquet}: {table.num_rows:,} rows, columns {', '.join(table.column_names)}")
    load_pg = load_postgres(url, table, name)
    print(f"loaded into PostgreSQL in {load_pg:.1f} s")
    results = {}
    try:
        results["parquet"] = nightly(base_file, os.path.join(work, "m-parquet"), args, None)
        results["postgresql"] = nightly(url, os.path.join(work, "m-pg"), args, name)
        if not args.no_sqlite:
            db = os.path.join(work, "orders.db")
            print(f"loaded into SQLite in {load_sqlite(db, table, name):.1f} s")
            results["sqlite"] = nightly(f"sqlite:///{db}", os.path.join(work, "m-sqlite"),
                                        args, name)
    finally:
        import psycopg

        with psycopg.connect(url) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {name}")
        subprocess.run(["rm", "-rf", work], check=False)
    base = results["parquet"]
    print(f"{'source':<12}{'run s':>9}{'read s':>9}{'read share':>12}"
          f"{'read x parquet':>16}{'run x parquet':>15}{'rows used':>12}  exit")
    for source, r in results.items():
        print(f"{source:<12}{r['run_s']:>9.2f}{r['read_s']:>9.2f}{r['read_s'] / r['run_s']:>12.1%}"
              f"{r['read_s'] / base['read_s']:>16.2f}{r['run_s'] / base['run_s']:>15.2f}"
              f"{r['rows']:>12,}  {r['exit']}")


if __name__ == "__main__":
    main()
