"""Offline evaluation with the protocols of EVALUATION.md: split, queries, metrics.

Anything that can answer ``next_best(customer_idx, histories, k)`` and
``item_query(kind, query_lists, k)`` with a (queries x k) array of item
indexes (-1 padded) can be scored: the product's :class:`Recommender` and
every baseline alike.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from .data import Interactions
from .exposure import best_sellers, buyer_counts, exposure, head_items, tail_mask, tail_truth
from .sparse import rows_matrix

log = logging.getLogger(__name__)

TEST_FRACTION = 0.15
RANDOM_TEST_FRACTION = 0.20
_BATCH = 1024


class Scorer(Protocol):
    def next_best(self, customer_idx: np.ndarray, histories: sp.csr_matrix, k: int) -> np.ndarray: ...

    def item_query(self, kind: str, query_lists: list[np.ndarray], k: int) -> np.ndarray: ...


@dataclass
class Split:
    """Which lines train and which test; ``cutoff`` is epoch seconds for a temporal split."""

    train: np.ndarray
    test: np.ndarray
    method: str
    cutoff: int | None = None


def split(inter: Interactions, test_fraction: float = TEST_FRACTION,
          random_fraction: float = RANDOM_TEST_FRACTION, seed: int = 0) -> Split:
    """Temporal split (last ``test_fraction`` of orders) or, without timestamps, random orders.

    Only orders that have lines in ``inter`` take part, so the same function
    carves a validation split out of a training period (``inter.subset``).
    """
    present = np.zeros(len(inter.orders), dtype=bool)
    present[inter.order_idx] = True
    times = inter.order_times()
    if times is None:
        test_orders = np.zeros(len(inter.orders), dtype=bool)
        test_orders[np.flatnonzero(present)[
            random_test_orders(int(present.sum()), random_fraction, seed)]] = True
        test = test_orders[inter.order_idx]
        return Split(train=~test, test=test, method="random")
    ordered = np.sort(times[present])
    first_test = min(len(ordered) - 1, int(math.floor(len(ordered) * (1 - test_fraction))))
    cutoff = int(ordered[first_test]) if len(ordered) else 0
    # An order belongs wholly to one side: its earliest line decides.
    test = times[inter.order_idx] >= cutoff
    return Split(train=~test, test=test, method="temporal", cutoff=cutoff)


def random_test_orders(n_orders: int, fraction: float = RANDOM_TEST_FRACTION, seed: int = 0,
                       chunk: int = 10_000_000) -> np.ndarray:
    """Positions (0..n_orders-1) of the orders held out without timestamps: one seeded
    uniform draw per order, below ``fraction``. Drawn in chunks (the same stream), so an
    engine that keeps its lines elsewhere (training/spark) holds memory per chunk."""
    rng, out = np.random.default_rng(seed), []
    for start in range(0, n_orders, chunk):
        draws = rng.random(min(chunk, n_orders - start))
        out.append(np.flatnonzero(draws < fraction).astype(np.int64) + start)
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def validation_split(train: Interactions, test_fraction: float = TEST_FRACTION,
                     random_fraction: float = RANDOM_TEST_FRACTION, seed: int = 0) -> Split:
    """The split rule applied inside a training period.

    Only the training period's orders take part, so no test-period line can
    reach validation; without timestamps the draw is over those orders only.
    ``xsell train``'s own holdout selection uses the same rule, so under
    ``xsell evaluate`` the product and the baselines tune on one split.
    """
    return split(train, test_fraction, random_fraction, seed=seed)


def split_interactions(inter: Interactions, s: Split) -> tuple[Interactions, Interactions]:
    return inter.subset(s.train), inter.subset(s.test)


@dataclass
class EvalData:
    """Queries and truths of all protocols for one split (internal indexes)."""

    train_customer_items: sp.csr_matrix
    known_items: np.ndarray
    nb_customers: np.ndarray
    nb_truth: sp.csr_matrix
    basket_queries: list[np.ndarray]
    basket_targets: np.ndarray
    also_queries: np.ndarray
    unknown_targets: int
    # Every known item (a seeded sample of at most max_queries) as an also-bought query:
    # what the item pages of the catalogue show, for also-bought's concentration.
    catalogue_queries: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros(0, dtype=np.int64))
    # The most popular 1% of the training period's items and its best-sellers
    # (recsys.exposure); None: no exposure measures.
    head: np.ndarray | None = None
    sellers: np.ndarray | None = None
    # Queries of each kind before the max_queries sample: (next-best customers, orders
    # of two or more items); the holdout report counts these.
    candidates: tuple[int, int] = (0, 0)

    def next_best_only(self) -> EvalData:
        """The same split with the next-best queries only (item queries dropped)."""
        return dataclasses.replace(self, basket_queries=[],
                                   also_queries=np.zeros(0, dtype=np.int64),
                                   catalogue_queries=np.zeros(0, dtype=np.int64))


def build_eval_data(train: Interactions, test: Interactions, seed: int = 0,
                    max_queries: int | None = None,
                    baskets: sp.csr_matrix | None = None) -> EvalData:
    """Queries of the three protocols; ``max_queries`` caps each by a seeded sample.

    ``baskets``: the groups of held-out items the item queries hide one item of
    (baskets x items, binary); None: the test period's orders."""
    hist = train.customer_items()
    active, new = None, None
    if not train.customer_is_order:
        after = test.customer_items(binary=True)
        before = hist.copy()
        before.data[:] = 1
        new = after - after.multiply(before)
        new.eliminate_zeros()
        active = np.flatnonzero((np.diff(before.indptr) > 0) & (np.diff(new.indptr) > 0))

    orders = test.order_items() if baskets is None else baskets.tocsr()
    sizes = np.diff(orders.indptr)
    rows = np.flatnonzero(sizes >= 2)
    return sample_eval_data(
        hist, active, lambda customers: new[customers].tocsr(), rows, sizes[rows],
        lambda chosen: [orders.indices[orders.indptr[r]:orders.indptr[r + 1]] for r in chosen],
        seed, max_queries)


