"""The pooled blend search is exact: every blend scores what the shipped recommender answers."""

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.data import read_orders
from recsys.evaluation import (
    PopularityScorer,
    RecommenderScorer,
    evaluate,
    evaluate_variants,
)
from recsys.models.base import top_indices_rows
from recsys.recommender import Recommender
from tests.holdout import holdout as planted_holdout
from training import blend_search
from training import blend_search as B
from training import train as T
from training.blend_search import BlendScorer, _Part
from training.config import load_config


@pytest.fixture(scope="module")
def holdout(planted):
    path, _ = planted
    config = load_config(None, {"als": {"factors": 16, "iterations": 6},
                                "train": {"max_eval_queries": 400}})
    h = planted_holdout(read_orders(path)[0], config)
    ease, _ = T.fit_ease(h.train_part, config, h.data, h.recommender, 10,
                         customer_items=h.data.train_customer_items)
    return h.recommender(ease), h.data


def _grid(rec):
    components = B.available_components(rec)
    grid = []
    for p in (0.0, 0.3, 1.0):
        for ws in B.blend_candidates(components, [0.0, 0.5, 1.0]):
            cand = tuple(round(w * (1 - p), 4) for w in ws) + (p,)
            if cand not in grid:
                grid.append(cand)
    return grid, components + ("popularity",)


@pytest.mark.parametrize("dense_fraction", [0.05, 2.0])  # 2.0: sparse parts stay sparse
@pytest.mark.parametrize("pool", [12, 100])
def test_every_blend_equals_the_recommenders_own_answers(holdout, pool, dense_fraction,
                                                         monkeypatch):
    monkeypatch.setattr(blend_search, "_DENSE_FRACTION", dense_fraction)
    rec, data = holdout
    grid, names = _grid(rec)
    assert "ease" in names and len(grid) > 10
    scorer = BlendScorer(rec, grid, names, pool=pool)
    customers = data.nb_customers
    histories = data.train_customer_items[customers]
    queries = {"basket": list(data.basket_queries),
               "also_bought": [np.asarray([q]) for q in data.also_queries]}
    pooled = {"next_best": scorer.next_best(customers, histories, 10)}
    pooled |= {kind: scorer.item_query(kind, qs, 10) for kind, qs in queries.items()}
    if pool == 12:  # 40 items: a small pool certifies some rows and not others
        assert 0 < scorer.fallback_rows < scorer.rows
    for ws in grid:
        rec.blend = {kind: dict(zip(names, ws, strict=True)) for kind in queries | {"next_best": 0}}
        exact = RecommenderScorer(rec)
        assert np.array_equal(pooled["next_best"][ws], exact.next_best(customers, histories, 10))
        for kind, qs in queries.items():
            assert np.array_equal(pooled[kind][ws], exact.item_query(kind, qs, 10)), (ws, kind)


def test_blend_metrics_equal_the_exact_evaluation(holdout):
    rec, data = holdout
    grid, names = _grid(rec)
    pooled = evaluate_variants(BlendScorer(rec, grid, names), data, 10)
    for ws in grid[::5]:
        rec.blend = {kind: dict(zip(names, ws, strict=True)) for kind in ("next_best", "basket",
                                                             "also_bought")}
        exact = evaluate(RecommenderScorer(rec), data, 10)
        assert exact == {kind: {m: v for m, v in entry.items()}
                         for kind, entry in pooled[ws].items()}


def test_pool_bounds_cover_every_item_outside_the_pool():
    rng = np.random.default_rng(3)
    dense = rng.normal(size=(20, 300)).astype(np.float32)
    dense[5] = -1.0  # a row with no positive score
    sparse = sp.random(20, 300, density=0.03, random_state=4, format="csr", dtype=np.float32)
    sparse.data -= 0.3  # negative entries, as EASE weights have
    denser = sp.random(20, 300, density=0.3, random_state=5, format="csr", dtype=np.float32)
    vector = np.abs(rng.normal(size=300)).astype(np.float32)
    assert _Part(sparse, 20, 7).kind == "sparse" and _Part(denser, 20, 7).kind == "dense"
    for raw in (dense, sparse, denser, vector):
        part = _Part(raw, 20, pool=7)
        full = Recommender._normalise(raw.toarray() if sp.issparse(raw)
                                      else np.broadcast_to(raw, (20, 300)))
        for r in range(20):
            inside = part.pool[r][part.pool[r] >= 0]
            outside = np.setdiff1d(np.arange(300), inside)
            assert (full[r, outside] <= part.bound[r] + 1e-7).all()
            # Pool members are the best positive scores, best first.
            assert list(inside) == [i for i in top_indices_rows(full[r:r + 1], 7)[0]
                                    if i >= 0 and full[r, i] > 0]
        cols = rng.integers(0, 300, size=(20, 9))
        assert np.array_equal(part.values(cols), np.take_along_axis(full, cols, 1))


def test_popularity_scorer_matches_a_full_ranking_with_ties():
    rng = np.random.default_rng(5)
    for trial in range(20):
        n_items, n = int(rng.integers(5, 400)), int(rng.integers(1, 40))
        k = int(rng.integers(1, 15))
        counts = rng.integers(0, 4, n_items)  # many ties, and zero-count items
        allowed = (counts > 0) & (rng.random(n_items) > 0.2)
        exclude = sp.random(n, n_items, density=min(1.0, 4 / n_items), format="csr",
                            random_state=trial)
        got = PopularityScorer(counts, allowed)._top(n, exclude, k)
        scores = np.tile(np.where(allowed, counts.astype(float), -np.inf), (n, 1))
        coo = exclude.tocoo()
        scores[coo.row, coo.col] = -np.inf
        assert np.array_equal(got, top_indices_rows(scores, k))
