"""Large-catalogue EASE (recsys/models/ease_large.py): fit time and peak memory by catalogue size.

Synthetic power-law data (bench/synth.py: Zipf item popularity, power-law
customer activity, mean 8 lines per order) at a stated density: ``--lines-per-item``
lines per catalogue item and one customer per ``--lines-per-customer`` lines, so
200,000 items are 20M lines and 2M customers at the defaults. Each size runs in a
child process of its own (peak RSS is that child's: reading the orders, the
matrices, the fit). The fit is the component's alone, with the trainer's settings
(``ease`` section of training/config.py): the Gram of the head and the tail
co-counts, one lambda's weights. Dense EASE (recsys/models/ease.py, every item)
is measured in the same run up to ``--dense-max`` items: the baseline. The fit's
process CPU time is printed next to its wall time: on a shared, loaded machine it
is the better guide to what an idle one takes (the fit is single-threaded LAPACK
and numpy with OPENBLAS_NUM_THREADS=1).

    python bench/ease_scale.py --items 5000 20000 50000 100000 200000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._common import run_measured  # noqa: E402
from bench.synth import generate  # noqa: E402

FIT = r"""
import json, sys, time
import numpy as np
from recsys.data import read_orders
from training.config import load_config
from recsys.models.ease import EASEModel
from recsys.models.ease_large import LargeEASEModel
cfg = dict(load_config()["ease"])
kind = sys.argv[2]
inter, _ = read_orders(sys.argv[1])
customers, orders = inter.customer_items(), inter.order_items()
buyers = np.bincount(customers.tocsr().indices, minlength=customers.shape[1])
kept = int((buyers >= cfg["min_buyers"]).sum())
args = dict(lam=float(cfg["lambdas"][1]), k=cfg["k"], min_buyers=cfg["min_buyers"],
            dense_items=cfg["dense_items"])
# The trainer's large model keeps ease.head_k weights per head row (0: all of them).
large_k = cfg["head_k"] or cfg["max_items"]
t, cpu = time.perf_counter(), time.process_time()
if kind == "dense":
    model = EASEModel(max_items=kept, **args).fit(customers, orders)
else:
    model = LargeEASEModel(head_items=cfg["max_items"], tail_neighbours=cfg["tail_neighbours"],
                           **dict(args, k=large_k)).fit(customers, orders)
fit, cpu = time.perf_counter() - t, time.process_time() - cpu
sim = model.similarity_
nnz = int(sim.nnz) if hasattr(sim, "nnz") else int(np.count_nonzero(sim))
print(json.dumps({"fit_s": fit, "cpu_s": cpu, "kept": kept, "lines": int(inter.n_lines),
                  "nnz": nnz,
                  "customers": len(inter.customers), "head": getattr(model, "n_head_", kept),
                  "tail": getattr(model, "n_tail_", 0),
                  "topk_error": getattr(model, "topk_error_", 0.0)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+",
                        default=[5000, 20000, 50000, 100000, 200000])
    parser.add_argument("--lines-per-item", type=float, default=100.0)
    parser.add_argument("--lines-per-customer", type=float, default=10.0)
    parser.add_argument("--dense-max", type=int, default=6000,
                        help="also fit dense EASE on every item up to this catalogue size")
    parser.add_argument("--workdir", default=None, help="where to write data (default: a temp dir)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for items in args.items:
            lines = int(items * args.lines_per_item)
            customers = max(1, int(lines / args.lines_per_customer))
            data = os.path.join(tmp, f"synth-{items}.parquet")
            generate(data, lines, customers, items)
            kinds = ["large"] + (["dense"] if items <= args.dense_max else [])
            for kind in kinds:
                wall, rss, out = run_measured([sys.executable, "-c", FIT, data, kind])
                r = json.loads(out.strip().splitlines()[-1])
                rows.append((items, kind, r, rss))
                print(f"{items:>7,} items ({r['kept']:,} with 2+ buyers), {r['lines']:,} lines, "
                      f"{r['customers']:,} customers, {kind:>5}: fit {r['fit_s']:7.1f}s "
                      f"(CPU {r['cpu_s']:.1f}s), "
                      f"peak RSS {rss:5.2f} GiB (child, data included); head {r['head']:,}, "
                      f"tail {r['tail']:,}, {r['nnz']:,} weights, top-k cut drops "
                      f"{100 * r['topk_error']:.1f}% of the head's weight mass", flush=True)
            os.remove(data)
    large = [(i, r["fit_s"], rss) for i, kind, r, rss in rows if kind == "large"]
    for items, _, r, rss in rows:
        if items >= 200_000 and _ == "large":
            ok = r["fit_s"] < 900 and rss < 16
            print(f"target at {items:,} items (fit < 900 s, peak < 16 GiB): "
                  f"{'PASS' if ok else 'FAIL'}")
    dense = {i: r["fit_s"] for i, kind, r, _ in rows if kind == "dense"}
    for items, fit, _ in large:
        if items in dense:
            print(f"{items:,} items: large / dense EASE fit time = {fit / dense[items]:.2f}")
    if len(large) > 1:
        (i0, f0, m0), (i1, f1, m1) = large[0], large[-1]
        print(f"growth: {i1 / i0:.0f}x the items took {f1 / f0:.1f}x the fit time and "
              f"{m1 / m0:.1f}x the peak memory")


if __name__ == "__main__":
    main()
