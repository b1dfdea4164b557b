"""Planted plan tiers for upsell/downsell tests.

Category ``plans``: ``BASIC`` (10) < ``ADDON`` (20) < ``PRO`` (25) < ``ENT`` (60).
``ADDON`` is a complement: always bought in the same basket as ``BASIC``.
Customers upgrade in later baskets: basic buyers to ``PRO``, pro buyers to
``ENT``. Category ``snacks`` holds noise items ``N0``..``N11`` (1..12, power-law
popularity) bought along the way; ``N11`` is out of stock. So:

- upsell(BASIC) = PRO (ADDON is in the band but a complement; ENT is 6x);
- upsell(PRO) = ENT; downsell(ENT) = PRO;
- a basic customer who never upgraded gets PRO as their customer upsell.
"""

from __future__ import annotations

import csv
from datetime import datetime, timedelta

import numpy as np

PRICES = {"BASIC": 10.0, "ADDON": 20.0, "PRO": 25.0, "ENT": 60.0}
N_NOISE = 12
START = datetime(2025, 1, 1)


def write_tiers(orders_path: str, catalog_path: str, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    noise_p = 1.0 / np.arange(1, N_NOISE + 1) ** 1.1
    noise_p /= noise_p.sum()
    rows = []
    state = {"order": 0}

    def order(customer: str, items: list[str], day: float) -> None:
        state["order"] += 1
        ts = (START + timedelta(days=day)).isoformat(timespec="seconds")
        for item in dict.fromkeys(items):
            price = PRICES.get(item, float(item[1:]) + 1.0 if item.startswith("N") else 1.0)
            rows.append([customer, f"O{state['order']}", item, 1, price, ts])

    def noise(k: int = 2) -> list[str]:
        return list(rng.choice([f"N{j}" for j in range(N_NOISE)], size=k, p=noise_p))

    stay_basic = []
    for c in range(240):
        cid = f"B{c}"
        order(cid, ["BASIC", "ADDON"] + noise(), float(rng.uniform(0, 100)))
        if c % 5 < 3:
            order(cid, ["PRO"] + noise(), float(rng.uniform(150, 250)))
        else:
            stay_basic.append(cid)
        order(cid, noise(), float(rng.uniform(260, 300)))
    for c in range(140):
        cid = f"P{c}"
        order(cid, ["PRO"] + noise(), float(rng.uniform(0, 100)))
        if c % 2 == 0:
            order(cid, ["ENT"] + noise(), float(rng.uniform(150, 250)))
        order(cid, noise(), float(rng.uniform(260, 300)))
    for c in range(60):
        cid = f"E{c}"
        order(cid, ["ENT"] + noise(), float(rng.uniform(0, 100)))
        order(cid, noise(), float(rng.uniform(200, 300)))

    with open(orders_path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["customer_id", "order_id", "item_id", "quantity", "unit_price", "timestamp"])
        out.writerows(rows)
    with open(catalog_path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["item_id", "name", "category", "price", "in_stock", "brand"])
        for item, price in PRICES.items():
            out.writerow([item, f"{item.title()} plan", "plans", price, "true", "acme"])
        for j in range(N_NOISE):
            out.writerow([f"N{j}", f"Snack {j}", "snacks", float(j + 1),
                          "false" if j == N_NOISE - 1 else "true", "crunch"])
    return {"rows": rows, "stay_basic": stay_basic}


def buyers(rows: list, item: str) -> set[str]:
    """Customers who bought ``item``, counted straight from the written rows."""
    return {r[0] for r in rows if r[2] == item}
