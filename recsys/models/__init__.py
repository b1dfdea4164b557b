"""Model components. Each stores settings in ``__init__``, learns in ``fit`` and follows
the :class:`~recsys.models.base.Component` contract.

:data:`REGISTRY` maps a component's name (its blend-weight key and the prefix of its
files in a model version) to its class; the recommender loads, saves and blends
whatever it lists, and the trainer (training/train.py) fits, searches and records
whatever it lists through the same contract (``fit_period``, ``search``,
``config_defaults``, ``check_config``, ``parameters``). Adding a component is one
module and one line here (and its fitting recipe in
tests/recsys/test_component_contract.py).
"""

from .als import ALSModel
from .base import Component
from .copurchase import CoPurchaseModel
from .ease import EASEByKind, EASEModel
from .popularity import PopularityModel
from .recency import RecencyWeights
from .substitutes import SubstituteModel

# Order matters: blended components enter the trainer's blend grid in this order.
REGISTRY: dict[str, type[Component]] = {
    "popularity": PopularityModel,
    "copurchase": CoPurchaseModel,
    "als": ALSModel,
    "ease": EASEByKind,
    "recency": RecencyWeights,
    "substitutes": SubstituteModel,
}
# The components the trainer's blend search weighs (popularity is its prior, added apart).
BLENDED = tuple(name for name, cls in REGISTRY.items() if cls.blended)

__all__ = ["ALSModel", "BLENDED", "CoPurchaseModel", "Component", "EASEByKind", "EASEModel",
           "PopularityModel", "REGISTRY", "RecencyWeights", "SubstituteModel"]
