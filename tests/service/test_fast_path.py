"""The single-query fast paths of the recommender (used per request) agree with the batch paths."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys.artifacts import load_version
from recsys.recommender import Recommender, _csr_block, _dense_rows, _rows_matrix


def test_csr_helpers_match_scipy():
    rng = np.random.default_rng(1)
    m = sp.random(30, 40, density=0.2, random_state=2, format="csr", dtype=np.float32)
    rows = np.array([3, 7, 7, 29])
    cols = np.array([39, 0, 5, 12, 6])
    assert np.allclose(_csr_block(m, rows, cols), m[rows][:, cols].toarray())
    weights = rng.random(len(rows))
    expected = (weights[:, None] * m[rows].toarray()).sum(axis=0)
    assert np.allclose(_dense_rows(m, rows, weights), expected, atol=1e-6)
    assert _csr_block(m, np.zeros(0, dtype=np.int64), cols).shape == (0, 5)


def test_single_queries_equal_batch_answers(planted_models):
    models, _, _ = planted_models
    rec = Recommender.load(load_version(models))
    items = np.flatnonzero(rec.known_items)
    idx, _ = rec.item_query_batch("also_bought", [np.array([i]) for i in items], 5)
    for row, item in zip(idx, items, strict=True):
        assert [r.item_idx for r in rec.also_bought(int(item), 5).items] == list(row[row >= 0])
    baskets = [items[[i, (i + 3) % len(items)]] for i in range(len(items))]
    idx, _ = rec.item_query_batch("basket", baskets, 5)
    for row, basket in zip(idx, baskets, strict=True):
        assert [r.item_idx for r in rec.basket(basket, 5).items] == list(row[row >= 0])
    customers = np.arange(0, len(rec.customers), 7)
    idx, _ = rec.next_best_batch(customers, 5)
    for row, c in zip(idx, customers, strict=True):
        assert [r.item_idx for r in rec.next_best(int(c), 5).items] == list(row[row >= 0])
    histories = [items[[i, (i + 5) % len(items)]] for i in range(len(items))]
    idx, _ = rec.history_batch(_rows_matrix(histories, len(rec.items)), 5)
    for row, h in zip(idx, histories, strict=True):
        assert [r.item_idx for r in rec.next_best_for_history(h, 5).items] == \
            list(row[row >= 0])
