"""The matrices one training period needs, built once and handed to every component and search.

A training period is a set of order lines (all data, or the part before the
holdout). Its customer x item counts, its order x item rows, the time-decay
weights of its orders and the ages of its history pairs are each computed on
first use and then shared: the trainer's fits (popularity, co-purchase, ALS,
EASE, substitutes) and its holdout searches all read the same arrays.
"""

from __future__ import annotations

import threading

import scipy.sparse as sp

from .data import Interactions
from .models.recency import last_purchase_age, order_decay


class TrainingPeriod:
    """One period's interactions and its matrices, each built once (thread-safe)."""

    def __init__(self, inter: Interactions, customer_items: sp.csr_matrix | None = None):
        self.inter = inter
        self._lock = threading.RLock()
        self._customer_items = customer_items
        self._order_rows = None
        self._ages = None
        self._ages_done = False
        self._order_weights: dict[float, object] = {}

    @classmethod
    def of(cls, data, customer_items: sp.csr_matrix | None = None) -> TrainingPeriod:
        """``data`` as a period (an :class:`Interactions` is wrapped; a period is itself)."""
        if isinstance(data, cls):
            return data
        return cls(data, customer_items)

    @property
    def customer_is_order(self) -> bool:
        return self.inter.customer_is_order

    @property
    def customer_items(self) -> sp.csr_matrix:
        """Customers x items: distinct orders of the customer holding the item."""
        with self._lock:
            if self._customer_items is None:
                self._customer_items = self.inter.customer_items()
            return self._customer_items

    @property
    def order_rows(self) -> sp.csr_matrix:
        """Orders x items, binary (always built: the rows the order decay weighs)."""
        with self._lock:
            if self._order_rows is None:
                self._order_rows = self.inter.order_items()
            return self._order_rows

    @property
    def order_items(self) -> sp.csr_matrix | None:
        """Orders x items for the basket counts; None when every order is its own customer
        (the customer x item matrix is then the same information)."""
        return None if self.inter.customer_is_order else self.order_rows

    def order_weights(self, half_life: float):
        """:func:`recsys.models.recency.order_decay` of the orders, once per half-life."""
        with self._lock:
            if half_life not in self._order_weights:
                self._order_weights[half_life] = order_decay(self.inter, half_life)
            return self._order_weights[half_life]

    @property
    def ages(self) -> sp.csr_matrix | None:
        """:func:`recsys.models.recency.last_purchase_age` of the customer x item pairs."""
        with self._lock:
            if not self._ages_done:
                self._ages = last_purchase_age(self.inter, self.customer_items)
                self._ages_done = True
            return self._ages
