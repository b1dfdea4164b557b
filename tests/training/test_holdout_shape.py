"""Self-selection on data unlike the demo (issue 16): every order line its own order and
customers' activity bunched in time. The right choice is known (tests/complements.py)."""

import numpy as np
import pytest

from recsys.data import read_orders
from recsys.evaluation import split
from recsys.rules import build_item_meta
from tests.complements import bunched_line_orders
from training.config import load_config
from training.train import fit_product
from training.validation import as_visits, holdout_split, last_orders, visits

CONFIG = {"als": {"factors": 16, "iterations": 6},
          "ease": {"half_lives": [0], "size_exponents": [0], "popularity_exponents": [0]}}


@pytest.fixture(scope="module")
def inter(tmp_path_factory):
    path = tmp_path_factory.mktemp("bunched") / "orders.csv"
    truth = bunched_line_orders(path)
    return read_orders(str(path))[0], truth


def test_the_time_cut_alone_leaves_too_few_queries_and_the_scheme_adds_them(inter):
    inter, _ = inter
    s, baskets, report = holdout_split(inter, 0.15)
    assert "the last visit of" in report["scheme"] and "one day" in report["scheme"]
    assert report["method"] == "temporal+last-order"
    assert report["next_best_customers"] >= 300 and report["item_query_baskets"] >= 300
    # The cut alone: no order holds two items, and few customers straddle it.
    cut = split(inter, 0.15)
    assert not (np.diff(inter.subset(cut.test).order_items().indptr) >= 2).any()
    # Held-out last orders are whole orders of customers with nothing after the cut.
    extra = last_orders(inter, cut)
    assert extra.any() and not (extra & cut.test).any()
    assert baskets.shape == visits(inter.subset(s.test)).shape


def test_the_trainer_chooses_personalised_models_and_finds_the_partners(inter):
    inter, truth = inter
    product = fit_product(inter, load_config(None, CONFIG))
    assert product.holdout["next_best_customers"] >= 300 and "visits" in product.holdout["orders"]
    assert product.blend["next_best"].get("popularity", 0) < 1, product.selection["next_best"]
    assert product.metrics["next_best"]["queries"] >= 300
    assert product.metrics["basket"]["queries"] >= 300
    rec = product.recommender(inter, build_item_meta(inter.items, None, inter.item_prices()))
    right = 0
    for a, b in truth["partners"].items():
        got = [rec.items.id_of(r.item_idx) for r in rec.also_bought(rec.items.index(a), 3).items]
        right += got[:1] == [b]
        answer = rec.next_best_for_history(rec.items.indices([a, "N0"]), limit=3)
        assert rec.items.id_of(answer.items[0].item_idx) == b
    assert right >= 0.95 * len(truth["partners"])


def test_line_by_line_orders_are_regrouped_into_visits_and_baskets_stay_as_they_are(
        inter, planted_inter):
    inter, _ = inter
    visits_inter, note = as_visits(inter)
    assert note and "visits" in note
    assert len(np.unique(visits_inter.order_idx)) < len(np.unique(inter.order_idx)) / 2
    assert (visits_inter.item_idx == inter.item_idx).all()  # lines keep their positions
    # Real baskets are left alone.
    same, note = as_visits(planted_inter)
    assert same is planted_inter and note is None
