"""Shared fixtures: planted synthetic purchase data with known right answers."""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest  # noqa: E402

from support.synthetic import planted_orders  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")
DEMO_ORDERS = os.path.join(REPO, "demo", "online_retail.parquet")


@pytest.fixture(scope="session")
def planted(tmp_path_factory):
    """A CSV of planted orders and the truth about it (see support/synthetic.py)."""
    path = tmp_path_factory.mktemp("planted") / "orders.csv"
    truth = planted_orders(str(path))
    return str(path), truth


@pytest.fixture(scope="session")
def planted_inter(planted):
    """The planted orders read as interactions (read once; tests must not modify them)."""
    from recsys.data import read_orders

    return read_orders(planted[0])[0]


@pytest.fixture(scope="session")
def tier_model(tmp_path_factory):
    """The planted upsell tiers (tests/recsys/tiers.py) trained once: (models dir, version, truth).

    Read-only for the tests that share it.
    """
    from tests.recsys.tiers import write_tiers
    from training.config import load_config
    from training.train import train

    tmp = tmp_path_factory.mktemp("tiers")
    orders, catalog = str(tmp / "orders.csv"), str(tmp / "catalog.csv")
    truth = write_tiers(orders, catalog)
    # Item pages anchored on the item (max_item_popularity): on 16 items HR@10 cannot
    # tell the models from best-sellers, and these tests are about item-anchored answers.
    config = load_config(None, {"als": {"factors": 16, "iterations": 10},
                                "train": {"max_eval_queries": 300, "max_item_popularity": 0.3}})
    summary = train(orders, str(tmp / "models"), config, catalog=catalog)
    return str(tmp / "models"), summary["version"], truth
