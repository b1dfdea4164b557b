"""Derive demo/catalog.csv (item_id, name, price) from the Online Retail orders.

The name is an item's most frequent Description, the price its median
UnitPrice. Run from the repository root: python demo/make_catalog.py
"""

import csv
import os
import statistics
from collections import Counter, defaultdict

import pyarrow.parquet as pq

HERE = os.path.dirname(os.path.abspath(__file__))

table = pq.read_table(os.path.join(HERE, "online_retail.parquet"),
                      columns=["StockCode", "Description", "UnitPrice", "Quantity"])
names: dict[str, Counter] = defaultdict(Counter)
prices: dict[str, list] = defaultdict(list)
for code, desc, price, qty in zip(*(table[c].to_pylist() for c in table.column_names), strict=True):
    if desc and desc != "Unknown":
        names[code][desc.strip()] += 1
    if qty and qty > 0 and price is not None and price > 0:
        prices[code].append(price)
with open(os.path.join(HERE, "catalog.csv"), "w", newline="", encoding="utf-8") as fh:
    out = csv.writer(fh)
    out.writerow(["item_id", "name", "price"])
    for code in sorted(set(names) | set(prices)):
        name = names[code].most_common(1)[0][0] if names[code] else ""
        price = round(statistics.median(prices[code]), 2) if prices[code] else ""
        out.writerow([code, name, price])
