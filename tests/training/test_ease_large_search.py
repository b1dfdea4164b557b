"""The trainer's EASE grid above ease.max_items: the large-catalogue model (head and tail)."""

import numpy as np
import pytest

from recsys.models.ease_large import LargeEASEModel


def test_trainer_fits_the_head_and_tail_above_max_items_and_chooses_per_kind(planted_inter):
    """Above ease.max_items the trainer's EASE is the large model (head = the max_items
    most-bought items, a regression tail), every setting scored alone per kind on the
    holdout as for dense EASE; the refit rebuilds the chosen weights."""
    from recsys.evaluation import PRIMARY, evaluate_variants
    from recsys.exceptions import ConfigError
    from tests.holdout import holdout
    from training import train as T
    from training.blend_search import BlendScorer
    from training.config import load_config

    config = load_config(None, {"als": {"factors": 8, "iterations": 3},
                                "ease": {"lambdas": [5.0, 50.0], "half_lives": [0.0],
                                         "size_exponents": [0.0], "max_items": 20,
                                         "tail_neighbours": 8,
                                         "popularity_exponents": [0.0]}})
    h = holdout(planted_inter, config)
    customers = h.data.train_customer_items
    models, chosen = T.fit_ease(h.train_part, config, h.data, h.recommender, 10,
                                customer_items=customers)
    assert models and all(isinstance(m, LargeEASEModel) for m in models.values())
    assert all(m.n_head_ == 20 and m.n_tail_ > 0 for m in models.values())
    # ease.head_k 0 (the default): every head weight is stored, nothing is cut.
    assert all(m.topk_error_ == 0.0 for m in models.values())

    def score(lam):
        m = LargeEASEModel(lam=lam, head_items=20, tail_neighbours=8, k=200, dense_items=5000)
        m.fit(customers, h.train_part.order_items())
        return evaluate_variants(BlendScorer(h.recommender(m), [(1.0,)], ("ease",)),
                                 h.data, 10)[(1.0,)]

    scores = {lam: score(lam) for lam in (5.0, 50.0)}
    for kind, metric in PRIMARY.items():
        value = {lam: r[kind][f"{metric}@10"] for lam, r in scores.items()}
        assert chosen[kind][0] == (50.0 if value[50.0] > value[5.0] else 5.0), kind
    refit, _ = T.fit_ease(h.train_part, config, settings_by_kind=chosen,
                          customer_items=customers)
    for kind in models:
        assert (refit[kind].similarity_ != models[kind].similarity_).nnz == 0
    # ease.head_k cuts each head row to its head_k largest weights (the tail's are kept).
    cut_config = dict(config, ease=dict(config["ease"], head_k=5))
    cut, _ = T.fit_ease(h.train_part, cut_config, settings_by_kind=chosen,
                        customer_items=customers)
    for kind, model in cut.items():
        sim, full = model.similarity_, refit[kind].similarity_
        head = np.flatnonzero(np.diff(full.indptr) > 0)
        head_cols = np.isin(sim.indices, head)
        per_row = np.bincount(np.repeat(np.arange(sim.shape[0]), np.diff(sim.indptr)),
                              weights=head_cols, minlength=sim.shape[0])
        assert per_row.max() == 5 and 0.0 < model.topk_error_ < 1.0
        assert sim.nnz < full.nnz
    for setting, value in (("tail_neighbours", -1), ("head_k", 2.5)):
        bad = dict(config, ease=dict(config["ease"], **{setting: value}))
        with pytest.raises(ConfigError, match=f"ease.{setting}"):
            T.fit_ease(h.train_part, bad, h.data, h.recommender, 10)
