"""Recency weights for next-best: a customer's recent purchases say more about the next one.

Each (customer, item) pair of the history gets the factor

    0.5 ** (age / half_life),   age = days from the customer's last purchase of the item
                                      to the customer's last purchase of anything

so the items of a customer's latest order weigh 1 and an item last bought one
half-life before that weighs 0.5. The reference is the customer's own last
order, not "now": the item-item components (co-purchase, EASE) score a history
linearly and each component's scores are scaled to their maximum per customer,
so a factor common to all of a customer's items (how long ago the customer was
last seen) would change nothing; the age *within* the history is what ranks.

The half-life is chosen on the trainer's holdout among a few values, "none"
included (``train.recency_half_lives``): a shop whose customers drift from one
range to the next (wholesale gifts) gets a short one, a shop of steady
re-purchases keeps full histories.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .base import Component

DAY = 86400.0


class RecencyWeights(Component):
    """The recency factors of the customers' history pairs (:func:`decay_weights`), which
    the item-item components multiply into a known customer's history for next-best.

    Not blended: it weighs the history the blended components read."""

    name = "recency"
    strategy = "recency"
    # Its half-life is chosen with the next-best blend (train.recency_half_lives):
    # training.blend_search.choose_recency.
    fit_stage = "blend"

    @classmethod
    def search_blend(cls, ctx, rec, results: dict):
        return ctx.search.recency(ctx, rec, results)

    @classmethod
    def fit_period(cls, ctx) -> RecencyWeights | None:
        """The factors of the period's histories with the chosen half-life (None: none)."""
        return None if ctx.setting is None else cls(ctx.setting).fit(ctx.period.ages)

    @classmethod
    def parameters(cls, section: dict, setting) -> dict:
        return {"half_life_days": setting}

    def __init__(self, half_life: float | None = None):
        self.half_life = half_life
        self.decay_ = None

    def fit(self, age: sp.csr_matrix, half_life: float | None = None) -> RecencyWeights:
        """Factors from :func:`last_purchase_age`'s ages and the half-life in days."""
        self.half_life = self.half_life if half_life is None else half_life
        self.decay_ = decay_weights(age, self.half_life)
        return self

    def state(self) -> dict:
        return {"history_decay": self.decay_}

    def save(self, writer) -> None:
        writer.add_sparse("history_decay", self.decay_.astype(np.float32))

    @classmethod
    def load(cls, loaded, params: dict) -> RecencyWeights | None:
        if not loaded.has("history_decay"):
            return None
        out = cls((params.get("recency") or {}).get("half_life_days"))
        out.decay_ = loaded.sparse("history_decay")
        return out

    @classmethod
    def of(cls, decay: sp.csr_matrix | None) -> RecencyWeights | None:
        """The component holding already computed factors (None: no recency)."""
        if decay is None:
            return None
        out = cls()
        out.decay_ = decay
        return out


def last_purchase_age(inter, history: sp.csr_matrix) -> sp.csr_matrix | None:
    """Days from each history pair's last purchase to the customer's last purchase.

    Returned with exactly ``history``'s sparsity pattern (same ``indptr`` and
    ``indices``, sorted), so its ``data`` lines up with ``history.data``. None
    without timestamps.
    """
    if inter.timestamp is None:
        return None
    ok = inter.customer_idx >= 0
    c = inter.customer_idx[ok].astype(np.int64)
    i = inter.item_idx[ok].astype(np.int64)
    t = inter.timestamp[ok].astype(np.float64) / DAY
    n_customers, n_items = history.shape
    last_customer = np.full(n_customers, -np.inf)
    np.maximum.at(last_customer, c, t)
    # Last time per (customer, item): sort by pair then time, keep each pair's final line.
    order = np.lexsort((t, i, c))
    c, i, t = c[order], i[order], t[order]
    final = np.r_[(c[1:] != c[:-1]) | (i[1:] != i[:-1]), True]
    c, i, t = c[final], i[final], t[final]
    age = (last_customer[c] - t).astype(np.float32)
    # Pairs come sorted by (customer, item): the same order as a canonical CSR.
    hist = history.tocsr()
    hist.sort_indices()
    out = sp.csr_matrix((age, i.astype(hist.indices.dtype), np.asarray(hist.indptr).copy()),
                        shape=history.shape)
    if len(c) != hist.nnz or not np.array_equal(out.indices, hist.indices) or \
            not np.array_equal(np.bincount(c, minlength=n_customers), np.diff(hist.indptr)):
        raise ValueError("recency: the order lines do not match the history matrix")
    return out


def _check_half_life(half_life_days: float) -> None:
    if not half_life_days or half_life_days <= 0:
        raise ValueError("recency: the half-life must be a positive number of days")


def _halving(age_days: np.ndarray, half_life_days: float) -> np.ndarray:
    """``0.5 ** (age / half_life_days)`` in the floating type of ``age_days``."""
    _check_half_life(half_life_days)
    kind = age_days.dtype.type
    return np.power(kind(0.5), age_days / kind(half_life_days))


def decay_weights(age: sp.csr_matrix, half_life_days: float) -> sp.csr_matrix:
    """``0.5 ** (age / half_life_days)`` on ``age``'s pattern (float32)."""
    out = age.copy().astype(np.float32)
    out.data = _halving(out.data, half_life_days)
    return out


def order_decay(inter, half_life_days: float) -> np.ndarray | None:
    """Time-decay weight of every order of ``inter``'s vocabulary: ``0.5 ** (age / half_life)``.

    This is the model-side decay (the trainer's ``ease.half_lives``), not the
    query-side recency above: an order's age is counted from the newest order
    of ``inter`` (the end of the period the model is fitted on), so the
    co-purchase patterns of the last weeks weigh more than last year's when
    the range or the season has moved on. The weights are scaled to average 1
    over the orders that have lines, so a regularisation strength keeps its
    meaning whatever the half-life. None without timestamps.
    """
    _check_half_life(half_life_days)
    times = inter.order_times()
    if times is None:
        return None
    present = np.zeros(len(times), dtype=bool)
    present[inter.order_idx] = True
    weights = np.zeros(len(times), dtype=np.float64)
    if present.any():
        age = (times[present].max() - times[present]).astype(np.float64) / DAY
        w = _halving(age, half_life_days)
        weights[present] = w / w.mean()
    return weights
