"""Large catalogues: next-best with the ANN index (recsys.ann) against exact scoring.

    python bench/ann_bench.py [--items 1000000] [--factors 64] [--customers 100000]
                              [--queries 500]

Builds a synthetic model in memory: clustered ALS item factors (items around
topic centres), customers who like one or two topics, five purchases each from
their topics, Zipf popularity, 20 categories. Builds the index as the trainer
does (``recsys.ann.build_index`` + ``tune_nprobe`` on 300 customers), writes it
and reads it back as the service does, then answers next-best for the
same customers in-process with the index and with exact scoring (every item),
in the same run, and prints p50/p99 latency of both, their ratio, recall@10 of
the answers against exact (with no filter and with a category filter), the
index's build time and size, and the process's peak memory.
Targets (issue 20): next-best p99 <= 10 ms with the index; recall@10 >= 0.95.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

import numpy as np
import scipy.sparse as sp

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from recsys import ann  # noqa: E402
from recsys.models.als import ALSModel  # noqa: E402
from recsys.models.popularity import PopularityModel  # noqa: E402
from recsys.recommender import Recommender  # noqa: E402
from recsys.rules import Filters, ItemMeta  # noqa: E402
from recsys.vocab import Vocab  # noqa: E402

P99_TARGET_MS = 10.0
RECALL_TARGET = 0.95
N_CATEGORIES = 20


def synthetic_recommender(n_items: int, n_customers: int, factors: int, seed: int = 0,
                          topics: int | None = None) -> Recommender:
    """An ALS-only model over synthetic, clustered factors (see the module docstring)."""
    rng = np.random.default_rng(seed)
    topics = topics or max(8, int(np.sqrt(n_items) / 2))
    centres = rng.normal(size=(topics, factors)).astype(np.float32)
    item_topic = rng.integers(0, topics, n_items)
    items = centres[item_topic] + 0.6 * rng.normal(size=(n_items, factors)).astype(np.float32)
    items *= np.float32(0.1)
    likes = rng.integers(0, topics, (n_customers, 2))
    mix = rng.random((n_customers, 1)).astype(np.float32)
    users = mix * centres[likes[:, 0]] + (1 - mix) * centres[likes[:, 1]]
    users += 0.3 * rng.normal(size=users.shape).astype(np.float32)
    users = users.astype(np.float32)
    # Five purchases per customer from the items of the topics they like.
    by_topic = np.argsort(item_topic, kind="stable")
    starts = np.searchsorted(item_topic[by_topic], np.arange(topics + 1))
    picks = rng.integers(0, 2, (n_customers, 5))
    topic = np.take_along_axis(likes, picks, axis=1)
    lo, hi = starts[topic], starts[topic + 1]
    bought = by_topic[np.minimum(lo + (rng.random(lo.shape) * (hi - lo)).astype(np.int64),
                                 n_items - 1)]
    rows = np.repeat(np.arange(n_customers), 5)
    history = sp.csr_matrix((np.ones(rows.size, dtype=np.float32), (rows, bought.ravel())),
                            shape=(n_customers, n_items))
    history.sum_duplicates()
    history.data[:] = 1.0
    counts = (rng.zipf(1.3, n_items).clip(1, 10**6)).astype(np.int64)
    popularity = PopularityModel()
    popularity.counts_ = counts
    popularity.scores_ = (counts / counts.max()).astype(np.float32)
    item_ids = np.asarray([f"i{n:08d}" for n in range(n_items)])
    meta = ItemMeta(name=item_ids.astype(object), category=rng.integers(
                        0, N_CATEGORIES, n_items).astype(np.int32),
                    categories=Vocab(np.asarray([f"c{c:02d}" for c in range(N_CATEGORIES)])),
                    price=rng.uniform(1, 100, n_items).astype(np.float32),
                    in_stock=np.ones(n_items, dtype=bool),
                    recommendable=np.ones(n_items, dtype=bool))
    als = ALSModel(factors=factors).set_factors(users, items)
    blend = {kind: {"als": 1.0} for kind in ("also_bought", "basket", "next_best",
                                             "likely_buyers")}
    return Recommender(items=Vocab(item_ids),
                       customers=Vocab(np.asarray([f"c{n:08d}" for n in range(n_customers)])),
                       history=history, popularity=popularity, copurchase=None, als=als,
                       meta=meta, blend=blend, version="synthetic")


def attach_index(rec: Recommender, folder: str, target: float = 0.97,
                 overfetch: int = 200) -> dict:
    """Build, tune, write and memory-map the item index as trainer and service do."""
    import faiss

    factors = np.asarray(rec.als.item_factors_)
    users = np.asarray(rec.als.user_factors_)
    rng = np.random.default_rng(1)
    started = time.perf_counter()
    index = ann.build_index(factors)
    built = time.perf_counter() - started
    sample = users[rng.choice(len(users), size=min(300, len(users)), replace=False)]
    nprobe, recall = ann.tune_nprobe(index, factors, sample, target)
    path = os.path.join(folder, ann.FILES["items"])
    faiss.write_index(index, path)
    del index
    started = time.perf_counter()
    faiss.omp_set_num_threads(1)
    loaded = faiss.read_index(path)
    load_s = time.perf_counter() - started
    rec.ann = ann.AnnIndexes(ann.FactorIndex(loaded, nprobe, len(factors)), None, overfetch)
    return {"build_s": built, "nprobe": nprobe, "tune_recall": recall, "lists": loaded.nlist,
            "bytes": os.path.getsize(path), "load_s": load_s}


def timed(fn, queries) -> tuple[list, np.ndarray, np.ndarray]:
    """Answers, wall milliseconds and this thread's CPU milliseconds per query (the CPU
    time does not count the time the thread waited for a core on a busy machine)."""
    answers, times, cpu = [], [], []
    for q in queries:
        start, start_cpu = time.perf_counter(), time.thread_time()
        answers.append(fn(q))
        times.append(time.perf_counter() - start)
        cpu.append(time.thread_time() - start_cpu)
    return answers, np.asarray(times) * 1e3, np.asarray(cpu) * 1e3


def recall(found: list, truth: list) -> float:
    hits = total = 0
    for a, b in zip(found, truth, strict=True):
        want = {r.item_idx for r in b.items}
        hits += len(want & {r.item_idx for r in a.items})
        total += len(want)
    return hits / max(total, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=500)
    args = parser.parse_args()
    started = time.perf_counter()
    rec = synthetic_recommender(args.items, args.customers, args.factors)
    print(f"synthetic model: {args.items:,} items x {args.factors} factors, "
          f"{args.customers:,} customers ({time.perf_counter() - started:.1f} s)", flush=True)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with tempfile.TemporaryDirectory(prefix="xsell-ann-") as folder:
        info = attach_index(rec, folder)
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"index: IVF {info['lists']} lists, nprobe {info['nprobe']} (tuned recall@10 "
              f"{info['tune_recall']:.3f} on 300 customers), built in {info['build_s']:.1f} s, "
              f"{info['bytes'] / 2**20:.0f} MiB on disk, read back in "
              f"{info['load_s'] * 1e3:.0f} ms; peak RSS {rss_before:.0f} MiB before the "
              f"build, {rss_after:.0f} MiB after", flush=True)
        rng = np.random.default_rng(7)
        queries = rng.choice(args.customers, size=args.queries, replace=False).tolist()
        index = rec.ann
        for q in queries[:20]:  # warm both paths (compiled kernels, caches)
            rec.next_best(q, 10)
        rec.ann = None
        for q in queries[:5]:
            rec.next_best(q, 10)
        ok = True
        for label, filters in (("no filter", None),
                               ("category c03", Filters(categories=["c03"]))):
            rec.ann = None
            exact, exact_ms, exact_cpu = timed(lambda q, f=filters: rec.next_best(q, 10, f),
                                               queries)
            rec.ann = index
            approx, ann_ms, ann_cpu = timed(lambda q, f=filters: rec.next_best(q, 10, f),
                                            queries)
            r = recall(approx, exact)
            p99, p99_exact = np.percentile(ann_ms, 99), np.percentile(exact_ms, 99)
            print(f"next-best, {label:<13} index p50 {np.percentile(ann_ms, 50):6.2f} ms "
                  f"p99 {p99:6.2f} ms (CPU p99 {np.percentile(ann_cpu, 99):6.2f} ms) | exact "
                  f"p50 {np.percentile(exact_ms, 50):6.2f} ms p99 {p99_exact:6.2f} ms (CPU p99 "
                  f"{np.percentile(exact_cpu, 99):6.2f} ms) | p99 x{p99 / p99_exact:.3f} | "
                  f"recall@10 vs exact {r:.3f} (targets: p99 <= {P99_TARGET_MS:g} ms, recall "
                  f">= {RECALL_TARGET}); load average {os.getloadavg()[0]:.1f} on "
                  f"{os.cpu_count()} cores", flush=True)
            ok &= p99 <= P99_TARGET_MS and r >= RECALL_TARGET
        rec.ann = None
    print("\nall targets met" if ok else "\nSOME TARGETS MISSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