def sample_eval_data(hist: sp.csr_matrix, active: np.ndarray | None, new_rows, order_rows,
                     order_sizes: np.ndarray, order_items, seed: int = 0,
                     max_queries: int | None = None) -> EvalData:
    """:class:`EvalData` from the training history and the test period's candidates.

    ``active``: the customers (sorted) with a training history and new items
    in the test period (None: every order its own customer, no next-best);
    ``new_rows(customers)`` their new items (CSR). ``order_rows``: the test
    orders (sorted) with two or more items, ``order_sizes`` their sizes, and
    ``order_items(rows)`` the sorted items of some of them. Only the sampled
    queries are fetched, so an engine that keeps lines elsewhere (Spark)
    draws exactly the local engine's queries.
    """
    known = np.diff(hist.tocsc().indptr) > 0
    rng = np.random.default_rng(seed)

    nb_customers = np.zeros(0, dtype=np.int64)
    nb_truth = sp.csr_matrix((0, hist.shape[1]), dtype=np.float32)
    candidates = (0 if active is None else len(active), len(order_rows))
    if active is not None:
        nb_customers = np.asarray(active, dtype=np.int64)
        if max_queries and len(nb_customers) > max_queries:
            nb_customers = np.sort(rng.choice(nb_customers, max_queries, replace=False))
        nb_truth = new_rows(nb_customers)

    rows = np.asarray(order_rows, dtype=np.int64)
    sizes = np.asarray(order_sizes, dtype=np.int64)
    if max_queries and len(rows) > max_queries:
        pick = np.sort(rng.choice(len(rows), max_queries, replace=False))
        rows, sizes = rows[pick], sizes[pick]
    item_rng = np.random.default_rng(seed)
    target_pos = item_rng.integers(0, sizes) if len(rows) else np.zeros(0, dtype=np.int64)
    other_pos = (target_pos + 1 + item_rng.integers(0, sizes - 1)) % sizes \
        if len(rows) else np.zeros(0, dtype=np.int64)
    basket_queries, targets, also = [], np.zeros(len(rows), dtype=np.int64), \
        np.zeros(len(rows), dtype=np.int64)
    for n, (items, t, o) in enumerate(zip(order_items(rows), target_pos, other_pos,
                                          strict=True)):
        targets[n] = items[t]
        also[n] = items[o]
        basket_queries.append(np.delete(items, t).astype(np.int64))
    catalogue = np.flatnonzero(known)
    if max_queries and len(catalogue) > max_queries:
        catalogue = np.sort(np.random.default_rng(seed).choice(catalogue, max_queries,
                                                                replace=False))
    buyers = buyer_counts(hist)
    return EvalData(
        train_customer_items=hist, known_items=known, nb_customers=nb_customers,
        nb_truth=nb_truth, basket_queries=basket_queries, basket_targets=targets,
        also_queries=also, unknown_targets=int((~known[targets]).sum()) if len(targets) else 0,
        catalogue_queries=catalogue if len(rows) else np.zeros(0, dtype=np.int64),
        head=head_items(buyers), sellers=best_sellers(buyers), candidates=candidates,
    )


