"""EASE for large catalogues: an exact dense head plus a sparse regression tail.

EASE with a zero diagonal decouples by column: column j of

    B = I - P / diag(P),   P = (X'X + Lambda)^-1

is the ridge regression of item j's purchases on every other item's,

    b_j = argmin ||X_j - X_{-j} b||^2 + b' Lambda_{-j} b,

so any subset of columns, and any restriction of a column's regressors, is
a well-defined piece of the same model. The dense inverse costs O(n^3) time
and 8 n^2 bytes (a 37,000-item Instacart: 11 GB and hours), so this model
splits the items with at least ``min_buyers`` buyers in two:

- the **head**, the ``head_items`` most-bought items (chosen by the memory
  and time one dense inverse may take): their columns are EASE's exactly,
  regressed on the whole head (the dense inverse of recsys/models/ease.py);
- the **tail**, every other kept item: its column is the same ridge
  regression restricted to its ``tail_neighbours`` regressors from the head,
  those it is most often bought with (then the best-selling head items when it
  has fewer co-purchases), b_j[S] = (G_SS + Lambda_S)^-1 G_Sj: one small
  m x m solve per tail item, batched.

A tail item is thus recommended from the head items of a cart (the usual
case: the head carries most lines), and a tail item in a cart weighs nothing
here (co-purchase covers it in the blend). With ``head_items`` at or above
the kept items there is no tail and the weights are dense EASE's, equal to
:class:`~recsys.models.ease.EASEModel`'s (tests/recsys/test_ease_large.py).

Cost: Gram of the head (sparse product) + one n_head^3 / 3 Cholesky inverse +
n_tail * m^3 / 3 for the tail solves: linear in the catalogue beyond the head.
Memory: 8 n_head^2 bytes for the Gram (and as much for its inverse), the
tail x head co-counts (sparse), the stored weights.

Storage: above ``dense_items`` items the weights are sparse (CSR): each head
row keeps its ``k`` largest weights by absolute value (the error is stated by
:func:`head_rows`: the share of the weights' absolute mass a cut drops), and
every tail column keeps its ``tail_neighbours`` weights, all of them (they are
the whole regression, nothing is cut). Order weights (decay), the size
exponent and the popularity penalty apply as in EASEModel.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
from scipy.linalg import lapack

from .base import top_indices_rows
from .ease import EASEModel, size_weights

log = logging.getLogger(__name__)

# Tail items solved per batch: m x m float64 systems, 2,000 x 100^2 x 8 = 160 MB.
TAIL_BATCH_BYTES = 160e6


def lean_weights(g: np.ndarray, reg: np.ndarray, zero_diagonal: bool = True,
                 block: int = 2048) -> np.ndarray:
    """EASE / EDLAE / DLAE weights from the Gram ``g`` and its diagonal regulariser ``reg``,
    in float32 and in place: one n x n float32 copy of ``g`` is the only n^2 memory
    (recsys.models.ease.dense_weights holds four float64 ones: 4.6 GB against 0.58 GB
    at 12,000 items), and single-precision LAPACK is about twice as fast. float32 keeps
    about 6 significant digits of X'X + Lambda (lambda >= 1 bounds its condition), far
    more than a top-10 ranking needs; the tests compare it with the float64 solve.
    The diagonal of the result is 0 (DLAE's own-item weight ranks nothing).
    """
    a = np.array(g, dtype=np.float32, order="F")
    a[np.diag_indices_from(a)] += reg.astype(np.float32)
    factor, info = lapack.spotrf(a, lower=1, clean=0, overwrite_a=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE: X'X + Lambda is not positive definite ({info})")
    p, info = lapack.spotri(factor, lower=1, overwrite_c=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE: inverse failed ({info})")
    n = p.shape[0]
    # potri fills the lower triangle: mirror it, a block of columns at a time.
    for start in range(0, n, block):
        stop = min(n, start + block)
        d = p[start:stop, start:stop]
        d[:] = np.tril(d) + np.tril(d, -1).T
        p[start:stop, stop:] = p[stop:, start:stop].T
    p = p.T  # symmetric: the C-ordered view of the same matrix, no copy
    if zero_diagonal:
        scale = (-1.0 / np.diag(p)).astype(np.float32)
    else:  # I - P Lambda
        scale = -reg.astype(np.float32)
    p *= scale[None, :]
    p[np.diag_indices_from(p)] = 0.0
    return p


class LargeEASEGram:
    """What a fit needs, built once per (order weights, size exponent): the kept items
    (head first), the head's dense Gram and the tail x head co-counts."""

    def __init__(self, head: np.ndarray, tail: np.ndarray, g_head: np.ndarray,
                 g_tail: sp.csr_matrix, buyers: np.ndarray):
        self.head = head
        self.tail = tail
        self.g_head = g_head
        self.g_tail = g_tail
        self.buyers = buyers

    @property
    def keep(self) -> np.ndarray:
        return np.concatenate([self.head, self.tail])


def split_head(buyers: np.ndarray, min_buyers: int, head_items: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """(head, tail) item indexes: the ``head_items`` most-bought items with at least
    ``min_buyers`` buyers (ties: lower index), and the other such items."""
    keep = np.flatnonzero(buyers >= min_buyers)
    order = keep[np.lexsort((keep, -buyers[keep]))]
    head = np.sort(order[:head_items])
    tail = np.sort(order[head_items:])
    return head, tail


def tail_weights(g_head: np.ndarray, g_tail: sp.csr_matrix, reg_head: np.ndarray,
                 head_rank: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The tail columns' regressors and weights: (support, weights), each n_tail x m'.

    ``g_head``: the head's Gram (n_head^2, without the regulariser); ``g_tail``:
    tail x head co-counts; ``reg_head``: the head's diagonal regulariser Lambda;
    ``head_rank``: a score in [0, 1) per head item that fills a support short of
    co-purchases (higher first); m' = min(m, n_head). A tail item is never its
    own regressor, so its column is EASE's (EDLAE's with a dropout) even for a
    DLAE head.
    """
    n_head = g_head.shape[0]
    n_tail = g_tail.shape[0]
    m = min(int(m), n_head)
    support = np.zeros((n_tail, m), dtype=np.int64)
    weights = np.zeros((n_tail, m), dtype=np.float64)
    if n_tail == 0 or m == 0:
        return support, weights
    g_tail = g_tail.tocsr()
    batch = max(1, int(TAIL_BATCH_BYTES // (8 * m * m)))
    eye = np.arange(m)
    for start in range(0, n_tail, batch):
        stop = min(n_tail, start + batch)
        co = g_tail[start:stop].toarray()
        # Co-bought head items first (co-count + 1 > 1), then the best-sellers.
        key = np.where(co > 0, co + 1.0, head_rank[None, :])
        s = top_indices_rows(key, m)
        rows = np.arange(stop - start)[:, None]
        a = g_head[s[:, :, None], s[:, None, :]].astype(np.float64)
        a[:, eye, eye] += reg_head[s]
        rhs = co[rows, s].astype(np.float64)
        b = np.linalg.solve(a, rhs[:, :, None])[:, :, 0]
        support[start:stop] = s
        weights[start:stop] = b
    return support, weights


def head_rows(b: np.ndarray, head: np.ndarray, n_items: int, k: int,
              tail: sp.csr_matrix | None = None, block: int = 1024
              ) -> tuple[sp.csr_matrix, float]:
    """The head's weights ``b`` (n_head x n_head) as the head items' rows of an
    n_items x n_items CSR matrix, each row keeping its ``k`` largest weights by absolute
    value (every nonzero when k covers the head; ties: lower column), merged with
    ``tail`` (n_head x n_items: the tail columns' weights, head rows in head order,
    all kept), and the share of the head's absolute weight mass the cut drops (0: exact).

    Built a block of rows at a time, so the only n_head^2 array is ``b`` itself (a
    row-wise top-k over all of it holds several int64 copies: 10 GB at 12,000 items),
    and the result is the one CSR copy (no sum of a head and a tail matrix).
    """
    n_head = len(head)
    counts = np.zeros(n_items, dtype=np.int64)
    # The result's arrays, allocated once at their bound (k per head row plus the tail)
    # and filled a block at a time: no list of pieces to concatenate, no int64 copy.
    bound = n_head * min(k, max(n_head - 1, 0)) + (tail.nnz if tail is not None else 0)
    index_dtype = np.int32 if max(bound, n_items) < np.iinfo(np.int32).max else np.int64
    data = np.empty(bound, dtype=np.float32)
    indices = np.empty(bound, dtype=index_dtype)
    filled = 0
    total = kept = 0.0
    for start in range(0, n_head, block):
        part = b[start:start + block]
        magnitude = np.abs(part)
        total += float(magnitude.sum(dtype=np.float64))
        if k >= n_head - 1:
            rows, cols = np.nonzero(part)
        else:
            best = top_indices_rows(magnitude, k, above=0.0)
            rows, slots = np.nonzero(best >= 0)
            cols = best[rows, slots]
        del magnitude
        values = part[rows, cols].astype(np.float32)
        kept += float(np.abs(values).sum(dtype=np.float64))
        cols = head[cols]
        if tail is not None and tail.nnz:
            extra = tail[start:start + len(part)].tocoo()
            rows = np.concatenate([rows, extra.row])
            cols = np.concatenate([cols, extra.col])
            values = np.concatenate([values, extra.data.astype(np.float32)])
        order = np.lexsort((cols, rows))  # CSR order: columns ascending in each row
        counts[head[start:start + len(part)]] = np.bincount(rows, minlength=len(part))
        data[filled:filled + len(order)] = values[order]
        indices[filled:filled + len(order)] = cols[order]
        filled += len(order)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(index_dtype)
    out = sp.csr_matrix((data[:filled], indices[:filled], indptr), shape=(n_items, n_items))
    error = max(0.0, 1.0 - kept / total) if total > 0 else 0.0
    return out, error


class LargeEASEModel(EASEModel):
    """EASE on the ``head_items`` most-bought items, exact, plus ridge regressions of the
    other items on ``tail_neighbours`` head items each (see the module docstring).

    A drop-in for :class:`EASEModel` (same settings, ``gram``/``fit``/``score_histories``
    and popularity penalty), so the trainer chooses among its settings per query kind
    the same way. ``tail_neighbours = 0`` leaves the tail out (EASE on the head only).
    """

    name = "ease"

    def __init__(self, head_items: int = 6000, tail_neighbours: int = 100, **kwargs):
        kwargs.setdefault("max_items", head_items)
        super().__init__(**kwargs)
        self.head_items = int(head_items)
        self.tail_neighbours = int(tail_neighbours)
        self.topk_error_ = 0.0
        self.n_head_ = 0
        self.n_tail_ = 0

    def gram(self, customer_items: sp.csr_matrix, order_items: sp.csr_matrix | None,
             order_weights: np.ndarray | None = None) -> LargeEASEGram | None:
        """The head's dense Gram and the tail x head co-counts (None: under 2 items)."""
        customer_items = customer_items.tocsr()
        buyers = np.bincount(customer_items.indices, minlength=customer_items.shape[1])
        head, tail = split_head(buyers, self.min_buyers, self.head_items)
        if not self.tail_neighbours:
            tail = tail[:0]
        if len(head) < 2:
            return None
        x = customer_items.copy().astype(np.float32)
        x.data[:] = 1.0
        base = order_items if order_items is not None else x
        weight = self.customer_weight if order_items is not None else 0.0
        if order_weights is not None and (order_items is None
                                          or len(order_weights) != base.shape[0]):
            raise ValueError("EASE: order weights need the order x item matrix, one per row")
        keep = np.concatenate([head, tail])
        o = base.tocsr()[:, keep].astype(np.float32)
        o.data[:] = 1.0
        # Sizes count the kept items (head and tail), as EASEModel counts its items.
        row_weights = size_weights(o, order_weights, self.size_exponent)
        weighted = o if row_weights is None else sp.diags(row_weights.astype(np.float32)) @ o
        oh, wh = o[:, :len(head)], weighted.tocsc()[:, :len(head)]
        # The head's Gram a block of rows at a time: the sparse product of the whole head
        # (n_head^2 entries with their int32 indices) would double the dense array's memory.
        oht = oh.T.tocsr()
        g_head = np.empty((len(head), len(head)), dtype=np.float32)
        for start in range(0, len(head), 2048):
            g_head[start:start + 2048] = (oht[start:start + 2048] @ wh).toarray()
        del oht
        g_tail = (o.tocsc()[:, len(head):].T @ wh).tocsr()
        if weight > 0:
            xk = x[:, keep]
            xh = xk[:, :len(head)]
            g_head += weight * (xh.T @ xh).toarray()
            g_tail = (g_tail + weight * (xk[:, len(head):].T @ xh)).tocsr()
        log.info("large EASE: %d head items (dense), %d tail items (%d regressors each)",
                 len(head), len(tail), min(self.tail_neighbours, len(head)))
        return LargeEASEGram(head, tail, g_head, g_tail, buyers)

    def fit(self, customer_items: sp.csr_matrix, order_items: sp.csr_matrix | None = None,
            gram: LargeEASEGram | None = None):
        n_items = customer_items.shape[1]
        gram = gram if gram is not None else self.gram(customer_items, order_items)
        if gram is None:
            self.similarity_ = None
            return self
        head, tail = gram.head, gram.tail
        self.n_head_, self.n_tail_ = len(head), len(tail)
        reg_head = np.full(len(head), float(self.lam))
        if self.dropout > 0:
            reg_head += self.dropout / (1.0 - self.dropout) * np.diag(gram.g_head)
        b = lean_weights(gram.g_head, reg_head, self.zero_diagonal)
        if not len(tail) and n_items <= self.dense_items:
            dense = np.zeros((n_items, n_items), dtype=np.float32)
            dense[np.ix_(head, head)] = b
            self.similarity_ = dense
            self._penalise_popularity(customer_items)
            return self
        # Tail columns: every weight of their regressions, on the head rows.
        tail_part = None
        if len(tail):
            rank = gram.buyers[head].astype(np.float64)
            rank = rank / (rank.max() + 1.0)
            support, w = tail_weights(gram.g_head, gram.g_tail, reg_head, rank,
                                      self.tail_neighbours)
            nz = w != 0
            tail_part = sp.csr_matrix(
                (w[nz], (support[nz], np.repeat(tail, nz.sum(axis=1)))),
                shape=(len(head), n_items))
            del support, w, nz
        # Head rows: the k strongest weights by absolute value (all of them when k covers
        # the head). Ties: lower column.
        k = min(self.k, len(head) - 1)
        self.similarity_, self.topk_error_ = head_rows(b, head, n_items, k, tail_part)
        del b
        self._penalise_popularity(customer_items)
        log.info("large EASE lambda %g: %d weights stored, top-%d cut drops %.2f%% of the "
                 "head's weight mass", self.lam, self.similarity_.nnz, k,
                 100 * self.topk_error_)
        return self
