"""The day of each customer's last purchase of each item, kept with a model version.

The models need no dates, but people reading a customer's history do (the
dashboard's customer view). The days are stored as one int32 array aligned
with the history matrix in canonical order (rows by customer, items sorted
within a row): ``days[indptr[c]:indptr[c + 1]]`` belongs to customer ``c``'s
items in ascending index order. Days count from 1970-01-01 (UTC).
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

log = logging.getLogger(__name__)

ARRAY = "history_last_day"
DAY = 86400


def last_purchase_days(inter, history: sp.csr_matrix) -> np.ndarray | None:
    """int32 day numbers of each history pair's last purchase; None without timestamps."""
    if inter.timestamp is None:
        return None
    ok = (inter.customer_idx >= 0) & np.isfinite(inter.timestamp)
    n_items = history.shape[1]
    key = inter.customer_idx[ok].astype(np.int64) * n_items + inter.item_idx[ok]
    day = np.floor(inter.timestamp[ok].astype(np.float64) / DAY)
    hist = history.tocsr()
    hist.sort_indices()
    rows = np.repeat(np.arange(hist.shape[0], dtype=np.int64), np.diff(hist.indptr))
    pair_key = rows * n_items + hist.indices
    pos = np.searchsorted(pair_key, key)
    if len(pair_key) == 0 or (pos >= len(pair_key)).any() or \
            not np.array_equal(pair_key[np.minimum(pos, len(pair_key) - 1)], key):
        # Display data only: a mismatch must not fail a training run.
        log.warning("purchase dates: the order lines do not match the history; not stored")
        return None
    out = np.full(len(pair_key), np.iinfo(np.int32).min, dtype=np.int64)
    np.maximum.at(out, pos, day.astype(np.int64))
    return out.astype(np.int32)


def customer_days(days: np.ndarray, history: sp.csr_matrix, customer_idx: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(item indexes ascending, their last purchase days) of one customer."""
    start, end = int(history.indptr[customer_idx]), int(history.indptr[customer_idx + 1])
    items = np.sort(np.asarray(history.indices[start:end]))
    return items, np.asarray(days[start:end])
