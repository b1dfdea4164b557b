"""Exact holdout scores of many blends at the cost of little more than one.

The trainer chooses, per query kind, a weight vector over its components
(co-purchase, ALS, EASE, a popularity prior) by scoring a grid of them on the
holdout. Scoring each blend over the whole catalogue means a dense
(queries x items) array per component and per blend; on a 40k-item catalogue
that was most of ``xsell train``'s time.

Every component's scores are scaled to [0, 1] by the row maximum and blended
linearly with non-negative weights, so a threshold argument in the manner of
Fagin's algorithm (Fagin, Lotem & Naor 2003) makes a small candidate pool
exact. Take from each component its ``pool`` best items per query and a bound
``t_c`` on the scaled score of any item outside them (the next score down, or
0). An item outside every pool scores at most ``sum_c w_c t_c`` plus the
popularity tie-break; when the k-th best pooled item scores strictly more, the
top k over the pool *is* the top k over the catalogue. The few queries where
that does not hold are scored over the whole catalogue by the recommender's
own path, so every blend's metrics are exactly what the shipped recommender
would answer.

Sparse components (co-purchase and EASE neighbours) are never densified here:
their pools come from the sparse product directly.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys.models.base import top_indices_rows
from recsys.recommender import Recommender
from recsys.sparse import rows_matrix

# Items per component and query in the candidate pool.
POOL = 100
# Sparse scores denser than this are handled as a dense array.
_DENSE_FRACTION = 0.05


def _cell_keys(cols: np.ndarray, n_cols: int) -> np.ndarray:
    """Row-major keys (row * n_cols + col) of a (rows x slots) array of column indexes."""
    return np.arange(cols.shape[0], dtype=np.int64)[:, None] * n_cols + cols


def _find(keys: np.ndarray, want: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``want`` in the sorted ``keys`` and whether each is there."""
    if not len(keys):
        return np.zeros(want.shape, dtype=np.int64), np.zeros(want.shape, dtype=bool)
    at = np.minimum(np.searchsorted(keys, want), len(keys) - 1)
    return at, keys[at] == want


class _Part:
    """One component's scores for a batch: its pool, the bound outside it, value lookup."""

    def __init__(self, raw, n: int, pool: int):
        self.n = n
        if sp.issparse(raw) and raw.nnz > _DENSE_FRACTION * raw.shape[0] * raw.shape[1]:
            # Long histories through EASE or co-purchase touch most of the catalogue:
            # a dense array is then cheaper than sorting every stored entry.
            self._init_dense(raw.toarray(), pool)
        elif sp.issparse(raw):
            self._init_sparse(raw.tocsr(), pool)
        elif raw.ndim == 1:
            self._init_vector(np.asarray(raw, dtype=np.float32), pool)
        else:
            self._init_dense(np.asarray(raw, dtype=np.float32), pool)

    def _init_dense(self, raw: np.ndarray, pool: int) -> None:
        self.kind, self.raw = "dense", raw
        idx = top_indices_rows(raw, pool + 1, above=0.0)
        vals = np.where(idx >= 0, np.take_along_axis(raw, np.maximum(idx, 0), 1), 0)
        # The row maximum of the non-negative scores, as Recommender._normalise takes it.
        self.top = np.where(idx[:, 0] >= 0, vals[:, 0], 1).astype(np.float32)
        self.pool = idx[:, :pool]
        self.bound = np.where(idx[:, pool] >= 0, vals[:, pool], 0) / self.top

    def _init_vector(self, raw: np.ndarray, pool: int) -> None:
        self.kind, self.raw = "vector", raw
        idx = top_indices_rows(raw[None, :], pool + 1, above=0.0)[0]
        top = np.float32(raw[idx[0]] if idx[0] >= 0 else 1)
        self.top = np.full(self.n, top, dtype=np.float32)
        self.pool = np.broadcast_to(idx[:pool], (self.n, pool))
        bound = raw[idx[pool]] / top if idx[pool] >= 0 else 0.0
        self.bound = np.full(self.n, bound, dtype=np.float32)

    def _init_sparse(self, raw: sp.csr_matrix, pool: int) -> None:
        self.kind = "sparse"
        raw.sort_indices()
        rows = np.repeat(np.arange(self.n), np.diff(raw.indptr))
        cols, vals = raw.indices, raw.data.astype(np.float32, copy=False)
        # Lookup keys (row-major, ascending since indices are sorted per row).
        self.keys = rows.astype(np.int64) * raw.shape[1] + cols
        self.vals = vals
        positive = vals > 0
        r, c, v = rows[positive], cols[positive], vals[positive]
        order = np.lexsort((c, -v, r))
        r, c, v = r[order], c[order], v[order]
        starts = np.searchsorted(r, np.arange(self.n))
        rank = np.arange(len(r)) - starts[r]
        self.top = np.ones(self.n, dtype=np.float32)
        first = rank == 0
        self.top[r[first]] = v[first]
        self.pool = np.full((self.n, pool), -1, dtype=np.int64)
        inside = rank < pool
        self.pool[r[inside], rank[inside]] = c[inside]
        self.bound = np.zeros(self.n, dtype=np.float32)
        nxt = rank == pool
        self.bound[r[nxt]] = v[nxt] / self.top[r[nxt]]
        self.n_items = raw.shape[1]

    def values(self, cols: np.ndarray) -> np.ndarray:
        """Scaled scores at ``cols`` (queries x pool positions, all valid indexes)."""
        if self.kind == "dense":
            raw = np.take_along_axis(self.raw, cols, 1)
        elif self.kind == "vector":
            raw = self.raw[cols]
        else:
            at, found = _find(self.keys, _cell_keys(cols, self.n_items))
            raw = np.where(found, self.vals[at] if len(self.vals) else 0, 0).astype(np.float32)
        # The same float32 steps as Recommender._normalise, so pooled scores equal its.
        return np.maximum(raw, 0).astype(np.float32) / self.top[:, None]


