"""Item 1: a CURRENT pointer that cannot be used is a reload failure, never a crash."""

from __future__ import annotations

import logging
import os
import signal
import time

import pytest

from support.http import Server, request
from tests.reliability.conftest import make_app, no_traceback, run_xsell

BAD_POINTERS = {"non_utf8": b"\xff\xfe\x80garbage\n", "empty": b"", "path": b"../../etc\n"}


def _write_pointer(models: str, raw: bytes) -> None:
    with open(os.path.join(models, "CURRENT"), "wb") as fh:
        fh.write(raw)


@pytest.mark.parametrize("kind", sorted(BAD_POINTERS))
def test_bad_pointer_is_one_logged_failure_and_the_model_stays(models_copy, kind):
    models, version, _ = models_copy
    app = make_app(models)
    client = app.test_client()
    store = app.extensions["xsell"].store
    _write_pointer(models, BAD_POINTERS[kind])
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = records.append
    logger = logging.getLogger("service.store")
    logger.addHandler(handler)
    try:
        for _ in range(3):  # three polls
            assert store.check() is False
    finally:
        logger.removeHandler(handler)
    errors = records
    assert len(errors) == 1, [r.getMessage() for r in errors]  # logged once, no traceback
    assert errors[0].exc_info is None
    assert store.reload_failures == 1
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["model_version"] == version
    body = ready.get_json()
    assert "CURRENT" in body["pointer_error"] and "CURRENT" in body["last_error"]["message"]
    assert models not in ready.get_data(as_text=True)  # no server path for anonymous clients
    facts = client.get("/v1/model").get_json()
    assert facts["store"]["last_error"]["message"] == body["last_error"]["message"]
    assert client.get("/v1/items/A3/also-bought").status_code == 200
    # Repaired: the error goes away.
    _write_pointer(models, (version + "\n").encode())
    store.check()
    assert "pointer_error" not in client.get("/readyz").get_json()


def test_empty_pointer_is_named_as_such(models_copy):
    models, _, _ = models_copy
    _write_pointer(models, b"  \n")
    app = make_app(models)
    assert app.extensions["xsell"].store.model is None
    error = app.test_client().get("/readyz").get_json()["error"]["message"]
    assert "empty" in error and "no CURRENT pointer" not in error


@pytest.mark.parametrize("args", [
    ("models", "list"), ("models", "prune", "--keep", "1"),
    ("export", "--kind", "also-bought", "--out", "{tmp}/out.jsonl"),
])
def test_commands_on_a_bad_pointer_give_one_line(models_copy, tmp_path, args):
    models, _, _ = models_copy
    _write_pointer(models, BAD_POINTERS["non_utf8"])
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, out, err = run_xsell(*args, "--models", models)
    assert no_traceback(out + err), err
    if args[:2] == ["models", "list"]:
        assert code == 0 and "published" in out  # the versions are still listed
    else:
        assert code == 1 and "CURRENT" in err and len(err.strip().splitlines()) == 1, err


def test_train_and_nightly_on_a_bad_pointer(models_copy, tmp_path):
    models, _, _ = models_copy
    _write_pointer(models, BAD_POINTERS["non_utf8"])
    orders = tmp_path / "orders.csv"
    orders.write_text("customer_id,order_id,item_id\n" + "".join(
        f"c{i % 7},o{i // 3},I{(i * 5) % 11}\n" for i in range(60)))
    for cmd in (("train",), ("nightly",)):
        code, out, err = run_xsell(*cmd, "--orders", str(orders), "--models", models)
        assert no_traceback(out + err), err
        assert code in (0, 1, 3, 4) or code == 2, (code, err)


def test_workers_still_boot_with_the_last_good_version(models_copy):
    """A worker restarted while CURRENT is unreadable boots with the preloaded model
    (before: the worker failed to boot and gunicorn shut the whole service down)."""
    models, version, _ = models_copy
    server = Server(models, workers=1, reload_interval=0.2)
    try:
        server.wait_ready()
        _write_pointer(models, BAD_POINTERS["non_utf8"])
        time.sleep(0.6)
        (pid,) = server.worker_pids()
        os.kill(pid, signal.SIGKILL)
        deadline = time.time() + 20
        status = None
        while time.time() < deadline:
            pids = server.worker_pids()
            if pids and pids != [pid]:
                try:
                    status, _, body = request(server.port, "GET", "/v1/items/A3/also-bought")
                except OSError:
                    status = None
                if status == 200:
                    break
            time.sleep(0.2)
        assert status == 200, server.output()
        assert server.proc.poll() is None, server.output()
        assert server.output().count("CURRENT is not UTF-8") <= 3  # once per process
    finally:
        server.stop()
