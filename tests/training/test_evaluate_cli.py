"""`xsell evaluate` end to end on planted data; tuning output; the quality gate."""

import csv
import json
from datetime import datetime, timedelta

import numpy as np
import pytest
import tomllib
from click.testing import CliRunner

from training.cli import main
from training.config import load_config
from training.gate import _gate
from training.tune import to_toml

N_PAIRS, N_NOISE = 30, 150


def complement_orders(path, n_customers=900, seed=0):
    """Planted complements among many items: customer c's pair ``A{i}``/``B{i}``.

    A customer's first order holds ``A{i}``; later orders hold ``B{i}`` (and
    often ``A{i}`` again) with one mildly popular noise item. So basket and
    also-bought targets are mostly the partner of a query item, and a new
    item after the cutoff is often ``B{i}``: popularity cannot know which.
    """
    rng = np.random.default_rng(seed)
    noise_p = 1.0 / np.arange(1, N_NOISE + 1) ** 0.5
    noise_p /= noise_p.sum()
    rows, order_no = [], 0
    for c in range(n_customers):
        pair = int(rng.integers(N_PAIRS))
        days = np.sort(rng.uniform(0, 360, int(rng.integers(2, 5))))
        for o, day in enumerate(days):
            items = [f"N{j}" for j in rng.choice(N_NOISE, size=1, p=noise_p)]
            if o == 0 or rng.random() < 0.6:
                items.append(f"A{pair}")
            if o > 0 and rng.random() < 0.8:
                items.append(f"B{pair}")
            order_no += 1
            ts = (datetime(2025, 1, 1) + timedelta(days=float(day))).isoformat(timespec="seconds")
            rows.extend([f"C{c}", f"O{order_no}", item, 1, 1.0, ts] for item in items)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["customer_id", "order_id", "item_id", "quantity", "unit_price", "timestamp"])
        out.writerows(rows)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    path = str(out / "orders.csv")
    complement_orders(path)
    json_out, html_out = out / "result.json", out / "report.html"
    result = CliRunner().invoke(main, [
        "evaluate", "--orders", path, "--json", str(json_out), "--report", str(html_out),
        "--skip", "cooc-lift",
    ])
    assert result.exit_code == 0, result.stderr + str(result.exception)
    return result, json.loads(json_out.read_text()), html_out.read_text()


def test_evaluate_table_json_and_report(evaluated):
    result, data, page = evaluated
    names = [m["name"] for m in data["models"]]
    for name in ("popularity", "cooc-cosine", "cooc-jaccard", "item-knn-bm25", "ease", "als",
                 "xsell (product)"):
        assert name in names
    assert "cooc-lift" not in names
    assert "xsell (product)" in result.stdout and "queries" in result.stdout
    for kind in ("next_best", "basket", "also_bought"):
        assert data["protocols"][kind]["queries"] > 0
        comp = data["comparison"][kind]
        assert comp["rel_ci"][0] <= comp["rel"] <= comp["rel_ci"][1]
    assert page.count("<svg") == 3 and "Data report" in page and "http" not in page.split(
        "<body>")[1].replace("http://www.w3.org/2000/svg", "")
    # The product's own choices are reported: blend, ALS alpha, and the EASE setting of
    # every kind whose blend uses EASE.
    settings = next(m for m in data["models"] if m["kind"] == "product")["settings"]
    assert settings["als_alpha"] in (2.0, 10.0, 15.0)
    assert any(w.get("ease", 0) > 0 for w in settings["blend"].values())
    for kind, weights in settings["blend"].items():
        if weights.get("ease", 0) > 0:
            assert set(settings["ease"][kind]) == {"lambda", "dropout", "half_life_days",
                                                   "size_exponent", "popularity_exponent"}
            assert settings["ease"][kind]["half_life_days"] in (0.0, 30.0, 90.0)
            assert settings["ease"][kind]["size_exponent"] in (0.0, 0.5)
            assert settings["ease"][kind]["popularity_exponent"] in (0.0, 0.1, 0.2)


def test_product_beats_popularity_by_a_wide_margin(evaluated):
    _, data, _ = evaluated
    by_name = {m["name"]: m["results"] for m in data["models"]}
    ours, pop = by_name["xsell (product)"], by_name["popularity"]
    # planted pairs: the complement is findable, best-sellers are not the answer
    assert ours["next_best"]["ndcg@10"] > 2 * pop["next_best"]["ndcg@10"]
    assert ours["also_bought"]["hr@10"] > 1.5 * pop["also_bought"]["hr@10"]
    assert ours["basket"]["hr@10"] > 1.5 * pop["basket"]["hr@10"]


