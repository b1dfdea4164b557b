"""What the catalogue's item pages show: ``xsell export --kind also-bought`` for every item.

Issue 16's measurement: for each of the three best-sellers (distinct buyers in
the model's data), the share of items whose also-bought top 10 holds it, and
the most shown item's share. Before issue 16, on the demo model, the #1
best-seller was on 66.9% of the pages (cosine co-occurrence 1.3%, BM25
item-kNN 0.2%). Counted over every slot, and over the slots not marked
``filled`` (what the page claims was bought with its item; the pages of items
nobody bought hold nothing else).

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
        shown, claimed, pages, empty, slots, filled = Counter(), Counter(), 0, 0, 0, 0
        with open(out) as fh:
            for line in fh:
                recs = json.loads(line)["recommendations"]
                if not recs:
                    continue
                pages += 1
                real = {r["item_id"] for r in recs if "filled" not in (r.get("reason") or {})}
                shown.update({r["item_id"] for r in recs})
                claimed.update(real)
                empty += not real
                slots += len(recs)
                filled += len(recs) - len(real)
    print(f"model {rec.version}: {pages} item pages (export {wall:.1f} s), "
          f"blend {rec.blend.get('also_bought')}; {empty} pages without any co-bought item "
          f"(every slot marked filled: popular); {filled / max(slots, 1):.1%} of the slots filled")
    for label, counter in (("every slot", shown), ("slots not marked filled", claimed)):
        top, n = counter.most_common(1)[0] if counter else ("-", 0)
        print(f"  {label}: " + "; ".join(
            f"#{rank} best-seller {item} on {counter[item] / max(pages, 1):.1%}"
            for rank, item in enumerate(sellers, 1))
            + f" of the pages; most shown {top} on {n / max(pages, 1):.1%}; "
            f"{len(counter)} distinct items")

if __name__ == "__main__":
    main()