class BlendScorer:
    """Top k of every weight vector of ``grid``, exact, from one pass over the components.

    ``components`` names the grid's columns (components of ``rec`` and
    ``"popularity"``); :func:`recsys.evaluation.evaluate_variants` drives it.
    """

    def __init__(self, rec: Recommender, grid: list[tuple], components: tuple[str, ...],
                 pool: int = POOL):
        self.rec = rec
        self.grid = grid
        self.components = components
        self.pool = pool
        self.fallback_rows = 0
        self.rows = 0
        self._tie_max = float(rec._pop_tiebreak.max()) if len(rec._pop_tiebreak) else 0.0

    def next_best(self, customer_idx, histories, k):
        raws = {name: self.rec.raw_customer_part(name, customer_idx)
                for name in self.components}
        return self._topk_all(raws, len(customer_idx), histories, k,
                              lambda rows: self.rec.customer_parts(customer_idx[rows],
                                                                   self.components))

    def item_query(self, kind, query_lists, k):
        rows = rows_matrix(query_lists, len(self.rec.items))
        raws = {name: self.rec.raw_item_part(name, kind, rows) for name in self.components}
        return self._topk_all(raws, len(query_lists), rows, k,
                              lambda rows: self.rec.item_parts(
                                  kind, [query_lists[i] for i in rows], self.components))

    def _topk_all(self, raws: dict, n: int, exclude: sp.csr_matrix, k: int, dense_parts):
        rec = self.rec
        parts = {name: _Part(raw, n, self.pool) for name, raw in raws.items()}
        pool = np.concatenate([p.pool for p in parts.values()], axis=1)
        pool.sort(axis=1)
        pool[:, 1:][pool[:, 1:] == pool[:, :-1]] = -1  # each item once per row
        valid = pool >= 0
        safe = np.where(valid, pool, 0)
        blocked = ~rec.known_items[safe] | ~valid
        exclude = exclude.tocsr()
        if exclude.nnz:
            # Excluded (query or history) items: -inf like Recommender.top_k's mask.
            ex_keys = (np.repeat(np.arange(n, dtype=np.int64), np.diff(exclude.indptr))
                       * len(rec.items) + exclude.indices)
            ex_keys.sort()
            blocked |= _find(ex_keys, _cell_keys(safe, len(rec.items)))[1]
        base = np.where(blocked, -np.inf, rec._pop_tiebreak[safe]).astype(np.float32)
        gathered = {name: p.values(safe) for name, p in parts.items()}
        out, unsure_by = {}, {}
        for ws in self.grid:
            scores = base.copy()
            bound = np.full(n, self._tie_max, dtype=np.float64)
            for name, w in zip(self.components, ws, strict=True):
                if w > 0 and name in gathered:
                    scores += np.float32(w) * gathered[name] if w != 1 else gathered[name]
                    bound += w * parts[name].bound.astype(np.float64)
            best = top_indices_rows(scores, k)
            out[ws] = np.where(best >= 0, np.take_along_axis(pool, np.maximum(best, 0), 1), -1)
            kth = np.where(best[:, k - 1] >= 0,
                           np.take_along_axis(scores, np.maximum(best[:, k - 1:k], 0), 1)[:, 0],
                           -np.inf)
            # Strictly above the bound (with a margin for float32 rounding): exact.
            unsure = np.flatnonzero(~(kth > bound * (1 + 1e-5) + 1e-7))
            if len(unsure):
                unsure_by[ws] = unsure
            self.fallback_rows += len(unsure)
            self.rows += n
        if unsure_by:
            # The rest over the whole catalogue, each component computed once for them.
            rows = np.unique(np.concatenate(list(unsure_by.values())))
            dense = dense_parts(rows)
            for ws, unsure in unsure_by.items():
                at = np.searchsorted(rows, unsure)
                sub = {name: part[at] for name, part in dense.items()}
                weights = dict(zip(self.components, ws, strict=True))
                out[ws][unsure] = rec.top_k(rec.combine(sub, weights, len(unsure)), k,
                                            exclude=exclude[unsure])
        return out
