"""xsell export (training/export.py) applies the business filters and the floor."""

import json

import pytest

from recsys.artifacts import load_version
from recsys.exceptions import ConfigError
from recsys.recommender import Recommender
from recsys.rules import Filters
from training.export import export


@pytest.fixture(scope="module")
def tiers(tier_model):
    models, version, truth = tier_model
    return Recommender.load(load_version(models, version)), truth


def test_export_with_filters(tiers, tmp_path):
    rec, _ = tiers
    out = tmp_path / "ab.jsonl"
    export(rec, "also-bought", str(out), None, 5, filters=Filters(categories=["snacks"]))
    records = [json.loads(line) for line in out.read_text().splitlines()]
    got = [r["item_id"] for rec_ in records for r in rec_["recommendations"]]
    assert got and all(g.startswith("N") for g in got)
    export(rec, "next-best", str(out), None, 6,
           filters=Filters(max_per_category=1, min_support=0, min_score=0.0))
    for line in out.read_text().splitlines():
        cats = [rec.describe(rec.items.index(r["item_id"]))["category"]
                for r in json.loads(line)["recommendations"]]
        assert len(cats) == len(set(cats))
    with pytest.raises(ConfigError):
        export(rec, "also-bought", str(out), None, 5, filters=Filters(min_price=3, max_price=1))
