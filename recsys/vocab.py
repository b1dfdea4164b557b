"""External string ids <-> contiguous integer indexes.

Ids are kept sorted so that a lookup is a binary search over a plain numpy
array: the array can be memory-mapped from a model version and shared by all
service workers, with no per-process dict to build.
"""

from __future__ import annotations

import numpy as np

UNKNOWN = -1


class Vocab:
    """A sorted, duplicate-free array of string ids; ``idx`` is the position."""

    def __init__(self, ids: np.ndarray):
        self.ids = ids

    @classmethod
    def from_unsorted(cls, ids) -> tuple[Vocab, np.ndarray]:
        """Build from possibly unsorted unique ids; also return old->new index map."""
        ids = np.asarray(ids, dtype=str)
        order = np.argsort(ids, kind="stable")
        remap = np.empty(len(ids), dtype=np.int64)
        remap[order] = np.arange(len(ids))
        return cls(ids[order]), remap

    def __len__(self) -> int:
        return len(self.ids)

    def index(self, item_id: str) -> int:
        """The index of one id, or ``UNKNOWN``."""
        if len(self.ids) == 0:
            return UNKNOWN
        pos = int(np.searchsorted(self.ids, item_id))
        if pos < len(self.ids) and self.ids[pos] == item_id:
            return pos
        return UNKNOWN

    def indices(self, ids) -> np.ndarray:
        """Indexes of many ids at once; unknown ones are ``UNKNOWN``."""
        query = np.asarray(ids, dtype=str)
        if len(self.ids) == 0 or query.size == 0:
            return np.full(query.shape, UNKNOWN, dtype=np.int64)
        pos = np.searchsorted(self.ids, query)
        pos_clipped = np.minimum(pos, len(self.ids) - 1)
        found = self.ids[pos_clipped] == query
        return np.where(found, pos_clipped, UNKNOWN).astype(np.int64)

    def id_of(self, idx: int) -> str:
        return str(self.ids[idx])
