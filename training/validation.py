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
2. if it leaves fewer than ``min_queries`` next-best queries: customers with
   two or more visits (days with orders), none of them after the cut, also
   have their last visit held out (leave-last-out, the usual protocol for
   sequential data), a seeded sample of 20% of them but at least
   ``2 x min_queries`` (so that the others' sequences still teach what follows
   what;
   other customers' later orders stay in training, a mild look-ahead that the
   choice of a model, unlike a reported test figure, tolerates);
3. if the holdout's orders of two or more items give fewer than
   ``min_queries`` item queries: the held-out lines of one customer on one
   day count as one basket (the visit; one line per order is an export's
   shape, not the shop's).

The scheme and the query counts are reported. Before any of it,
:func:`as_visits` regroups data exported line by line (almost every order one
line) into visits, so that the models learn baskets where there were baskets.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys.evaluation import Split, split
from recsys.vocab import Vocab

# Fewer holdout queries of a kind than this and the scheme adds the next step.
MIN_QUERIES = 300
_DAY = 86400
# Leave-last-out takes this share of the eligible customers (at least 2 x min_queries).
LAST_SHARE = 0.2
# Data whose orders hold two or more items this rarely is read as exported line by line.
LINE_ORDERS = 0.05


def as_visits(inter):
    """(interactions, note): ``inter`` with its orders regrouped into visits (one
    customer's lines of one calendar day) when fewer than ``LINE_ORDERS`` of its orders
    hold two or more items and it has customers and timestamps; else ``inter`` as is
    and None. Lines keep their positions (a split of one is a split of the other);
    lines without a customer keep their own order."""
    if inter.customer_is_order or inter.timestamp is None or not inter.n_lines:
        return inter, None
    sizes = np.diff(inter.order_items().indptr)
    present = sizes > 0
    multi = float((sizes[present] >= 2).mean()) if present.any() else 0.0
    if multi >= LINE_ORDERS:
        return inter, None
    has = inter.customer_idx >= 0
    key = np.where(has, inter.customer_idx.astype(np.int64) * 1_000_000
                   + inter.timestamp // _DAY, -1 - inter.order_idx.astype(np.int64))
    uniq, order_idx = np.unique(key, return_inverse=True)
    orders = Vocab(np.asarray([f"visit-{i:09d}" for i in range(len(uniq))]))
    visits_inter = type(inter)(inter.customers, orders, inter.items, inter.customer_idx,
                               order_idx.astype(inter.order_idx.dtype), inter.item_idx,
                               inter.quantity, inter.unit_price, inter.timestamp,
                               inter.customer_is_order)
    note = (f"{multi:.1%} of {int(present.sum())} orders hold two or more items: read as "
            f"exported line by line, regrouped into {len(uniq)} visits (a customer's lines "
            "of one day)")
    return visits_inter, note


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


def last_orders(inter, s: Split, want: int | None = None, seed: int = 0) -> np.ndarray:
    """Lines of the last visit of customers with 2+ visits all in training: all of them,
    or a seeded sample of ``want`` (the rest keep their whole sequence in training, so
    that what comes after what is still there to learn).

    A visit is a customer's orders of one calendar day (UTC): most often one order,
    but data exported line by line has an order per line, and the visit is what
    a basket was. Without timestamps: the customer's last order (highest index)."""
    times = inter.order_times()
    has = (inter.customer_idx >= 0) & s.train
    if not has.any():
        return np.zeros(inter.n_lines, dtype=bool)
    in_test = np.zeros(len(inter.customers), dtype=bool)
    in_test[inter.customer_idx[s.test & (inter.customer_idx >= 0)]] = True
    cust, order = inter.customer_idx[has], inter.order_idx[has]
    visit = times[order] // _DAY if times is not None else order.astype(np.int64)
    pairs = np.unique(np.stack([cust.astype(np.int64), visit]), axis=1)
    n_visits = np.bincount(pairs[0], minlength=len(inter.customers))
    last = np.full(len(inter.customers), np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(last, pairs[0], pairs[1])
    eligible = np.flatnonzero((n_visits >= 2) & ~in_test)
    if want is not None and len(eligible) > want:
        eligible = np.random.default_rng(seed).choice(eligible, want, replace=False)
    chosen = np.zeros(len(inter.customers), dtype=bool)
    chosen[eligible] = True
    take = (visit == last[cust]) & chosen[cust]
    out = np.zeros(inter.n_lines, dtype=bool)
    out[np.flatnonzero(has)[take]] = True
    return out


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
        eligible = last_orders(inter, s)
        n_eligible = len(np.unique(inter.customer_idx[eligible]))
        extra = last_orders(inter, s, want=max(int(LAST_SHARE * n_eligible), 2 * min_queries))
        if extra.any():
            s = Split(train=s.train & ~extra, test=s.test | extra,
                      method=f"{s.method}+last-order", cutoff=s.cutoff)
            scheme.append(f"the last visit of {len(np.unique(inter.customer_idx[extra]))} of "
                          f"{n_eligible} customers whose visits all precede the cut ({nb} "
                          f"next-best queries from the cut alone, fewer than {min_queries})")
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
