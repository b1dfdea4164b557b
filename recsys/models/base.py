"""The component contract every model implements, and helpers the models share.

A component is one model the recommender blends or consults (popularity,
co-purchase, ALS, EASE, recency, substitutes). In the manner of
scikit-learn's estimators and implicit's ``RecommenderBase``: the constructor
stores settings, ``fit`` learns arrays (ending in ``_``), and the component
saves and loads its own arrays through the artifact writer (``.npy``, no
pickle, memory-mapped read-only when loaded). The scoring methods return raw,
unnormalised scores; the recommender scales and blends them. A component
implements the scores it can give; asking one for a kind it lacks raises
:class:`~recsys.exceptions.ComponentError` (never a silent fall-through).

Training goes through the same contract: a component builds itself from a
training period and its own configuration section (:meth:`Component.fit_period`,
handed a :class:`FitContext`), declares that section's defaults and validator
(:attr:`Component.config_defaults`, :meth:`Component.check_config`), chooses
its own settings on the trainer's holdout (:meth:`Component.search`) and says
what the manifest records of them (:meth:`Component.parameters`). The trainer
(``training/train.py``) loops over the registry.

Adding a component: one module with a :class:`Component` subclass and one line
in :data:`recsys.models.REGISTRY`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np
import scipy.sparse as sp

from .. import fastpath
from ..exceptions import ComponentError, NotFittedError

# The scoring methods each blended query kind needs from a component.
NEEDS = {
    "also_bought": ("item_scores",),
    "basket": ("item_scores",),
    "next_best": ("customer_scores", "history_scores"),
    "likely_buyers": ("buyer_scores",),
}


class _NoProgress:
    def __call__(self, n=1):
        pass

    def close(self):
        pass


def no_progress(desc: str, total: int | None = None) -> _NoProgress:
    """A progress-bar factory that shows nothing."""
    return _NoProgress()


# The trainer's stages (FitContext.stage): the training period of the holdout, and all
# the data (the shipped version).
HOLDOUT, FULL = "holdout", "full"


@dataclass
class FitContext:
    """What the trainer hands a component's :meth:`Component.fit_period` and
    :meth:`Component.search`.

    ``period``: the :class:`recsys.period.TrainingPeriod` (its matrices built once);
    ``config``: the whole training configuration (a component reads its own section,
    :meth:`section`, and may read ``train``); ``fitted``: the components fitted before
    it on the same period, in registry order; ``stage``: :data:`HOLDOUT` or
    :data:`FULL`; ``setting``: on all data, what its search chose on the holdout;
    ``previous``: on all data, its holdout fit (ALS warm-starts from it); ``blend``: on
    all data, the blend to ship; ``meta``: the item metadata (the catalogue, for the
    components fitted after the gate); ``search``: on the holdout, the trainer's
    holdout searches (``training.blend_search.HoldoutSearch``)."""

    period: Any
    config: dict
    fitted: dict = field(default_factory=dict)
    stage: str = HOLDOUT
    setting: Any = None
    previous: Any = None
    blend: dict | None = None
    meta: Any = None
    search: Any = None
    progress: Callable = no_progress

    def section(self, cls: type[Component]) -> dict:
        """``cls``'s section of the configuration (empty when it has none)."""
        return dict(self.config.get(cls.config_section, {})) if cls.config_section else {}


