"""Items 5, 11, 12: model files that change or rot on disk, and what the tools say of them."""

from __future__ import annotations

import json
import os
import time

import numpy as np

from recsys.artifacts import VERSIONS, current_version
from support.http import Server, request
from support.versions import publish_copy
from tests.reliability.conftest import make_app, no_traceback, run_xsell


def _truncate(models: str, version: str, name: str = "copurchase_similarity.data.npy") -> None:
    path = os.path.join(models, VERSIONS, version, name)
    with open(path, "r+b") as fh:  # in place: the same inode, as `truncate -s` does
        fh.truncate(os.path.getsize(path) // 3)


# ------------------------------------------------ item 5: served files changed in place
def test_truncated_served_file_restores_the_previous_version(models_copy):
    models, first, _ = models_copy
    app = make_app(models)
    store = app.extensions["xsell"].store
    second = publish_copy(models, first, "20990101T000000Z-beef")
    assert store.check() and store.model.version == second
    _truncate(models, second)
    store.check()  # one poll
    assert store.model is not None and store.model.version == first
    client = app.test_client()
    ready = client.get("/readyz").get_json()
    assert ready["model_version"] == first and ready["last_error"]["version"] == second
    assert client.get("/v1/items/A3/also-bought").status_code == 200


def test_truncated_only_version_makes_the_service_not_ready(models_copy):
    models, first, _ = models_copy
    app = make_app(models)
    _truncate(models, first)
    app.extensions["xsell"].store.check()
    client = app.test_client()
    assert client.get("/readyz").status_code == 503
    assert client.get("/v1/items/A3/also-bought").status_code == 503  # not SIGBUS


def test_live_workers_survive_a_truncated_served_file(models_copy):
    models, first, _ = models_copy
    server = Server(models, workers=1, reload_interval=0.2)
    try:
        server.wait_ready()
        second = publish_copy(models, first, "20990101T000000Z-cafe")
        deadline = time.time() + 10
        while time.time() < deadline:
            status, _, body = request(server.port, "GET", "/readyz")
            if body.get("model_version") == second:
                break
            time.sleep(0.1)
        assert body.get("model_version") == second
        pids = server.worker_pids()
        _truncate(models, second)
        time.sleep(1.0)  # a few polls
        answers = [request(server.port, "GET", f"/v1/items/A{i % 8}/also-bought?limit={i % 9 + 1}")
                   for i in range(20)]
        assert all(status == 200 for status, _, _ in answers), server.output()
        assert server.worker_pids() == pids, server.output()  # no worker died
        status, _, body = request(server.port, "GET", "/readyz")
        assert status == 200 and body["model_version"] == first
    finally:
        server.stop()


# ------------------------------------------------------ item 11: models list / promote
def _models_json(models: str) -> dict:
    code, out, err = run_xsell("models", "list", "--json", "--models", models)
    assert code == 0 and no_traceback(err), err
    return {v["version"]: v for v in json.loads(out)}


def test_models_list_shows_corrupt_and_orphan_versions_as_such(models_copy):
    models, first, _ = models_copy
    bad_sum = publish_copy(models, first, "20990101T000001Z-0001")
    path = os.path.join(models, VERSIONS, bad_sum, "popularity_counts.npy")
    with open(path, "r+b") as fh:  # same size, other bytes: only the checksum can tell
        fh.seek(os.path.getsize(path) - 1)
        fh.write(b"\x7f")
    truncated = publish_copy(models, first, "20990101T000002Z-0002", corrupt="truncate")
    # An orphan: written completely by a run (gate passed) that died before the pointer moved.
    orphan = publish_copy(models, first, "20990101T000003Z-0003")
    from support.versions import point_at

    point_at(models, first)
    listed = _models_json(models)
    assert listed[bad_sum]["status"] == "broken" and not listed[bad_sum]["published"]
    assert listed[truncated]["status"] == "broken" and not listed[truncated]["published"]
    assert listed[orphan]["status"] == "ok" and listed[orphan]["published"] is False
    assert listed[first]["published"] is True and listed[first]["current"] is True
    code, out, _ = run_xsell("models", "list", "--models", models)
    lines = {line[2:].split()[0]: line for line in out.splitlines() if line.strip()}
    assert "broken" in lines[bad_sum] and "orphan" in lines[orphan]


def test_promote_refuses_a_version_the_service_cannot_load(models_copy):
    models, first, _ = models_copy
    # Checksums right, content wrong: a popularity array of the wrong shape.
    vdir = os.path.join(models, VERSIONS, first)
    bad = "20990101T000004Z-0004"
    import shutil

    from recsys.artifacts import _sha256

    shutil.copytree(vdir, os.path.join(models, VERSIONS, bad))
    target = os.path.join(models, VERSIONS, bad, "popularity_counts.npy")
    np.save(target, np.zeros((2, 2, 2), dtype=np.float32))
    manifest_path = os.path.join(models, VERSIONS, bad, "manifest.json")
    manifest = json.load(open(manifest_path))
    manifest["version"] = bad
    manifest["files"]["popularity_counts.npy"] = _sha256(target)
    json.dump(manifest, open(manifest_path, "w"))
    code, out, err = run_xsell("models", "promote", bad, "--models", models)
    assert code == 1 and no_traceback(err) and "cannot be served" in err, err
    assert current_version(models) == first
    code, out, err = run_xsell("models", "promote", first, "--models", models)
    assert code == 0, err


# ----------------------------------------------- item 12: /readyz, temp folders, quotes
def test_readyz_does_not_reveal_the_models_path(models_copy):
    models, first, _ = models_copy
    app = make_app(models)
    publish_copy(models, first, "20990101T000005Z-0005", corrupt="truncate")
    app.extensions["xsell"].store.check()
    text = app.test_client().get("/readyz").get_data(as_text=True)
    assert "last_error" in text and models not in text and os.path.abspath(models) not in text
    # No pointer at all (the 503 says why) and an unreadable one: still no path.
    os.remove(os.path.join(models, "CURRENT"))
    empty = make_app(models).test_client().get("/readyz")
    assert empty.status_code == 503 and "CURRENT" in empty.get_data(as_text=True)
    assert models not in empty.get_data(as_text=True)
    with open(os.path.join(models, "CURRENT"), "wb") as fh:
        fh.write(b"\xff\xfe")
    broken = make_app(models).test_client().get("/readyz").get_data(as_text=True)
    assert "CURRENT" in broken and models not in broken


def test_failed_starts_leave_no_metrics_folders(planted_models, tmp_path):
    models, _, _ = planted_models
    for env in ({"XSELL_API_KEYS": "nope:nope"}, {"XSELL_RELOAD_INTERVAL": "-1"}):
        # gunicorn run directly (what the container's or an operator's command may do)
        import subprocess
        import sys

        from tests.reliability.conftest import REPO

        full = {k: v for k, v in os.environ.items() if not k.startswith("XSELL_")}
        full.pop("PROMETHEUS_MULTIPROC_DIR", None)
        full.update(env, TMPDIR=str(tmp_path), XSELL_MODELS_DIR=models,
                    XSELL_BIND="127.0.0.1:0", PYTHONPATH=REPO)
        out = subprocess.run([sys.executable, "-m", "gunicorn", "-c",
                              "python:service.gunicorn_conf", "service.wsgi:app"],
                             capture_output=True, text=True, timeout=120, env=full, cwd=REPO)
        assert out.returncode != 0
        assert "Traceback" not in out.stderr, out.stderr[-2000:]
        assert not [p for p in os.listdir(tmp_path) if p.startswith("xsell-metrics-")]
