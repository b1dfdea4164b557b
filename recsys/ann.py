"""Approximate nearest neighbours over the ALS factors, for large catalogues.

Above ``ann.min_items`` items (``ann.min_customers`` customers), the trainer builds
a faiss inverted-file index (``IndexIVFFlat``, inner product) over the ALS item
(customer) factors and stores it in the version as ``ann_items.faiss``
(``ann_customers.faiss``), checksummed like every file. No pickle: faiss's own
binary format, read into memory (1M x 64 factors: 264 MB in about 1 s, on the
watcher thread, off the request path; a preloading gunicorn master reads it before
the fork, so workers share the pages). faiss can also memory-map it
(``IO_FLAG_MMAP``), but its searches then ran 4-6x slower (0.34 ms -> 1.96 ms for
16 lists over 50k items), so it does not. The trainer also picks the number of lists
searched (``nprobe``): the smallest whose recall@10 against exact scoring, on a
sample of the model's own customers (items), reaches ``ann.recall_target``; the
manifest records it with the build time and size.

The index only chooses candidates. Next-best scores the union of the index's best
``k`` items and every item another blend component has evidence for (co-purchase,
EASE, the popular items when popularity is blended) exactly, then runs the usual
exact finish over them: filters, the relevance floor, reasons. Items outside the
candidates cannot be returned; so when the filtered answer is short, or its last
score is below what an item outside the candidates could reach (the ``k``-th
index score), ``k`` grows fourfold and the query is answered again, up to the exact
path over every item. Likely-buyers does the same over customers.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np

log = logging.getLogger(__name__)

FILES = {"items": "ann_items.faiss", "customers": "ann_customers.faiss"}
DEFAULTS = {"min_items": 200_000, "min_customers": 1_000_000, "recall_target": 0.97,
            "lists": 0, "overfetch": 200, "sample_queries": 300, "seed": 0}
_MAX_NPROBE = 256


def _faiss():
    try:
        import faiss
    except ImportError:  # pragma: no cover - faiss-cpu is a dependency
        raise ImportError("large-catalogue indexes need faiss: pip install faiss-cpu") from None
    return faiss


class FactorIndex:
    """An IVF index over one factor matrix; ``search`` gives the best ``k`` rows by inner
    product (approximately) for one query vector."""

    def __init__(self, index, nprobe: int, size: int):
        self.index = index
        self.nprobe = int(nprobe)
        self.size = int(size)

    def search(self, query: np.ndarray, k: int, widen: float = 1.0
               ) -> tuple[np.ndarray, np.ndarray]:
        """``widen``: search that many times more lists (a deeper search, e.g. when filters
        leave few of the first candidates, needs more lists for the same recall)."""
        faiss = _faiss()
        k = int(min(k, self.size))
        nprobe = int(min(self.index.nlist, max(1, round(self.nprobe * widen))))
        scores, ids = self.index.search(np.ascontiguousarray(query, dtype=np.float32)[None], k,
                                        params=faiss.SearchParametersIVF(nprobe=nprobe))
        keep = ids[0] >= 0
        return ids[0][keep].astype(np.int64), scores[0][keep]


def build_index(factors: np.ndarray, lists: int = 0, seed: int = 0):
    """A trained ``IndexIVFFlat`` (inner product) over ``factors`` (rows)."""
    faiss = _faiss()
    x = np.ascontiguousarray(factors, dtype=np.float32)
    n, d = x.shape
    lists = int(lists) or int(max(16, min(65536, 4 * np.sqrt(n))))
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, lists, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(seed)
    sample = x[np.sort(rng.choice(n, size=min(n, 64 * lists), replace=False))]
    index.cp.seed = int(seed)
    index.train(sample)
    for start in range(0, n, 262_144):
        index.add(x[start:start + 262_144])
    return index


def exact_top(factors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact best ``k`` rows by inner product for each query (chunks of 64 MiB scores)."""
    x = np.asarray(factors, dtype=np.float32)
    out = []
    for q in queries:
        scores = x @ np.asarray(q, dtype=np.float32)
        top = np.argpartition(-scores, k)[:k]
        out.append(top[np.argsort(-scores[top], kind="stable")])
    return np.asarray(out)


