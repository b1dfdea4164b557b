"""The model store: new versions swap in, broken ones never replace a working model."""

from __future__ import annotations

import os
import shutil
import signal
import time

from service.store import ModelStore
from support.versions import point_at, publish_copy
from tests.service.conftest import make_app


def test_new_version_swaps_in_on_check(models_copy):
    models, version, _ = models_copy
    app = make_app(models)
    client = app.test_client()
    store = app.extensions["xsell"].store
    assert client.get("/v1/items/A0/also-bought").get_json()["model_version"] == version
    assert store.check() is False  # nothing new
    publish_copy(models, version, "20990101T000000Z-beef")
    assert store.check() is True
    body = client.get("/v1/items/A0/also-bought").get_json()
    assert body["model_version"] == "20990101T000000Z-beef"
    assert body["recommendations"][0]["item_id"] == "B0"
    assert client.get("/v1/model").get_json()["store"]["reloads"] == 2


def test_corrupt_version_keeps_old_model_and_reports(models_copy, caplog):
    models, version, _ = models_copy
    app = make_app(models)
    client = app.test_client()
    store = app.extensions["xsell"].store
    publish_copy(models, version, "20990101T000000Z-dead", corrupt="truncate")
    assert store.check() is False
    r = client.get("/v1/items/A0/also-bought")
    assert r.status_code == 200 and r.get_json()["model_version"] == version
    status = client.get("/v1/model").get_json()["store"]
    assert status["last_error"]["version"] == "20990101T000000Z-dead"
    assert "checksum" in status["last_error"]["message"]
    assert status["reload_failures"] == 1
    assert client.get("/readyz").get_json()["last_error"]["version"] == "20990101T000000Z-dead"
    # Not retried on every poll, only when the pointer moves again (or forced).
    assert store.check() is False and store.reload_failures == 1
    # Rolling the pointer back to the good version clears the error.
    point_at(models, version)
    store.check()
    assert store.last_error is None
    assert any("cannot be served" in rec.getMessage() for rec in caplog.records)


def test_version_without_manifest_or_missing_folder(models_copy):
    models, version, _ = models_copy
    app = make_app(models)
    store = app.extensions["xsell"].store
    point_at(models, "20990101T000000Z-gone")
    assert store.check() is False
    assert "manifest" in store.last_error["message"]
    assert app.test_client().get("/v1/items/A0/also-bought").status_code == 200


def test_models_folder_deleted_keeps_serving_from_memory(models_copy):
    models, version, _ = models_copy
    app = make_app(models)
    client = app.test_client()
    store = app.extensions["xsell"].store
    shutil.rmtree(models)
    assert store.check() is False
    r = client.get("/v1/items/A3/also-bought")
    assert r.status_code == 200 and r.get_json()["recommendations"][0]["item_id"] == "B3"
    r = client.post("/v1/recommendations/next-best", json={"history": ["A1"]})
    assert r.status_code == 200
    assert client.get("/readyz").status_code == 200
    assert "CURRENT" in client.get("/v1/model").get_json()["store"]["pointer_error"]


def test_model_published_after_start_is_picked_up(planted_models, tmp_path):
    source, version, _ = planted_models
    models = str(tmp_path / "models")
    os.makedirs(models)
    app = make_app(models)
    client = app.test_client()
    assert client.get("/readyz").status_code == 503
    shutil.copytree(os.path.join(source, "versions"), os.path.join(models, "versions"))
    point_at(models, version)
    app.extensions["xsell"].store.check()
    assert client.get("/readyz").status_code == 200


def test_watcher_thread_polls_and_sighup_forces_a_check(models_copy):
    models, version, _ = models_copy
    store = ModelStore(models, interval=0.2)
    store.check()
    store.ensure_watcher()
    try:
        publish_copy(models, version, "20990101T000000Z-0001")
        deadline = time.time() + 10
        while store.model.version != "20990101T000000Z-0001" and time.time() < deadline:
            time.sleep(0.05)
        assert store.model.version == "20990101T000000Z-0001"
        # SIGHUP: a long interval, but the signal wakes the watcher at once.
        store.interval = 3600
        store.request_check()  # wake it so it picks up the long interval
        time.sleep(0.2)
        assert store.install_sighup()
        publish_copy(models, version, "20990101T000000Z-0002")
        start = time.time()
        os.kill(os.getpid(), signal.SIGHUP)
        while store.model.version != "20990101T000000Z-0002" and time.time() - start < 10:
            time.sleep(0.02)
        assert store.model.version == "20990101T000000Z-0002"
        assert time.time() - start < 5
    finally:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        store.stop()
