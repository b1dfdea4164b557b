"""``xsell train --engine spark`` end to end on planted data, against the local engine.

Holdout metrics of every query kind within 3% of the local engine's (ALS is
MLlib's solver, the rest the same counts); the version loads and answers in
the service; bad input gets the local engine's messages and exit codes; a
Spark failure is one line, exit 1, and nothing published.
"""

import json

import pytest
from click.testing import CliRunner

from recsys.artifacts import current_version, list_versions, load_version
from recsys.recommender import Recommender
from training.cli import main
from training.config import load_config
from training.spark.engine import SparkEngine
from training.train import train

# A small, fast grid (two CPUs in CI); both engines train with it.
SMALL = {"als": {"factors": 16, "iterations": 8},
         "ease": {"lambdas": [50.0, 200.0], "half_lives": [0.0, 90.0],
                  "size_exponents": [0.0, 0.5], "popularity_exponents": [0.0, 0.2]},
         "train": {"holdout_als_iterations": 5, "als_alphas": [2.0, 10.0]}}


def small_config():
    return load_config(None, SMALL)


@pytest.fixture(scope="module")
def trained(spark, planted, tmp_path_factory):
    path, truth = planted
    local_dir = str(tmp_path_factory.mktemp("local"))
    spark_dir = str(tmp_path_factory.mktemp("spark"))
    local = train(path, local_dir, small_config())
    engine = SparkEngine(small_config())
    try:
        remote = train(path, spark_dir, small_config(), engine=engine)
    finally:
        engine.close()
    return local, remote, spark_dir, truth


def test_holdout_metrics_within_3_percent_of_local(trained):
    """Every kind's primary metric within 3%; every metric within 3% where both engines
    chose the same blend (a blend with ALS may differ: MLlib's solver is not implicit's)."""
    from recsys.evaluation import PRIMARY

    local, remote, _, _ = trained
    assert set(remote["metrics"]) == set(local["metrics"]) == {"next_best", "basket",
                                                                "also_bought"}
    for kind, metrics in local["metrics"].items():
        assert remote["metrics"][kind]["queries"] == metrics["queries"]
        primary = f"{PRIMARY[kind]}@10"
        assert remote["metrics"][kind][primary] == pytest.approx(metrics[primary], rel=0.03)
        if remote["blend"][kind] != local["blend"][kind]:
            assert "als" in {name for blend in (local["blend"][kind], remote["blend"][kind])
                             for name, w in blend.items() if w}, (local["blend"], remote["blend"])
            continue
        for name, value in metrics.items():
            if "cross_fitted" in name:
                # The value of the choice made on half the queries (training/selection.py):
                # each half may pick a blend with ALS, whose solver differs by engine.
                continue
            assert remote["metrics"][kind][name] == pytest.approx(value, rel=0.03), (kind, name)
    assert remote["baseline_popularity"] == local["baseline_popularity"]
    assert remote["published"] and remote["data"] == local["data"]


def test_version_has_the_local_format_and_answers(trained):
    local, remote, spark_dir, truth = trained
    loaded = load_version(spark_dir)
    rec = Recommender.load(loaded)
    assert rec.version == remote["version"] == current_version(spark_dir)
    for a, b in truth["pairs"].items():
        answer = rec.also_bought(rec.items.index(a), limit=3)
        assert rec.items.id_of(answer.items[0].item_idx) == b
        assert answer.items[0].support >= 3
    customer, partner = next(iter(truth["query_customers"].items()))
    got = rec.next_best(rec.customers.index(customer), limit=3)
    assert rec.items.id_of(got.items[0].item_idx) == partner
    manifest = rec.manifest
    assert manifest["data"]["split"]["method"].startswith("temporal")
    assert manifest["data"]["time_range"] is not None
    assert rec.substitutes is not None and rec.substitutes.similarity_.nnz > 0


def test_the_service_serves_the_spark_version(trained):
    from tests.service.conftest import make_app

    _, remote, spark_dir, _ = trained
    client = make_app(spark_dir).test_client()
    res = client.get("/v1/items/A1/also-bought?limit=3")
    assert res.status_code == 200, res.data
    body = res.get_json()
    assert body["model_version"] == remote["version"]
    assert body["recommendations"][0]["item_id"] == "B1"


