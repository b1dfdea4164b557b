"""Per-query evidence gating (issue 16): best-sellers only in the slots an item's own
evidence leaves free, marked, and the concentration bound counted on claimed slots.

Planted data: 40 anchors ``A<i>`` each bought with its partner ``B<i>`` in ~60% of
their orders, 40 loners ``L<i>`` that nobody bought with anything (each bought alone
by customers of their own), among 1,500 Zipf-popular noise items. The right answer
is known: an anchor's page shows its partner, claimed (not filled); a loner's page
has no evidence at all, so it is best-sellers, every slot marked filled; and the
trainer ships the gated also-bought (no plain blend keeps under the 5% bound with
anything near its accuracy: the noise pages' best guess is the best-sellers).
"""

import numpy as np
import pytest

from recsys import fastpath
from recsys.data import read_orders
from recsys.evaluation import RecommenderScorer, split_claimed
from recsys.exceptions import ConfigError
from recsys.exposure import exposure
from recsys.reasons import recommendation_record
from recsys.recommender.blending import GATE
from recsys.rules import build_item_meta
from tests.complements import N_ANCHORS, complement_orders
from training import gating
from training.config import load_config
from training.train import fit_product

CONFIG = {"als": {"factors": 16, "iterations": 6},
          "ease": {"half_lives": [0], "size_exponents": [0], "popularity_exponents": [0]},
          "train": {"max_eval_queries": 1500}}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    path = tmp_path_factory.mktemp("gating") / "orders.csv"
    truth = complement_orders(path, n_loners=N_ANCHORS)
    inter, _ = read_orders(str(path))
    product = fit_product(inter, load_config(None, CONFIG))
    rec = product.recommender(inter, build_item_meta(inter.items, None, inter.item_prices()))
    return product, rec, truth


def records(rec, answer):
    info = lambda i: {"item_id": rec.items.id_of(i), **rec.describe(i)}  # noqa: E731
    return [recommendation_record(info, r, answer.strategy) for r in answer.items]


def best_sellers(rec, n=10):
    return [rec.items.id_of(i) for i in np.argsort(-rec.popularity.counts_, kind="stable")[:n]]


def test_the_trainer_ships_the_gated_blend_and_says_why(fitted):
    product, _, _ = fitted
    assert product.blend["also_bought"].get(GATE, 0) >= 1, product.blend
    assert product.blend["also_bought"].get("popularity", 0) == 0
    reason = product.selection["also_bought"]
    assert "evidence-gated" in reason["chosen"]
    chosen = next(c for c in reason["candidates"] if c.get("chosen"))
    # The bound is counted on claimed slots; every slot's figure is beside it.
    assert chosen["concentration@10"] <= 0.05 < chosen["concentration_all@10"]
    assert 0 < chosen["claimed_share@10"] < 1
    # It beats the best plain blend under the bound on the holdout.
    plain = [c for c in reason["candidates"] if "gated" not in c["blend"]
             and c["concentration@10"] <= 0.05]
    assert all(chosen["hr@10"] > c["hr@10"] for c in plain)


def test_pages_with_evidence_show_the_partner_claimed(fitted):
    _, rec, truth = fitted
    right = 0
    for a, b in truth["partners"].items():
        answer = rec.also_bought(rec.items.index(a), limit=10)
        got = records(rec, answer)
        assert len(got) == 10
        right += got[0]["item_id"] == b and "filled" not in got[0]["reason"] \
            and got[0]["reason"]["support"] >= 1
        # Whatever is not claimed is a best-seller, marked as a fill.
        for r in got[1:]:
            if "filled" in r["reason"]:
                assert r["item_id"] in best_sellers(rec, 20)
    assert right >= 0.95 * N_ANCHORS


def test_pages_without_evidence_are_best_sellers_marked_filled(fitted):
    _, rec, truth = fitted
    for loner in truth["loners"]:
        answer = rec.also_bought(rec.items.index(loner), limit=10)
        got = records(rec, answer)
        assert [r["item_id"] for r in got] == best_sellers(rec, 10)
        assert all(r["reason"].get("filled") == "popular" for r in got)
        assert not answer.truncated_by_floor


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "numpy"])
def test_one_query_answers_equal_the_batch_answers(fitted, compiled):
    """The service's path (finish + fill) and the batch path that the trainer and
    `xsell evaluate` score (Selection.gated_top_k) give the same pages."""
    _, rec, truth = fitted
    if compiled and not fastpath.available():
        pytest.skip("numba is not installed")
    rec.compiled = compiled
    try:
        blend = {k: dict(v) for k, v in rec.blend.items()}
        rec.blend = blend | {"basket": {"copurchase": 1.0, GATE: 2}}
        pages = [rec.items.index(x) for x in list(truth["partners"])[:10] + truth["loners"][:5]
                 + ["N3", "N200", "B7"]]
        carts = [np.sort(rec.items.indices(pair)) for pair in
                 (["A1", "A2"], ["A3", "N5"], ["L1", "L2"], ["N1", "N900"])]
        for kind, queries in (("also_bought", [np.asarray([p]) for p in pages]),
                              ("basket", carts)):
            idx, scores = rec.item_query_batch(kind, queries, 10)
            _, claimed = rec.gated_top_k(kind, queries, rec.score_items(kind, queries), 10)
            for q, row, flags in zip(queries, idx, claimed, strict=True):
                one = getattr(rec, kind)(q[0] if kind == "also_bought" else q, 10, None)
                assert [r.item_idx for r in one.items] == row[row >= 0].tolist(), (kind, q)
                assert [bool(r.because_of) for r in one.items] == flags[row >= 0].tolist()
        rec.blend = blend
    finally:
        rec.compiled = fastpath.available()


def test_evaluation_counts_concentration_on_claimed_slots(fitted):
    _, rec, _ = fitted
    queries = [np.asarray([i]) for i in np.flatnonzero(rec.known_items)[:300]]
    answered = RecommenderScorer(rec).item_query("also_bought", queries, 10)
    recs, claimed = split_claimed(answered)
    assert claimed is not None and claimed.shape == recs.shape
    sellers = np.argsort(-rec.popularity.counts_, kind="stable")[:3]
    out = exposure(recs, 10, int(rec.known_items.sum()), sellers, claimed=claimed)
    every = exposure(recs, 10, int(rec.known_items.sum()), sellers)
    assert out["concentration_all@10"] == every["concentration@10"]
    assert out["concentration@10"] < every["concentration@10"]
    assert out["claimed_share@10"] == pytest.approx(claimed.mean())


def test_exposure_of_claimed_slots_by_hand():
    recs = np.array([[5, 1, 2], [5, 3, 4], [5, 1, 6], [7, 8, 5]])
    claimed = np.array([[False, True, True], [False, True, True], [False, True, True],
                        [True, True, False]])
    out = exposure(recs, 3, 10, np.array([5, 1]), claimed=claimed)
    assert out["concentration_all@3"] == 1.0  # item 5 on every page, as a fill
    assert out["concentration@3"] == 0.5  # item 1 claims 2 of 4 pages
    assert out["best_seller_shares@3"] == [0.0, 0.5]
    assert out["claimed_share@3"] == pytest.approx(8 / 12)


def test_gate_levels_are_checked():
    assert gating.thresholds(None) == gating.DEFAULT_THRESHOLDS
    assert gating.thresholds([5, 1, 1]) == (1, 5)
    assert gating.thresholds([]) == ()
    for bad in ([0], [1.5], "3", [True]):
        with pytest.raises(ConfigError, match="evidence_gate"):
            gating.thresholds(bad)
