"""``xsell export --kind next-best`` for every demo customer vs a per-customer loop.

Trains the demo model (Online Retail, 4,339 customers after cleaning), then
times, in one run: the batched ``--slim`` export (sparse products + one dense
top-k per block of customers), the full records (item facts and reasons, through
the API's one-query path) and a baseline that asks the single-query API once per
customer, as a naive CRM sync would. Target (issue 2): the export under 5 s.

    python bench/export_bench.py [--models DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from bench._common import REPO, run_measured, xsell_args  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="an existing demo models folder (trained when absent)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        models = args.models or os.path.join(tmp, "models")
        if not args.models:
            run_measured(xsell_args("train", "--orders", "demo/online_retail.parquet",
                                    "--catalog", "demo/catalog.csv",
                                    "--config", "demo/online_retail.toml", "--models", models))
        out = os.path.join(tmp, "nb.jsonl")
        wall, rss, _ = run_measured(xsell_args("export", "--models", models, "--kind",
                                               "next-best", "--out", out, "--slim"))
        with open(out) as fh:
            n = sum(1 for _ in fh)
        full, full_rss, _ = run_measured(xsell_args("export", "--models", models, "--kind",
                                                    "next-best", "--out", out))

        sys.path.insert(0, REPO)
        from recsys.artifacts import load_version
        from recsys.recommender import Recommender

        rec = Recommender.load(load_version(models))
        start = time.perf_counter()
        for c in range(len(rec.customers)):
            rec.next_best(c, limit=10)
        loop = time.perf_counter() - start
    print(f"batched export (--slim): {n} customers in {wall:.2f}s wall (whole command, incl. "
          f"start-up and model load; peak RSS {rss:.2f} GiB)")
    print(f"full records (name, price, category, reason; the API's one-query path): "
          f"{full:.2f}s wall, peak RSS {full_rss:.2f} GiB")
    print(f"per-customer loop baseline (model already loaded): {loop:.2f}s")
    print(f"speed-up {loop / wall:.1f}x; target export < 5 s: {'PASS' if wall < 5 else 'FAIL'}")


if __name__ == "__main__":
    main()