# ---------------------------------------------------------------- bad input


def run_cli(*args):
    return CliRunner().invoke(main, ["train", *args], catch_exceptions=False)


def both_engines(tmp_path, *args):
    out = []
    for engine in ("local", "spark"):
        res = run_cli(*args, "--models", str(tmp_path / engine), "--engine", engine)
        out.append((res.exit_code, [line for line in res.stderr.splitlines()
                                    if line.startswith("error:")]))
    return out


def test_missing_column_unreadable_and_empty_input_as_the_local_engine(spark, tmp_path):
    missing = tmp_path / "missing.csv"
    missing.write_text("customer_id,order_id,quantity\nc1,o1,1\n")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    rejected = tmp_path / "rejected.csv"
    rejected.write_text("customer_id,order_id,item_id,quantity\nc1,o1,a,-1\nc1,,b,1\n")
    garbage = tmp_path / "orders.xlsx"
    garbage.write_text("x")
    for path in (missing, tmp_path / "nope.csv", empty, rejected, garbage):
        (local_code, local_err), (spark_code, spark_err) = both_engines(
            tmp_path, "--orders", str(path))
        assert local_code == spark_code == 2, (path, local_err, spark_err)
        assert spark_err == local_err and len(spark_err) == 1, (path, spark_err)


def test_strict_rejects_as_the_local_engine(spark, planted, tmp_path):
    text = open(planted[0]).read().splitlines()
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(text + ["C1,O999999,,1,2.0,2025-02-01T00:00:00",
                                     "C1,O999999,A1,zero,2.0,2025-02-01T00:00:00",
                                     # The right shape, no such day: unparsable, not a crash.
                                     "C1,O999999,A2,1,2.0,2025-02-30T00:00:00"]) + "\n")
    (local_code, local_err), (spark_code, spark_err) = both_engines(
        tmp_path, "--orders", str(bad), "--strict")
    assert local_code == spark_code == 2
    assert spark_err == local_err
    assert "missing_item_id=1" in spark_err[0] and "unparsable_quantity=1" in spark_err[0]
    assert "unparsable_timestamp=1" in spark_err[0]


def test_spark_failure_is_one_line_and_publishes_nothing(spark, planted, tmp_path,
                                                         monkeypatch):
    from training.spark import models

    models_dir = str(tmp_path / "models")
    first = run_cli("--orders", planted[0], "--models", models_dir, "--config",
                    _config_file(tmp_path))
    assert first.exit_code == 0, first.output
    before = current_version(models_dir)

    def broken(spark_session, *args, **kwargs):
        # A real Spark job failure, as a lost executor or a bad cast raises it.
        spark_session.range(1).selectExpr("raise_error('executor lost')").collect()

    monkeypatch.setattr(models, "copurchase", broken)
    res = run_cli("--orders", planted[0], "--models", models_dir, "--engine", "spark",
                  "--config", _config_file(tmp_path))
    assert res.exit_code == 1
    errors = [line for line in res.stderr.splitlines() if line.strip()]
    assert errors[-1].startswith("error: Spark failed while training:"), errors
    assert "executor lost" in errors[-1] and "Traceback" not in res.stderr
    assert current_version(models_dir) == before
    assert len(list_versions(models_dir)) == 1


def test_nightly_with_the_spark_engine(spark, planted, tmp_path):
    res = CliRunner().invoke(main, ["nightly", "--orders", planted[0], "--models",
                                    str(tmp_path / "m"), "--engine", "spark", "--config",
                                    _config_file(tmp_path)], catch_exceptions=False)
    record = json.loads(res.stdout.strip().splitlines()[-1])
    assert res.exit_code == 0, res.output
    assert record["status"] == "published" and record["engine"] == "spark"


