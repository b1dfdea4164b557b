"""Upsell on the Dunnhumby sample: real categories and prices.

Builds an orders CSV (household -> customer, basket -> order) and a catalog
(``category`` = product_category, ``price`` = median sales_value / quantity
per product) from ``shared/data/dunnhumby_sample``, trains, and checks every
upsell answer against the category and price band. Run as a script for the
figures::

    PYTHONPATH=. python -m support.dunnhumby [DATA_DIR]
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(os.path.dirname(os.path.dirname(HERE)), "shared", "data",
                    "dunnhumby_sample")


def build_inputs(data_dir: str, out_dir: str) -> tuple[str, str]:
    """Orders and catalog CSVs in xsell's column names."""
    str_cols = {c: pa.string() for c in ("household_id", "basket_id", "product_id")}
    tx = pacsv.read_csv(os.path.join(data_dir, "transactions_sample.csv.gz"),
                        convert_options=pacsv.ConvertOptions(column_types=str_cols))
    qty = tx["quantity"].to_numpy().astype(float)
    value = tx["sales_value"].to_numpy().astype(float)
    product = np.asarray(tx["product_id"].to_pylist(), dtype=str)
    orders = pa.table({
        "customer_id": tx["household_id"], "order_id": tx["basket_id"], "item_id": tx["product_id"],
        "quantity": tx["quantity"], "timestamp": tx["transaction_timestamp"],
    })
    orders_path = os.path.join(out_dir, "orders.csv")
    pacsv.write_csv(orders, orders_path)

    ok = (qty > 0) & (value > 0)
    unit = value[ok] / qty[ok]
    ids = product[ok]
    order = np.lexsort((unit, ids))
    ids, unit = ids[order], unit[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    ends = np.r_[starts[1:], len(ids)]
    median = (unit[starts + (ends - starts - 1) // 2] + unit[starts + (ends - starts) // 2]) / 2
    prices = dict(zip(ids[starts], median, strict=True))

    products = pacsv.read_csv(os.path.join(data_dir, "products.csv.gz"),
                              convert_options=pacsv.ConvertOptions(
                                  column_types={"product_id": pa.string()}))
    pid = products["product_id"].to_pylist()
    catalog = pa.table({
        "item_id": products["product_id"],
        "name": pc.binary_join_element_wise(pc.fill_null(products["brand"], ""),
                                            pc.fill_null(products["product_type"], ""), " "),
        "category": products["product_category"],
        "price": pa.array([prices.get(p) for p in pid], type=pa.float64()),
        "department": products["department"],
        "brand": products["brand"],
        "package_size": products["package_size"],
    })
    catalog_path = os.path.join(out_dir, "catalog.csv")
    pacsv.write_csv(catalog, catalog_path)
    return orders_path, catalog_path


def train_model(data_dir: str, out_dir: str):
    from recsys.artifacts import load_version
    from recsys.recommender import Recommender
    from training.config import load_config
    from training.train import train

    orders, catalog = build_inputs(data_dir, out_dir)
    # EASE left out, as it was before large catalogues were fitted (8,013 items): the
    # upsell answers do not use it, and its 24-setting grid would cost minutes here.
    config = load_config(None, {"als": {"factors": 32, "iterations": 8},
                                "ease": {"enabled": False},
                                "train": {"max_eval_queries": 300}})
    models = os.path.join(out_dir, "models")
    summary = train(orders, models, config, catalog=catalog)
    return Recommender.load(load_version(models, summary["version"]))


def survey(rec, kind: str = "upsell", limit: int = 10, filters=None, items=None) -> dict:
    """Answer ``kind`` for every recommendable item; check category and band; count why empty."""
    method = getattr(rec, kind)
    band = rec.upsell_band if kind == "upsell" else rec.downsell_band
    meta = rec.meta
    cat_sizes = np.bincount(meta.category[meta.category >= 0], minlength=len(meta.categories))
    reasons: Counter = Counter()
    violations = []
    items = np.flatnonzero(rec.known_items) if items is None else items
    answered = 0
    for i in items:
        answer = method(int(i), limit, filters)
        p = float(meta.price[i])
        for r in answer.items:
            q = float(meta.price[r.item_idx])
            if meta.category[r.item_idx] != meta.category[i] or not (
                    band[0] * p * (1 - 1e-6) <= q <= band[1] * p * (1 + 1e-6)):
                violations.append((rec.items.id_of(int(i)), rec.items.id_of(r.item_idx)))
        if answer.items:
            answered += 1
            continue
        reasons[_why_empty(rec, int(i), band, cat_sizes, answer)] += 1
    return {"items": len(items), "answered": answered, "empty": len(items) - answered,
            "reasons": dict(reasons), "violations": violations}


def _why_empty(rec, i: int, band, cat_sizes, answer) -> str:
    meta = rec.meta
    if meta.category[i] < 0:
        return "no category"
    if np.isnan(meta.price[i]):
        return "no price"
    if cat_sizes[meta.category[i]] < 2:
        return "only item of its category"
    same = (meta.category == meta.category[i]) & rec.known_items
    same[i] = False
    p = meta.price[i]
    in_band = same & (meta.price >= band[0] * p * (1 - 1e-6)) \
        & (meta.price <= band[1] * p * (1 + 1e-6))
    if not in_band.any():
        return "no item of its category in the price band"
    cand, _ = rec.substitutes.neighbours(i)
    if not in_band[cand].any():
        return "no substitute evidence (in-band items never close in ALS space or co-bought)"
    from recsys.rules import Filters

    method = rec.upsell if band == rec.upsell_band else rec.downsell
    if method(i, 10, Filters(min_support=0)).items:
        return "relevance floor: fewer than min_support customers bought both"
    return "relevance floor: score below min_score"


def main(argv: list[str]) -> None:
    data_dir = argv[0] if argv else DATA
    from recsys.rules import Filters

    with tempfile.TemporaryDirectory() as tmp:
        rec = train_model(data_dir, tmp)
        counts = rec.popularity.counts_[rec.known_items]
        sys.stdout.write(f"{len(rec.customers)} households, {len(counts)} items; buyers per item: "
                         f"median {np.median(counts):.0f}, {np.mean(counts >= 3):.1%} of items "
                         f"have 3 or more; default floor min_support={rec.floor.min_support}\n")
        for kind in ("upsell", "downsell"):
            s = survey(rec, kind)
            share = s["empty"] / max(s["items"], 1)
            sys.stdout.write(f"{kind}: {s['items']} items, {s['answered']} answered, "
                             f"{s['empty']} empty ({share:.1%}); band/category violations: "
                             f"{len(s['violations'])}\n")
            for reason, n in sorted(s["reasons"].items(), key=lambda kv: -kv[1]):
                sys.stdout.write(f"  {n:6d} ({n / max(s['items'], 1):.1%})  {reason}\n")
        for support in (2, 1, 0):
            s = survey(rec, "upsell", filters=Filters(min_support=support))
            sys.stdout.write(f"upsell with min_support={support}: {s['answered']} of {s['items']} "
                             f"items answered ({s['answered'] / max(s['items'], 1):.1%}); "
                             f"violations: {len(s['violations'])}\n")


if __name__ == "__main__":
    main(sys.argv[1:])
