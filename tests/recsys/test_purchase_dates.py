"""Last purchase day per (customer, item), stored with a version for the dashboard."""

from __future__ import annotations

from datetime import date

import numpy as np

from recsys.data import read_orders
from recsys.purchase_dates import customer_days, last_purchase_days
from support.synthetic import write_orders


def _day(text: str) -> int:
    return (date.fromisoformat(text) - date(1970, 1, 1)).days


def test_last_purchase_day_of_each_pair(tmp_path):
    rows = [["C1", "O1", "A", 1, 2.0, "2025-01-01T10:00:00"],
            ["C1", "O2", "A", 1, 2.0, "2025-03-05T08:00:00"],
            ["C1", "O3", "B", 2, 2.0, "2025-02-01T00:00:01"],
            ["C2", "O4", "B", 1, 2.0, "2025-01-10T23:59:59"],
            ["C2", "O5", "C", 1, 2.0, "2024-12-31T00:00:00"],
            ["C2", "O6", "A", 0, 2.0, "2025-06-01T00:00:00"]]  # a return: not a purchase
    inter = read_orders(write_orders(tmp_path / "o.csv", rows))[0]
    history = inter.customer_items()
    days = last_purchase_days(inter, history)
    assert days.dtype == np.int32 and len(days) == history.nnz
    got = {}
    for c in range(history.shape[0]):
        items, last = customer_days(days, history, c)
        for i, d in zip(items, last, strict=True):
            got[(inter.customers.id_of(c), inter.items.id_of(int(i)))] = int(d)
    assert got == {("C1", "A"): _day("2025-03-05"), ("C1", "B"): _day("2025-02-01"),
                   ("C2", "B"): _day("2025-01-10"), ("C2", "C"): _day("2024-12-31")}


def test_no_dates_without_timestamps(tmp_path):
    rows = [["C1", "O1", "A", 1, 2.0], ["C1", "O2", "B", 1, 2.0]]
    inter = read_orders(write_orders(tmp_path / "o.csv", rows,
                                     header=["customer_id", "order_id", "item_id", "quantity",
                                             "unit_price"]))[0]
    assert last_purchase_days(inter, inter.customer_items()) is None
