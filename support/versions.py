"""Publishing model versions by hand: copies of a trained version, optionally corrupted."""

from __future__ import annotations

import json
import os
import shutil

from recsys.artifacts import POINTER, VERSIONS


def point_at(models_dir: str, version: str) -> None:
    """Move CURRENT the way the trainer does (write + atomic rename), without verifying."""
    tmp = os.path.join(models_dir, f"{POINTER}.tmp-test")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(version + "\n")
    os.replace(tmp, os.path.join(models_dir, POINTER))


def publish_copy(models_dir: str, source: str, new: str, corrupt: str | None = None) -> str:
    """Copy version ``source`` as ``new`` and make it current.

    ``corrupt="truncate"`` cuts an array file in half (its checksum then fails).
    """
    src = os.path.join(models_dir, VERSIONS, source)
    dst = os.path.join(models_dir, VERSIONS, new)
    tmp = os.path.join(models_dir, f".tmp-{new}-0")
    shutil.copytree(src, tmp)
    manifest_path = os.path.join(tmp, "manifest.json")
    with open(manifest_path, encoding="utf-8") as fh:
        manifest = json.load(fh)
    manifest["version"] = new
    with open(manifest_path, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh)
    if corrupt == "truncate":
        path = os.path.join(tmp, "copurchase_similarity.data.npy")
        size = os.path.getsize(path)
        with open(path, "r+b") as fh:
            fh.truncate(size // 2)
    os.rename(tmp, dst)
    point_at(models_dir, new)
    return new