class Component:
    """The contract of a model component (see the module docstring).

    Class attributes: ``name`` (registry key, blend-weight key), ``strategy``
    (the answer's strategy when it answers alone), ``blended`` (takes part in
    the blend search; popularity is the prior the search adds itself),
    ``item_item`` (its scores sum item neighbours, explained by the customers
    who bought both), ``explains_histories`` (it has its own explanation of a
    history's answer, :meth:`explain_histories`).
    """

    name: ClassVar[str] = ""
    strategy: ClassVar[str] = ""
    blended: ClassVar[bool] = False
    item_item: ClassVar[bool] = False
    explains_histories: ClassVar[bool] = False

    # ------------------------------------------------------------ training
    # Its section of the training configuration and that section's defaults
    # (training/config.py merges them into its DEFAULTS); None: no settings.
    config_section: ClassVar[str | None] = None
    config_defaults: ClassVar[dict] = {}
    # When the trainer fits it: "holdout" (on the training period, its settings chosen
    # there by :meth:`search`, then on all data with them), "blend" (its setting chosen
    # with the blend search, :meth:`search_blend`, then on all data), "ship" (only on
    # all data, for the shipped version, with the catalogue's metadata).
    fit_stage: ClassVar[str] = "holdout"
    # Its fit on all data does not depend on any holdout choice (the trainer fits it on
    # the second core while the holdout searches run).
    holdout_free: ClassVar[bool] = False
    # Its holdout search fits every candidate itself: no plain fit before it.
    search_fits: ClassVar[bool] = False

    @classmethod
    def check_config(cls, section: dict) -> None:
        """Raise :class:`~recsys.exceptions.ConfigError` on an invalid section (run before
        any data is read)."""

    @classmethod
    def fit_period(cls, ctx: FitContext) -> Component | None:
        """The component fitted on ``ctx.period`` with its section and ``ctx.setting``
        (None: nothing to fit there)."""
        raise ComponentError(f"component {cls.name!r} cannot be trained: "
                             f"{cls.__name__}.fit_period is missing")

    @classmethod
    def search(cls, ctx: FitContext, fitted: Component | None) -> tuple[Component | None, Any]:
        """On the holdout: (the component, its setting) chosen there from ``fitted``, its
        plain fit (None when :attr:`search_fits`). The default chooses nothing."""
        return fitted, None

    @classmethod
    def search_blend(cls, ctx: FitContext, rec, results: dict) -> tuple[Any, dict]:
        """For ``fit_stage == "blend"``: (its setting, the blend results with it) chosen on
        the holdout's recommender ``rec`` and blend ``results``; leaves ``rec`` set to it."""
        raise ComponentError(f"component {cls.name!r} has no search_blend")

    @classmethod
    def shipped_setting(cls, setting: Any, blend: dict) -> Any:
        """The part of the holdout's ``setting`` the shipped ``blend`` uses."""
        return setting

    def reuse(self, setting: Any) -> Component | None:
        """This holdout fit as the shipped one (no refit on all data), for ``setting``
        (:meth:`shipped_setting`'s)."""
        return self

    @classmethod
    def parameters(cls, section: dict, setting: Any) -> dict | None:
        """What the manifest's ``parameters`` records under :attr:`name` (what
        :meth:`load` reads back); None: nothing."""
        return section if cls.config_section else None

    # ------------------------------------------------------------- state
    @property
    def fitted(self) -> bool:
        """Whether the component has learned (or loaded) its arrays."""
        return all(value is not None for value in self.state().values())

    def state(self) -> dict:
        """The learned arrays (``np.ndarray`` or CSR) by file name, as :meth:`save` writes."""
        raise NotImplementedError

    def save(self, writer) -> None:
        """Write :meth:`state` through a :class:`recsys.artifacts.VersionWriter`."""
        for file, value in self.state().items():
            if sp.issparse(value):
                writer.add_sparse(file, value)
            else:
                writer.add_array(file, value)

    @classmethod
    def load(cls, loaded, params: dict) -> Component | None:
        """The component of a loaded version (memory-mapped), or None when it has none.

        ``params``: the manifest's ``parameters`` (each component reads its own)."""
        raise NotImplementedError

    def supports(self, kind: str) -> bool:
        """Whether the component has every score ``kind`` needs."""
        return all(getattr(type(self), m) is not getattr(Component, m)
                   for m in NEEDS.get(kind, ()))

    def _lacks(self, method: str, what: str):
        raise ComponentError(
            f"component {self.name!r} has no {method}: it cannot score {what}; give it a "
            f"blend weight of 0 for that kind or implement {type(self).__name__}.{method}")

    # ----------------------------------------------------------- batch scores
    def item_scores(self, kind: str, rows: sp.csr_matrix):
        """Raw scores for item queries (``rows``: binary queries x items) of ``kind``
        (also-bought, basket): a CSR, a dense array, or one row for every query."""
        self._lacks("item_scores", f"{kind} queries")

    def customer_scores(self, customer_idx: np.ndarray, history: sp.csr_matrix,
                        decay: sp.csr_matrix | None):
        """Raw next-best scores of known customers. ``history``: every customer's purchase
        counts; ``decay``: recency factors on its pattern, or None."""
        self._lacks("customer_scores", "next-best for known customers")

    def history_scores(self, histories: sp.csr_matrix):
        """Raw next-best scores of unseen customers from their purchase-count rows."""
        self._lacks("history_scores", "next-best for a history")

    def buyer_scores(self, item_idx: int, history: sp.csr_matrix) -> np.ndarray | None:
        """Raw scores of every known customer for one item; None: no say in who buys."""
        self._lacks("buyer_scores", "likely buyers")

    # ------------------------------------------------ one query (optional forms)
    def query_row(self, kind: str, query: np.ndarray) -> np.ndarray | None:
        """``item_scores(kind, [query])`` as a (1 x items) array for one sorted, distinct
        query, computed without sparse matrices; None: use :meth:`item_scores`."""
        return None

    def history_row(self, query: np.ndarray) -> np.ndarray | None:
        """:meth:`history_scores` of one binary history (``query``), or None."""
        return None

    def customer_row(self, customer_idx: int, row: sp.csr_matrix,
                     decay: np.ndarray | None) -> np.ndarray | None:
        """:meth:`customer_scores` of one customer (``row``: their count row, ``decay``: its
        recency factors or None), or None."""
        return None