def test_gate_compares_with_the_current_version_on_fresh_orders(spark, planted, tmp_path):
    """As the local gate (tests/training/test_gate_current.py): the holdout orders newer
    than the current version's data, drawn in Spark, scored for both versions."""
    import csv

    from recsys.artifacts import read_manifest

    path = planted[0]
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    ts = rows[0].index("timestamp")
    days = sorted({r[ts][:10] for r in rows[1:]})
    early = tmp_path / "early.csv"
    with open(early, "w", newline="") as out:
        csv.writer(out).writerows([rows[0]] + [r for r in rows[1:]
                                               if r[ts][:10] <= days[int(len(days) * 0.9)]])
    models_dir = str(tmp_path / "models")
    first = train(str(early), models_dir, small_config())
    assert first["published"]
    strict = load_config(None, {**SMALL, "gate": {"max_drop_vs_current": -0.5}})
    engine = SparkEngine(strict)
    try:
        refused = train(path, models_dir, strict, engine=engine)
    finally:
        engine.close()
    gate = refused["gate"]
    assert gate["compared_on"].startswith("new holdout orders"), gate
    assert gate["same_queries"] >= 30 and 0 < gate["current_value"] <= 1
    assert gate["current_value"] != first["metrics"][gate["protocol"]][gate["metric"]]
    assert not refused["published"] and current_version(models_dir) == first["version"]
    assert read_manifest(models_dir, first["version"])["data"]["time_range"][1] < \
        read_manifest(models_dir, refused["version"])["data"]["time_range"][1]


@pytest.mark.parametrize("recent_truth", [True, False])
def test_recency_half_lives_as_the_local_engine(spark, tmp_path, recent_truth):
    """train.recency_half_lives is no longer refused. On tests/training's drift data the
    next purchase follows the latest order (planted) or not: the Spark engine adopts the
    30-day half-life exactly where the local engine does, and ships its factors."""
    from recsys.artifacts import read_manifest
    from tests.training.test_selection import write_drift

    path = write_drift(tmp_path / "o.csv", recent_truth)
    cfg = {"als": {"factors": 8, "iterations": 4},
           "train": {"recency_half_lives": [0, 30, 365]}}
    chosen = []
    for engine in (None, SparkEngine(load_config(None, cfg))):
        models_dir = str(tmp_path / ("spark" if engine else "local"))
        try:
            out = train(path, models_dir, load_config(None, cfg), engine=engine)
        finally:
            if engine:
                engine.close()
        half_life = read_manifest(models_dir, out["version"])["parameters"]["recency"][
            "half_life_days"]
        loaded = Recommender.load(load_version(models_dir, out["version"]))
        assert (loaded.history_decay is not None) == (half_life is not None)
        chosen.append(half_life)
    assert chosen == ([30.0, 30.0] if recent_truth else [None, None])


def test_spark_master_needs_the_spark_engine(planted, tmp_path):
    res = run_cli("--orders", planted[0], "--models", str(tmp_path / "m"),
                  "--spark-master", "local[1]")
    assert res.exit_code == 2 and "--spark-master needs --engine spark" in res.stderr


def _config_file(tmp_path) -> str:
    path = tmp_path / "small.json"
    path.write_text(json.dumps(SMALL))
    return str(path)


def _children(pid: int) -> list[int]:
    """Python workers whose parent is ``pid`` (Linux /proc). Other children are left out:
    the JVM also runs short shell commands (Hadoop's local file system does), which are
    not Python workers."""
    import os

    out = []
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/stat") as fh:
                if int(fh.read().rsplit(")", 1)[1].split()[1]) != pid:
                    continue
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                if b"pyspark" in fh.read():
                    out.append(int(name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def test_executors_run_no_python(spark, trained):
    """Everything the engine hands to Spark travels as Arrow or Spark SQL: after the
    trainings above (same session) the JVM has started no Python worker, which Python
    rows (``createDataFrame`` of tuples) or a Python UDF would have."""
    jvm = spark.sparkContext._gateway.proc.pid
    assert _children(jvm) == []
    # The check can fail: Python rows start one.
    spark.createDataFrame([(1,)], "i int").count()
    assert _children(jvm) != []
