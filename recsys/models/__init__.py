"""Recommendation models. Each stores hyperparameters in ``__init__`` and learns in ``fit``."""

from .als import ALSModel
from .copurchase import CoPurchaseModel
from .popularity import PopularityModel

__all__ = ["ALSModel", "CoPurchaseModel", "PopularityModel"]
