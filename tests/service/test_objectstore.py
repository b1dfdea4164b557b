"""``--models s3://bucket/prefix``: publish, serve, swap, refuse half-written or corrupt
versions, roll back, list, prune and nightly, against moto's S3 server on a free port."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid

import numpy as np
import pytest

from recsys.artifacts import MANIFEST, VERSIONS, current_version
from recsys.objectstore import S3Models
from support.http import free_port

from .conftest import make_app

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def s3_endpoint():
    """moto's S3 server in this process, on a free loopback port (subprocesses reach it)."""
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint, monkeypatch, tmp_path):
    """A fresh bucket; the AWS_* environment pointing at the test server; a private cache."""
    env = {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "XSELL_MODEL_CACHE": str(tmp_path / "cache")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    bucket = f"xsell-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/shop/models", env


def publish(url: str, folder: str, version: str) -> None:
    """What the trainer does for s3://: upload the version (files, manifest last), then
    move CURRENT."""
    store = S3Models(url, cache_root=os.path.join(folder, "..", "publisher-cache"))
    store.upload_version(folder, version)
    store._put(store.key("CURRENT"), (version + "\n").encode())


def copy_version(models: str, source: str, new: str) -> None:
    src, dst = (os.path.join(models, VERSIONS, v) for v in (source, new))
    shutil.copytree(src, dst)
    path = os.path.join(dst, MANIFEST)
    with open(path, encoding="utf-8") as fh:
        manifest = json.load(fh)
    manifest["version"] = new
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh)


def test_serve_swap_refuse_and_roll_back(models_copy, s3, tmp_path):
    url, _ = s3
    models, version, truth = models_copy
    publish(url, models, version)
    app = make_app(url)
    store = app.extensions["xsell"].store
    client = app.test_client()
    assert store.model is not None and store.model.version == version
    # The arrays are memory-mapped from the replica's local cache.
    factors = store.model.recommender.als.item_factors_
    assert isinstance(factors, np.memmap) or isinstance(getattr(factors, "base", None),
                                                        np.memmap)
    assert str(tmp_path / "cache") in store.source.cache
    a, b = next(iter(truth["pairs"].items()))
    body = client.get(f"/v1/items/{a}/also-bought?limit=3").get_json()
    assert body["model_version"] == version
    assert body["recommendations"][0]["item_id"] == b

    # A new version: picked up on the next check.
    new = version[:-4] + "beef"
    copy_version(models, version, new)
    publish(url, models, new)
    assert store.check() is True
    assert client.get(f"/v1/items/{a}/also-bought").get_json()["model_version"] == new

    # Half-written: files uploaded, no manifest yet, yet CURRENT points at it.
    half = version[:-4] + "ha1f"
    copy_version(models, version, half)
    s3store = S3Models(url)
    for name in os.listdir(os.path.join(models, VERSIONS, half)):
        if name != MANIFEST:
            s3store._upload(os.path.join(models, VERSIONS, half, name),
                            s3store.key(VERSIONS, half, name))
    s3store._put(s3store.key("CURRENT"), (half + "\n").encode())
    assert store.check() is False
    assert store.model.version == new
    assert "no manifest.json" in store.last_error["message"]
    assert client.get(f"/v1/items/{a}/also-bought").status_code == 200

    # Corrupt: an object whose bytes do not match the manifest's sha256.
    bad = version[:-4] + "bad0"
    copy_version(models, version, bad)
    path = os.path.join(models, VERSIONS, bad, "copurchase_similarity.data.npy")
    with open(path, "r+b") as fh:
        fh.truncate(os.path.getsize(path) // 2)
    publish(url, models, bad)
    assert store.check() is False
    assert store.model.version == new
    assert "checksum mismatch" in store.last_error["message"]
    assert not os.path.exists(os.path.join(store.source.cache, VERSIONS, bad))

    # Roll back with 'xsell models promote' on the s3:// URL.
    out = subprocess.run([sys.executable, "-m", "training.cli", "models", "promote", version,
                          "--models", url], cwd=REPO, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=REPO), timeout=120)
    assert out.returncode == 0, out.stderr
    assert S3Models(url).current() == version
    assert store.check() is True and store.model.version == version
    # Promoting a version whose objects are corrupt is refused; the pointer stays.
    out = subprocess.run([sys.executable, "-m", "training.cli", "models", "promote", bad,
                          "--models", url], cwd=REPO, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=REPO), timeout=120)
    assert out.returncode != 0 and "checksum mismatch" in out.stderr
    assert "Traceback" not in out.stderr
    assert S3Models(url).current() == version


