"""Compiled (numba) single-query answers: rank, relevance floor and reasons in one pass.

One service query (an item page, a basket, a history) ends with the same work:
rank the allowed candidates, drop those under the score floor, count for the
best of them how many customers bought each evidence item *and* the candidate
(the support floor, and the "because of" reason), stop at ``limit``. In numpy
that is a few dozen small array calls per query, each a microsecond or more of
interpreter overhead, several times the arithmetic itself. :func:`select` does
it in one compiled call.

The kernels keep the GIL (numba's default), and the one-query path uses them
(:func:`sum_rows`, :func:`blend_into`, :func:`copy_row`) instead of numpy
calls that release it (zeroed allocation, copies and ufuncs over arrays of more
than 500 elements). A kernel here runs for microseconds; releasing the GIL for
it lets another thread of the gthread worker take it, and getting it back costs
a futex wait and a move to another core, which is much more than the kernel.
Measured with 4 threads answering baskets in one process (demo model): 0.23 ms
of CPU per answer with the GIL released, 0.08 ms held, against 0.07 ms with
one thread.

It gives the same answer as ``Recommender._finish``, the numpy path
(tests/training/test_answer_equivalence.py holds both equal to the pinned
reference on planted data; tests/recsys/test_fastpath.py checks the kernels on
hand-made data), for the common case only:
co-purchase-style (or ALS) reasons, no per-category diversity, no per-candidate
source item, and with a support floor at most :data:`MAX_EVIDENCE` evidence
items. Everything else, and any machine without numba, takes the numpy path.

Ranking: score descending, ties by item index (the numpy path breaks ties the
same way within its ranked chunks).
"""

from __future__ import annotations

import logging
import os

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


_JIT_OPTIONS: dict = {}  # nogil stays False: see the module docstring
# NUMBA_* variables that do not change the machine code (the rest are in the fingerprint).
_NEUTRAL_ENV = {"NUMBA_CACHE_DIR", "NUMBA_NUM_THREADS", "NUMBA_DEBUG_CACHE",
                "NUMBA_CACHE_LOCATOR_CLASSES", "NUMBA_THREADING_LAYER"}


def cache_fingerprint(environ=None, source: bytes | None = None) -> str:
    """What the cached machine code depends on beyond numba's own index key (the
    function's bytecode, signature and CPU): this file's source, the numba, llvmlite
    and Python versions, the jit options and every NUMBA_* setting that changes code
    generation (NUMBA_OPT, NUMBA_BOUNDSCHECK, ...). A cache lives in a folder named by
    it, so a cache made with other flags or another source is never loaded."""
    import hashlib
    import sys

    environ = os.environ if environ is None else environ
    digest = hashlib.sha256()
    if source is None:
        with open(__file__, "rb") as fh:
            source = fh.read()
    digest.update(source)
    import llvmlite
    import numba

    flags = sorted((k, v) for k, v in environ.items()
                   if k.startswith("NUMBA_") and k not in _NEUTRAL_ENV)
    digest.update(repr((numba.__version__, llvmlite.__version__, sys.version, flags,
                        sorted(_JIT_OPTIONS.items()))).encode())
    return digest.hexdigest()[:16]


def _cache_class():
    """numba's function cache, in a folder named by :func:`cache_fingerprint`.

    Next to this file (``__pycache__/xsell-numba-<fingerprint>``) when it can be
    written, or when it already holds a cache and cannot (the Docker image: compiled
    at build time by root, read by a non-root user from read-only site-packages;
    numba's own locator would skip a read-only folder and compile again); else in
    numba's user cache folder, or NUMBA_CACHE_DIR, under the same name.
    """
    from numba.core import caching

    folder = f"xsell-numba-{cache_fingerprint()}"

    def named(base):
        class Locator(base):
            def __init__(self, py_func, py_file):
                super().__init__(py_func, py_file)
                self._cache_path = os.path.join(self._cache_path, folder)

            @classmethod
            def from_function(cls, py_func, py_file):
                if not os.path.exists(py_file):
                    return None
                if base is caching.UserProvidedCacheLocator and not caching.config.CACHE_DIR:
                    return None
                self = cls(py_func, py_file)
                try:
                    self.ensure_cache_path()
                except OSError:
                    # Read-only: usable for loading when it holds a cache already.
                    return self if os.path.isdir(self._cache_path) else None
                return self

        return Locator

    class Impl(caching.CompileResultCacheImpl):
        _locator_classes = [named(caching.UserProvidedCacheLocator),
                            named(caching.InTreeCacheLocator),
                            named(caching.UserWideCacheLocator)]

    class Cache(caching.FunctionCache):
        _impl_class = Impl

        def save_overload(self, sig, data):
            try:
                super().save_overload(sig, data)
            except OSError as exc:  # a read-only cache folder: compiled, not saved
                log.debug("numba cache not saved (%s)", exc)

    return Cache


