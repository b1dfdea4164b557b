"""``xsell train`` at scale on synthetic data (power-law popularity and activity).

Issue 2's target: 20M lines, 1M customers, 100k items trains on a 2-core
machine in under 10 minutes with peak RSS under 8 GiB. Several sizes in one
run show how the cost grows:

    python bench/train_scale.py --lines 2000000 20000000 --customers-per-line 0.05 --items 100000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._common import run_measured, xsell_args  # noqa: E402
from bench.synth import generate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, nargs="+", default=[20_000_000])
    parser.add_argument("--customers-per-line", type=float, default=0.05,
                        help="customers = lines x this (20M lines -> 1M customers)")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--workdir", default=None, help="where to write data (default: a temp dir)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for lines in args.lines:
            customers = max(1, int(lines * args.customers_per_line))
            data = os.path.join(tmp, f"synth-{lines}.parquet")
            generate(data, lines, customers, args.items)
            wall, rss, out = run_measured(xsell_args("train", "--orders", data, "--models",
                                                     os.path.join(tmp, f"models-{lines}")))
            summary = json.loads(out.strip().splitlines()[-1])
            os.remove(data)
            rows.append((lines, customers, wall, rss, summary["timings_s"]))
            print(f"{lines:>11,} lines {customers:>9,} customers {args.items:>7,} items: "
                  f"{wall:7.1f}s wall, peak RSS {rss:5.2f} GiB; "
                  + ", ".join(f"{k} {v:.0f}s" for k, v in summary["timings_s"].items()),
                  flush=True)
    for lines, _, wall, rss, _ in rows:
        if lines >= 20_000_000:
            ok = wall < 600 and rss < 8
            print(f"target at {lines:,} lines (< 600 s, < 8 GiB): {'PASS' if ok else 'FAIL'}")
    if len(rows) > 1:
        (l0, _, w0, _, _), (l1, _, w1, _, _) = rows[0], rows[-1]
        print(f"cost growth: {l1 / l0:.1f}x the lines took {w1 / w0:.1f}x the time")


if __name__ == "__main__":
    main()
