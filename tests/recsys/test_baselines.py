"""Baselines: hand-computed similarities, EASE's closed form, exclusion rules."""

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.baselines import (
    ItemSimilarityScorer,
    PopularityBaseline,
    cooccurrence_similarity,
    ease_similarity,
)

# three orders: {0, 1}, {0, 1, 2}, {0, 2}; item 3 never bought
ORDERS = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 1, 0]], dtype=np.float32))


@pytest.mark.parametrize("measure, s01, s12", [
    ("cosine", 2 / np.sqrt(6), 1 / 2),
    ("jaccard", 2 / 3, 1 / 3),
    ("lift", 2 * 3 / (3 * 2), 1 * 3 / (2 * 2)),
])
def test_cooccurrence_hand_computed(measure, s01, s12):
    sim = cooccurrence_similarity(ORDERS, measure).toarray()
    assert sim[0, 1] == pytest.approx(s01)
    assert sim[1, 0] == pytest.approx(s01)
    assert sim[1, 2] == pytest.approx(s12)
    assert np.all(np.diag(sim) == 0)
    assert np.all(sim[3] == 0)


def test_cooccurrence_min_count_drops_rare_pairs():
    sim = cooccurrence_similarity(ORDERS, "lift", min_count=2).toarray()
    assert sim[1, 2] == 0 and sim[0, 1] > 0


def test_ease_matches_closed_form():
    rng = np.random.default_rng(0)
    x = sp.csr_matrix((rng.random((40, 6)) < 0.4).astype(np.float32))
    lam = 5.0
    g = (x.T @ x).toarray().astype(np.float64) + lam * np.eye(6)
    p = np.linalg.inv(g)
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0)
    model = ease_similarity(x, lam)
    scores = sp.csr_matrix(np.eye(6, dtype=np.float32)) @ model
    assert scores == pytest.approx(b.astype(np.float32), abs=1e-5)


def test_ease_above_the_item_limit_is_fitted_on_the_most_bought_items():
    rng = np.random.default_rng(1)
    x = sp.csr_matrix((rng.random((300, 8)) < np.linspace(0.6, 0.1, 8)).astype(np.float32))
    buyers = np.diff(x.tocsc().indptr)
    top = np.sort(np.argsort(-buyers, kind="stable")[:5])
    model = ease_similarity(x, 3.0, max_items=5)
    assert list(model.keep) == list(top) and model.eligible == 8
    on_top = ease_similarity(x[:, top], 3.0)
    scores = sp.csr_matrix(np.eye(8, dtype=np.float32)) @ model
    assert scores[np.ix_(top, top)] == pytest.approx(
        sp.csr_matrix(np.eye(5, dtype=np.float32)) @ on_top, abs=1e-6)
    assert not np.delete(scores, top, axis=1).any()
    # The family says which N it was fitted on, for the comparison table.
    from recsys.baselines import FitData, default_families

    family = next(f for f in default_families(True, ease_max_items=5) if f.name == "ease")
    d = FitData(x, x, buyers.astype(float), np.ones(8, bool), True)
    assert family.build(d, family.grid[0]) is not None
    assert "the 5 most-bought of the 8 items" in family.note
    family.build(FitData(x[:, :4], x[:, :4], buyers[:4].astype(float), np.ones(4, bool), True),
                 family.grid[0])
    assert family.note == ""


def test_scorers_never_return_query_or_unknown_items():
    pop = np.array([3.0, 2.0, 2.0, 0.0])
    allowed = pop > 0
    sim = cooccurrence_similarity(ORDERS, "cosine")
    scorer = ItemSimilarityScorer(sim, pop, allowed)
    recs = scorer.item_query("basket", [np.array([0])], 3)
    assert recs[0, 0] in (1, 2) and 0 not in recs[0] and 3 not in recs[0]
    assert recs[0, 2] == -1  # only two candidates exist
    hist = sp.csr_matrix(np.array([[0, 1, 0, 0]], dtype=np.float32))
    nb = scorer.next_best(np.array([0]), hist, 2)
    assert list(nb[0]) == [0, 2]  # 1 is already bought; 0 is its nearest neighbour
    popular = PopularityBaseline(pop, allowed).next_best(np.array([0]), hist, 3)
    assert list(popular[0]) == [0, 2, -1]
