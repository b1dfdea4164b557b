"""Persistence: a recommender to and from a model version (``recsys.artifacts``).

The recommender writes what it owns (vocabularies, the history, the buyers
matrix, serving rules, item metadata) and asks every component to write its
own arrays; loading asks every registered component to load its own
(memory-mapped, read-only). No pickle anywhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from .. import ann
from ..artifacts import LoadedVersion, VersionWriter
from ..models import REGISTRY
from ..rules import read_item_meta, write_item_meta
from ..vocab import Vocab

if TYPE_CHECKING:
    from . import Recommender


class Persistence:
    """Save and load (mixed into :class:`recsys.recommender.Recommender`)."""

    def save(self, writer: VersionWriter) -> None:
        writer.add_array("items", self.items.ids)
        writer.add_array("customers", self.customers.ids)
        writer.add_sparse("history", self.history.astype(np.float32))
        buyers = self.buyers
        writer.add_array("buyers.indptr", np.asarray(buyers.indptr, dtype=np.int64))
        writer.add_array("buyers.indices", np.asarray(buyers.indices, dtype=np.int32))
        for component in self.components.values():
            component.save(writer)
        writer.add_json("serving_rules", {
            "floor": {"min_support": self.floor.min_support, "min_score": self.floor.min_score,
                      "support_kinds": list(self.floor.support_kinds)},
            "upsell_band": list(self.upsell_band), "downsell_band": list(self.downsell_band),
        })
        write_item_meta(writer, self.meta)

    @classmethod
    def load(cls, loaded: LoadedVersion) -> Recommender:
        manifest = loaded.manifest
        params = manifest.get("parameters", {})
        components = {name: component.load(loaded, params)
                      for name, component in REGISTRY.items()}
        files = manifest.get("files", {})
        rules = loaded.json("serving_rules") if "serving_rules.json" in files else None
        history = loaded.sparse("history")
        rec = cls(
            items=Vocab(loaded.array("items")), customers=Vocab(loaded.array("customers")),
            history=history, popularity=None, copurchase=None, als=None,
            meta=read_item_meta(loaded), blend=manifest.get("blend"), version=loaded.version,
            manifest=manifest, rules=rules, components=components)
        rec.ann = ann.load(loaded)
        if "buyers.indices.npy" in files:
            indices = np.asarray(loaded.array("buyers.indices"))
            # The values are all 1: a broadcast view, no memory per entry.
            ones = np.broadcast_to(np.uint8(1), indices.shape)
            rec._buyers = sp.csc_matrix((ones, indices, np.asarray(loaded.array("buyers.indptr"))),
                                        shape=history.shape)
        return rec
