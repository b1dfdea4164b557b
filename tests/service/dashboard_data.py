"""A models folder for the dashboard tests: the planted orders with a named catalog, two
versions (the trained one, and a later copy that is current)."""

from __future__ import annotations

import csv
import re
import shutil

from support.synthetic import N_NOISE, N_PAIRS, planted_orders
from support.versions import publish_copy

ADMIN_KEY = "admin-dashboard-key-0123456789"
CRM_KEY = "crm-dashboard-key-0123456789"
KEYS = f"crm:{CRM_KEY},admin:{ADMIN_KEY}"
NEWER = "20991231T000000Z-copy"
OUT_OF_STOCK = "B7"


def write_catalog(path: str) -> str:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["item_id", "name", "category", "price", "in_stock"])
        for i in range(N_PAIRS):
            out.writerow([f"A{i}", f"Anchor lamp {i}", "lamps", 10.0, "true"])
            out.writerow([f"B{i}", f"Bulb pack {i}", "bulbs", 5.0,
                          "false" if f"B{i}" == OUT_OF_STOCK else "true"])
        for i in range(N_NOISE):
            out.writerow([f"P{i}", f"Paper napkins {i}", "tableware", 2.0, "true"])
    return path


def build_models(tmp) -> tuple[str, str, str]:
    """(models dir, the trained version, the newer current copy)."""
    orders, catalog = str(tmp / "orders.csv"), write_catalog(str(tmp / "catalog.csv"))
    planted_orders(orders)
    with open(orders, "a", encoding="utf-8") as fh:  # rejected lines, one per reason
        fh.write("C1,OX1,,1,2.0,2025-03-01T00:00:00\n"
                 "C1,OX2,P1,0,2.0,2025-03-01T00:00:00\n"
                 "C1,OX3,P1,1,2.0,not-a-date\n")
    models = str(tmp / "models")
    from training.config import load_config
    from training.train import train

    config = load_config(overrides={"als": {"factors": 16, "iterations": 8, "random_state": 0},
                                    "gate": {"min_lift_over_popularity": 0.0}})
    summary = train(orders, models, config, catalog=catalog)
    assert summary["published"], summary["gate"]
    publish_copy(models, summary["version"], NEWER)
    return models, summary["version"], NEWER


def copy_models(models: str, dest) -> str:
    shutil.copytree(models, str(dest))
    return str(dest)


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def sign_in(client, key: str = ADMIN_KEY):
    """Sign in through the form (with the form's CSRF token); returns the response."""
    page = client.get("/dashboard/sign-in").get_data(as_text=True)
    return client.post("/dashboard/sign-in", data={"key": key, "csrf_token": csrf_of(page),
                                                   "next": "/dashboard/versions"})

