"""The gate compares the new models with the current version on the same new holdout orders."""

import csv
import json

import pytest

from recsys.artifacts import current_version, read_manifest
from training.config import load_config
from training.train import train


def _write_until(src: str, dst: str, last_day: str) -> None:
    """The planted orders up to and including ``last_day`` (ISO date prefix)."""
    with open(src, newline="") as fh, open(dst, "w", newline="") as out:
        rows = csv.reader(fh)
        writer = csv.writer(out)
        header = next(rows)
        writer.writerow(header)
        ts = header.index("timestamp")
        writer.writerows(r for r in rows if r[ts][:10] <= last_day)


@pytest.fixture(scope="module")
def days(planted):
    path, _ = planted
    with open(path, newline="") as fh:
        rows = csv.DictReader(fh)
        return sorted({r["timestamp"][:10] for r in rows})


CONFIG = {"als": {"factors": 16, "iterations": 8}, "train": {"max_eval_queries": 400}}


def test_new_version_is_compared_on_orders_the_current_one_never_saw(planted, days, tmp_path):
    path, _ = planted
    models = str(tmp_path / "models")
    early = str(tmp_path / "early.csv")
    _write_until(path, early, days[int(len(days) * 0.9)])
    first = train(early, models, load_config(None, CONFIG))
    assert first["published"]
    since = read_manifest(models, first["version"])["data"]["time_range"][1]

    # A gate that demands a 50% gain over the current version on those queries refuses.
    strict = train(path, models, load_config(None, {**CONFIG,
                                                   "gate": {"max_drop_vs_current": -0.5}}))
    assert strict["gate"]["compared_on"].startswith("new holdout orders")
    assert not strict["published"] and current_version(models) == first["version"]

    second = train(path, models, load_config(None, CONFIG))
    gate = second["gate"]
    assert gate["current_version"] == first["version"]
    assert gate["compared_on"].startswith("new holdout orders")
    assert gate["same_queries"] >= 30
    assert "newer than the current version's data" in gate["reason"]
    assert second["published"] and current_version(models) == second["version"]
    # Both were scored on the same queries (not the stored metrics): same-scale values.
    assert 0 < gate["current_value"] <= 1 and 0 < gate["value_on_same_queries"] <= 1
    assert gate["current_value"] != first["metrics"][gate["protocol"]][gate["metric"]]
    assert read_manifest(models, second["version"])["data"]["time_range"][1] > since


def test_retrain_on_the_same_data_falls_back_to_stored_metrics(planted, tmp_path):
    path, _ = planted
    models = str(tmp_path / "models")
    first = train(path, models, load_config(None, CONFIG))
    second = train(path, models, load_config(None, CONFIG))
    gate = second["gate"]
    assert gate["current_version"] == first["version"]
    assert gate["compared_on"].startswith("the current version's stored metrics")
    assert gate["current_value"] == first["metrics"][gate["protocol"]][gate["metric"]]
    json.dumps(gate)


def test_version_scorer_maps_ids_both_ways(planted, tmp_path):
    """Scoring a version through other vocabularies gives its own answers, by id."""
    import numpy as np
    import scipy.sparse as sp

    from recsys.artifacts import load_version
    from recsys.data import read_orders
    from recsys.evaluation import RecommenderScorer, build_eval_data, split, split_interactions
    from recsys.recommender import Recommender
    from recsys.vocab import Vocab
    from training.gate import VersionScorer

    path, _ = planted
    models = str(tmp_path / "models")
    train(path, models, load_config(None, CONFIG))
    rec = Recommender.load(load_version(models))
    inter, _ = read_orders(path)
    data = build_eval_data(*split_interactions(inter, split(inter)), max_queries=200)
    # Today's vocabularies: the same ids plus ones the version has never seen.
    items = Vocab(np.sort(np.concatenate([rec.items.ids, ["NEW-1", "NEW-2"]])))
    customers = Vocab(np.sort(np.concatenate([rec.customers.ids, ["NEWCUST"]])))
    to_today = items.indices(rec.items.ids)
    scorer = VersionScorer(rec, items, customers)
    own = RecommenderScorer(rec)

    def ids(recs, vocab):
        return [[vocab.id_of(i) for i in row if i >= 0] for row in recs]

    queries = [np.asarray([q]) for q in data.also_queries[:50]]
    got = scorer.item_query("also_bought", [to_today[q] for q in queries], 10)
    assert ids(got, items) == ids(own.item_query("also_bought", queries, 10), rec.items)
    cust = data.nb_customers[:50]
    hist = rec.history[cust]
    today_cust = customers.indices(rec.customers.ids[cust])
    coo = hist.tocoo()
    today_hist = sp.csr_matrix((coo.data, (coo.row, to_today[coo.col])),
                               shape=(len(cust), len(items)))
    got = scorer.next_best(today_cust, today_hist, 10)
    assert ids(got, items) == ids(own.next_best(cust, hist, 10), rec.items)
