"""Synthetic purchase histories at scale: power-law item popularity and basket sizes.

    python bench/synth.py --lines 20000000 --customers 1000000 --items 100000 --out /tmp/synth.parquet

Written in chunks with pyarrow so that generating 20M lines needs little memory.
"""

from __future__ import annotations

import argparse

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def generate(out: str, lines: int, customers: int, items: int, seed: int = 0,
             chunk: int = 2_000_000) -> None:
    rng = np.random.default_rng(seed)
    # Zipf-like popularity over items (exponent 1.0), shuffled so ids carry no order.
    weights = 1.0 / np.arange(1, items + 1)
    cdf = np.cumsum(weights / weights.sum())
    item_perm = rng.permutation(items)
    # Customer activity is power-law too: a few heavy buyers, many occasional ones.
    activity = 1.0 / np.arange(1, customers + 1) ** 0.7
    cust_cdf = np.cumsum(activity / activity.sum())
    start = np.datetime64("2024-01-01T00:00:00", "s").astype(np.int64)
    year = 365 * 86400
    writer = None
    order_base = 0
    written = 0
    while written < lines:
        n = min(chunk, lines - written)
        basket = np.maximum(1, rng.geometric(1 / 8, size=n // 4 + 1))  # mean 8 lines per order
        basket = basket[np.cumsum(basket) <= n]
        n = int(basket.sum())
        order_idx = np.repeat(np.arange(len(basket)), basket) + order_base
        order_customer = np.searchsorted(cust_cdf, rng.random(len(basket)))
        order_time = start + rng.integers(0, year, len(basket))
        item = item_perm[np.searchsorted(cdf, rng.random(n))]
        table = pa.table({
            "customer_id": pa.array(np.repeat(order_customer, basket).astype(np.int64)),
            "order_id": pa.array(order_idx.astype(np.int64)),
            "item_id": pa.array(item.astype(np.int64)),
            "quantity": pa.array(rng.integers(1, 4, n).astype(np.int64)),
            "timestamp": pa.array(np.repeat(order_time, basket).astype("datetime64[s]")),
        })
        if writer is None:
            writer = pq.ParquetWriter(out, table.schema)
        writer.write_table(table)
        written += n
        order_base += len(basket)
    writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=20_000_000)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    generate(args.out, args.lines, args.customers, args.items, args.seed)


if __name__ == "__main__":
    main()
