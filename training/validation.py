"""The trainer's holdout: a split that yields enough queries of every kind, whatever the
data's shape.

One global time cut (the last 15% of orders) serves a shop whose customers come
back over the year. It fails two shapes: customers whose activity is bunched
in time (most histories fall wholly on one side of the cut, so few customers
have both a past and a future: 85 next-best queries on one acceptance
dataset) and data exported line by line (every order holds one item, so no
order can hide one item behind the others: no basket or also-bought query at
all). The scheme here:

1. the global cut (``recsys.evaluation.split``; a seeded random 20% of orders
   without timestamps);
2. if it leaves fewer than ``min_queries`` next-best queries: each customer
   with two or more orders, none of them after the cut, also has their last
   order held out (leave-last-out, the usual protocol for sequential data;
   other customers' later orders stay in training, a mild look-ahead that the
   choice of a model, unlike a reported test figure, tolerates);
3. if the holdout's orders of two or more items give fewer than
   ``min_queries`` item queries: the held-out lines of one customer on one
   day count as one basket (the visit; one line per order is an export's
   shape, not the shop's).

The scheme and the query counts are reported (``describe``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys.evaluation import Split, split

# Fewer holdout queries of a kind than this and the scheme adds the next step.
MIN_QUERIES = 300
_DAY = 86400


def _next_best_queries(inter, s: Split) -> int:
    """Customers with a training history and an item new to them in the holdout."""
    if inter.customer_is_order:
        return 0
    before = inter.subset(s.train).customer_items(binary=True)
    after = inter.subset(s.test).customer_items(binary=True)
    new = after - after.multiply(before)
    new.eliminate_zeros()
    return int(((np.diff(before.indptr) > 0) & (np.diff(new.indptr) > 0)).sum())


def _item_queries(order_items: sp.csr_matrix) -> int:
    return int((np.diff(order_items.indptr) >= 2).sum())


def last_orders(inter, s: Split) -> np.ndarray:
    """Lines of each customer's last order, for customers with 2+ orders all in training."""
    times = inter.order_times()
    has = (inter.customer_idx >= 0) & s.train
    if not has.any():
        return np.zeros(inter.n_lines, dtype=bool)
    in_test = np.zeros(len(inter.customers), dtype=bool)
    in_test[inter.customer_idx[s.test & (inter.customer_idx >= 0)]] = True
    cust, order = inter.customer_idx[has], inter.order_idx[has]
    pairs = np.unique(np.stack([cust, order]), axis=1)
    cust, order = pairs
    n_orders = np.bincount(cust, minlength=len(inter.customers))
    key = times[order] if times is not None else order
    # The last order per customer: the latest time, then the highest order index.
    sort = np.lexsort((order, key, cust))
    cust, order = cust[sort], order[sort]
    last = np.r_[cust[1:] != cust[:-1], True]
    take = last & (n_orders[cust] >= 2) & ~in_test[cust]
    chosen = np.zeros(len(inter.orders), dtype=bool)
    chosen[order[take]] = True
    return chosen[inter.order_idx] & s.train


def visits(test) -> sp.csr_matrix:
    """Held-out lines grouped by customer and day (visits x items, binary)."""
    has = test.customer_idx >= 0
    if test.timestamp is None:
        group = test.customer_idx[has].astype(np.int64)
    else:
        group = test.customer_idx[has].astype(np.int64) * 1_000_000 + \
            test.timestamp[has] // _DAY
    _, rows = np.unique(group, return_inverse=True)
    m = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, test.item_idx[has])),
                      shape=(int(rows.max(initial=-1)) + 1, len(test.items)))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def holdout_split(inter, test_fraction: float, min_queries: int = MIN_QUERIES
                  ) -> tuple[Split, sp.csr_matrix | None, dict]:
    """(split, the baskets of the item queries or None for the holdout's orders, report)."""
    s = split(inter, test_fraction=test_fraction)
    scheme = [f"{s.method} cut"]
    nb = _next_best_queries(inter, s)
    if nb < min_queries and not inter.customer_is_order:
        extra = last_orders(inter, s)
        if extra.any():
            s = Split(train=s.train & ~extra, test=s.test | extra,
                      method=f"{s.method}+last-order", cutoff=s.cutoff)
            scheme.append(f"each customer's last order ({nb} next-best queries from the cut "
                          f"alone, fewer than {min_queries})")
            nb = _next_best_queries(inter, s)
    test = inter.subset(s.test)
    n_item = _item_queries(test.order_items())
    baskets = None
    if n_item < min_queries and not inter.customer_is_order:
        grouped = visits(test)
        if _item_queries(grouped) > n_item:
            baskets = grouped
            scheme.append(f"held-out lines of one customer on one day as one basket ({n_item} "
                          f"orders of two or more items, fewer than {min_queries})")
            n_item = _item_queries(grouped)
    report = {"scheme": "; ".join(scheme), "method": s.method, "cutoff": s.cutoff,
              "train_lines": int(s.train.sum()), "test_lines": int(s.test.sum()),
              "next_best_customers": nb, "item_query_baskets": n_item,
              "min_queries": min_queries}
    return s, baskets, report