def test_evaluate_rejects_missing_file(tmp_path):
    result = CliRunner().invoke(
        main, ["evaluate", "--orders", str(tmp_path / "missing.csv")])
    assert result.exit_code == 2 and "missing.csv" in result.stderr


def test_tuned_config_round_trips(tmp_path):
    config = load_config(None)
    config["copurchase"]["alpha"] = 0.7
    config["data"]["columns"] = {"item_id": "StockCode"}
    path = tmp_path / "tuned.toml"
    path.write_text(to_toml(config))
    tomllib.loads(path.read_text())
    loaded = load_config(str(path))
    assert loaded["copurchase"]["alpha"] == 0.7
    assert loaded["data"]["columns"] == {"item_id": "StockCode"}
    assert loaded["ease"]["lambdas"] == config["ease"]["lambdas"]


def _metrics(value):
    return {"next_best": {"ndcg@10": value}}


def test_gate_popularity_margin_and_current_version():
    cfg = {"min_lift_over_popularity": 0.05, "max_drop_vs_current": 0.1}
    assert _gate(_metrics(0.10), _metrics(0.05), cfg, 10)["passed"]
    assert not _gate(_metrics(0.05), _metrics(0.049), cfg, 10)["passed"]
    # within the tolerance of the current version's stored metric: publish
    current = {"version": "v1", "metrics": _metrics(0.105)}
    assert _gate(_metrics(0.10), _metrics(0.05), cfg, 10, current)["passed"]
    # a drop of more than 10%: do not publish
    current = {"version": "v1", "metrics": _metrics(0.12)}
    out = _gate(_metrics(0.10), _metrics(0.05), cfg, 10, current)
    assert not out["passed"] and out["current_value"] == 0.12


def test_trained_version_with_ease_loads_and_answers(tmp_path):
    from recsys.artifacts import load_version
    from recsys.recommender import Recommender
    from training.train import train

    path = str(tmp_path / "orders.csv")
    complement_orders(path, n_customers=500)
    summary = train(path, str(tmp_path / "models"), load_config(None, {"ease": {"enabled": True}}))
    rec = Recommender.load(load_version(str(tmp_path / "models"), summary["version"]))
    assert rec.ease is not None  # 180 items: EASE is fitted
    a3 = rec.items.index("A3")
    answer = rec.basket(np.asarray([a3]), limit=5)
    assert answer.items[0].item_idx == rec.items.index("B3")
    assert a3 not in [r.item_idx for r in answer.items]


def test_tune_scores_candidates_on_validation_and_writes_config(tmp_path, monkeypatch):
    from recsys.data import read_orders
    from training.tune import tune_to_file

    path = str(tmp_path / "orders.csv")
    complement_orders(path, n_customers=400)
    inter, _ = read_orders(path)
    out = tmp_path / "tuned.toml"
    seen = []
    # The EASE choice does not depend on the settings searched: it is made once.
    from training import train as T

    calls = []
    real_fit_ease = T.fit_ease
    monkeypatch.setattr(T, "fit_ease", lambda *a, **kw: calls.append(1) or real_fit_ease(*a, **kw))
    best = tune_to_file(path, load_config(None), str(out), progress=seen.append)
    assert len(calls) == 1
    assert any("copurchase.alpha=0.3" in line for line in seen)
    assert any("als.factors=128" in line for line in seen)
    assert load_config(str(out))["copurchase"] == best["copurchase"]


def test_baseline_cache_is_written_then_read_with_the_same_figures(tmp_path):
    path = str(tmp_path / "orders.csv")
    complement_orders(path, n_customers=300)
    cache = tmp_path / "baselines.json"
    args = ["evaluate", "--orders", path, "--skip", "cooc-lift,ease,als,item-knn-bm25",
            "--baseline-cache", str(cache)]
    runs = []
    for i in range(2):
        out = tmp_path / f"r{i}.json"
        result = CliRunner().invoke(main, args + ["--json", str(out)])
        assert result.exit_code == 0, result.stderr + str(result.exception)
        runs.append((result.stderr, json.loads(out.read_text())))
    assert "tuning" in runs[0][0] and "read from" not in runs[0][0]
    assert f"baselines: read from {cache}" in runs[1][0] and "tuning" not in runs[1][0]
    assert runs[0][1]["comparison"] == runs[1][1]["comparison"]
    assert [m["name"] for m in runs[0][1]["models"]] == [m["name"] for m in runs[1][1]["models"]]
    # Other settings (here: k) do not match the cache: the baselines are tuned again.
    result = CliRunner().invoke(main, args + ["--k", "5"])
    assert result.exit_code == 0 and "tuning" in result.stderr
