"""Library-level cost of business filters and the relevance floor, per query.

Trains on the Dunnhumby sample (real categories, prices) unless ``--models``
names a trained folder, then answers the same queries unfiltered and with
``category`` + ``in_stock`` + ``max_price``, and prints queries/second and
the ratio filtered / unfiltered for each method (the service target is 0.8x).

    PYTHONPATH=. python bench/rules_bench.py [--models DIR] [--queries 500]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recsys.artifacts import load_version  # noqa: E402
from recsys.recommender import Recommender  # noqa: E402
from recsys.rules import Filters  # noqa: E402


def rate(func, queries) -> float:
    func(int(queries[0]))
    start = time.perf_counter()
    for q in queries:
        func(int(q))
    return len(queries) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default=None)
    parser.add_argument("--queries", type=int, default=500)
    args = parser.parse_args()
    tmp = None
    if args.models:
        rec = Recommender.load(load_version(args.models))
    else:
        from support.dunnhumby import DATA, train_model

        tmp = tempfile.TemporaryDirectory()
        rec = train_model(DATA, tmp.name)
    rng = np.random.default_rng(0)
    items = rng.choice(np.flatnonzero(rec.known_items), args.queries)
    customers = rng.choice(len(rec.customers), args.queries)
    # A storefront-like filter: the largest category, in stock, under the median price.
    codes = rec.meta.category[rec.meta.category >= 0]
    top_category = rec.meta.categories.id_of(int(np.bincount(codes).argmax()))
    filters = Filters(categories=[top_category], in_stock=True,
                      max_price=float(np.nanmedian(rec.meta.price)))
    methods = {
        "also_bought": lambda f: (lambda i: rec.also_bought(i, 10, f)),
        "upsell": lambda f: (lambda i: rec.upsell(i, 10, f)),
        "next_best": lambda f: (lambda c: rec.next_best(c, 10, f)),
        "customer_upsell": lambda f: (lambda c: rec.customer_upsell(c, 10, f)),
    }
    for name, make in methods.items():
        queries = customers if name in ("next_best", "customer_upsell") else items
        plain = rate(make(None), queries)
        filtered = rate(make(filters), queries)
        print(f"{name:16s} unfiltered {plain:8.0f} q/s  filtered {filtered:8.0f} q/s  "
              f"ratio {filtered / plain:.2f}x")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
