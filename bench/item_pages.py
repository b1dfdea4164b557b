"""What the catalogue's item pages show: ``xsell export --kind also-bought`` for every item.

Issue 16's measurement: for each of the three best-sellers (distinct buyers in
the model's data), the share of items whose also-bought top 10 holds it, and
the most shown item's share. Before issue 16, on the demo model, the #1
best-seller was on 66.9% of the pages (cosine co-occurrence 1.3%, BM25
item-kNN 0.2%). Also the share of slots marked ``filled`` (no customer bought
it with the page's item).

    python bench/item_pages.py --models DIR [--limit 10]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from bench._common import run_measured, xsell_args  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", required=True)
    parser.add_argument("--limit", type=int, default=10)
    args = parser.parse_args()
    from recsys.artifacts import load_version
    from recsys.recommender import Recommender

    rec = Recommender.load(load_version(args.models))
    counts = rec.popularity.counts_
    sellers = [rec.items.id_of(int(i)) for i in counts.argsort()[::-1][:3]]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "ab.jsonl")
        wall, _, _ = run_measured(xsell_args("export", "--models", args.models, "--kind",
                                             "also-bought", "--limit", str(args.limit),
                                             "--out", out))
        shown, pages, slots, filled = Counter(), 0, 0, 0
        with open(out) as fh:
            for line in fh:
                record = json.loads(line)
                recs = record["recommendations"]
                if not recs:
                    continue
                pages += 1
                shown.update({r["item_id"] for r in recs})
                slots += len(recs)
                filled += sum("filled" in (r.get("reason") or {}) for r in recs)
    top, n = shown.most_common(1)[0] if shown else ("-", 0)
    print(f"model {rec.version}: {pages} item pages (export {wall:.1f} s), "
          f"blend {rec.blend.get('also_bought')}")
    for rank, item in enumerate(sellers, 1):
        print(f"  #{rank} best-seller {item}: on {shown[item] / max(pages, 1):.1%} of the pages")
    print(f"  most shown: {top} on {n / max(pages, 1):.1%} of the pages; "
          f"{len(shown)} distinct items shown; {filled / max(slots, 1):.1%} of the slots "
          f"marked filled (no co-buyer of the page's item)")


if __name__ == "__main__":
    main()
