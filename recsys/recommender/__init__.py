"""The recommender: fitted components + vocabularies + item metadata, answering shop queries.

Training builds one and saves it as a model version; export and the service
load it back (memory-mapped) and ask it the kinds of question: also-bought,
basket completion, next-best products, likely buyers, and upsell/downsell
(substitutes in a price band). Every answer goes through the same business
filters and relevance floor and carries a reason per item. Which component
answers which kind is a table of blend weights chosen by the trainer's
evaluation (see ``training.train``), stored in the manifest.

:class:`Recommender` is a thin facade over one module per job:

- :mod:`.blending`: component scores scaled and blended per kind;
- :mod:`.selection`: masks, relevance floor, diversity and the cut (the
  compiled path behind the same ``answer``);
- :mod:`.explanations`: reasons, pair supports, confidence and lift;
- :mod:`.queries`: the kinds of question, upsell/downsell and price bands;
- :mod:`.persistence`: save and load through ``recsys.artifacts``.

The components themselves are :data:`recsys.models.REGISTRY`'s.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
import scipy.sparse as sp

from .. import fastpath
from ..exceptions import ComponentError
from ..kinds import BLEND_KINDS, SUBSTITUTE_STRATEGY
from ..models import BLENDED, REGISTRY, Component
from ..models.als import ALSModel
from ..models.base import NEEDS
from ..models.copurchase import CoPurchaseModel
from ..models.ease import EASEByKind, EASEModel
from ..models.popularity import PopularityModel
from ..models.recency import RecencyWeights
from ..models.substitutes import SubstituteModel
from ..rules import Floor, ItemMeta
from ..sparse import csr_values, row_indices, rows_matrix, segments
from ..vocab import Vocab
from .blending import DEFAULT_BLEND, TIE_BREAK, Blending
from .explanations import BECAUSE, MARK_LIMIT, Explanations, Recommendation
from .persistence import Persistence
from .queries import DEFAULT_DOWNSELL_BAND, DEFAULT_UPSELL_BAND, QueryKinds
from .selection import MASK_CACHE, Answer, Selection
from .selection import _diversified as _diversified
from .selection import _ranked_chunks as _ranked_chunks

log = logging.getLogger(__name__)

KINDS = BLEND_KINDS
COMPONENTS = BLENDED
# Names the pinned reference answer path (support/reference_answers.py) imports.
_BECAUSE, _MARK_LIMIT, _MASK_CACHE = BECAUSE, MARK_LIMIT, MASK_CACHE
_csr_values, _row_indices, _rows_matrix, _segments = csr_values, row_indices, rows_matrix, segments
__all__ = ["Answer", "DEFAULT_BLEND", "DEFAULT_DOWNSELL_BAND", "DEFAULT_UPSELL_BAND", "KINDS",
           "Recommendation", "Recommender", "SUBSTITUTE_STRATEGY"]


class Recommender(Blending, Selection, Explanations, QueryKinds, Persistence):
    """Answers shop queries from fitted components; the only object the service and export use."""

    def __init__(self, items: Vocab, customers: Vocab, history: sp.csr_matrix,
                 popularity: PopularityModel, copurchase: CoPurchaseModel | None,
                 als: ALSModel | None, meta: ItemMeta, blend: dict | None = None,
                 version: str | None = None, manifest: dict | None = None,
                 substitutes: SubstituteModel | None = None, rules: dict | None = None,
                 ease: EASEModel | dict[str, EASEModel] | None = None,
                 history_decay: sp.csr_matrix | None = None,
                 components: dict[str, Component | None] | None = None):
        self.items = items
        self.customers = customers
        self.history = history
        # EASE: one model or one per query kind (each kind may have its own
        # regularisation). ``components`` adds (or replaces) components by registry name.
        if isinstance(ease, EASEModel):
            ease = {"next_best": ease}
        given = {"popularity": popularity, "copurchase": copurchase, "als": als,
                 "ease": EASEByKind(ease) if isinstance(ease, dict) else ease,
                 "recency": RecencyWeights.of(history_decay), "substitutes": substitutes,
                 **(components or {})}
        unknown = sorted(set(given) - set(REGISTRY))
        if unknown:
            raise ComponentError(f"unknown component(s) {unknown}: the registry "
                                 f"(recsys.models.REGISTRY) has {sorted(REGISTRY)}")
        self.components: dict[str, Component] = _present(given)
        popularity = self.components["popularity"]
        self.meta = meta
        self.blend = blend or DEFAULT_BLEND
        self.version = version
        self.manifest = manifest or {}
        # Items that can be recommended at all: real products seen in training.
        self.known_items = (popularity.counts_ > 0) & meta.recommendable
        self.known_items.flags.writeable = False
        # The popularity prior as a float32 row, built once (queries read it, never copy it).
        self._pop_scores = np.array(popularity.scores_, dtype=np.float32)
        self._pop_scores.flags.writeable = False
        self._pop_tiebreak = (TIE_BREAK * popularity.scores_).astype(np.float32)
        self._pop_tiebreak.flags.writeable = False
        rules = rules or {}
        self.rules = rules
        self.floor = Floor.from_dict(rules.get("floor"))
        self.upsell_band = tuple(rules.get("upsell_band", DEFAULT_UPSELL_BAND))
        self.downsell_band = tuple(rules.get("downsell_band", DEFAULT_DOWNSELL_BAND))
        self._has_categories = bool((np.asarray(meta.category) >= 0).any())
        self._mask_cache: dict = {}
        self._buyers = None
        self._scratch = threading.local()
        # Single-query answers through the compiled path (recsys.fastpath) where it applies;
        # False forces the numpy path (the tests compare the two).
        self.compiled = fastpath.available()
        self._fast_arrays = None
        self.ann = None  # approximate-neighbour indexes of a large catalogue (recsys.ann)

    @property
    def popularity(self) -> PopularityModel:
        return self.components["popularity"]

    @property
    def copurchase(self) -> CoPurchaseModel | None:
        return self.components.get("copurchase")

    @property
    def als(self) -> ALSModel | None:
        return self.components.get("als")

    @property
    def substitutes(self) -> SubstituteModel | None:
        return self.components.get("substitutes")

    @property
    def ease_by_kind(self) -> dict[str, EASEModel]:
        ease = self.components.get("ease")
        return ease.models if ease is not None else {}

    @property
    def ease(self) -> EASEModel | None:
        return next(iter(self.ease_by_kind.values()), None)

    @property
    def history_decay(self) -> sp.csr_matrix | None:
        """Recency factors of the history pairs for next-best (recsys.models.recency),
        with exactly ``history``'s sparsity pattern; None = full histories."""
        recency = self.components.get("recency")
        return None if recency is None else recency.decay_

    @history_decay.setter
    def history_decay(self, decay: sp.csr_matrix | None) -> None:
        self.components = _present({**self.components, "recency": RecencyWeights.of(decay)})

    @property
    def blend(self) -> dict[str, dict[str, float]]:
        """Weights per query kind by component name, as the trainer chose them."""
        return self._blend

    @blend.setter
    def blend(self, blend: dict) -> None:
        blend = {k: dict(v) for k, v in blend.items()}
        for kind, weights in blend.items():
            for name, w in weights.items():
                component = self.components.get(name)
                if w > 0 and component is not None and not component.supports(kind):
                    raise ComponentError(
                        f"the blend weighs component {name!r} for {kind} queries, which it "
                        f"cannot score (it lacks one of {', '.join(NEEDS[kind])})")
        self._blend = blend


def _present(components: dict[str, Component | None]) -> dict[str, Component]:
    """The fitted components of ``components``, in registry order."""
    return {name: components[name] for name in REGISTRY
            if components.get(name) is not None and components[name].fitted}
