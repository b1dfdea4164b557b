"""Metrics against hand-computed values, and splits that never leak."""

import csv
import math

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.data import read_orders
from recsys.evaluation import (
    build_eval_data,
    paired_bootstrap,
    ranking_metrics,
    split,
    split_interactions,
    target_metrics,
    validation_split,
)


def truth_matrix(rows, n_items=10):
    indptr = np.r_[0, np.cumsum([len(r) for r in rows])]
    indices = np.concatenate([np.asarray(r, dtype=np.int64) for r in rows]) if indptr[-1] else \
        np.zeros(0, dtype=np.int64)
    return sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(len(rows), n_items))


def test_ranking_metrics_hand_computed():
    # truth {2, 5}; the only hit is item 2 at rank 2
    m = ranking_metrics(np.array([[1, 2, 3]]), truth_matrix([[2, 5]]), k=3)
    assert m["recall"][0] == pytest.approx(0.5)
    d = 1 / math.log2(3)
    assert m["ndcg"][0] == pytest.approx(d / (1 + d))
    assert m["hr"][0] == 1.0
    assert m["map"][0] == pytest.approx((1 / 2) / 2)


def test_ranking_metrics_truth_larger_than_k_uses_min():
    # 4 true items, k = 2, both recommendations hit: perfect scores
    m = ranking_metrics(np.array([[4, 7]]), truth_matrix([[1, 4, 7, 9]]), k=2)
    assert m["recall"][0] == pytest.approx(1.0)
    assert m["ndcg"][0] == pytest.approx(1.0)
    assert m["map"][0] == pytest.approx(1.0)


def test_ranking_metrics_empty_truth_scores_zero():
    m = ranking_metrics(np.array([[1, 2], [3, 4]]), truth_matrix([[], [4]]), k=2)
    assert [m[x][0] for x in ("recall", "ndcg", "hr", "map")] == [0, 0, 0, 0]
    assert m["hr"][1] == 1.0
    assert m["ndcg"][1] == pytest.approx(1 / math.log2(3))


def test_ranking_metrics_fewer_than_k_candidates():
    # -1 padding never hits, not even item 0
    m = ranking_metrics(np.array([[3, -1, -1]]), truth_matrix([[3, 0]]), k=3)
    assert m["recall"][0] == pytest.approx(0.5)
    assert m["ndcg"][0] == pytest.approx(1 / (1 + 1 / math.log2(3)))
    m = ranking_metrics(np.array([[-1, -1]]), truth_matrix([[0]]), k=2)
    assert m["hr"][0] == 0.0


def test_ranking_metrics_duplicate_counts_once():
    m = ranking_metrics(np.array([[2, 2, 5]]), truth_matrix([[2, 7]]), k=3)
    assert m["recall"][0] == pytest.approx(0.5)
    assert m["map"][0] == pytest.approx(1 / 2)


def test_target_metrics_hand_computed():
    recs = np.array([[5, 3, -1], [1, 2, 4], [9, 9, 9]])
    m = target_metrics(recs, np.array([3, 8, 9]), k=3)
    assert list(m["hr"]) == [1.0, 0.0, 1.0]
    assert list(m["mrr"]) == pytest.approx([0.5, 0.0, 1.0])
    # the cut at k: target at rank 3 is outside k = 2
    assert target_metrics(np.array([[1, 2, 3]]), np.array([3]), k=2)["hr"][0] == 0.0


def test_paired_bootstrap_constant_difference():
    rng = np.random.default_rng(1)
    theirs = rng.random(500)
    out = paired_bootstrap(theirs + 0.1, theirs, n_boot=200)
    assert out["diff"] == pytest.approx(0.1)
    # paired: a constant shift has no spread at all
    assert out["diff_ci"][0] == pytest.approx(0.1)
    assert out["diff_ci"][1] == pytest.approx(0.1)
    same = paired_bootstrap(theirs, theirs, n_boot=200)
    assert same["rel_ci"] == (0.0, 0.0)


def test_paired_bootstrap_interval_contains_truth_and_excludes_zero():
    rng = np.random.default_rng(2)
    theirs = (rng.random(3000) < 0.2).astype(float)
    ours = np.maximum(theirs, (rng.random(3000) < 0.05))
    out = paired_bootstrap(ours, theirs, n_boot=300)
    lo, hi = out["rel_ci"]
    assert lo > 0 and lo <= out["rel"] <= hi


def test_temporal_split_never_leaks(planted_inter):
    inter = planted_inter
    s = split(inter)
    assert s.method == "temporal"
    assert not (s.train & s.test).any() and (s.train | s.test).all()
    assert inter.timestamp[s.train].max() < s.cutoff <= inter.timestamp[s.test].min()
    # an order is never cut in two
    train_orders = set(inter.order_idx[s.train])
    assert not train_orders & set(inter.order_idx[s.test])
    n_orders = len(set(inter.order_idx))
    assert len(set(inter.order_idx[s.test])) == pytest.approx(0.15 * n_orders, abs=0.02 * n_orders)
    # validation lives inside the training period only
    train, _ = split_interactions(inter, s)
    sv = validation_split(train)
    val_train, val_test = split_interactions(train, sv)
    assert val_test.timestamp.max() < s.cutoff
    assert val_train.timestamp.max() < sv.cutoff <= val_test.timestamp.min()
    assert len(val_train.item_idx) + len(val_test.item_idx) == int(s.train.sum())


def test_random_split_without_timestamps(tmp_path, planted):
    path, _ = planted
    out = tmp_path / "no_time.csv"
    with open(path, encoding="utf-8") as src, open(out, "w", newline="", encoding="utf-8") as dst:
        rows = csv.reader(src)
        w = csv.writer(dst)
        for row in rows:
            w.writerow(row[:5])
    inter, _ = read_orders(str(out))
    s = split(inter)
    assert s.method == "random"
    test_orders = set(inter.order_idx[s.test])
    assert not test_orders & set(inter.order_idx[s.train])
    n_orders = len(set(inter.order_idx))
    assert len(test_orders) == pytest.approx(0.2 * n_orders, abs=0.04 * n_orders)
    train, _ = split_interactions(inter, s)
    sv = validation_split(train)
    val_orders = set(train.order_idx[sv.test])
    assert val_orders and not val_orders & test_orders
    assert len(val_orders) == pytest.approx(0.2 * len(set(train.order_idx)),
                                            abs=0.05 * len(set(train.order_idx)))


def test_eval_data_follows_the_protocol(planted_inter):
    inter = planted_inter
    train, test = split_interactions(inter, split(inter))
    data = build_eval_data(train, test)
    hist = data.train_customer_items
    # next-best truth: new-to-customer items only, customers with history on both sides
    for row, cust in enumerate(data.nb_customers):
        truth = set(data.nb_truth[row].indices)
        assert truth and not truth & set(hist[cust].indices)
    # basket/also-bought: target hidden from the query, also-bought query from the same order
    for q, t, a in zip(data.basket_queries, data.basket_targets, data.also_queries,
                       strict=True):
        assert t not in q and a in q
