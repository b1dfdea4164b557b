"""The whole trainer on planted data: the right answers come out, the gate publishes."""

import numpy as np
import pytest

from recsys.artifacts import current_version, load_version
from recsys.recommender import Recommender
from recsys.rules import Filters
from training.config import load_config
from training.train import train


@pytest.fixture(scope="module")
def trained(planted, tmp_path_factory):
    path, truth = planted
    models = str(tmp_path_factory.mktemp("models"))
    summary = train(path, models, load_config())
    return summary, Recommender.load(load_version(models)), truth, models


def ids(rec, answer):
    return [rec.items.id_of(r.item_idx) for r in answer.items]


def test_summary_and_gate(trained):
    summary, rec, _, models = trained
    assert summary["published"] is True
    assert current_version(models) == summary["version"] == rec.version
    nb = summary["metrics"]["next_best"]
    pop = summary["baseline_popularity"]["next_best"]
    assert nb["ndcg@10"] > pop["ndcg@10"]
    assert set(summary["metrics"]) == {"next_best", "basket", "also_bought"}
    manifest = rec.manifest
    assert manifest["metrics"] == summary["metrics"]
    assert manifest["data"]["orders"]["rows_used"] > 0
    assert "copurchase" in manifest["parameters"] and "als" in manifest["parameters"]


def test_also_bought_ranks_the_planted_partner_first(trained):
    _, rec, truth, _ = trained
    for a, b in truth["pairs"].items():
        answer = rec.also_bought(rec.items.index(a), limit=5)
        assert ids(rec, answer)[0] == b, (a, ids(rec, answer))
        assert a not in ids(rec, answer)


def test_next_best_recommends_the_partner_not_the_best_seller(trained):
    _, rec, truth, _ = trained
    for customer, partner in truth["query_customers"].items():
        answer = rec.next_best(rec.customers.index(customer), limit=3)
        got = ids(rec, answer)
        assert got[0] == partner, (customer, got)
        assert got[0] != truth["best_seller"]
        bought = set(rec.items.ids[rec.history[rec.customers.index(customer)].indices])
        assert not bought & set(got)


def test_new_customer_history_and_basket(trained):
    _, rec, truth, _ = trained
    answer = rec.next_best_for_history(rec.items.indices(["A3"]), limit=3)
    assert ids(rec, answer)[0] == "B3"
    basket = rec.basket(rec.items.indices(["A4", "P9"]), limit=3)
    assert ids(rec, basket)[0] == "B4"
    assert basket.items[0].because_of and rec.items.id_of(basket.items[0].because_of[0]) == "A4"


def test_explanation_support_matches_an_independent_count(planted, trained):
    path, _ = planted
    _, rec, _, _ = trained
    import csv
    buyers = {}
    with open(path) as fh:
        for row in csv.DictReader(fh):
            buyers.setdefault(row["item_id"], set()).add(row["customer_id"])
    answer = rec.also_bought(rec.items.index("A5"), limit=1)
    top = answer.items[0]
    assert rec.items.id_of(top.item_idx) == "B5"
    assert top.support == len(buyers["A5"] & buyers["B5"])


def test_filters_apply_before_the_cut(trained):
    _, rec, _, _ = trained
    answer = rec.also_bought(rec.items.index("A1"), limit=5,
                             filters=Filters(exclude=["B1"], max_price=2.5))
    got = ids(rec, answer)
    assert "B1" not in got and len(got) == 5
    assert all(rec.meta.price[rec.items.index(i)] <= 2.5 for i in got)


def test_likely_buyers_prefer_holders_of_the_partner(trained):
    _, rec, truth, _ = trained
    strategy, buyers = rec.likely_buyers(rec.items.index("B2"), limit=10)
    assert strategy in ("als", "co-purchase", "blend")
    customers = [rec.customers.id_of(c) for c, _ in buyers]
    owners_of_b2 = set(rec.customers.ids[rec.history[:, [rec.items.index("B2")]].tocoo().row])
    assert not owners_of_b2 & set(customers)
    assert sum(c.startswith("Q2_") for c in customers) >= 2


def test_degraded_data_is_not_published(tmp_path):
    rng = np.random.default_rng(1)
    rows = ["customer_id,order_id,item_id,timestamp"]
    for o in range(600):
        for i in rng.choice(40, size=3, replace=False):
            rows.append(f"c{o % 150},o{o},i{i},2024-01-{1 + o % 28:02d}T{o % 24:02d}:00:00")
    path = tmp_path / "noise.csv"
    path.write_text("\n".join(rows) + "\n")
    config = load_config(overrides={"gate": {"min_lift_over_popularity": 0.5}})
    # A first run publishes the better of the model and best-sellers (CONTRACT.md) ...
    first = train(str(path), str(tmp_path / "m"), config)
    assert first["published"] and first["gate"]["first_run"] in ("trained", "best-sellers")
    # ... and the margin refuses every later run on such data.
    summary = train(str(path), str(tmp_path / "m"), config)
    assert summary["published"] is False
    assert current_version(str(tmp_path / "m")) == first["version"]
    assert "popularity" in summary["gate"]["reason"]
