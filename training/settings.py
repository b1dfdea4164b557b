"""Typed values the training pipeline passes between its stages (no positional tuples)."""

from __future__ import annotations

from typing import NamedTuple

import scipy.sparse as sp

from recsys.models import ALSModel, CoPurchaseModel, PopularityModel


class FittedModels(NamedTuple):
    """The models one training period gives: its customer x item counts and the fitted
    popularity, co-purchase and ALS."""

    customer_items: sp.csr_matrix
    popularity: PopularityModel
    copurchase: CoPurchaseModel
    als: ALSModel


class EASESetting(NamedTuple):
    """One EASE setting of the trainer's grid (recsys/models/ease.py): the regularisation
    ``lam``, the ``dropout`` (0: plain EASE), the order decay ``half_life`` in days (0:
    none), the order ``size_exponent`` and the ``popularity_exponent`` (0: none)."""

    lam: float
    dropout: float
    half_life: float
    size_exponent: float
    popularity_exponent: float

    @classmethod
    def of(cls, values) -> EASESetting:
        """A setting from a manifest's list; older manifests' shorter ones have exponents 0."""
        values = tuple(float(x) for x in values)
        return cls(*(values + (0.0,) * (len(cls._fields) - len(values))))
