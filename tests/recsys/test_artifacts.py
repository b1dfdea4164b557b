"""Model versions on disk: round trip, checksums, atomic publication, lifecycle."""

import json
import os

import numpy as np
import pytest
import scipy.sparse as sp

from recsys import artifacts
from recsys.artifacts import (
    VersionWriter,
    clean_temporary,
    current_version,
    list_versions,
    load_version,
    prune_versions,
    set_current,
)
from recsys.exceptions import ModelLoadError, NoModelError


def publish(models, value, current=True):
    writer = VersionWriter(str(models))
    writer.add_array("values", np.arange(5) * value)
    writer.add_sparse("m", sp.csr_matrix(np.eye(3, dtype=np.float32) * value))
    writer.add_json("extra", {"value": value})
    return writer.commit({"metrics": {"v": value}}, make_current=current)


def test_round_trip_memory_mapped(tmp_path):
    version = publish(tmp_path, 2)
    loaded = load_version(str(tmp_path))
    assert loaded.version == version == current_version(str(tmp_path))
    values = loaded.array("values")
    assert isinstance(values, np.memmap)
    assert values.tolist() == [0, 2, 4, 6, 8]
    assert loaded.sparse("m").toarray().tolist() == (np.eye(3) * 2).tolist()
    assert loaded.json("extra") == {"value": 2}
    manifest = loaded.manifest
    assert manifest["schema_version"] == artifacts.SCHEMA_VERSION
    assert set(manifest["files"]) == {"values.npy", "m.indptr.npy", "m.indices.npy", "m.data.npy",
                                      "m.shape.npy", "extra.json"}
    assert all(len(d) == 64 for d in manifest["files"].values())


def test_checksum_mismatch_is_refused(tmp_path):
    version = publish(tmp_path, 1)
    path = os.path.join(tmp_path, "versions", version, "values.npy")
    with open(path, "r+b") as fh:
        fh.seek(-1, os.SEEK_END)
        fh.write(b"\x07")
    with pytest.raises(ModelLoadError, match="checksum mismatch for values.npy"):
        load_version(str(tmp_path))


def test_truncated_file_is_refused(tmp_path):
    version = publish(tmp_path, 1)
    path = os.path.join(tmp_path, "versions", version, "m.data.npy")
    with open(path, "r+b") as fh:
        fh.truncate(10)
    with pytest.raises(ModelLoadError, match="m.data.npy"):
        load_version(str(tmp_path))


def test_pickled_arrays_cannot_be_written(tmp_path):
    writer = VersionWriter(str(tmp_path))
    with pytest.raises(TypeError, match="pickle"):
        writer.add_array("bad", np.array([{"a": 1}], dtype=object))
    writer.abort()


def test_crash_before_the_pointer_moves_keeps_the_old_version(tmp_path, monkeypatch):
    old = publish(tmp_path, 1)

    def boom(*_):
        raise OSError(28, "No space left on device")

    writer = VersionWriter(str(tmp_path))
    writer.add_array("values", np.arange(3))
    monkeypatch.setattr(artifacts.os, "replace", boom)
    with pytest.raises(OSError):
        writer.commit({})
    monkeypatch.undo()
    assert current_version(str(tmp_path)) == old
    assert load_version(str(tmp_path)).array("values").tolist() == [0, 1, 2, 3, 4]


def test_failure_while_writing_leaves_no_half_version(tmp_path, monkeypatch):
    old = publish(tmp_path, 1)
    with pytest.raises(RuntimeError):
        with VersionWriter(str(tmp_path)) as writer:
            writer.add_array("values", np.arange(3))
            raise RuntimeError("killed")
    assert [n for n in os.listdir(tmp_path) if n.startswith(".tmp")] == []
    assert current_version(str(tmp_path)) == old
    assert len(list_versions(str(tmp_path))) == 1


def test_leftovers_of_dead_writers_are_cleaned(tmp_path):
    publish(tmp_path, 1)
    dead = tmp_path / ".tmp-20200101T000000Z-abcd-999999999"
    dead.mkdir()
    (dead / "values.npy").write_bytes(b"partial")
    alive = tmp_path / f".tmp-20200101T000000Z-abcd-{os.getppid()}"
    alive.mkdir()  # a writer that is still running: left alone
    assert clean_temporary(str(tmp_path)) == [dead.name]
    assert not dead.exists()
    assert alive.exists()


def test_list_promote_prune(tmp_path):
    first = publish(tmp_path, 1)
    second = publish(tmp_path, 2)
    third = publish(tmp_path, 3, current=False)
    versions = list_versions(str(tmp_path))
    assert [v["version"] for v in versions] == [first, second, third]
    assert [v["current"] for v in versions if v["version"] == second] == [True]
    set_current(str(tmp_path), first)
    assert load_version(str(tmp_path)).json("extra") == {"value": 1}
    removed = prune_versions(str(tmp_path), keep=1)
    assert first not in removed  # the current version survives
    assert {v["version"] for v in list_versions(str(tmp_path))} == {first, third} - set(removed) | {first}
    with pytest.raises(ModelLoadError):
        set_current(str(tmp_path), "no-such-version")
    with pytest.raises(ModelLoadError, match="not a valid version"):
        set_current(str(tmp_path), "../etc")


def test_no_model_yet(tmp_path):
    with pytest.raises(NoModelError, match="xsell train"):
        load_version(str(tmp_path))


def test_manifest_is_json_with_metrics(tmp_path):
    version = publish(tmp_path, 4)
    with open(os.path.join(tmp_path, "versions", version, "manifest.json")) as fh:
        manifest = json.load(fh)
    assert manifest["metrics"] == {"v": 4}
    assert manifest["version"] == version
