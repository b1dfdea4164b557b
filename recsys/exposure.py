"""What users see, beside accuracy: popularity concentration, coverage, the long tail.

HR and nDCG reward a model for recommending what every basket holds anyway
(the "bananas problem": everyone buys bananas, so "also bought" shows bananas
on every page). These measures say how much of that a ranking does:

- ``concentration@k``: the largest share of queries whose top k holds the same
  item (1.0: one item on every page; item-kNN baselines on Online Retail: 0.2-2.3%);
- ``best_seller_shares@k``: the shares of queries whose top k holds each of the
  three best-sellers of the training period;
- ``coverage@k``: distinct items recommended over the known items;
- ``<metric>_tail@k``: the primary metric on the targets outside the most
  popular 1% of items (the queries whose hidden item is a best-seller are left
  out; for next-best, best-sellers are struck from the truth), with
  ``tail_queries`` the number of queries it averages.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

# The most popular fraction of items that the tail accuracy leaves out.
HEAD_FRACTION = 0.01
BEST_SELLERS = 3


def buyer_counts(customer_items: sp.csr_matrix) -> np.ndarray:
    """Distinct buyers per item in a customers x items matrix."""
    return np.diff(customer_items.tocsc().indptr)


def head_items(buyers: np.ndarray, fraction: float = HEAD_FRACTION) -> np.ndarray:
    """Mask of the most popular ``fraction`` of the known items (at least one item)."""
    known = int((buyers > 0).sum())
    n_head = max(1, int(round(known * fraction))) if known else 0
    head = np.zeros(len(buyers), dtype=bool)
    if n_head:
        head[np.argsort(-buyers, kind="stable")[:n_head]] = True
    return head


def best_sellers(buyers: np.ndarray, n: int = BEST_SELLERS) -> np.ndarray:
    """Indexes of the ``n`` items with the most buyers (ties: lower index)."""
    order = np.argsort(-buyers, kind="stable")[:n]
    return order[buyers[order] > 0]


def exposure(recs: np.ndarray, k: int, n_known: int, sellers: np.ndarray,
             claimed: np.ndarray | None = None) -> dict:
    """Concentration, best-seller shares and coverage of a (queries x k) index array.

    ``claimed``: for an evidence-gated answer, which slots the item's own evidence
    claimed (the rest are best-sellers marked ``"filled": "popular"``). The measures
    are then over the claimed slots (what is passed off as "also bought"), with
    ``concentration_all@k`` (every slot) and ``claimed_share@k`` beside them.
    """
    if claimed is not None:
        out = exposure(recs, k, n_known, sellers)
        every, share = out[f"concentration@{k}"], float(np.asarray(claimed)[:, :k].mean())
        out = exposure(np.where(np.asarray(claimed)[:, :k], np.asarray(recs)[:, :k], -1), k,
                       n_known, sellers)
        return out | {f"concentration_all@{k}": every, f"claimed_share@{k}": share}
    recs = np.asarray(recs)[:, :k]
    n = len(recs)
    if n == 0:
        return {}
    valid = recs[recs >= 0]
    counts = np.bincount(valid, minlength=int(max(sellers.max(initial=-1), valid.max(initial=-1)))
                         + 1)
    top = int(np.argmax(counts))
    return {f"concentration@{k}": float(counts[top] / n),
            "most_shown": top if counts[top] else None,
            f"best_seller_shares@{k}": [float(counts[s] / n) for s in sellers],
            f"coverage@{k}": float((counts > 0).sum() / max(n_known, 1))}


def tail_mask(targets: np.ndarray, head: np.ndarray) -> np.ndarray:
    """Queries whose single hidden target lies outside the head."""
    return ~head[targets] if len(targets) else np.zeros(0, dtype=bool)


def tail_truth(truth: sp.csr_matrix, head: np.ndarray) -> sp.csr_matrix:
    """``truth`` without the head items (next-best: what is left to find off the head)."""
    truth = truth.tocsr().copy()
    truth.data = np.where(head[truth.indices], 0, truth.data)
    truth.eliminate_zeros()
    return truth
