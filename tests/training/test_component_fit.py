"""A component added to the registry is trained, searched, shipped and recorded by the
generic loop (recsys/models/base.py's training contract), with no edit of the trainer.

The component here is a plain item co-occurrence scorer with one setting. Registered
for the test only, it must be fitted on the holdout's training period and on all the
data from its own config section (defaults it declares), take part in the blend search,
be saved and loaded back with the version, and have its settings in the manifest; a
bad value of its section is refused before any data is read.
"""

from __future__ import annotations

import numpy as np
import pytest

from recsys.artifacts import load_version
from recsys.exceptions import ConfigError
from recsys.models import REGISTRY, Component
from recsys.models.base import FitContext
from recsys.period import TrainingPeriod
from recsys.recommender import Recommender
from recsys.sparse import binary
from training.config import load_config
from training.train import fit_product, train

CALLS: list[tuple[str, dict, int]] = []


class CoCount(Component):
    """Items scored by how many customers bought them with the query's items."""

    name = "cocount"
    strategy = "cocount"
    blended = True
    config_section = "cocount"
    config_defaults = {"shrink": 0.0}

    def __init__(self, shrink: float = 0.0):
        self.shrink = shrink
        self.similarity_ = None

    @classmethod
    def check_config(cls, section: dict) -> None:
        if float(section["shrink"]) < 0:
            raise ConfigError(f"cocount.shrink must be >= 0 (got {section['shrink']!r})")

    @classmethod
    def fit_period(cls, ctx) -> CoCount:
        section = ctx.section(cls)
        customer_items = ctx.period.customer_items
        CALLS.append((ctx.stage, section, customer_items.shape[0]))
        model = cls(**section)
        x = binary(customer_items).astype(np.float32)
        sim = (x.T @ x).tocsr()
        sim.setdiag(0)
        sim.eliminate_zeros()
        sim.data /= np.float32(1.0 + model.shrink)
        model.similarity_ = sim.astype(np.float32)
        return model

    def state(self) -> dict:
        return {"cocount_similarity": self.similarity_}

    @classmethod
    def load(cls, loaded, params: dict) -> CoCount | None:
        if not loaded.has("cocount_similarity"):
            return None
        model = cls(**params.get("cocount", {}))
        model.similarity_ = loaded.sparse("cocount_similarity")
        return model

    def item_scores(self, kind, rows):
        return rows @ self.similarity_

    def customer_scores(self, customer_idx, history, decay):
        return binary(history[customer_idx]) @ self.similarity_

    def history_scores(self, histories):
        return binary(histories) @ self.similarity_

    def buyer_scores(self, item_idx, history):
        return None


@pytest.fixture
def registered(monkeypatch):
    CALLS.clear()
    monkeypatch.setitem(REGISTRY, CoCount.name, CoCount)
    yield
    CALLS.clear()


def _config(**overrides):
    return load_config(None, {"als": {"factors": 8, "iterations": 4},
                              "ease": {"lambdas": [50.0], "half_lives": [0.0],
                                       "size_exponents": [0.0], "popularity_exponents": [0.0]},
                              "train": {"max_eval_queries": 300, "als_alphas": [],
                                        "holdout_als_iterations": 2,
                                        "blend_grid": [0.0, 0.5, 1.0],
                                        "popularity_grid": [0.0, 1.0]},
                              **overrides})


def test_a_registered_component_is_fitted_searched_and_shipped(registered, planted_inter):
    config = _config()
    assert config["cocount"] == {"shrink": 0.0}  # its declared defaults
    product = fit_product(planted_inter, config)
    # Fitted on the holdout's training period, then on all the data, from its section.
    assert [c[0] for c in CALLS] == ["holdout", "full"]
    assert all(c[1] == {"shrink": 0.0} for c in CALLS)
    assert CALLS[0][2] <= CALLS[1][2] == len(planted_inter.customers)
    # A candidate of the blend search for every blended kind.
    weighed = {name for blend in product.results for name, _ in blend}
    assert "cocount" in weighed
    assert any(dict(blend).get("cocount", 0) > 0 for blend in product.results)
    assert isinstance(product.components["cocount"], CoCount)
    assert isinstance(product.holdout_rec.components["cocount"], CoCount)


def test_a_registered_component_is_saved_loaded_and_recorded(registered, planted,
                                                             planted_inter, tmp_path):
    models = str(tmp_path / "models")
    config = _config(cocount={"shrink": 1.0})
    summary = train(planted[0], models, config)
    loaded_version = load_version(models, summary["version"])
    assert loaded_version.manifest["parameters"]["cocount"] == {"shrink": 1.0}
    assert loaded_version.has("cocount_similarity")
    rec = Recommender.load(loaded_version)
    loaded = rec.components["cocount"]
    assert loaded.shrink == 1.0
    fitted = CoCount.fit_period(FitContext(TrainingPeriod(planted_inter), config, stage="full"))
    assert (abs(loaded.similarity_ - fitted.similarity_) > 0).nnz == 0


def test_a_bad_setting_of_its_section_is_refused_before_reading(registered, tmp_path):
    with pytest.raises(ConfigError, match="cocount.shrink"):
        train(str(tmp_path / "no-such-orders.csv"), str(tmp_path / "models"),
              _config(cocount={"shrink": -1.0}))
