"""The trainer builds the ANN index of a large catalogue (recsys.ann) into the version:
checksummed, loaded by the service, with the answers of exact scoring."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("faiss")

from recsys import ann  # noqa: E402
from recsys.artifacts import load_version  # noqa: E402
from recsys.exceptions import ModelLoadError  # noqa: E402
from recsys.recommender import Recommender  # noqa: E402
from tests.recsys.test_ann import _recall  # noqa: E402


def test_trainer_writes_a_checksummed_index_the_service_loads(planted, tmp_path):
    from training.config import load_config
    from training.train import train

    orders, truth = planted
    config = load_config(overrides={
        "als": {"factors": 16, "iterations": 8, "random_state": 0},
        "gate": {"min_lift_over_popularity": 0.0},
        "ann": {"min_items": 1, "min_customers": 1, "overfetch": 5, "lists": 16}})
    models = str(tmp_path / "models")
    summary = train(orders, models, config)
    loaded = load_version(models, summary["version"])
    entry = loaded.manifest["ann"]
    assert set(entry) == {"items", "customers"}
    assert entry["items"]["recall@10"] >= 0.97 or entry["items"]["nprobe"] == 16
    for name in ann.FILES.values():
        assert name in loaded.manifest["files"]
        with open(os.path.join(loaded.path, name), "rb") as fh:
            assert fh.read(4) != b"\x80\x04\x95"[:4]  # faiss's format, not a pickle
    rec = Recommender.load(loaded)
    assert rec.ann is not None and rec.ann.items is not None
    assert rec.ann.customers is not None
    queries = range(0, len(rec.customers), max(1, len(rec.customers) // 60))
    assert _recall(rec, lambda q: rec.next_best(q, 5), queries) >= 0.95
    # The planted answer survives: also-bought is untouched by the index.
    a, b = next(iter(truth["pairs"].items()))
    assert rec.items.id_of(rec.also_bought(rec.items.index(a), 3).items[0].item_idx) == b
    # A corrupt index file fails the checksum: the version is not loaded.
    path = os.path.join(loaded.path, ann.FILES["items"])
    with open(path, "r+b") as fh:
        fh.seek(100)
        fh.write(b"\xff\xff\xff\xff")
    with pytest.raises(ModelLoadError, match="checksum mismatch"):
        load_version(models, summary["version"])
