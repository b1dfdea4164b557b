"""Synthetic ALS recommenders with an ANN index, shared by bench/ann_bench.py and the tests."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import scipy.sparse as sp

from recsys import ann
from recsys.models.als import ALSModel
from recsys.models.popularity import PopularityModel
from recsys.recommender import Recommender
from recsys.rules import ItemMeta
from recsys.vocab import Vocab

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
                 overfetch: int = 200, reuse: bool = False) -> dict:
    """Build, tune, write and memory-map the item index as trainer and service do.

    ``reuse``: read the index (and its tuning) that an earlier call left in ``folder``
    for the same synthetic model instead of building it again (``build_s`` is then that
    build's time)."""
    import faiss

    path = os.path.join(folder, ann.FILES["items"])
    facts_path = path + ".json"
    reused = reuse and os.path.exists(path) and os.path.exists(facts_path)
    if reused:
        with open(facts_path) as fh:
            built, nprobe, recall = json.load(fh)
    else:
        factors = np.asarray(rec.als.item_factors_)
        users = np.asarray(rec.als.user_factors_)
        rng = np.random.default_rng(1)
        started = time.perf_counter()
        index = ann.build_index(factors)
        built = time.perf_counter() - started
        sample = users[rng.choice(len(users), size=min(300, len(users)), replace=False)]
        nprobe, recall = ann.tune_nprobe(index, factors, sample, target)
        faiss.write_index(index, path)
        del index
        with open(facts_path, "w") as fh:
            json.dump([built, nprobe, recall], fh)
    started = time.perf_counter()
    faiss.omp_set_num_threads(1)
    loaded = faiss.read_index(path)
    load_s = time.perf_counter() - started
    rec.ann = ann.AnnIndexes(ann.FactorIndex(loaded, nprobe, len(rec.items)), None,
                             overfetch)
    return {"build_s": built, "nprobe": nprobe, "tune_recall": recall, "lists": loaded.nlist,
            "bytes": os.path.getsize(path), "load_s": load_s, "reused": reused}