# ------------------------------------------------------------------ metrics


def ranking_metrics(recs: np.ndarray, truth: sp.csr_matrix, k: int) -> dict[str, np.ndarray]:
    """Per-query Recall, nDCG, HR and MAP at ``k`` for multi-item truths (binary gains)."""
    recs = recs[:, :k]
    n = recs.shape[0]
    truth = truth.tocsr()
    n_items = truth.shape[1]
    truth_keys = np.repeat(np.arange(n, dtype=np.int64), np.diff(truth.indptr)) * n_items + truth.indices
    rec_keys = np.arange(n, dtype=np.int64)[:, None] * n_items + np.where(recs >= 0, recs, 0)
    hits = np.isin(rec_keys, truth_keys) & (recs >= 0)
    # An item listed twice in one row counts once (at its first position).
    for j in range(1, recs.shape[1]):
        hits[:, j] &= ~(recs[:, :j] == recs[:, j:j + 1]).any(axis=1)
    sizes = np.diff(truth.indptr)
    denom = np.minimum(k, sizes).astype(np.float64)
    safe = np.where(denom > 0, denom, 1)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits * discounts[: recs.shape[1]]).sum(axis=1)
    ideal = np.cumsum(discounts)[np.maximum(denom.astype(int) - 1, 0)]
    cum_hits = np.cumsum(hits, axis=1)
    precision_at_hit = np.where(hits, cum_hits / np.arange(1, recs.shape[1] + 1), 0.0)
    valid = denom > 0
    return {
        "recall": np.where(valid, hits.sum(axis=1) / safe, 0.0),
        "ndcg": np.where(valid, dcg / np.where(valid, ideal, 1), 0.0),
        "hr": (hits.sum(axis=1) > 0).astype(np.float64),
        "map": np.where(valid, precision_at_hit.sum(axis=1) / safe, 0.0),
    }


def target_metrics(recs: np.ndarray, targets: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Per-query HR and MRR at ``k`` for one hidden target per query."""
    recs = recs[:, :k]
    hit = recs == targets[:, None]
    found = hit.any(axis=1)
    rank = np.argmax(hit, axis=1) + 1
    return {"hr": found.astype(np.float64), "mrr": np.where(found, 1.0 / rank, 0.0)}


def bootstrap_interval(values: np.ndarray, n_boot: int = 1000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of a mean over queries."""
    if len(values) == 0:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for b in range(n_boot):
        means[b] = values[rng.integers(0, len(values), len(values))].mean()
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def paired_bootstrap(ours: np.ndarray, theirs: np.ndarray, n_boot: int = 1000, seed: int = 0,
                     level: float = 0.95) -> dict:
    """Paired percentile bootstrap of ``mean(ours) - mean(theirs)`` over the same queries.

    Both arrays hold one value per query, in the same query order; each
    resample draws queries (not values), so the pairing is kept. Returns the
    observed absolute and relative difference with their intervals.
    """
    ours = np.asarray(ours, dtype=np.float64)
    theirs = np.asarray(theirs, dtype=np.float64)
    if ours.shape != theirs.shape:
        raise ValueError("paired_bootstrap needs per-query values of the same queries")
    n = len(ours)
    if n == 0:
        return {"diff": 0.0, "diff_ci": (0.0, 0.0), "rel": 0.0, "rel_ci": (0.0, 0.0), "queries": 0}
    rng = np.random.default_rng(seed)
    a_means = np.empty(n_boot)
    b_means = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, n, n)
        a_means[b] = ours[idx].mean()
        b_means[b] = theirs[idx].mean()
    q = [(1 - level) / 2, 1 - (1 - level) / 2]
    diff = a_means - b_means
    rel = np.where(b_means > 0, a_means / np.where(b_means > 0, b_means, 1) - 1, 0.0)
    base = theirs.mean()
    lo, hi = np.quantile(diff, q)
    rlo, rhi = np.quantile(rel, q)
    return {"diff": float(ours.mean() - base), "diff_ci": (float(lo), float(hi)),
            "rel": float(ours.mean() / base - 1) if base > 0 else 0.0,
            "rel_ci": (float(rlo), float(rhi)), "queries": n}


