"""Single-query benchmark: each Recommender query method against the pinned, unoptimised
reference of the answer path (``support/reference_answers.py``), in one run.

    python bench/query_bench.py [--models DIR] [--queries 300] [--rounds 3]

Loads the current version of ``--models`` (default: trains the demo model into a
temporary folder), draws fixed random queries (known items, 3-item baskets and
histories, customers with a history), checks that both give identical answers,
and prints milliseconds per query for each and the speed-up (reference / optimised,
best of ``--rounds`` interleaved timings).

Then, for the service's one-query methods, the cost of threads: process CPU per
answer with ``--threads`` threads answering at once in one process (as a gthread
worker's threads may) against one thread. Each GIL handoff costs a futex wait and
a move to another core, so a path that releases the GIL often costs several times
its single-thread CPU here (recsys.fastpath keeps it).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from recsys.artifacts import current_version, load_version  # noqa: E402
from recsys.recommender import Recommender  # noqa: E402
from recsys.rules import Filters  # noqa: E402
from support.reference_answers import ReferenceRecommender  # noqa: E402


def demo_model(work: str) -> str:
    models = os.path.join(work, "models")
    subprocess.run([sys.executable, "-m", "training.cli", "train", "--orders",
                    os.path.join(REPO, "demo", "online_retail.parquet"), "--catalog",
                    os.path.join(REPO, "demo", "catalog.csv"), "--config",
                    os.path.join(REPO, "demo", "online_retail.toml"), "--models", models],
                   check=True, stdout=subprocess.DEVNULL, cwd=REPO)
    return models


def workloads(rec: Recommender, n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    known = np.flatnonzero(rec.known_items)
    items = rng.choice(known, n)
    baskets = [rng.choice(known, 3, replace=False) for _ in range(n)]
    customers = rng.choice(np.flatnonzero(np.diff(rec.history.indptr) > 0), n)
    prices = np.asarray(rec.meta.price, dtype=np.float64)
    prices = prices[np.isfinite(prices)]
    categories = [str(c) for c in rec.meta.categories.ids[:3]]
    filtered = Filters(categories=categories, in_stock=True,
                       max_price=float(np.median(prices)) if len(prices) else None)
    label = "also_bought " + ("category+" if categories else "") + "in_stock+max_price"
    return {
        "also_bought": ("also_bought", items, None),
        label: ("also_bought", items, filtered),
        "basket (3 items)": ("basket", baskets, None),
        "next_best (customer)": ("next_best", customers, None),
        "next_best_for_history (3)": ("next_best_for_history", baskets, None),
        "upsell": ("upsell", items, None),
        "downsell": ("downsell", items, None),
        "customer_upsell": ("customer_upsell", customers, None),
    }


def timed(method, queries, filters) -> float:
    start = time.process_time()
    for q in queries:
        method(q, 10, filters)
    return (time.process_time() - start) / len(queries) * 1e3


def contended(method, queries, filters, threads: int) -> float:
    """Process CPU ms per answer with ``threads`` threads each answering every query."""

    def work():
        for q in queries:
            method(q, 10, filters)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    start = time.process_time()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return (time.process_time() - start) / (threads * len(queries)) * 1e3


CONTENDED = ("also_bought", "basket (3 items)", "next_best (customer)",
             "next_best_for_history (3)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", help="a models folder with a current version "
                        "(default: train the demo model into a temporary folder)")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4,
                        help="threads of the contention rows (0: skip them)")
    args = parser.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    work = tempfile.mkdtemp(prefix="xsell-qbench-")
    try:
        models = args.models or demo_model(work)
        rec = Recommender.load(load_version(models, current_version(models)))
        ref = ReferenceRecommender.of(rec)
        print(f"model {rec.version}: {len(rec.items)} items, {len(rec.customers)} customers; "
              f"{args.queries} queries per method, best of {args.rounds} interleaved rounds "
              "(process CPU time)")
        print(f"{'method':<38}{'reference ms':>13}{'optimised ms':>14}{'speed-up':>10}"
              f"{'answers':>10}")
        ok = True
        for label, (name, queries, filters) in workloads(rec, args.queries).items():
            fast, slow = getattr(rec, name), getattr(ref, name)
            same = sum(
                [dataclasses.asdict(r) for r in fast(q, 10, filters).items]
                == [dataclasses.asdict(r) for r in slow(q, 10, filters).items]
                for q in queries)
            ok &= same == len(queries)
            t_fast, t_slow = [], []
            for _ in range(args.rounds):
                t_slow.append(timed(slow, queries, filters))
                t_fast.append(timed(fast, queries, filters))
            print(f"{label:<38}{min(t_slow):13.3f}{min(t_fast):14.3f}"
                  f"{min(t_slow) / min(t_fast):9.2f}x{same:>6}/{len(queries)}", flush=True)
        print("\nall answers identical" if ok else "\nANSWERS DIFFER")
        if args.threads > 1:
            print(f"\nCPU per answer with {args.threads} threads at once vs 1 thread "
                  f"(best of {args.rounds})")
            print(f"{'method':<38}{'1 thread ms':>13}{f'{args.threads} threads ms':>14}"
                  f"{'ratio':>10}")
            loads = workloads(rec, args.queries)
            for label in CONTENDED:
                name, queries, filters = loads[label]
                method = getattr(rec, name)
                one, many = [], []
                for _ in range(args.rounds):
                    one.append(contended(method, queries, filters, 1))
                    many.append(contended(method, queries, filters, args.threads))
                print(f"{label:<38}{min(one):13.3f}{min(many):14.3f}"
                      f"{min(many) / min(one):9.2f}x", flush=True)
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
