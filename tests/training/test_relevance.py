"""Relevance first (issue 16): planted complements among popular noise.

Before: the trainer chose ``also_bought: popularity 1.0`` on this data (most
holdout queries are noise items, where best-sellers score best), so every
anchor's page showed the same best-sellers and never its partner.
"""

import pytest

from recsys.data import read_orders
from recsys.rules import build_item_meta
from tests.complements import N_ANCHORS, complement_orders
from training.config import load_config
from training.train import fit_product

CONFIG = {"als": {"factors": 16, "iterations": 6},
          "ease": {"half_lives": [0], "size_exponents": [0], "popularity_exponents": [0]},
          "train": {"max_eval_queries": 1500}}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    path = tmp_path_factory.mktemp("complements") / "orders.csv"
    truth = complement_orders(path)
    inter, _ = read_orders(str(path))
    product = fit_product(inter, load_config(None, CONFIG))
    rec = product.recommender(inter, build_item_meta(inter.items, None, inter.item_prices()))
    return product, rec, truth


def ids(rec, answer):
    return [rec.items.id_of(r.item_idx) for r in answer.items]


def test_each_anchor_page_shows_its_partner_first(fitted):
    product, rec, truth = fitted
    assert product.blend["also_bought"].get("popularity", 0) < 1
    first = [ids(rec, rec.also_bought(rec.items.index(a), limit=10))[:1]
             for a in truth["partners"]]
    right = sum(got == [b] for got, b in zip(first, truth["partners"].values(), strict=True))
    assert right >= 0.95 * N_ANCHORS, first


def test_a_cart_of_two_anchors_gets_both_partners(fitted):
    _, rec, truth = fitted
    anchors = list(truth["partners"])
    ok = 0
    for a, b in zip(anchors[::2], anchors[1::2], strict=True):
        got = ids(rec, rec.basket(rec.items.indices([a, b]), limit=5))
        ok += {truth["partners"][a], truth["partners"][b]} <= set(got)
    assert ok >= 0.95 * (N_ANCHORS // 2)


def test_the_selection_reports_concentration_and_its_reasons(fitted):
    product, _, _ = fitted
    also = product.metrics["also_bought"]
    assert also["concentration@10"] <= 0.05
    assert len(also["best_seller_shares@10"]) == 3 and also["coverage@10"] > 0
    assert "hr_tail@10" in also and also["tail_queries"] > 0
    reason = product.selection["also_bought"]
    assert reason["queries"] > 100 and reason["candidates"]
    assert any(c.get("chosen") for c in reason["candidates"])
    # Popularity alone puts the best-seller on every page: it is over the bound.
    assert reason["excluded_by_concentration"] > 0
