"""``xsell nightly`` end to end: sources, lock, gate, crash safety, disk full, prune, rollback."""

import csv
import errno
import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from recsys import artifacts
from recsys.artifacts import current_version, load_version, verify_version
from recsys.recommender import Recommender
from tests.dbload import drop_postgres, load_postgres, load_sqlite, pg_url_or_skip, unique_table
from training import nightly
from training.config import load_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Small, fast models; a 2% margin over popularity: the planted data clears it
# (about +4% nDCG), the same data with item ids shuffled across lines does not.
CONFIG_TOML = """
[als]
factors = 8
iterations = 5

[gate]
min_lift_over_popularity = 0.02
"""


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "nightly.toml"
    path.write_text(CONFIG_TOML)
    return str(path)


@pytest.fixture(scope="module")
def shuffled(planted, tmp_path_factory):
    """The planted orders with item ids shuffled across lines: same popularity, no pairs."""
    csv_path, _ = planted
    with open(csv_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    items = [r[2] for r in rows[1:]]
    np.random.default_rng(1).shuffle(items)
    out = tmp_path_factory.mktemp("degraded") / "shuffled.csv"
    with open(out, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(rows[0])
        writer.writerows(r[:2] + [item] + r[3:] for r, item in zip(rows[1:], items, strict=True))
    return str(out)


def nightly_cmd(orders, models, config_file, *extra):
    return [sys.executable, "-m", "tests.training.paused_cli", "nightly", "--orders", str(orders),
            "--models", str(models), "--config", config_file, *extra]


def env_with(**extra):
    env = dict(os.environ, PYTHONPATH=REPO, OPENBLAS_NUM_THREADS="1")
    env.pop("XSELL_TEST_PAUSE_AT", None)
    env.update(extra)
    return env


def run(orders, models, config_file, *extra, env=None):
    proc = subprocess.run(nightly_cmd(orders, models, config_file, *extra), cwd=REPO,
                          capture_output=True, text=True, env=env or env_with(), timeout=300)
    lines = proc.stdout.strip().splitlines()
    record = json.loads(lines[-1]) if lines else None
    return proc.returncode, record, proc.stderr


def assert_planted_answer(models_dir, truth):
    rec = Recommender.load(load_version(str(models_dir)))
    for a, b in list(truth["pairs"].items())[:4]:
        answer = rec.also_bought(rec.items.index(a), limit=3)
        assert rec.items.ids[answer.items[0].item_idx] == b


def run_records(models_dir):
    out = []
    for path in sorted(glob.glob(os.path.join(models_dir, "runs", "*.json"))):
        with open(path, encoding="utf-8") as fh:
            out.append(json.load(fh))
    return out


# ---------------------------------------------------------------- sources


def test_nightly_from_csv_publishes_and_writes_a_run_record(planted, config_file, tmp_path):
    csv_path, truth = planted
    code, record, err = run(csv_path, tmp_path / "m", config_file)
    assert code == nightly.EXIT_PUBLISHED, err
    assert "data report for" in err and "published version" in err
    assert record["status"] == "published" and record["published"] is True
    assert current_version(str(tmp_path / "m")) == record["version"] == record["current_version"]
    assert record["data_report"]["orders"]["rows_read"] == truth["n_rows"]
    assert record["gate"]["passed"] is True and "vs popularity" in record["gate"]["reason"]
    assert set(record["metrics"]) >= {"next_best", "basket", "also_bought"}
    assert {"read", "fit_holdout", "write"} <= set(record["timings_s"])
    assert record["started_at"] <= record["ended_at"]
    [stored] = run_records(str(tmp_path / "m"))
    assert record.pop("record_path").endswith(f"/runs/{record['run_id']}.json")
    assert stored == record
    assert_planted_answer(tmp_path / "m", truth)


def test_nightly_from_sqlite(planted, config_file, tmp_path):
    csv_path, truth = planted
    db = tmp_path / "shop.db"
    load_sqlite(csv_path, str(db))
    code, record, err = run(f"sqlite:///{db}", tmp_path / "m", config_file,
                            "--orders-query", "SELECT * FROM orders")
    assert code == 0, err
    assert record["orders"] == f"sqlite:///{db}"
    assert record["data_report"]["orders"]["rows_used"] == truth["n_rows"]
    assert_planted_answer(tmp_path / "m", truth)


def test_nightly_from_postgres_never_logs_the_password(planted, config_file, tmp_path):
    url = pg_url_or_skip()
    csv_path, truth = planted
    table = unique_table("nightly_orders")
    load_postgres(url, csv_path, table, timestamp_type="timestamp")
    try:
        code, record, err = run(url, tmp_path / "m", config_file, "--orders-query", table,
                                "--columns", "timestamp=ts")
    finally:
        drop_postgres(url, table)
    assert code == 0, err
    assert record["data_report"]["orders"]["rows_used"] == truth["n_rows"]
    assert record["timings_s"]["read"] > 0
    assert_planted_answer(tmp_path / "m", truth)
    password = url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    everything = err + json.dumps(record) + "".join(
        open(p, encoding="utf-8").read() for p in glob.glob(str(tmp_path / "m" / "**" / "*.json"),
                                                             recursive=True))
    assert password not in everything and ":***@" in record["orders"]


def test_a_database_url_without_a_query_is_bad_input(tmp_path, config_file):
    code, record, err = run("postgresql://shop@db.invalid/shop", tmp_path / "m", config_file)
    assert code == nightly.EXIT_BAD_INPUT and record is None
    assert "--orders-query" in err and "Traceback" not in err
    assert not (tmp_path / "m").exists()


def test_unreadable_source_is_bad_input_with_a_record(tmp_path, config_file):
    code, record, err = run(tmp_path / "missing.csv", tmp_path / "m", config_file)
    assert code == nightly.EXIT_BAD_INPUT
    assert record["status"] == "bad_input" and "no such file" in record["message"]
    assert "Traceback" not in err


# ---------------------------------------------------------------- gate


def test_degraded_data_trains_but_is_not_published(planted, shuffled, config_file, tmp_path):
    models = tmp_path / "m"
    code, good, err = run(planted[0], models, config_file)
    assert code == 0, err
    code, bad, err = run(shuffled, models, config_file)
    assert code == nightly.EXIT_NOT_PUBLISHED == 3, err
    assert bad["status"] == "not_published" and bad["published"] is False
    assert "NOT published by the gate" in bad["message"]
    assert bad["gate"]["passed"] is False and "vs popularity" in bad["gate"]["reason"]
    # Shuffled ids carry no signal: whatever blend the holdout picks (personalised unless
    # best-sellers are clearly better, training/selection.py) is far below the good data's.
    assert bad["gate"]["value"] < 0.8 * good["gate"]["value"]
    assert current_version(str(models)) == good["version"]
    verify_version(str(models), bad["version"])  # kept for inspection, complete, not current
    assert run_records(str(models))[-1]["exit_code"] == 3


# ---------------------------------------------------------------- lock


def test_two_concurrent_runs_exactly_one_publishes(planted, config_file, tmp_path):
    models = tmp_path / "m"
    marker = tmp_path / "paused"
    first = subprocess.Popen(
        nightly_cmd(planted[0], models, config_file), cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        env=env_with(XSELL_TEST_PAUSE_AT="fit", XSELL_TEST_PAUSE_MARKER=str(marker),
                     XSELL_TEST_PAUSE_S="4"))
    try:
        wait_for(marker, first)
        started = time.monotonic()
        code, second, err = run(planted[0], models, config_file)
        assert time.monotonic() - started < 30  # exits at once, does not wait for the lock
        assert code == nightly.EXIT_LOCKED == 4
        assert second["status"] == "locked" and "another nightly run holds" in second["message"]
        assert f"pid {first.pid}" in second["message"]
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, err
    records = run_records(str(models))
    assert sorted(r["exit_code"] for r in records) == [0, 4]
    assert len(os.listdir(models / "versions")) == 1


def test_lock_held_in_process_returns_the_lock_code(planted, config_file, tmp_path):
    models = str(tmp_path / "m")
    os.makedirs(models)
    lock = nightly.ModelsLock(models)
    lock.acquire()
    try:
        record = nightly.run_nightly(planted[0], models, load_config(config_file))
    finally:
        lock.release()
    assert record["exit_code"] == nightly.EXIT_LOCKED
    assert not os.path.exists(os.path.join(models, "versions"))
    record = nightly.run_nightly(planted[0], models, load_config(config_file))
    assert record["exit_code"] == nightly.EXIT_PUBLISHED


# ---------------------------------------------------------------- crash safety


def wait_for(marker, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"run ended before pausing: {proc.communicate()}")
        if time.monotonic() > deadline:
            raise AssertionError("run never reached the pause point")
        time.sleep(0.05)


@pytest.mark.parametrize("stage", ["read", "fit", "write", "publish"])
def test_kill_9_leaves_the_current_version_serving(planted, config_file, tmp_path, stage):
    models = tmp_path / "m"
    code, first, err = run(planted[0], models, config_file)
    assert code == 0, err
    before = verify_version(str(models), first["version"])

    marker = tmp_path / "paused"
    proc = subprocess.Popen(
        nightly_cmd(planted[0], models, config_file), cwd=REPO, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env_with(XSELL_TEST_PAUSE_AT=stage, XSELL_TEST_PAUSE_MARKER=str(marker)))
    try:
        wait_for(marker, proc)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    # The dead run changed nothing that serves: same pointer, same intact version.
    assert current_version(str(models)) == first["version"]
    assert verify_version(str(models), first["version"]) == before
    Recommender.load(load_version(str(models)))
    leftovers = glob.glob(str(models / ".tmp-*"))
    if stage == "write":
        assert leftovers, "a half-written version folder should be left by the killed writer"
    if stage == "publish":
        assert len(os.listdir(models / "versions")) == 2  # complete, never made current

    code, after, err = run(planted[0], models, config_file)
    assert code == 0, err
    assert current_version(str(models)) == after["version"] != first["version"]
    assert not glob.glob(str(models / ".tmp-*"))
    assert {os.path.basename(p) for p in leftovers} <= set(after["cleaned_temporary"])
    statuses = [r["status"] for r in run_records(str(models))]
    assert statuses == ["published", "died", "published"]


def test_disk_full_while_writing_is_a_clean_failure(planted, config_file, tmp_path, monkeypatch):
    models = str(tmp_path / "m")
    config = load_config(config_file)
    first = nightly.run_nightly(planted[0], models, config)
    assert first["exit_code"] == 0

    real_save = np.save
    calls = {"n": 0}

    def save_until_full(path, array, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_save(path, array, *args, **kwargs)

    monkeypatch.setattr(artifacts.np, "save", save_until_full)
    record = nightly.run_nightly(planted[0], models, config)
    monkeypatch.undo()

    assert calls["n"] == 4
    assert record["exit_code"] == nightly.EXIT_FAILURE and record["status"] == "failed"
    assert "disk full" in record["message"] and "current version is unchanged" in record["message"]
    assert current_version(models) == first["version"]
    assert [v["version"] for v in artifacts.list_versions(models)] == [first["version"]]
    assert not glob.glob(os.path.join(models, ".tmp-*"))
    verify_version(models, first["version"])
    assert run_records(models)[-1]["exit_code"] == 1


# ---------------------------------------------------------------- prune and rollback


def test_prune_keeps_n_and_never_the_current(planted, shuffled, config_file, tmp_path):
    models = tmp_path / "m"
    code, good, _ = run(planted[0], models, config_file, "--keep", "1")
    assert code == 0
    names = []
    for _ in range(2):
        code, bad, _ = run(shuffled, models, config_file, "--keep", "1")
        assert code == 3
        names.append(bad["version"])
    # keep 1 = the newest (unpublished) one, plus the current one, never pruned.
    assert sorted(os.listdir(models / "versions")) == sorted([good["version"], names[-1]])
    assert bad["pruned"] == [names[0]]
    assert current_version(str(models)) == good["version"]


def test_promote_rolls_back_to_an_older_version(planted, config_file, tmp_path):
    models = tmp_path / "m"
    _, v1, _ = run(planted[0], models, config_file)
    _, v2, _ = run(planted[0], models, config_file)
    assert current_version(str(models)) == v2["version"] != v1["version"]
    cli = [sys.executable, "-m", "training.cli", "models"]
    proc = subprocess.run(cli + ["promote", v1["version"], "--models", str(models)], cwd=REPO,
                          capture_output=True, text=True, env=env_with())
    assert proc.returncode == 0, proc.stderr
    assert current_version(str(models)) == v1["version"]
    assert load_version(str(models)).version == v1["version"]

    # A corrupt version cannot be promoted, and the pointer stays where it was.
    victim = glob.glob(str(models / "versions" / v2["version"] / "*.npy"))[0]
    with open(victim, "ab") as fh:
        fh.write(b"junk")
    proc = subprocess.run(cli + ["promote", v2["version"], "--models", str(models)], cwd=REPO,
                          capture_output=True, text=True, env=env_with())
    assert proc.returncode == 1 and "checksum mismatch" in proc.stderr
    assert current_version(str(models)) == v1["version"]


def test_a_running_service_picks_up_a_promoted_version(planted, config_file, tmp_path):
    try:
        from service.app import create_app
    except ImportError:
        pytest.skip("the API service (branch 'service') is not merged here yet; rollback is "
                    "checked at the artifacts level by test_promote_rolls_back_to_an_older_version")
    models = tmp_path / "m"
    _, v1, _ = run(planted[0], models, config_file)
    _, v2, _ = run(planted[0], models, config_file)
    app = create_app({"MODELS_DIR": str(models), "RELOAD_INTERVAL": 0.2, "ACCESS_LOG": False,
                      "ALLOW_OPEN": True})
    client = app.test_client()
    try:
        assert client.get("/v1/model").get_json()["model_version"] == v2["version"]
        proc = subprocess.run([sys.executable, "-m", "training.cli", "models", "promote",
                               v1["version"], "--models", str(models)], cwd=REPO,
                              capture_output=True, text=True, env=env_with())
        assert proc.returncode == 0, proc.stderr
        deadline = time.monotonic() + 20
        while client.get("/v1/model").get_json()["model_version"] != v1["version"]:
            assert time.monotonic() < deadline, "the service never switched to the promoted version"
            time.sleep(0.1)
        answer = client.get("/v1/items/A0/also-bought?limit=3").get_json()
        assert answer["model_version"] == v1["version"]
        assert answer["recommendations"][0]["item_id"] == "B0"
    finally:
        app.extensions["xsell"].store.stop()


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 8 MiB tmpfs (needs root or CAP_SYS_ADMIN; skipped otherwise)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or 'not permitted'}); "
                    f"the disk-full case is still covered by the simulated ENOSPC test")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def folder_bytes(path) -> int:
    return sum(os.path.getsize(os.path.join(root, f))
               for root, _, files in os.walk(path) for f in files)


def test_a_really_full_disk_is_a_clean_failure(planted, config_file, tiny_disk):
    models = tiny_disk / "m"
    code, first, err = run(planted[0], models, config_file)
    assert code == 0, err
    size = folder_bytes(models / "versions" / first["version"])
    st = os.statvfs(tiny_disk)
    free = st.f_bavail * st.f_frsize
    assert free > size, "the tmpfs is too small for this test"
    with open(tiny_disk / "filler", "wb") as fh:  # leave room for about half a version
        fh.write(b"\0" * (free - size // 2))

    code, record, err = run(planted[0], models, config_file)
    assert code == nightly.EXIT_FAILURE, err
    assert "disk full" in record["message"] and "Traceback" not in err
    assert current_version(str(models)) == first["version"]
    verify_version(str(models), first["version"])
    assert os.listdir(models / "versions") == [first["version"]]
    assert not glob.glob(str(models / ".tmp-*"))

    os.remove(tiny_disk / "filler")
    code, after, err = run(planted[0], models, config_file)
    assert code == 0, err
    assert current_version(str(models)) == after["version"]
