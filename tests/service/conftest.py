"""Fixtures: a model version trained on planted synthetic data, and apps serving it."""

from __future__ import annotations

import os
import shutil

import pytest

from service import create_app
from training.config import load_config
from training.train import train


def train_planted(orders: str, models_dir: str, seed: int = 0) -> dict:
    config = load_config(overrides={
        "als": {"factors": 16, "iterations": 8, "random_state": seed},
        "gate": {"min_lift_over_popularity": 0.0},
    })
    summary = train(orders, models_dir, config)
    assert summary["published"], summary["gate"]
    return summary


@pytest.fixture(scope="session")
def planted_models(planted, tmp_path_factory):
    """A models folder with one published version trained on the planted orders."""
    orders, truth = planted
    models = str(tmp_path_factory.mktemp("models"))
    summary = train_planted(orders, models)
    return models, summary["version"], truth


@pytest.fixture
def models_copy(planted_models, tmp_path):
    """A private copy of the planted models folder (tests may publish or break versions)."""
    models, version, truth = planted_models
    dest = str(tmp_path / "models")
    shutil.copytree(models, dest)
    return dest, version, truth


def make_app(models_dir, **config):
    settings = {"MODELS_DIR": models_dir, "RELOAD_INTERVAL": 0, "ACCESS_LOG": False}
    settings.update(config)
    return create_app(settings)


@pytest.fixture
def app(planted_models):
    models, _, _ = planted_models
    return make_app(models)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(autouse=True)
def _no_env_keys(monkeypatch):
    for key in list(os.environ):
        if key.startswith("XSELL_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def dashboard_models(tmp_path_factory):
    """Planted orders with a named catalog: (models dir, older version, newer current one).
    Read-only: tests that promote work on a copy."""
    from tests.service.dashboard_data import build_models

    return build_models(tmp_path_factory.mktemp("dashboard"))