def check_fitted(model, attribute: str) -> None:
    if getattr(model, attribute, None) is None:
        raise NotFittedError(
            f"{type(model).__name__} is not fitted yet: call fit() or load a model version first"
        )


def similarity_row(sim, rows: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """``(query @ sim).toarray()`` for one query row (items ``rows`` with ``weights``,
    1 when None): the similarity rows added in the same order and float32 arithmetic
    as scipy's product, so the scores are bit for bit the same. ``sim`` is a CSR
    matrix or a dense one (EASE on a small catalogue)."""
    w = np.ones(len(rows), dtype=np.float32) if weights is None else \
        fastpath.writable(weights, np.float32)
    if isinstance(sim, np.ndarray):
        if fastpath.available() and sim.dtype == np.float32:
            return fastpath.sum_dense_rows(fastpath.readonly(sim),
                                           fastpath.writable(rows, np.int64), w)[None, :]
        out = np.zeros((1, sim.shape[1]), dtype=np.float32)
        for j, wj in zip(np.asarray(rows).tolist(), w.tolist(), strict=True):
            out[0] += np.float32(wj) * sim[j]
        return out
    # Plain views of the (memory-mapped) arrays: memmap slicing runs Python code.
    indptr, indices, data = np.asarray(sim.indptr), np.asarray(sim.indices), \
        np.asarray(sim.data)
    if fastpath.available() and data.dtype == np.float32:
        # One compiled call: w * data in float32, added in row order (as below), into
        # a row it allocates (numpy's zeroed allocation would release the GIL).
        return fastpath.sum_rows(
            fastpath.readonly(indptr), fastpath.readonly(indices), fastpath.readonly(data),
            fastpath.writable(rows, np.int64), w, int(sim.shape[1]))[None, :]
    out = np.zeros((1, sim.shape[1]), dtype=np.float32)
    row = out[0]
    values = [None] * len(rows) if weights is None else weights.tolist()
    for j, w in zip(np.asarray(rows).tolist(), values, strict=True):
        lo, hi = indptr[j], indptr[j + 1]
        if w is None or w == 1.0:
            row[indices[lo:hi]] += data[lo:hi]
        else:
            row[indices[lo:hi]] += np.float32(w) * data[lo:hi]
    return out


def topk_positions(m: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (into ``m.data``) of the ``k`` largest entries of every row, and the new indptr.

    ``m`` must have sorted indices; ties keep the lower column.
    """
    counts = np.diff(m.indptr)
    if len(counts) == 0 or counts.max() <= k:
        return np.arange(m.nnz), m.indptr.copy()
    rows = np.repeat(np.arange(m.shape[0]), counts)
    order = np.lexsort((-m.data, rows))
    rank = np.arange(len(order)) - np.repeat(m.indptr[:-1], counts)
    kept = np.sort(order[rank < k])
    return kept, np.r_[0, np.cumsum(np.minimum(counts, k))]


def topk_per_row(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` largest entries of every row of a CSR matrix."""
    m.sort_indices()
    kept, indptr = topk_positions(m, k)
    return sp.csr_matrix((m.data[kept], m.indices[kept], indptr), shape=m.shape)


def row_blocks(work: np.ndarray, budget: float) -> list[tuple[int, int]]:
    """Split rows into consecutive blocks whose summed ``work`` stays near ``budget``."""
    n = len(work)
    if n == 0:
        return []
    cum = np.cumsum(work, dtype=np.float64)
    blocks, start = [], 0
    while start < n:
        base = cum[start - 1] if start else 0.0
        end = int(np.searchsorted(cum, base + budget, side="right"))
        end = max(end, start + 1)
        blocks.append((start, min(end, n)))
        start = end
    return blocks


def top_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indexes of the ``k`` best scores of a 1-D array, best first (-inf entries never returned)."""
    k = min(k, int(np.isfinite(scores).sum()))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.argsort(-scores[part], kind="stable")]


def top_indices_rows(scores: np.ndarray, k: int, above: float | None = None) -> np.ndarray:
    """Row-wise top-k of a 2-D array, best first; -1 where a row has fewer finite scores.

    With ``above``, only entries strictly greater than it count (the rest as -inf),
    without a masked copy of ``scores``.

    Exact, and much faster than a row-wise argpartition for wide rows: split each
    row into blocks and take the k-th largest block maximum as a threshold. The
    k blocks with the largest maxima hold at least k entries at or above it, so
    every top-k entry is at or above it too; only those candidates are sorted.
    """
    n_rows, n_cols = scores.shape
    if n_rows == 0 or k <= 0:
        return np.full((n_rows, max(k, 0)), -1, dtype=np.int64)
    # Blocks of about 8-30 columns: few candidates survive the threshold.
    n_blocks = max(64, 16 * k)
    if n_cols < 8 * n_blocks:
        if above is not None:
            scores = np.where(scores > above, scores, -np.inf)
        return _top_rows_partition(scores, k)
    floor = -np.inf if above is None else above
    width = n_cols // n_blocks
    main = width * n_blocks
    # Block maxima; reduceat is about twice as fast as a max over a reshaped short axis.
    head = np.maximum.reduceat(scores[:, :main], np.arange(0, main, width), axis=1)
    threshold = np.partition(head, n_blocks - k, axis=1)[:, n_blocks - k]
    # Candidates: entries >= threshold inside blocks whose maximum reaches it,
    # plus the few tail columns that do not fill a whole block.
    threshold = np.maximum(threshold, np.nextafter(np.float32(floor), np.float32(np.inf))) \
        if above is not None else threshold
    block_rows, block_ids = np.nonzero((head >= threshold[:, None]) & (head > floor))
    cols = block_ids[:, None] * width + np.arange(width)
    values = scores[block_rows[:, None], cols]
    hit_r, hit_c = np.nonzero(values >= threshold[block_rows][:, None])
    rows, cols = block_rows[hit_r], cols[hit_r, hit_c]
    if main < n_cols:
        tail = scores[:, main:]
        tail_r, tail_c = np.nonzero((tail >= threshold[:, None]) & (tail > floor))
        rows, cols = np.concatenate([rows, tail_r]), np.concatenate([cols, tail_c + main])
    values = scores[rows, cols]
    finite = np.isfinite(values) & (values > floor)
    rows, cols, values = rows[finite], cols[finite], values[finite]
    order = np.lexsort((cols, -values, rows))
    rows, cols = rows[order], cols[order]
    starts = np.searchsorted(rows, np.arange(n_rows))
    rank = np.arange(len(rows)) - starts[rows]
    keep = rank < k
    out = np.full((n_rows, k), -1, dtype=np.int64)
    out[rows[keep], rank[keep]] = cols[keep]
    return out


def _top_rows_partition(scores: np.ndarray, k: int) -> np.ndarray:
    """Narrow rows: the k-th largest value by partition, then the entries at or above it
    ordered by value, ties by column (as the block path, so both agree on ties)."""
    n_rows, n_cols = scores.shape
    k_eff = min(k, n_cols)
    out = np.full((n_rows, k), -1, dtype=np.int64)
    if k_eff == 0:
        return out
    kth = -np.partition(-scores, k_eff - 1, axis=1)[:, k_eff - 1]
    rows, cols = np.nonzero((scores >= kth[:, None]) & np.isfinite(scores))
    values = scores[rows, cols]
    order = np.lexsort((cols, -values, rows))
    rows, cols = rows[order], cols[order]
    starts = np.searchsorted(rows, np.arange(n_rows))
    rank = np.arange(len(rows)) - starts[rows]
    keep = rank < k_eff
    out[rows[keep], rank[keep]] = cols[keep]
    return out
