"""The compiled answer path (recsys.fastpath) on a model the trainer wrote."""

from __future__ import annotations

import numpy as np

from recsys import fastpath


def test_one_compiled_version_serves_every_query_of_a_loaded_model(tmp_path):
    """Memory-mapped (read-only) model arrays and per-query arrays always reach the kernel
    with the same types: a request never waits for numba to compile another version."""
    from recsys.artifacts import load_version
    from recsys.recommender import Recommender
    from tests.recsys.tiers import write_tiers
    from training.config import load_config
    from training.train import train

    orders, catalog = str(tmp_path / "orders.csv"), str(tmp_path / "catalog.csv")
    write_tiers(orders, catalog)
    config = load_config(None, {"als": {"factors": 8, "iterations": 3},
                                "train": {"max_eval_queries": 100}})
    summary = train(orders, str(tmp_path / "models"), config, catalog=catalog)
    rec = Recommender.load(load_version(str(tmp_path / "models"), summary["version"]))
    fastpath.warm()
    kernels = (fastpath.select, fastpath.add_rows, fastpath.normalise_row, fastpath.sum_rows,
               fastpath.blend_into, fastpath.copy_row)
    before = [len(kernel.signatures) for kernel in kernels]
    known = np.flatnonzero(rec.known_items)
    rec.also_bought(int(known[0]))
    rec.basket(known[:3])
    rec.next_best(0)
    rec.next_best_for_history(known[:2])
    rec.popular(10, None, known[:1])
    assert [len(kernel.signatures) for kernel in kernels] == before
