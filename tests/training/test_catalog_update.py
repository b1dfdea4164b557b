"""``xsell catalog update``: a new version with fresh item metadata, models untouched."""

import json
import os

import pytest
from click.testing import CliRunner

from recsys.artifacts import current_version, list_versions, load_version
from recsys.recommender import Recommender
from recsys.rules import Filters
from tests.recsys.tiers import write_tiers
from training.cli import main
from training.config import load_config
from training.train import train


@pytest.fixture()
def trained(tmp_path):
    orders, catalog = str(tmp_path / "orders.csv"), str(tmp_path / "catalog.csv")
    write_tiers(orders, catalog)
    config = load_config(None, {"als": {"factors": 8, "iterations": 5},
                                "train": {"max_eval_queries": 200}})
    models = str(tmp_path / "models")
    summary = train(orders, models, config, catalog=catalog)
    assert summary["published"]
    return models, summary["version"], tmp_path


def run(*args):
    return CliRunner().invoke(main, list(args))


def names(rec, answer):
    return [rec.items.id_of(r.item_idx) for r in answer.items]


def test_update_writes_new_current_version(trained):
    models, old, tmp = trained
    new_catalog = tmp / "prices.csv"
    # Partial refresh: PRO out of stock and a new column; an id the models never saw.
    new_catalog.write_text("sku,cost,in_stock,color\nPRO,22,false,blue\nNEW1,3,true,red\n")
    result = run("catalog", "update", "--models", models, "--catalog", str(new_catalog),
                 "--columns", "item_id=sku,price=cost")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["base_version"] == old and summary["published"] is True
    assert summary["items_in_catalog"] == 1 and summary["unknown_catalog_ids"] == 1
    new = summary["version"]
    assert new != old and current_version(models) == new
    assert {v["version"] for v in list_versions(models)} == {old, new}

    loaded_old, loaded_new = load_version(models, old), load_version(models, new)  # checksums
    same = {f for f in loaded_old.manifest["files"] if not f.startswith(("item_", "categories"))}
    assert "als_item_factors.npy" in same and "substitutes_similarity.data.npy" in same
    for f in same:  # models copied byte for byte
        assert loaded_new.manifest["files"][f] == loaded_old.manifest["files"][f]
    assert loaded_new.manifest["catalog_update"]["base_version"] == old
    assert loaded_new.manifest["blend"] == loaded_old.manifest["blend"]

    rec_old, rec_new = Recommender.load(loaded_old), Recommender.load(loaded_new)
    pro = rec_new.items.index("PRO")
    assert rec_new.describe(pro) == {"name": "Pro plan", "category": "plans", "price": 22.0,
                                     "in_stock": False,
                                     "metadata": {"brand": "acme", "color": "blue"}}
    assert rec_old.describe(pro)["price"] == 25.0 and rec_old.describe(pro)["in_stock"]
    # Items missing from the partial catalog keep their metadata.
    assert rec_new.describe(rec_new.items.index("BASIC")) == rec_old.describe(
        rec_old.items.index("BASIC"))
    basic = rec_new.items.index("BASIC")
    assert names(rec_new, rec_new.upsell(basic))[:1] == ["PRO"]
    assert names(rec_new, rec_new.upsell(basic, 10, Filters(in_stock=True))) == []
    assert names(rec_old, rec_old.upsell(basic, 10, Filters(in_stock=True)))[:1] == ["PRO"]


def test_price_band_follows_the_refreshed_price(trained):
    models, _, tmp = trained
    path = tmp / "c.csv"
    path.write_text("item_id,price\nPRO,45\n")  # 4.5x BASIC: out of the 1.1x-3x band
    assert run("catalog", "update", "--models", models, "--catalog", str(path)).exit_code == 0
    rec = Recommender.load(load_version(models))
    assert "PRO" not in names(rec, rec.upsell(rec.items.index("BASIC"), 10,
                                              Filters(min_support=0, min_score=0.0)))
    assert names(rec, rec.downsell(rec.items.index("ENT")))[:1] == ["PRO"]  # 0.75x ENT


def test_category_change_moves_the_item(trained):
    models, _, tmp = trained
    path = tmp / "c.csv"
    path.write_text("item_id,category\nPRO,legacy\n")
    assert run("catalog", "update", "--models", models, "--catalog", str(path)).exit_code == 0
    rec = Recommender.load(load_version(models))
    assert rec.describe(rec.items.index("PRO"))["category"] == "legacy"
    assert "PRO" not in names(rec, rec.upsell(rec.items.index("BASIC"), 10,
                                              Filters(min_support=0, min_score=0.0)))


def test_bad_inputs_are_clear_errors(trained, tmp_path_factory):
    models, old, tmp = trained
    result = run("catalog", "update", "--models", models, "--catalog", str(tmp / "missing.csv"))
    assert result.exit_code == 2 and "missing.csv" in result.output
    bad = tmp / "nocol.csv"
    bad.write_text("sku,price\nPRO,3\n")
    result = run("catalog", "update", "--models", models, "--catalog", str(bad))
    assert result.exit_code == 2 and "item_id" in result.output
    empty = str(tmp_path_factory.mktemp("empty"))
    result = run("catalog", "update", "--models", empty, "--catalog", str(bad))
    assert result.exit_code == 1 and "no current model version" in result.output
    assert current_version(models) == old  # nothing was published
    assert not [n for n in os.listdir(models) if n.startswith(".tmp-")]


def test_export_cli_upsell_with_filters(trained):
    models, _, tmp = trained
    queries = tmp / "q.txt"
    queries.write_text("BASIC\nPRO\nENT\n")
    out = tmp / "up.jsonl"
    result = run("export", "--models", models, "--kind", "upsell", "--input", str(queries),
                 "--out", str(out), "--category", "plans", "--max-price", "30")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["item_id"] for r in records] == ["BASIC", "PRO", "ENT"]
    assert [x["item_id"] for x in records[0]["recommendations"]][:1] == ["PRO"]
    assert records[1]["recommendations"] == []  # ENT (60) is above max_price
    result = run("export", "--models", models, "--kind", "downsell", "--out", str(out),
                 "--min-price", "9", "--max-price", "1")
    assert result.exit_code == 2 and "min_price" in result.output


def test_bad_band_or_floor_config_is_a_clear_error(tmp_path):
    orders, catalog = str(tmp_path / "orders.csv"), str(tmp_path / "catalog.csv")
    write_tiers(orders, catalog)
    for section, values, word in (("substitutes", {"upsell_band": [3.0, 1.1]}, "upsell_band"),
                                  ("floor", {"min_support": -1}, "min_support")):
        config = tmp_path / f"{section}.json"
        config.write_text(json.dumps({section: values}))
        result = run("train", "--orders", orders, "--catalog", catalog, "--config", str(config),
                     "--models", str(tmp_path / "m"))
        assert result.exit_code == 2 and word in result.output
