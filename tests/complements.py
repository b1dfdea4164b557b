"""Planted complements among popular noise (issue 16).

40 anchors ``A0``..``A39``, each bought with its fixed partner ``B<i>`` in about
60% of its orders, among 1,500 independent noise items ``N0``..``N1499`` with
Zipf popularity (``N0`` the best-seller), in orders of 2-6 items. Most holdout
queries are noise items, where best-sellers are the best guess; a naive
selection on HR@10 therefore ships popularity for also-bought, and every
anchor's page shows the same best-sellers instead of its partner, which
hundreds of customers bought with it. The right answer is known: also-bought
of ``A<i>`` is ``B<i>`` first; a cart of two anchors gets both partners.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from support.synthetic import write_orders

N_ANCHORS = 40
N_NOISE = 1500
START = datetime(2025, 1, 1)


def complement_orders(path, n_customers: int = 2500, anchor_share: float = 0.3,
                      partner_rate: float = 0.6, seed: int = 0, one_line_orders: bool = False,
                      bunched: bool = False, n_loners: int = 0) -> dict:
    """Write the orders CSV; return the truth.

    ``n_loners``: as many items ``L0``.. without any evidence: each bought by 3-8
    customers of their own, alone (one order of one item), so no customer bought
    one with anything else.

    ``one_line_orders``: every order line its own order (the shape of a dataset
    exported line by line: no basket holds two items). ``bunched``: each
    customer's activity falls within a week, at a random point of the year, so
    most customers' histories lie wholly on one side of any time cut.
    """
    rng = np.random.default_rng(seed)
    zipf = 1.0 / np.arange(1, N_NOISE + 1)
    zipf /= zipf.sum()
    rows, n = [], 0
    for c in range(n_customers):
        start = rng.uniform(0, 358) if bunched else 0.0
        span = 7.0 if bunched else 365.0
        for _ in range(int(rng.integers(1, 5))):
            size = int(rng.integers(2, 7))
            items = []
            if rng.random() < anchor_share:
                a = int(rng.integers(N_ANCHORS))
                items.append(f"A{a}")
                if rng.random() < partner_rate:
                    items.append(f"B{a}")
            while len(items) < size:
                item = f"N{int(rng.choice(N_NOISE, p=zipf))}"
                if item not in items:
                    items.append(item)
            ts = START + timedelta(days=float(start + rng.uniform(0, span)))
            stamp = ts.isoformat(timespec="seconds")
            n += 1
            for line, item in enumerate(items):
                order = f"O{n}-{line}" if one_line_orders else f"O{n}"
                rows.append([f"C{c}", order, item, 1, 1.0, stamp])
    for i in range(n_loners):
        for _ in range(int(rng.integers(3, 9))):
            n += 1
            ts = START + timedelta(days=float(rng.uniform(0, 365)))
            rows.append([f"C{n_customers + n}", f"O{n}", f"L{i}", 1, 1.0,
                         ts.isoformat(timespec="seconds")])
    write_orders(path, rows)
    return {"partners": {f"A{i}": f"B{i}" for i in range(N_ANCHORS)},
            "loners": [f"L{i}" for i in range(n_loners)],
            "best_seller": "N0", "lines": len(rows)}


def bunched_line_orders(path, n_customers: int = 1500, n_pairs: int = 20, n_noise: int = 200,
                        seed: int = 0) -> dict:
    """Every order line its own order, each customer active within a few days.

    A customer comes twice: first for a few Zipf-popular noise items and anchor
    ``A<i>``, then one to five days later for its partner ``B<i>`` (80% of them)
    and a noise item or two, each line its own order, minutes apart. Starts are
    spread over the year, so one global time cut leaves few customers with both
    a past and a future, and no order holds two items. The right choice is
    known: next-best for a customer holding ``A<i>`` is ``B<i>``, not a
    best-seller; also-bought of ``A<i>`` is ``B<i>``.
    """
    rng = np.random.default_rng(seed)
    zipf = 1.0 / np.arange(1, n_noise + 1)
    zipf /= zipf.sum()
    rows, n = [], 0

    def noise(count):
        return [f"N{int(x)}" for x in rng.choice(n_noise, size=count, p=zipf)]

    for c in range(n_customers):
        first = rng.uniform(0, 355)
        pair = int(rng.integers(n_pairs))
        visits = [(first, noise(int(rng.integers(1, 4))) + [f"A{pair}"]),
                  (first + rng.uniform(1, 5),
                   ([f"B{pair}"] if rng.random() < 0.8 else []) + noise(int(rng.integers(1, 3))))]
        for day, items in visits:
            for minute, item in enumerate(dict.fromkeys(items)):
                n += 1
                ts = START + timedelta(days=float(day), minutes=3 * minute)
                rows.append([f"C{c}", f"O{n}", item, 1, 1.0, ts.isoformat(timespec="seconds")])
    write_orders(path, rows)
    return {"partners": {f"A{i}": f"B{i}" for i in range(n_pairs)}, "lines": len(rows)}