def recall_at(index, queries: np.ndarray, truth: np.ndarray, nprobe: int, k: int = 10) -> float:
    index.nprobe = int(nprobe)
    _, found = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def tune_nprobe(index, factors: np.ndarray, queries: np.ndarray, target: float,
                k: int = 10) -> tuple[int, float]:
    """The smallest power-of-two ``nprobe`` whose recall@k on ``queries`` reaches
    ``target`` (the largest tried when none does), and its recall."""
    truth = exact_top(factors, queries, k)
    nprobe, recall = 1, 0.0
    while True:
        recall = recall_at(index, queries, truth, nprobe, k)
        if recall >= target or nprobe >= min(index.nlist, _MAX_NPROBE):
            return nprobe, recall
        nprobe *= 2


def _build_one(writer, name: str, factors: np.ndarray, queries: np.ndarray, cfg: dict) -> dict:
    faiss = _faiss()
    started = time.perf_counter()
    index = build_index(factors, cfg["lists"], cfg["seed"])
    built = time.perf_counter() - started
    nprobe, recall = tune_nprobe(index, factors, queries, cfg["recall_target"])
    path = os.path.join(writer.tmp, FILES[name])
    faiss.write_index(index, path)
    writer.files.append(FILES[name])
    info = {"rows": int(factors.shape[0]), "lists": int(index.nlist), "nprobe": int(nprobe),
            "recall@10": round(float(recall), 4), "build_s": round(built, 2),
            "tune_s": round(time.perf_counter() - started - built, 2),
            "bytes": os.path.getsize(path), "overfetch": int(cfg["overfetch"])}
    log.info("ANN index over %d %s: %d lists, nprobe %d (recall@10 %.3f), built in %.1f s, "
             "%.0f MB", info["rows"], name, info["lists"], nprobe, recall, built,
             info["bytes"] / 1e6)
    return info


def build_into(writer, rec, config: dict | None = None) -> dict:
    """Build the indexes a model needs (``ann.min_items`` / ``ann.min_customers``) into
    ``writer``'s version; returns the manifest's ``ann`` entry ({} when none is needed)."""
    cfg = {**DEFAULTS, **(config or {})}
    als = rec.als
    if als is None:
        return {}
    items, users = np.asarray(als.item_factors_), np.asarray(als.user_factors_)
    rng = np.random.default_rng(cfg["seed"])
    out = {}
    if len(items) >= cfg["min_items"] and len(users):
        # The queries next-best asks: the model's own customers' vectors.
        sample = users[rng.choice(len(users), size=min(len(users), cfg["sample_queries"]),
                                  replace=False)]
        out["items"] = _build_one(writer, "items", items, sample, cfg)
    if len(users) >= cfg["min_customers"] and len(items):
        sample = items[rng.choice(len(items), size=min(len(items), cfg["sample_queries"]),
                                  replace=False)]
        out["customers"] = _build_one(writer, "customers", users, sample, cfg)
    return out


class AnnIndexes:
    """The version's indexes (either may be None) and their settings."""

    def __init__(self, items: FactorIndex | None, customers: FactorIndex | None,
                 overfetch: int):
        self.items = items
        self.customers = customers
        self.overfetch = max(1, int(overfetch))


def load(loaded) -> AnnIndexes | None:
    """The indexes of a loaded version, or None when it has none."""
    entry = loaded.manifest.get("ann") or {}
    files = loaded.manifest.get("files", {})
    found = {name: info for name, info in entry.items()
             if name in FILES and FILES[name] in files}
    if not found:
        return None
    faiss = _faiss()
    # One thread per search: requests already run in parallel (workers, threads).
    faiss.omp_set_num_threads(1)
    indexes = {}
    for name, info in found.items():
        index = faiss.read_index(os.path.join(loaded.path, FILES[name]))
        indexes[name] = FactorIndex(index, info["nprobe"], info["rows"])
    overfetch = max(info.get("overfetch", DEFAULTS["overfetch"]) for info in found.values())
    return AnnIndexes(indexes.get("items"), indexes.get("customers"), overfetch)