# ---------------------------------------------------------------- protocols


def _batched(n: int, n_items: int = 0):
    """Query batches sized so that one dense (batch x items) score array stays near 64 MB."""
    size = max(32, min(_BATCH, 16_000_000 // max(n_items, 1)))
    for start in range(0, n, size):
        yield start, min(n, start + size)


def evaluate(scorer: Scorer, data: EvalData, k: int = 10, per_query: bool = False) -> dict:
    """Score one scorer on every protocol the data supports."""
    return evaluate_variants(_Single(scorer), data, k, per_query)[None]


class _Single:
    def __init__(self, scorer):
        self.scorer = scorer

    def next_best(self, customer_idx, histories, k):
        return {None: self.scorer.next_best(customer_idx, histories, k)}

    def item_query(self, kind, query_lists, k):
        return {None: self.scorer.item_query(kind, query_lists, k)}


def _stack(batches: list[dict]) -> dict:
    """Each variant's batches stacked: an index array, or (indexes, claimed flags) for an
    evidence-gated variant (see :func:`split_claimed`)."""
    out = {}
    for name, first in batches[0].items():
        if isinstance(first, tuple):
            out[name] = tuple(np.vstack([b[name][i] for b in batches]) for i in range(2))
        else:
            out[name] = np.vstack([b[name] for b in batches])
    return out


def split_claimed(recs) -> tuple[np.ndarray, np.ndarray | None]:
    """(indexes, claimed flags or None) of a scorer's answer for one variant: an evidence-
    gated variant (recsys.recommender.Selection.gated_top_k) answers both."""
    return (recs[0], recs[1]) if isinstance(recs, tuple) else (recs, None)


def evaluate_variants(scorer, data: EvalData, k: int = 10, per_query: bool = False) -> dict:
    """Like :func:`evaluate` for a scorer whose methods return ``{variant: recs}``.

    Lets one pass over the queries score several variants (e.g. blend weights)
    that share expensive intermediate scores. Returns ``{variant: results}``.
    """
    out: dict = {}
    if len(data.nb_customers):
        recs_by = _stack([
            scorer.next_best(data.nb_customers[a:b], data.train_customer_items[data.nb_customers[a:b]], k)
            for a, b in _batched(len(data.nb_customers), len(data.known_items))
        ])
        n_known = int(data.known_items.sum()) or 1
        truth_tail = None if data.head is None else tail_truth(data.nb_truth, data.head)
        for name, recs in recs_by.items():
            per = ranking_metrics(recs, data.nb_truth, k)
            valid = recs[recs >= 0]
            entry = {f"{m}@{k}": float(v.mean()) for m, v in per.items()}
            entry |= {f"coverage@{k}": len(np.unique(valid)) / n_known, "queries": len(recs)}
            if truth_tail is not None:
                entry |= exposure(recs, k, n_known, data.sellers)
                has_tail = np.diff(truth_tail.indptr) > 0
                tail = ranking_metrics(recs[has_tail], truth_tail[has_tail], k)
                entry |= _tail_entry(tail, "next_best", k)
            if per_query:
                entry["_per_query"] = per
            out.setdefault(name, {})["next_best"] = entry
    also = [np.asarray([q]) for q in data.also_queries]
    # also-bought's concentration is over the catalogue's item pages, after its protocol's
    # queries in the same pass.
    also += [np.asarray([q]) for q in data.catalogue_queries]
    n_protocol = len(data.also_queries)
    for kind, queries in (("basket", data.basket_queries), ("also_bought", also)):
        if not len(queries):
            continue
        recs_by = _stack([scorer.item_query(kind, queries[a:b], k) for a, b in _batched(len(queries), len(data.known_items))])
        for name, answered in recs_by.items():
            recs, claimed = split_claimed(answered)
            if kind == "also_bought":
                recs, page_recs = recs[:n_protocol], recs[n_protocol:]
                page_claimed = None if claimed is None else claimed[n_protocol:]
            else:
                page_recs, page_claimed = recs, claimed
            per = target_metrics(recs, data.basket_targets, k)
            entry = {f"{m}@{k}": float(v.mean()) for m, v in per.items()}
            entry |= {"queries": len(recs), "unknown_targets": data.unknown_targets}
            if data.head is not None:
                entry |= exposure(page_recs, k, int(data.known_items.sum()), data.sellers,
                                  claimed=page_claimed)
                if kind == "also_bought":
                    entry["exposure_queries"] = len(page_recs)
                keep = tail_mask(data.basket_targets, data.head)
                entry |= _tail_entry(target_metrics(recs[keep], data.basket_targets[keep], k),
                                     kind, k)
            if per_query:
                entry["_per_query"] = per
            out.setdefault(name, {})[kind] = entry
    return out or {None: {}}


def _tail_entry(per: dict, kind: str, k: int) -> dict:
    """The primary metric on the queries off the head (recsys.exposure)."""
    metric = PRIMARY[kind]
    values = per[metric]
    return {f"{metric}_tail@{k}": float(values.mean()) if len(values) else 0.0,
            "tail_queries": len(values)}


PRIMARY = {"next_best": "ndcg", "basket": "hr", "also_bought": "hr"}


def primary_metric(results: dict, kind: str, k: int = 10) -> float | None:
    entry = results.get(kind)
    return None if entry is None else entry.get(f"{PRIMARY[kind]}@{k}")


class RecommenderScorer:
    """Adapts a :class:`~recsys.recommender.Recommender` to the :class:`Scorer` protocol."""

    def __init__(self, recommender, allowed: np.ndarray | None = None):
        self.rec = recommender
        self.allowed = allowed

    def next_best(self, customer_idx, histories, k):
        scores = self.rec.score_customers(customer_idx)
        return self.rec.top_k(scores, k, exclude=histories, allowed=self.allowed)

    def item_query(self, kind, query_lists, k):
        scores = self.rec.score_items(kind, query_lists)
        if self.rec.gate(kind):  # (indexes, claimed flags): see split_claimed
            return self.rec.gated_top_k(kind, query_lists, scores, k, self.allowed)
        return self.rec.top_k(scores, k, exclude=rows_matrix(query_lists, scores.shape[1]),
                              allowed=self.allowed)


class PopularityScorer:
    """The popularity baseline: best-sellers of the training period."""

    def __init__(self, counts: np.ndarray, allowed: np.ndarray):
        self.scores = np.where(allowed, counts.astype(np.float64), -np.inf)
        # The best-sellers in one order (ties: lower index), allowed items only.
        order = np.argsort(-self.scores, kind="stable")
        self._order = order[np.isfinite(self.scores[order])]

    def _top(self, n: int, exclude: sp.csr_matrix, k: int) -> np.ndarray:
        """The best-sellers in ``_order``, minus each row's exclusions."""
        exclude = exclude.tocsr()
        # Enough candidates for every row: k plus the most exclusions of any row.
        width = min(len(self._order), k + int(np.diff(exclude.indptr).max(initial=0)))
        cand = np.broadcast_to(self._order[:width], (n, width))
        rank = np.full(len(self.scores), width, dtype=np.int64)
        rank[self._order[:width]] = np.arange(width)
        blocked = np.zeros((n, width + 1), dtype=bool)
        coo = exclude.tocoo()
        blocked[coo.row, rank[coo.col]] = True
        ok = ~blocked[:, :width]
        pos = np.cumsum(ok, axis=1) - 1
        out = np.full((n, k), -1, dtype=np.int64)
        rows, cols = np.nonzero(ok & (pos < k))
        out[rows, pos[rows, cols]] = cand[rows, cols]
        return out

    def next_best(self, customer_idx, histories, k):
        return self._top(len(customer_idx), histories, k)

    def item_query(self, kind, query_lists, k):
        return self._top(len(query_lists), rows_matrix(query_lists, len(self.scores)), k)
