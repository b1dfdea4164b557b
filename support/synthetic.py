"""Synthetic purchase data with a planted, known right answer.

Ten complementary pairs (``A0``/``B0`` ... ``A9``/``B9``): a customer who buys
``Ai`` buys ``Bi`` too, in the same basket or a later one, far more often than
chance. Twenty noise items ``P0``..``P19``: ``P0`` is the best-seller (in 15% of all
orders, three times any other noise item), the others are one per order at
random. A customer
buys ``Bi`` in the basket of their first ``Ai`` (40%) or in a later order
(60% each, until bought), so next to ``Ai`` and after it, ``Bi`` is by
construction the likelier item; the best-seller is popular but not the right
answer. So:

- also-bought(``Ai``) must rank ``Bi`` first (and vice versa);
- a customer holding ``Ai`` but not ``Bi`` (the ``Q*`` customers) must get
  ``Bi`` as next-best, and not the best-seller ``P0`` first.
"""

from __future__ import annotations

import csv
from datetime import datetime, timedelta

import numpy as np

ORDER_HEADER = ["customer_id", "order_id", "item_id", "quantity", "unit_price", "timestamp"]
N_PAIRS = 10
N_NOISE = 20
START = datetime(2025, 1, 1)


def planted_orders(path: str, n_customers: int = 600, seed: int = 0) -> dict:
    """Write a planted orders CSV to ``path``; return the truth about it."""
    rng = np.random.default_rng(seed)
    rows = []
    order_no = 0

    def add_order(customer: str, items: list[str], day: float) -> None:
        nonlocal order_no
        order_no += 1
        ts = (START + timedelta(days=day)).isoformat(timespec="seconds")
        for item in dict.fromkeys(items):
            price = 10.0 if item.startswith("A") else 5.0 if item.startswith("B") else 2.0
            rows.append([customer, f"O{order_no}", item, int(rng.integers(1, 4)), price, ts])

    for c in range(n_customers):
        customer = f"C{c}"
        pair = int(rng.integers(N_PAIRS))
        n_orders = int(rng.integers(3, 6))
        days = np.sort(rng.uniform(0, 360, n_orders))
        bought_b = False
        for o, day in enumerate(days):
            items = [f"P{int(rng.integers(1, N_NOISE))}"]
            if rng.random() < 0.15:
                items.append("P0")
            if o == 0 or rng.random() < 0.3:
                items.append(f"A{pair}")
            # The complement follows its anchor: in the same basket or a later one.
            if not bought_b and rng.random() < (0.4 if o == 0 else 0.6):
                items.append(f"B{pair}")
                bought_b = True
            add_order(customer, items, float(day))

    # Query customers: hold Ai (and noise) but never Bi, all before the last day.
    query_customers = {}
    for i in range(N_PAIRS):
        for r in range(3):
            customer = f"Q{i}_{r}"
            add_order(customer, [f"A{i}", "P9"], 10.0 + r)
            add_order(customer, [f"A{i}", "P12"], 40.0 + r)
            query_customers[customer] = f"B{i}"

    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["customer_id", "order_id", "item_id", "quantity", "unit_price", "timestamp"])
        out.writerows(rows)
    return {
        "pairs": {f"A{i}": f"B{i}" for i in range(N_PAIRS)},
        "best_seller": "P0",
        "query_customers": query_customers,
        "n_rows": len(rows),
    }


def write_orders(path, rows, header=ORDER_HEADER) -> str:
    """Order lines ``rows`` as a CSV at ``path`` under ``header``; returns the path."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(header)
        out.writerows(rows)
    return str(path)
