"""Shared fixtures: planted synthetic purchase data with known right answers."""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest  # noqa: E402

from tests.synthetic import planted_orders  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")
DEMO_ORDERS = os.path.join(REPO, "demo", "online_retail.parquet")


@pytest.fixture(scope="session")
def planted(tmp_path_factory):
    """A CSV of planted orders and the truth about it (see tests/synthetic.py)."""
    path = tmp_path_factory.mktemp("planted") / "orders.csv"
    truth = planted_orders(str(path))
    return str(path), truth