_CACHE_CLASS = None
_KERNELS: list = []


def _compiled(fn):
    global _CACHE_CLASS
    if njit is None:
        return fn
    # The machine code is cached on disk (see _cache_class) and reused by every later
    # process with the same source and flags.
    dispatcher = njit(**_JIT_OPTIONS)(fn)
    if _CACHE_CLASS is None:
        _CACHE_CLASS = _cache_class()
    dispatcher._cache = _CACHE_CLASS(dispatcher.py_func)
    _KERNELS.append(dispatcher)
    return dispatcher


def cache_stats() -> dict:
    """Kernels loaded from the disk cache and compiled in this process, and the folder."""
    hits = sum(sum(k.stats.cache_hits.values()) for k in _KERNELS)
    misses = sum(sum(k.stats.cache_misses.values()) for k in _KERNELS)
    folder = _KERNELS[0]._cache._cache_path if _KERNELS else None
    return {"loaded": hits, "compiled": misses, "folder": folder}


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
def _first(neg, a, b, worst):
    """a goes above b in the heap: ranks before it, or after it in a worst-first heap."""
    return _before(neg, b, a) if worst else _before(neg, a, b)


@_compiled
def _sift_down(heap, size, at, neg, worst):
    while True:
        child = 2 * at + 1
        if child >= size:
            return
        if child + 1 < size and _first(neg, heap[child + 1], heap[child], worst):
            child += 1
        if not _first(neg, heap[child], heap[at], worst):
            return
        heap[at], heap[child] = heap[child], heap[at]
        at = child