# ----------------------------------------------------------------- answers
def next_best(rec, customer_idx: int, limit: int, filters):
    """Next-best for a known customer with the item index choosing the candidates (see
    the module docstring); None when the exact path must answer (no ALS in the blend)."""
    index = rec.ann.items if rec.ann is not None else None
    weights = rec._weights("next_best")
    if index is None or "als" not in weights or limit < 1:
        return None
    from .sparse import csr_row as _csr_row

    n = len(rec.items)
    row = _csr_row(rec.history, customer_idx)
    bought = row.indices.astype(np.int64)
    user = np.asarray(rec.als.user_factors_[customer_idx], dtype=np.float32)
    rest = tuple(name for name in weights if name != "als")
    parts = rec.customer_parts(np.asarray([customer_idx]), names=rest) if rest else {}
    evidence = [np.flatnonzero(np.asarray(parts[name])[0] > 0) for name in rest
                if name != "popularity"]
    k = k0 = max(rec.ann.overfetch, 4 * limit + len(bought))
    while k < n:
        found, found_scores = index.search(user, k, widen=k / k0)
        cand = [found]
        if "popularity" in parts:
            cand.append(_popular_order(rec)[:k])
        cand = np.unique(np.concatenate(cand + evidence))
        exact = np.asarray(rec.als.item_factors_[cand], dtype=np.float32) @ user
        top = float(exact.max(initial=0.0))
        # The blend over the candidates only, in the exact path's float32 arithmetic and
        # order (Recommender.combine of normalised parts): no arrays of catalogue length.
        als_part = np.maximum(exact, np.float32(0))
        if top > 0:
            als_part /= np.float32(top)
        scores = rec._pop_tiebreak[cand].copy()
        for name, w in weights.items():
            part = als_part if name == "als" else np.asarray(parts[name])[0][cand]
            scores += np.float32(w) * part if w != 1 else part
        mode = "als" if rec._als_led("next_best") else "copurchase"
        answer = rec._finish("next_best", cand, scores, limit, filters, bought, bought, mode,
                             history_row=row)
        # What an item outside the candidates could score at most: its ALS part is below
        # the k-th index score (the other parts are zero there, popularity below its k-th).
        bound = weights["als"] * max(float(found_scores[-1]), 0.0) / (top if top > 0 else 1.0)
        if "popularity" in parts:
            order = _popular_order(rec)
            bound += weights["popularity"] * float(rec._pop_scores[order[min(k, n) - 1]])
        if len(answer.items) >= limit and answer.items[-1].score >= bound:
            return answer
        k *= 4
    return None


def likely_buyers(rec, item_idx: int, limit: int, min_score: float | None):
    """Likely-buyers with the customer index choosing candidates (ALS-only blends);
    None when the exact path must answer."""
    index = rec.ann.customers if rec.ann is not None else None
    weights = rec._weights("likely_buyers")
    if index is None or set(weights) != {"als"} or limit < 1:
        return None
    n = len(rec.customers)
    factor = np.asarray(rec.als.item_factors_[item_idx], dtype=np.float32)
    buyers = set(rec.buyers[:, [item_idx]].indices.tolist())
    k = k0 = max(rec.ann.overfetch, 4 * limit + len(buyers))
    while k < n:
        found, found_scores = index.search(factor, k, widen=k / k0)
        exact = np.asarray(rec.als.user_factors_[found], dtype=np.float32) @ factor
        top = float(max(exact.max(initial=0.0), 0.0)) or 1.0
        scores = weights["als"] * np.maximum(exact, 0.0) / top
        order = np.argsort(-scores, kind="stable")
        pairs = []
        for pos in order.tolist():
            c = int(found[pos])
            if c in buyers or (min_score is not None and scores[pos] < min_score):
                continue
            pairs.append((c, float(scores[pos])))
            if len(pairs) == limit:
                break
        bound = weights["als"] * max(float(found_scores[-1]), 0.0) / top
        if len(pairs) >= limit and pairs[-1][1] >= bound:
            return rec.strategy("likely_buyers"), pairs
        k *= 4
    return None


def _popular_order(rec) -> np.ndarray:
    order = getattr(rec, "_ann_popular_order", None)
    if order is None:
        order = rec._ann_popular_order = np.argsort(-rec._pop_scores, kind="stable")
    return order
