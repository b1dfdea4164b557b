"""Substitutes: items that play the same role as an item, for upsell and downsell.

A complement is bought *with* an item (same basket: the cable with the
laptop); a substitute is bought *instead of* it or as its next tier (the pro
plan after the basic one). The two look alike to a plain co-purchase count,
so the score below keeps what separates them:

    sim(i, j) = (w * cos_als(i, j) + separate(i, j) / (sqrt(n_i * n_j) + shrink)) / (w + 1)
                * (1 - share(i, j))

- ``cos_als``: cosine of the ALS item factors, clipped at 0: bought by the
  same kind of customer (the factors summarise who buys an item).
- ``separate = max(customers_both - orders_both, 0)``: customers who bought
  both but not in one basket, the observed upgrade/switch path, divided by
  the two popularities as in a cosine (plus a ``shrink`` that damps pairs
  seen a few times).
- ``share = min(orders_both / customers_both, 1)``: how much of the co-buying
  happens in one basket. Pairs with ``share > max_basket_share`` are
  complements and dropped; the rest are penalised by ``1 - share``.

Candidates are restricted to the item's category when the catalog has
categories (items without a category then get none), and to other items
with a price. For each item the ``k`` best pricier and the ``k`` best
cheaper candidates (at training-time prices) are kept, with their support
(customers who bought both) and basket support (orders holding both).
The price band itself is applied at query time, from the current catalog.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from .base import Component, check_fitted, topk_per_row

log = logging.getLogger(__name__)

# Settings of the substitutes section that are serving rules, not the model's.
SERVING_RULES = ("upsell_band", "downsell_band")
# Dense entries of one (rows x candidates) block; bounds peak memory.
_BLOCK_CELLS = 4_000_000


class SubstituteModel(Component):
    """Same-role alternatives of each item (top ``k`` pricier and ``k`` cheaper ones).

    Not blended: upsell and downsell ask it for :meth:`neighbours`."""

    name = "substitutes"
    strategy = "substitute"
    config_section = "substitutes"
    config_defaults = {"k": 50, "als_weight": 1.0, "shrink": 5.0, "max_basket_share": 0.5,
                       "min_similarity": 0.05,
                       "upsell_band": [1.1, 3.0],
                       # The mirror of the upsell band (1/3 .. 1/1.1): B is an upsell of A
                       # exactly when A is a downsell of B.
                       "downsell_band": [0.3333, 0.9091]}
    # Fitted for the shipped version only, from its popularity, ALS and catalogue.
    fit_stage = "ship"

    @classmethod
    def fit_period(cls, ctx) -> SubstituteModel:
        """From the period's counts, the shipped ALS's item factors and the item metadata
        (``ctx.meta``). An engine whose orders stay elsewhere (training/spark) hands over
        their basket co-counts (``period.inter.basket_pairs``), asked for the pairs
        scored only."""
        period, meta = ctx.period, ctx.meta
        popularity, als = ctx.fitted["popularity"], ctx.fitted.get("als")
        baskets = getattr(period.inter, "basket_pairs", None)
        order_items = None if baskets else period.order_items
        candidates = (popularity.counts_ > 0) & meta.recommendable
        return cls(**cls.parameters(ctx.section(cls), None)).fit(
            period.customer_items, order_items, None if als is None else als.item_factors_,
            meta.category, meta.price, candidates=candidates,
            basket_counts=baskets if baskets and not period.customer_is_order else None)

    @classmethod
    def parameters(cls, section: dict, setting) -> dict:
        """The model's settings (the price bands are serving rules, stored apart)."""
        return {k: v for k, v in section.items() if k not in SERVING_RULES}

    def __init__(self, k: int = 50, als_weight: float = 1.0, shrink: float = 5.0,
                 max_basket_share: float = 0.5, min_similarity: float = 0.05):
        self.k = k
        self.als_weight = als_weight
        self.shrink = shrink
        self.max_basket_share = max_basket_share
        self.min_similarity = min_similarity
        self.similarity_ = None
        self.support_ = None
        self.basket_support_ = None

    def fit(self, customer_items: sp.csr_matrix, order_items: sp.csr_matrix | None,
            item_factors: np.ndarray | None, category: np.ndarray | None,
            price: np.ndarray, candidates: np.ndarray | None = None,
            basket_counts: sp.csr_matrix | None = None):
        """Learn substitutes.

        ``customer_items`` and ``order_items`` are (customers|orders) x items;
        ``category`` holds a code per item (-1: none; None or all -1: no
        catalog categories); ``price`` the training-time price (NaN: unknown);
        ``candidates`` the items that may be proposed at all. ``basket_counts``:
        items x items orders holding both, in place of ``order_items`` (an engine
        whose orders stay elsewhere, training/spark, counts them there), or a function
        of :func:`scored_groups` returning them for the pairs scored (within a group).
        """
        n_items = customer_items.shape[1]
        price = np.asarray(price, dtype=np.float64)
        ok = ~np.isnan(price)
        if candidates is not None:
            ok &= np.asarray(candidates, dtype=bool)
        cust_t = _binary(customer_items).T.tocsr()
        n_buyers = np.diff(cust_t.indptr).astype(np.float64)
        ok &= n_buyers > 0
        order_t = None if order_items is None else _binary(order_items).T.tocsr()
        pairs = order_t is None and basket_counts is not None
        if pairs:
            if callable(basket_counts):
                basket_counts = basket_counts(scored_groups(category, ok))
            order_t = basket_counts.tocsr()
        unit = None
        if item_factors is not None and self.als_weight > 0:
            f = np.asarray(item_factors, dtype=np.float32)
            norms = np.linalg.norm(f, axis=1, keepdims=True)
            unit = f / np.where(norms > 0, norms, 1.0)

        rows_out, cols_out, sim_out, sup_out, bsk_out = [], [], [], [], []
        for rows, cols in _groups(category, ok):
            step = max(1, _BLOCK_CELLS // max(len(cols), 1))
            # The candidate side of the products, built once per group.
            side = (cust_t[cols].T.tocsr(),
                    None if order_t is None else cols if pairs else order_t[cols].T.tocsr(),
                    None if unit is None else unit[cols].T)
            for start in range(0, len(rows), step):
                r = rows[start:start + step]
                part = self._block(r, cols, side, cust_t, order_t, unit, n_buyers)
                if part is None:
                    continue
                i, j, s, sup, bsk = part
                rows_out.append(r[i])
                cols_out.append(cols[j])
                sim_out.append(s)
                sup_out.append(sup)
                bsk_out.append(bsk)
        if rows_out:
            rows_all = np.concatenate(rows_out)
            cols_all = np.concatenate(cols_out)
            sim_all = np.concatenate(sim_out)
            sup_all = np.concatenate(sup_out)
            bsk_all = np.concatenate(bsk_out)
        else:
            rows_all = cols_all = np.zeros(0, dtype=np.int64)
            sim_all = np.zeros(0, dtype=np.float32)
            sup_all = bsk_all = np.zeros(0, dtype=np.int32)
        # Keep the best k in each price direction, so cheap alternatives never
        # crowd out the pricier ones (and vice versa).
        up = price[cols_all] > price[rows_all]
        kept = []
        for direction in (up, ~up):
            # Entry positions ride along as data so that supports follow the cut.
            m = sp.csr_matrix((sim_all[direction], (rows_all[direction], cols_all[direction])),
                              shape=(n_items, n_items))
            pos = sp.csr_matrix(((np.flatnonzero(direction) + 1).astype(np.float64),
                                 (rows_all[direction], cols_all[direction])),
                                shape=(n_items, n_items))
            m.sort_indices()
            pos.sort_indices()
            top = topk_per_row(m.copy(), self.k)
            kept.append(_values_at_pattern(pos, top).astype(np.int64) - 1)
        keep = np.concatenate(kept)
        keep = keep[keep >= 0]
        shape = (n_items, n_items)
        self.similarity_ = _csr(rows_all[keep], cols_all[keep], sim_all[keep], shape, np.float32)
        self.support_ = _csr(rows_all[keep], cols_all[keep], sup_all[keep], shape, np.int32)
        self.basket_support_ = _csr(rows_all[keep], cols_all[keep], bsk_all[keep], shape, np.int32)
        log.info("substitutes: %d pairs for %d items", self.similarity_.nnz, n_items)
        return self

    def _block(self, rows, cols, side, cust_t, order_t, unit, n_buyers):
        """Scores of one block of query items against candidate columns (sparse triplets)."""
        cust_cols, order_cols, unit_cols = side
        w = float(self.als_weight) if unit is not None else 0.0
        dense = np.zeros((len(rows), len(cols)), dtype=np.float32)
        if unit is not None:
            dense += w * np.maximum(unit[rows] @ unit_cols, 0.0)
        both = (cust_t[rows] @ cust_cols).toarray()
        if order_t is not None:
            # order_cols: the candidates' order columns, or their indexes into basket counts.
            together = (order_t[rows][:, order_cols] if isinstance(order_cols, np.ndarray)
                        else order_t[rows] @ order_cols).toarray()
        else:
            together = np.zeros_like(both)
        separate = np.maximum(both - together, 0.0)
        scale = np.sqrt(np.outer(n_buyers[rows], n_buyers[cols])) + self.shrink
        dense += separate / scale
        dense /= (w + 1.0)
        share = np.where(both > 0, np.minimum(together / np.maximum(both, 1), 1.0), 0.0)
        dense *= (1.0 - share)
        dense[share > self.max_basket_share] = 0.0
        dense[rows[:, None] == cols[None, :]] = 0.0
        i, j = np.nonzero(dense >= max(self.min_similarity, 1e-12))
        if not len(i):
            return None
        return (i, j, dense[i, j].astype(np.float32), both[i, j].astype(np.int32),
                together[i, j].astype(np.int32))

    def state(self) -> dict:
        return {"substitutes_similarity": self.similarity_,
                "substitutes_support": self.support_,
                "substitutes_basket_support": self.basket_support_}

    @classmethod
    def load(cls, loaded, params: dict) -> SubstituteModel | None:
        if not loaded.has("substitutes_similarity"):
            return None
        model = cls(**params.get("substitutes", {}))
        model.similarity_ = loaded.sparse("substitutes_similarity")
        model.support_ = loaded.sparse("substitutes_support")
        model.basket_support_ = loaded.sparse("substitutes_basket_support")
        return model

    def neighbours(self, item_idx: int) -> tuple[np.ndarray, np.ndarray]:
        """Candidate substitutes of one item and their similarity."""
        check_fitted(self, "similarity_")
        m = self.similarity_
        start, end = int(m.indptr[item_idx]), int(m.indptr[item_idx + 1])
        return (np.asarray(m.indices[start:end], dtype=np.int64),
                np.asarray(m.data[start:end], dtype=np.float32))


def _groups(category: np.ndarray | None, ok: np.ndarray):
    """(query rows, candidate columns) groups: one per category, or all items when none."""
    if category is None or not (np.asarray(category) >= 0).any():
        idx = np.flatnonzero(ok)
        if len(idx):
            yield idx, idx
        return
    category = np.asarray(category)
    idx = np.flatnonzero(ok & (category >= 0))
    if not len(idx):
        return
    order = idx[np.argsort(category[idx], kind="stable")]
    codes = category[order]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    ends = np.r_[starts[1:], len(order)]
    for s, e in zip(starts, ends, strict=True):
        if e - s > 1:
            members = order[s:e]
            yield members, members


def scored_groups(category: np.ndarray | None, ok: np.ndarray) -> np.ndarray:
    """Each item's group in :func:`_groups` (-1: never scored): the substitutes score
    pairs of items within one group only, so only those pairs' counts are needed."""
    out = np.full(len(ok), -1, dtype=np.int32)
    for g, (rows, _) in enumerate(_groups(category, ok)):
        out[rows] = g
    return out


def _binary(m: sp.csr_matrix) -> sp.csr_matrix:
    out = m.tocsr(copy=True).astype(np.float32)
    out.data[:] = 1.0
    return out


def _csr(rows, cols, data, shape, dtype) -> sp.csr_matrix:
    m = sp.csr_matrix((np.asarray(data, dtype=dtype), (rows, cols)), shape=shape)
    m.sort_indices()
    return m


def _values_at_pattern(source: sp.csr_matrix, pattern: sp.csr_matrix) -> np.ndarray:
    """Values of ``source`` at ``pattern``'s stored positions (both sorted CSR; 0 where absent)."""
    n_cols = pattern.shape[1]

    def key(m):
        rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
        return rows * n_cols + m.indices

    src, pat = key(source), key(pattern)
    if not len(src):
        return np.zeros(len(pat))
    pos = np.minimum(np.searchsorted(src, pat), len(src) - 1)
    return np.where(src[pos] == pat, source.data[pos], 0)