@_compiled
def _heapify(heap, neg):
    """Candidate positions ``heap`` made a binary heap, best first, in place."""
    size = heap.shape[0]
    for at in range(size // 2 - 1, -1, -1):
        _sift_down(heap, size, at, neg, False)
    return heap


@_compiled
def _best(neg, limit):
    """Positions of the best ``limit`` candidates, ranked (as the heap would give them):
    one pass keeping the ``limit`` best so far in a heap whose root is the worst of them,
    so most candidates cost one comparison."""
    m = neg.shape[0]
    k = min(limit, m)
    kept = np.arange(k)
    # Root = the candidate ranked last among the kept: sift with the order reversed.
    for at in range(k // 2 - 1, -1, -1):
        _sift_down(kept, k, at, neg, True)
    for i in range(k, m):
        if _before(neg, i, kept[0]):
            kept[0] = i
            _sift_down(kept, k, 0, neg, True)
    # Rank the kept ones (few): insertion sort by the same order.
    for i in range(1, k):
        x = kept[i]
        j = i - 1
        while j >= 0 and _before(neg, x, kept[j]):
            kept[j + 1] = kept[j]
            j -= 1
        kept[j + 1] = x
    return kept


@_compiled
def _spread_table(n_bits):
    """For up to 8 evidence bits: entry ``bits`` has a 1 in lane r for each bit r set,
    lanes of 16 bits (up to 4 bits) or 8 bits (5 to 8 bits)."""
    width = 16 if n_bits <= 4 else 8
    table = np.zeros(1 << min(max(n_bits, 1), 8), dtype=np.uint64)
    for bits in range(table.shape[0]):
        value = np.uint64(0)
        for r in range(min(n_bits, 8)):
            if (bits >> r) & 1:
                value += np.uint64(1) << np.uint64(width * r)
        table[bits] = value
    return table


@_compiled
def _mark(evidence, b_indptr, b_indices, flags, value_of_bit):
    """flags[customer] |= bit r for every buyer of evidence[r] (0: clear them)."""
    for r in range(evidence.shape[0]):
        bit = np.uint64(1) << np.uint64(r) if value_of_bit else np.uint64(0)
        for p in range(b_indptr[evidence[r]], b_indptr[evidence[r] + 1]):
            if value_of_bit:
                flags[b_indices[p]] |= bit
            else:
                flags[b_indices[p]] = 0


@_compiled
def _count_pairs(c, n_bits, b_indptr, b_indices, flags, spread, planes, out):
    """out[r] = customers who bought item c and carry flag bit r (evidence item r of the
    marked pass), for r < n_bits <= 64.

    Up to 8 bits, the counts of all bits are summed in one register, a lane each (via
    ``spread``); above, in 16 bit-planes (a carry-save counter per bit: amortised two
    operations an entry). Both are flushed to ``out`` before they can overflow.
    """
    for r in range(n_bits):
        out[r] = 0
    lo, hi = b_indptr[c], b_indptr[c + 1]
    if n_bits <= 8:
        width = 16 if n_bits <= 4 else 8
        block = (1 << width) - 1
        mask = np.uint64(block)
        while lo < hi:
            stop = min(hi, lo + block)
            acc = np.uint64(0)
            for p in range(lo, stop):
                acc += spread[flags[b_indices[p]]]
            for r in range(n_bits):
                out[r] += np.int64((acc >> np.uint64(width * r)) & mask)
            lo = stop
        return
    block = (1 << planes.shape[0]) - 1
    while lo < hi:
        stop = min(hi, lo + block)
        for k in range(planes.shape[0]):
            planes[k] = 0
        for p in range(lo, stop):
            carry = flags[b_indices[p]]
            k = 0
            while carry:
                t = planes[k] & carry
                planes[k] ^= carry
                carry = t
                k += 1
        for r in range(n_bits):
            total = 0
            for k in range(planes.shape[0]):
                total += np.int64((planes[k] >> np.uint64(r)) & np.uint64(1)) << k
            out[r] += total
        lo = stop


@_compiled
def _evidence_counts(evidence, first, cand, b_indptr, b_indices, h_indptr, h_indices,
                     n_items):
    """table[r, j] = customers who bought evidence[r] and item j, for every item, from the
    evidence side (each buyer's purchases), if that is cheaper than counting the first
    ranked candidates' buyers (and the table is small); else an empty table."""
    n_ev = evidence.shape[0]
    if n_ev == 0 or h_indptr.shape[0] == 0 or n_ev * n_items > (1 << 21):
        return np.zeros((0, n_items), dtype=np.int32)
    cost_candidates = 0
    for i in range(first.shape[0]):
        c = cand[first[i]]
        cost_candidates += b_indptr[c + 1] - b_indptr[c]
    cost_evidence = 0
    for r in range(n_ev):
        for p in range(b_indptr[evidence[r]], b_indptr[evidence[r] + 1]):
            u = b_indices[p]
            cost_evidence += h_indptr[u + 1] - h_indptr[u]
    # The table itself has to be zeroed: count it at a sixteenth of a step per cell.
    if cost_evidence + n_ev * n_items // 16 >= cost_candidates:
        return np.zeros((0, n_items), dtype=np.int32)
    table = np.zeros((n_ev, n_items), dtype=np.int32)
    for r in range(n_ev):
        for p in range(b_indptr[evidence[r]], b_indptr[evidence[r] + 1]):
            u = b_indices[p]
            for q in range(h_indptr[u], h_indptr[u + 1]):
                table[r, h_indices[q]] += 1
    return table


@_compiled
def _similarities(s_indptr, s_indices, s_data, evidence, items, out):
    """out[k, r] = similarity (evidence[r] -> items[k]), 0 where not stored: one scan of
    each evidence row, items found by binary search."""
    order = np.argsort(items)
    ranked = items[order]
    for r in range(evidence.shape[0]):
        e = evidence[r]
        for p in range(s_indptr[e], s_indptr[e + 1]):
            at = np.searchsorted(ranked, s_indices[p])
            if at < ranked.shape[0] and ranked[at] == s_indices[p]:
                out[order[at], r] = s_data[p]


@_compiled
def select(scores, allowed, limit, min_score, min_support, evidence, b_indptr, b_indices,
           flags, s_indptr, s_indices, s_data, h_indptr, h_indices):
    """One answer. Returns (items, their scores, reasons (limit x BECAUSE evidence items,
    -1 padded), support of each item with its first reason (-1 without one), whether the
    floor dropped candidates, the supports of each item with every evidence item).

    ``b_*``: who bought each item (CSC of customers x items); ``h_*``: what each
    customer bought (the same matrix as CSR). ``flags``: a zeroed uint64 array
    over customers (left zeroed). ``s_*``: the co-purchase similarity CSR that
    orders reasons of equal support (empty arrays for none). With a support
    floor (``min_support`` > 0) at most MAX_EVIDENCE evidence items; without,
    any number (counted in passes of MAX_EVIDENCE).
    """
    n_ev = evidence.shape[0]
    cand, neg, floored = _candidates(scores, allowed, min_score)
    chosen = np.empty(limit, dtype=np.int64)
    supports = np.zeros((limit, n_ev), dtype=np.int64)
    n_chosen = 0
    planes = np.zeros(16, dtype=np.uint64)
    if min_support > 0:
        # The floor: candidates in rank order, each counted, until `limit` pass.
        spread = _spread_table(n_ev)
        count = np.zeros(max(n_ev, 1), dtype=np.int64)
        # The ranking is read lazily: the best few from one bounded pass (most queries
        # need no more), then, only if the floor rejected too many, a heap of the rest.
        order = _best(neg, min(cand.shape[0], 2 * limit + 8))
        heap = order[:0]
        read, size, rest_ranked = 0, 0, False
        # Supports are counted from the candidates' side (their buyers against the
        # evidence bits) or, when the evidence items have few buyers (long-tail items,
        # whose candidates the floor mostly rejects), from the evidence side: every
        # item their buyers bought, counted once for all candidates.
        table = _evidence_counts(evidence, order, cand, b_indptr, b_indices, h_indptr,
                                 h_indices, scores.shape[0])
        by_evidence = table.shape[0] > 0
        if not by_evidence:
            _mark(evidence, b_indptr, b_indices, flags, True)
        while n_chosen < limit:
            if read < order.shape[0]:
                pos = order[read]
                read += 1
            elif not rest_ranked:
                taken = np.zeros(cand.shape[0], dtype=np.bool_)
                taken[order] = True
                heap = _heapify(np.flatnonzero(~taken), neg)
                size = heap.shape[0]
                rest_ranked = True
                continue
            elif size:
                pos = heap[0]
                size -= 1
                heap[0] = heap[size]
                _sift_down(heap, size, 0, neg, False)
            else:
                break
            c = cand[pos]
            if by_evidence:
                for r in range(n_ev):
                    count[r] = table[r, c]
            elif n_ev:
                _count_pairs(c, n_ev, b_indptr, b_indices, flags, spread, planes, count)
            best = 0
            for r in range(n_ev):
                best = max(best, count[r])
            if best < min_support:
                floored += 1
                continue
            chosen[n_chosen] = c
            for r in range(n_ev):
                supports[n_chosen, r] = count[r]
            n_chosen += 1
        if not by_evidence:
            _mark(evidence, b_indptr, b_indices, flags, False)
    else:
        # No floor: the answer is the best `limit` candidates.
        best = _best(neg, limit)
        n_chosen = best.shape[0]
        chosen[:n_chosen] = cand[best]
        # Supports for the reasons only, for the chosen items, MAX_EVIDENCE at a time.
        for start in range(0, n_ev, MAX_EVIDENCE):
            part = evidence[start:min(n_ev, start + MAX_EVIDENCE)]
            spread = _spread_table(part.shape[0])
            _mark(part, b_indptr, b_indices, flags, True)
            for k in range(n_chosen):
                _count_pairs(chosen[k], part.shape[0], b_indptr, b_indices, flags, spread,
                             planes, supports[k, start:start + part.shape[0]])
            _mark(part, b_indptr, b_indices, flags, False)

    items = chosen[:n_chosen]
    supports = supports[:n_chosen]
    item_scores = np.empty(n_chosen, dtype=np.float32)
    because = np.full((n_chosen, BECAUSE), -1, dtype=np.int64)
    first_support = np.full(n_chosen, -1, dtype=np.int64)
    sims = np.zeros((n_chosen, n_ev), dtype=np.float64)
    if n_ev > 1 and s_indptr.shape[0]:
        _similarities(s_indptr, s_indices, s_data, evidence, items, sims)
    taken = np.zeros(max(n_ev, 1), dtype=np.bool_)
    for k in range(n_chosen):
        item_scores[k] = scores[items[k]]
        if n_ev == 0:
            continue
        if n_ev == 1:  # a single query item is always its own reason
            because[k, 0] = evidence[0]
            first_support[k] = supports[k, 0]
            continue
        for r in range(n_ev):
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
                        supports[k, r] == supports[k, pick] and sims[k, r] > sims[k, pick]):
                    pick = r
            taken[pick] = True
            if supports[k, pick] > 0 or sims[k, pick] > 0:
                because[k, written] = evidence[pick]
                if written == 0:
                    first_support[k] = supports[k, pick]
                written += 1
    return items, item_scores, because, first_support, floored > 0, supports


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
def sum_rows(indptr, indices, data, rows, weights, n):
    """A new float32 row of ``n`` zeros with :func:`add_rows` added (allocated here: numpy's
    zeroed allocation of a row this size releases the GIL)."""
    out = np.zeros(n, dtype=np.float32)
    add_rows(indptr, indices, data, rows, weights, out)
    return out


@_compiled
def sum_dense_rows(matrix, rows, weights):
    """A new float32 row: ``weights[k] * matrix[rows[k]]`` added in that order, as scipy's
    sparse-row times dense-matrix product adds them (one query against dense EASE)."""
    out = np.zeros(matrix.shape[1], dtype=np.float32)
    for k in range(rows.shape[0]):
        j = rows[k]
        w = weights[k]
        for c in range(matrix.shape[1]):
            out[c] += w * matrix[j, c]
    return out


@_compiled
def blend_into(out, part, weight):
    """``out += weight * part`` in float32 (``out += part`` for weight 1), bit for bit
    numpy's result, for one score row."""
    if weight == 1:
        for j in range(out.shape[0]):
            out[j] += part[j]
    else:
        for j in range(out.shape[0]):
            out[j] += weight * part[j]


@_compiled
def copy_row(row):
    """A writable copy of a 1-D array (scores or a mask)."""
    return row.copy()


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


@_compiled
def woodbury_solve(y, confidence, inverse):
    """``(B + Y'(C - I)Y)^-1 Y'c`` for ``m`` items (``y``: their factors, m x f float64,
    ``confidence``: c) with ``inverse`` = B^-1, by the Woodbury identity
    (``ALSModel.solve_user``): B^-1 b - W x, with b = Y'c, W = B^-1 Y' and x solving the
    m x m system (I + (C - I) Y W) x = (C - I) W'b, by Gaussian elimination with partial
    pivoting (LAPACK's gesv algorithm). Float64 throughout, in one call instead of a
    dozen numpy and LAPACK calls. Returns (the vector, False) when a pivot is zero (the
    caller falls back to numpy, which raises as before)."""
    m, f = y.shape
    b = np.zeros(f)
    for i in range(m):
        for k in range(f):
            b[k] += y[i, k] * confidence[i]
    w = np.zeros((f, m))  # B^-1 Y'
    for k in range(f):
        for i in range(m):
            acc = 0.0
            for j in range(f):
                acc += inverse[k, j] * y[i, j]
            w[k, i] = acc
    a = np.zeros((m, m))
    rhs = np.zeros(m)
    for i in range(m):
        scale = confidence[i] - 1.0
        for j in range(m):
            acc = 0.0
            for k in range(f):
                acc += y[i, k] * w[k, j]
            a[i, j] = scale * acc + (1.0 if i == j else 0.0)
        acc = 0.0
        for k in range(f):
            acc += w[k, i] * b[k]
        rhs[i] = scale * acc
    out = np.zeros(f)
    for col in range(m):  # elimination, partial pivoting
        pivot = col
        for r in range(col + 1, m):
            if abs(a[r, col]) > abs(a[pivot, col]):
                pivot = r
        if a[pivot, col] == 0.0:
            return out, False
        if pivot != col:
            for j in range(m):
                a[col, j], a[pivot, j] = a[pivot, j], a[col, j]
            rhs[col], rhs[pivot] = rhs[pivot], rhs[col]
        for r in range(col + 1, m):
            factor = a[r, col] / a[col, col]
            for j in range(col, m):
                a[r, j] -= factor * a[col, j]
            rhs[r] -= factor * rhs[col]
    x = np.zeros(m)
    for i in range(m - 1, -1, -1):
        acc = rhs[i]
        for j in range(i + 1, m):
            acc -= a[i, j] * x[j]
        x[i] = acc / a[i, i]
    for k in range(f):
        acc = 0.0
        for j in range(f):
            acc += inverse[k, j] * b[j]
        for i in range(m):
            acc -= w[k, i] * x[i]
        out[k] = acc
    return out, True


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
           flags, indptr, indices, data, indptr, indices)
    add_rows(indptr, indices, data, np.asarray([0, 2], dtype=np.int64),
             np.ones(2, dtype=np.float32), np.zeros(3, dtype=np.float32))
    normalise_row(np.ones(3, dtype=np.float32))
    sum_rows(indptr, indices, data, np.asarray([0, 2], dtype=np.int64),
             np.ones(2, dtype=np.float32), 3)
    row = copy_row(readonly(np.ones(3, dtype=np.float32)))
    blend_into(row, readonly(np.ones(3, dtype=np.float32)), np.float32(0.5))
    copy_row(readonly(np.ones(3, dtype=np.bool_)))
    sum_dense_rows(readonly(np.ones((3, 3), dtype=np.float32)),
                   np.asarray([0, 2], dtype=np.int64), np.ones(2, dtype=np.float32))
    woodbury_solve(np.ones((2, 3)), np.ones(2), readonly(np.eye(3)))