def test_list_and_prune_on_s3(models_copy, s3):
    url, _ = s3
    models, version, _ = models_copy
    names = [version] + [version[:-4] + f"{n:04x}" for n in range(1, 4)]
    for name in names[1:]:
        copy_version(models, version, name)
    for name in names:
        publish(url, models, name)
    S3Models(url).set_current(names[1])
    cli = [sys.executable, "-m", "training.cli", "models"]
    env = dict(os.environ, PYTHONPATH=REPO)
    listed = subprocess.run([*cli, "list", "--json", "--models", url], cwd=REPO,
                            capture_output=True, text=True, env=env, timeout=120)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert {r["version"] for r in rows} == set(names)
    assert [r["version"] for r in rows if r["current"]] == [names[1]]
    pruned = subprocess.run([*cli, "prune", "--keep", "1", "--models", url], cwd=REPO,
                            capture_output=True, text=True, env=env, timeout=120)
    assert pruned.returncode == 0, pruned.stderr
    left = S3Models(url).version_names()
    newest = max(rows, key=lambda r: (r["created_at"], r["version"]))["version"]
    assert set(left) == {names[1], newest}
    objects = boto3.client("s3").list_objects_v2(Bucket=url.split("/")[2])["Contents"]
    assert all(o["Key"].split("/")[3] in left for o in objects if "/versions/" in o["Key"])


def test_train_and_nightly_publish_to_s3(planted, s3, tmp_path):
    url, env = s3
    orders, truth = planted
    config = tmp_path / "cfg.toml"
    config.write_text("[als]\nfactors = 8\niterations = 5\n\n[gate]\n"
                      "min_lift_over_popularity = 0.0\n")
    run_env = dict(os.environ, PYTHONPATH=REPO, OPENBLAS_NUM_THREADS="1")
    first = subprocess.run([sys.executable, "-m", "training.cli", "train", "--orders", orders,
                            "--models", url, "--config", str(config)], cwd=REPO,
                           capture_output=True, text=True, env=run_env, timeout=600)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    store = S3Models(url)
    assert summary["published"] and store.current() == summary["version"]
    assert store.manifest(summary["version"])["files"]
    night = subprocess.run([sys.executable, "-m", "training.cli", "nightly", "--orders", orders,
                            "--models", url, "--config", str(config), "--keep", "1"],
                           cwd=REPO, capture_output=True, text=True, env=run_env, timeout=600)
    assert night.returncode == 0, night.stderr
    record = json.loads(night.stdout.strip().splitlines()[-1])
    assert record["status"] == "published" and record["models"] == url
    assert store.current() == record["version"] != summary["version"]
    assert record["previous_version"] == summary["version"]
    # Pruned in the store to the newest version (the current one).
    assert store.version_names() == [record["version"]]
    runs = boto3.client("s3").list_objects_v2(Bucket=store.bucket, Prefix=store.key("runs"))
    assert any(record["run_id"] in o["Key"] for o in runs.get("Contents", []))
    # A replica serving the store answers from the new version with the planted answer.
    app = make_app(url)
    a, b = next(iter(truth["pairs"].items()))
    body = app.test_client().get(f"/v1/items/{a}/also-bought?limit=3").get_json()
    assert body["model_version"] == record["version"]
    assert body["recommendations"][0]["item_id"] == b
    # The publisher's mirror holds the version too (downloaded or written, then verified).
    assert current_version(store.cache) == record["version"]


def test_unreachable_store_is_a_clean_error(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-never-logged")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("XSELL_MODEL_CACHE", str(tmp_path / "cache"))
    app = make_app("s3://nowhere/models")
    store = app.extensions["xsell"].store
    assert store.model is None and "cannot read" in store.pointer_error
    assert "secret-never-logged" not in store.pointer_error
    response = app.test_client().get("/v1/items/x/also-bought")
    assert response.status_code == 503
    out = subprocess.run([sys.executable, "-m", "training.cli", "models", "list", "--models",
                          "s3://nowhere/models"], cwd=REPO, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=REPO), timeout=120)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "secret-never-logged" not in out.stderr + out.stdout
