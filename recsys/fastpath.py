"""Compiled (numba) single-query answers: rank, relevance floor and reasons in one pass.

One service query (an item page, a basket, a history) ends with the same work:
rank the allowed candidates, drop those under the score floor, count for the
best of them how many customers bought each evidence item *and* the candidate
(the support floor, and the "because of" reason), stop at ``limit``. In numpy
that is a few dozen small array calls per query, each a microsecond or more of
interpreter overhead, several times the arithmetic itself. :func:`select` does
it in one compiled call that releases the GIL, so the threads of a service
worker overlap.

It is the same answer as ``Recommender._finish`` (tests/recsys/test_fastpath.py
holds the two equal on planted and random queries), for the common case only:
co-purchase-style reasons, no per-category diversity, no per-candidate source
item, at most :data:`MAX_EVIDENCE` evidence items. Everything else, and any
machine without numba, takes the numpy path.

Ranking: score descending, ties by item index (the numpy path breaks ties the
same way within its ranked chunks).
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

MAX_EVIDENCE = 64  # one bit per evidence item in a uint64 per customer
BECAUSE = 3  # reasons per recommendation (recommender._BECAUSE)

try:  # numba is a dependency; the numpy path stays for platforms without a wheel
    from numba import njit
except ImportError:  # pragma: no cover - exercised only where numba cannot install
    njit = None


def available() -> bool:
    return njit is not None


def _compiled(fn):
    if njit is None:
        return fn
    # cache=True: the machine code is written next to this file (or to numba's
    # user cache when that is read-only) and reused by every later process.
    return njit(cache=True, nogil=True)(fn)


@_compiled
def _candidates(scores, allowed, min_score):
    """Allowed finite candidates with score >= min_score (ascending index), their negated
    scores, and how many allowed candidates the score floor dropped."""
    n = scores.shape[0]
    cand = np.empty(n, dtype=np.int64)
    m = 0
    floored = 0
    for j in range(n):  # branch-free: most items are not candidates
        s = scores[j]
        ok = allowed[j] and np.isfinite(s)
        keep = ok and s >= min_score
        cand[m] = j
        m += keep
        floored += ok and not keep
    cand = cand[:m]
    neg = np.empty(m, dtype=np.float64)
    for i in range(m):
        neg[i] = -np.float64(scores[cand[i]])
    return cand, neg, floored


@_compiled
def _before(neg, a, b):
    """Candidate position a ranks before b: higher score, then lower item index."""
    return neg[a] < neg[b] or (neg[a] == neg[b] and a < b)


@_compiled
def _sift_down(heap, size, at, neg):
    while True:
        child = 2 * at + 1
        if child >= size:
            return
        if child + 1 < size and _before(neg, heap[child + 1], heap[child]):
            child += 1
        if not _before(neg, heap[child], heap[at]):
            return
        heap[at], heap[child] = heap[child], heap[at]
        at = child


@_compiled
def _heap(neg):
    """A binary heap of candidate positions, best first: the ranking is read lazily, so a
    query pays for the candidates it looks at, not for sorting them all."""
    size = neg.shape[0]
    heap = np.arange(size)
    for at in range(size // 2 - 1, -1, -1):
        _sift_down(heap, size, at, neg)
    return heap


@_compiled
def _spread_table(n_ev):
    """For up to 8 evidence items: entry ``bits`` has a 1 in lane r for each bit r set,
    lanes of 16 bits (up to 4 items) or 8 bits (5 to 8 items)."""
    width = 16 if n_ev <= 4 else 8
    table = np.zeros(1 << min(max(n_ev, 1), 8), dtype=np.uint64)
    for bits in range(table.shape[0]):
        value = np.uint64(0)
        for r in range(n_ev):
            if (bits >> r) & 1:
                value += np.uint64(1) << np.uint64(width * r)
        table[bits] = value
    return table


@_compiled
def _count_pairs(c, n_ev, b_indptr, b_indices, flags, spread, out):
    """out[r] = customers who bought evidence item r and item c (flags hold the evidence
    bits). Up to 8 evidence items, the counts of all of them are summed in one register
    (a lane each, via ``spread``), flushed before a lane can overflow."""
    for r in range(n_ev):
        out[r] = 0
    lo, hi = b_indptr[c], b_indptr[c + 1]
    if n_ev <= 8:
        width = 16 if n_ev <= 4 else 8
        block = (1 << width) - 1
        mask = np.uint64(block)
        while lo < hi:
            stop = min(hi, lo + block)
            acc = np.uint64(0)
            for p in range(lo, stop):
                acc += spread[flags[b_indices[p]]]
            for r in range(n_ev):
                out[r] += np.int64((acc >> np.uint64(width * r)) & mask)
            lo = stop
        return
    for p in range(lo, hi):
        bits = flags[b_indices[p]]
        r = 0
        while bits:
            if bits & np.uint64(1):
                out[r] += 1
            bits >>= np.uint64(1)
            r += 1


@_compiled
def _similarity(s_indptr, s_indices, s_data, row, col):
    for p in range(s_indptr[row], s_indptr[row + 1]):
        if s_indices[p] == col:
            return np.float64(s_data[p])
    return 0.0


@_compiled
def select(scores, allowed, limit, min_score, min_support, evidence, b_indptr, b_indices,
           flags, s_indptr, s_indices, s_data):
    """One answer. Returns (items, their scores, reasons (limit x BECAUSE evidence items,
    -1 padded), support of each item with its first reason (-1 without one), whether the
    floor dropped candidates, the supports of each item with every evidence item).

    ``flags``: a zeroed uint64 array over customers (left zeroed). ``s_*``: the
    co-purchase similarity CSR that orders reasons of equal support (empty arrays
    for none). ``first``: the size of the first ranked block.
    """
    n_ev = evidence.shape[0]
    cand, neg, floored = _candidates(scores, allowed, min_score)
    heap = _heap(neg)
    size = heap.shape[0]
    chosen = np.empty(limit, dtype=np.int64)
    supports = np.zeros((limit, max(n_ev, 1)), dtype=np.int64)
    n_chosen = 0
    count = np.zeros(max(n_ev, 1), dtype=np.int64)
    spread = _spread_table(n_ev)
    for r in range(n_ev):
        bit = np.uint64(1) << np.uint64(r)
        for p in range(b_indptr[evidence[r]], b_indptr[evidence[r] + 1]):
            flags[b_indices[p]] |= bit
    while n_chosen < limit and size:
        c = cand[heap[0]]
        size -= 1
        heap[0] = heap[size]
        _sift_down(heap, size, 0, neg)
        if n_ev:
            _count_pairs(c, n_ev, b_indptr, b_indices, flags, spread, count)
        if min_support > 0:
            best = 0
            for r in range(n_ev):
                if count[r] > best:
                    best = count[r]
            if best < min_support:
                floored += 1
                continue
        chosen[n_chosen] = c
        for r in range(n_ev):
            supports[n_chosen, r] = count[r]
        n_chosen += 1
    for r in range(n_ev):
        for p in range(b_indptr[evidence[r]], b_indptr[evidence[r] + 1]):
            flags[b_indices[p]] = 0

    items = chosen[:n_chosen]
    item_scores = np.empty(n_chosen, dtype=np.float32)
    because = np.full((n_chosen, BECAUSE), -1, dtype=np.int64)
    first_support = np.full(n_chosen, -1, dtype=np.int64)
    sims = np.zeros(max(n_ev, 1), dtype=np.float64)
    taken = np.zeros(max(n_ev, 1), dtype=np.bool_)
    for k in range(n_chosen):
        c = items[k]
        item_scores[k] = scores[c]
        if n_ev == 0:
            continue
        if n_ev == 1:  # a single query item is always its own reason
            because[k, 0] = evidence[0]
            first_support[k] = supports[k, 0]
            continue
        for r in range(n_ev):
            sims[r] = _similarity(s_indptr, s_indices, s_data, evidence[r], c) \
                if s_indptr.shape[0] else 0.0
            taken[r] = False
        # Evidence by support, then similarity, then position: the first BECAUSE of them
        # with any support or similarity.
        written = 0
        for _ in range(min(BECAUSE, n_ev)):
            pick = -1
            for r in range(n_ev):
                if taken[r]:
                    continue
                if pick < 0 or supports[k, r] > supports[k, pick] or (
                        supports[k, r] == supports[k, pick] and sims[r] > sims[pick]):
                    pick = r
            taken[pick] = True
            if supports[k, pick] > 0 or sims[pick] > 0:
                because[k, written] = evidence[pick]
                if written == 0:
                    first_support[k] = supports[k, pick]
                written += 1
    return items, item_scores, because, first_support, floored > 0, supports[:n_chosen, :n_ev]


@_compiled
def add_rows(indptr, indices, data, rows, weights, out):
    """``out[indices of row j] += weights[k] * data of row j`` for each ``j = rows[k]``, in
    that order, in float32: a one-row sparse product, as scipy adds it."""
    for k in range(rows.shape[0]):
        j = rows[k]
        w = weights[k]
        for p in range(indptr[j], indptr[j + 1]):
            out[indices[p]] += w * data[p]


@_compiled
def normalise_row(row):
    """In place: negatives to 0, then divided by the maximum (when it is above 0), in
    float32, as ``Recommender._normalise`` does with numpy (a NaN makes every score NaN,
    as numpy's maximum does)."""
    top = np.float32(0)
    nan = False
    for j in range(row.shape[0]):  # branch-free, so that it vectorises
        x = row[j]
        nan |= x != x
        x = max(x, np.float32(0))
        row[j] = x
        top = max(top, x)
    if nan:
        top = np.float32(np.nan)
    elif top <= 0:
        top = np.float32(1)
    for j in range(row.shape[0]):
        row[j] = row[j] / top


def readonly(array) -> np.ndarray:
    """A plain, read-only view (of a memory-mapped array too): the model arrays always
    reach :func:`select` with one type, so one compiled version serves them all."""
    view = np.asarray(array).view(np.ndarray)
    view.flags.writeable = False
    return view


def writable(array, dtype) -> np.ndarray:
    """A per-query array as :func:`select` is compiled for it: C-contiguous, writable (a
    read-only one, e.g. a slice of a memory-mapped model array, is copied)."""
    array = np.asarray(array)
    if array.dtype != dtype or not array.flags.c_contiguous or not array.flags.writeable:
        array = np.array(array, dtype=dtype, order="C")
    return array


def warm() -> None:
    """Compile :func:`select` for the model arrays' usual types (or load it from numba's
    cache), off the request path: the service calls this before its workers fork."""
    if njit is None:
        return
    scores = np.asarray([0.5, 1.0, 0.25], dtype=np.float32)
    allowed = np.ones(3, dtype=np.bool_)
    indptr = readonly(np.asarray([0, 1, 2, 3], dtype=np.int32))
    indices = readonly(np.asarray([0, 0, 1], dtype=np.int32))
    data = readonly(np.ones(3, dtype=np.float32))
    flags = np.zeros(2, dtype=np.uint64)
    select(scores, allowed, 2, 0.0, 1, np.asarray([0, 1], dtype=np.int64), indptr, indices,
           flags, indptr, indices, data)
    add_rows(indptr, indices, data, np.asarray([0, 2], dtype=np.int64),
             np.ones(2, dtype=np.float32), np.zeros(3, dtype=np.float32))
    normalise_row(np.ones(3, dtype=np.float32))
