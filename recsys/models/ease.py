"""EASE: a closed-form item-item model (Steck 2019, "Embarrassingly Shallow Autoencoders").

    B = I - P / diag(P),   P = (X'X + lambda I)^-1,   diag(B) = 0

X is the binary order x item matrix (baskets: what is bought together),
each order row optionally weighted by its age (``order_weights``: the
trainer's time decay, recsys.models.recency.order_decay, so that X'X counts
this season's baskets more than last year's), plus ``customer_weight`` times
the customer x item matrix, restricted to
items with at least ``min_buyers`` buyers. The dense inverse costs O(n^3),
so the model is only fitted when those items number at most ``max_items``;
above that it stays unfitted and the trainer leaves it out of the blend.
Only the ``k`` largest weights (by absolute value: the negative ones carry
information too) of each item are kept, a sparse matrix like co-purchase's,
which bounds the model file and the scoring cost.

Dropout variants (Steck 2020, "Autoencoders that don't overfit towards the
identity"): training a linear autoencoder with input dropout of probability
``p`` is, in expectation, least squares with the diagonal regulariser

    Lambda = p / (1 - p) * diag(diag(X'X)) + lambda I,

which penalises a popular item's weights more than a rare one's:

- DLAE (``zero_diagonal=False``): B = (X'X + Lambda)^-1 X'X = I - P Lambda;
- EDLAE (``zero_diagonal=True``, the default): the same regulariser with the
  constraint diag(B) = 0, whose closed form is EASE's with Lambda in place
  of lambda I: B = I - P / diag(P), P = (X'X + Lambda)^-1. With ``p = 0`` it
  is EASE exactly.

A DLAE's diagonal (an item's weight on itself) never ranks anything: every
query excludes its own items, so the stored weights leave it out.

Two weightings, each a setting the trainer chooses on its holdout:

- ``size_exponent`` e: each order row of X counts ``size ** -e`` in X'X
  (size: its distinct items in the model), rescaled so that the trace of
  X'X (the lines it counts) is unchanged and lambda keeps its scale. A
  wholesale order of 300 lines pairs every line with 299 others, most of
  them by accident; a basket of 5 says more about each of its pairs. e = 0.5
  is the usual "inverse basket length" damping of co-occurrence counts
  (the cosine's square-root normalisation, applied per order).
- ``popularity_exponent`` beta: the stored weight of every candidate column
  j is divided by ``buyers_j ** beta`` (the popularity penalty of RP3beta,
  Paudel et al. 2016): at equal evidence from the query, the less obvious
  item ranks first, since the best-sellers are the ones a shopper finds
  without help. Applied to the stored weights (after the top-k cut), so
  :meth:`EASEModel.with_popularity_exponent` derives it from a fitted model
  without another inverse.
"""

from __future__ import annotations

import copy
import logging

import numpy as np
import scipy.sparse as sp
from scipy.linalg import lapack

from ..exceptions import ConfigError
from ..kinds import BLEND_KINDS
from ..sparse import binary
from .base import Component, check_fitted, similarity_row, top_indices_rows

log = logging.getLogger(__name__)


def spd_inverse(a: np.ndarray) -> np.ndarray:
    """The inverse of a symmetric positive definite matrix ``a``.

    X'X + Lambda with Lambda > 0 is one, so a Cholesky factorisation and its
    inverse (LAPACK potrf + potri, about n^3 flops) replace the general LU
    inverse (about 2 n^3): EASE's fit is this one inverse, and the trainer
    pays it once per (lambda, dropout, half-life, size exponent) it tries. Falls back to
    the LU inverse if the factorisation fails (not positive definite).
    """
    factor, info = lapack.dpotrf(a, lower=1, clean=0, overwrite_a=0)
    if info == 0:
        inverse, info = lapack.dpotri(factor, lower=1, overwrite_c=1)
        if info == 0:
            # potri fills the lower triangle only: mirror it.
            upper = np.triu_indices_from(inverse, 1)
            inverse[upper] = inverse.T[upper]
            return inverse
    return np.linalg.inv(a)


def size_weights(orders: sp.csr_matrix, order_weights: np.ndarray | None,
                 exponent: float) -> np.ndarray | None:
    """Row weights of X'WX: ``order_weights`` (None: 1) times size ** -exponent, where size
    is each row's count of items, rescaled so that sum(weight * size), the trace of
    X'WX, is what ``order_weights`` alone give. None when there is nothing to weigh."""
    if not exponent:
        return order_weights
    sizes = np.diff(orders.tocsr().indptr).astype(np.float64)
    base = np.ones(len(sizes)) if order_weights is None else np.asarray(order_weights, np.float64)
    weights = base * np.maximum(sizes, 1.0) ** -float(exponent)
    trace = float((weights * sizes).sum())
    if trace > 0:
        weights *= float((base * sizes).sum()) / trace
    return weights


def dense_weights(g: np.ndarray, lam: float, dropout: float = 0.0,
                  zero_diagonal: bool = True) -> np.ndarray:
    """The dense item x item weights B of EASE / EDLAE / DLAE from the Gram matrix ``g``.

    ``zero_diagonal``: EASE or EDLAE (diag(B) = 0); otherwise DLAE, whose
    diagonal is kept here (the fitted model drops it).
    """
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"EASE dropout must be in [0, 1), got {dropout}")
    reg = np.full(g.shape[0], float(lam))
    if dropout > 0:
        reg += dropout / (1.0 - dropout) * np.diag(g)
    a = g.copy()
    a[np.diag_indices_from(a)] += reg
    p = spd_inverse(a)
    if zero_diagonal:
        b = -p / np.diag(p)
        b[np.diag_indices_from(b)] = 0.0
    else:
        b = -p * reg  # I - P Lambda: column j of P scaled by Lambda_jj
        b[np.diag_indices_from(b)] += 1.0
    return b


class EASEModel:
    """Item x item EASE weights: all of them, as a dense float32 matrix, for catalogues of
    up to ``dense_items`` items; above that the top ``k`` by absolute value per item (CSR).

    Why all weights where they fit: a cart sums one weight row per item, and the many
    small weights a top-k cut drops add up over a cart. On Online Retail (3,926 items)
    basket HR@10 is 0.3220 with the top 200 per row against 0.3267 with all of them,
    -1.4% (docs/RESULTS.md); the dense matrix is 62 MB there, memory-mapped and shared
    by the service's workers. ``similarity_`` is then an ``np.ndarray``, else a CSR.
    """

    name = "ease"

    def __init__(self, lam: float = 200.0, k: int = 200, min_buyers: int = 2,
                 max_items: int = 6000, customer_weight: float = 0.0,
                 dropout: float = 0.0, zero_diagonal: bool = True, half_life: float = 0.0,
                 dense_items: int = 5000, size_exponent: float = 0.0,
                 popularity_exponent: float = 0.0):
        self.lam = lam
        self.size_exponent = float(size_exponent)
        self.popularity_exponent = float(popularity_exponent)
        # The order decay the Gram matrix was built with (days; 0 = none). Recorded
        # here for the manifest; the weights themselves are an argument of gram().
        self.half_life = float(half_life)
        self.dropout = float(dropout)
        self.zero_diagonal = bool(zero_diagonal)
        self.k = k
        self.min_buyers = min_buyers
        self.max_items = max_items
        self.customer_weight = customer_weight
        self.dense_items = int(dense_items)
        self.similarity_ = None

    def gram(self, customer_items: sp.csr_matrix, order_items: sp.csr_matrix | None,
             order_weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """(kept item indexes, X'X over them), or None when too many items for a dense inverse.

        ``order_weights``: one weight per row of ``order_items`` (X' W X), e.g. the
        time decay; ``size_exponent`` multiplies each row's weight by its size ** -e,
        with the trace of X' W X kept (see the module docstring).
        """
        customer_items = customer_items.tocsr()
        buyers = np.bincount(customer_items.indices, minlength=customer_items.shape[1])
        keep = np.flatnonzero(buyers >= self.min_buyers)
        if len(keep) > self.max_items or len(keep) < 2:
            log.info("EASE: %d items with >= %d buyers (max %d): not fitted",
                     len(keep), self.min_buyers, self.max_items)
            return None
        x = customer_items.copy().astype(np.float32)
        x.data[:] = 1.0
        base = order_items if order_items is not None else x
        weight = self.customer_weight if order_items is not None else 0.0
        o = base.tocsr()[:, keep].astype(np.float32)
        o.data[:] = 1.0
        weighted = o
        if order_weights is not None:
            if order_items is None or len(order_weights) != o.shape[0]:
                raise ValueError("EASE: order weights need the order x item matrix, one per row")
        row_weights = size_weights(o, order_weights, self.size_exponent)
        if row_weights is not None:
            weighted = sp.diags(row_weights.astype(np.float32)) @ o
        g = (o.T @ weighted).toarray().astype(np.float64)
        if weight > 0:
            xs = x[:, keep]
            g += weight * (xs.T @ xs).toarray()
        return keep, g

    def fit(self, customer_items: sp.csr_matrix, order_items: sp.csr_matrix | None = None,
            gram: tuple | None = None):
        """Fit; ``gram`` reuses :meth:`gram`'s output (several lambdas on one data set)."""
        n_items = customer_items.shape[1]
        gram = gram if gram is not None else self.gram(customer_items, order_items)
        if gram is None:
            self.similarity_ = None
            return self
        keep, g = gram
        b = dense_weights(g, self.lam, self.dropout, self.zero_diagonal)
        b[np.diag_indices_from(b)] = 0.0
        if n_items <= self.dense_items:
            dense = np.zeros((n_items, n_items), dtype=np.float32)
            dense[np.ix_(keep, keep)] = b
            self.similarity_ = dense
            self._penalise_popularity(customer_items)
            return self
        # The k strongest weights of each row by absolute value (ties: lower column),
        # selected on the dense matrix: no sparse copy of all n^2 entries.
        best = top_indices_rows(np.abs(b).astype(np.float32), self.k, above=0.0)
        rows, slots = np.nonzero(best >= 0)
        cols = best[rows, slots]
        values = b[rows, cols].astype(np.float32)
        self.similarity_ = sp.csr_matrix(
            (values, (keep[rows], keep[cols])), shape=(n_items, n_items), dtype=np.float32)
        self._penalise_popularity(customer_items)
        return self

    def _penalise_popularity(self, customer_items: sp.csr_matrix) -> None:
        """Divide every stored weight of column j by buyers_j ** popularity_exponent."""
        if not self.popularity_exponent:
            return
        customer_items = customer_items.tocsr()
        buyers = np.bincount(customer_items.indices, minlength=customer_items.shape[1])
        scale = (np.maximum(buyers, 1).astype(np.float64)
                 ** -self.popularity_exponent).astype(np.float32)
        if sp.issparse(self.similarity_):
            self.similarity_.data *= scale[self.similarity_.indices]
        else:
            self.similarity_ *= scale[None, :]

    def with_popularity_exponent(self, beta: float, customer_items: sp.csr_matrix
                                 ) -> EASEModel:
        """This fitted model (popularity exponent 0) with ``beta`` applied: the very weights
        ``EASEModel(popularity_exponent=beta, ...).fit`` stores, without another inverse."""
        check_fitted(self, "similarity_")
        if self.popularity_exponent:
            raise ValueError("EASE: the popularity exponent applies to an unpenalised model")
        out = copy.copy(self)
        out.popularity_exponent = float(beta)
        out.similarity_ = self.similarity_.copy()
        out._penalise_popularity(customer_items)
        return out

    @property
    def fitted(self) -> bool:
        return self.similarity_ is not None

    def score_histories(self, rows: sp.csr_matrix) -> np.ndarray:
        """Dense scores (queries x items) for binary query or history rows."""
        check_fitted(self, "similarity_")
        scores = rows @ self.similarity_
        return scores.toarray() if sp.issparse(scores) else np.asarray(scores)


class EASEByKind(Component):
    """The EASE component: one fitted :class:`EASEModel` per query kind (each kind may
    choose its own setting on the holdout; kinds sharing one share the arrays).

    A kind without its own model uses next-best's, else the first one. Histories
    are read as 1 per item (times the recency factor for next-best)."""

    name = "ease"
    strategy = "ease"
    blended = True
    item_item = True
    # EASE (Steck 2019) as a third blend component, dense on every item with two or
    # more buyers when they number at most max_items (O(n^3) inverse); above that, on
    # the max_items most-bought ones (exact, the head) plus each other item's column
    # regressed on its `tail_neighbours` most co-bought head items
    # (recsys/models/ease_large.py; 0: no tail, EASE on the head alone); lambda is
    # chosen per query kind on the holdout from `lambdas`; the blend search decides
    # whether it is used at all (docs/RESULTS.md). `dropouts`: input-dropout
    # probabilities tried with every lambda (Steck 2020: 0 is plain EASE; above 0 an
    # extra p/(1-p) * diag(X'X) penalty, EDLAE with zero_diagonal, else DLAE), the
    # per-kind choice made on the same holdout; each extra setting is one more dense inverse.
    # `half_lives`: time decay of the training orders (days; 0 = none) tried with every
    # lambda: each order counts 0.5 ** (age / half-life) in X'X, age from the newest
    # order (recsys.models.recency.order_decay); chosen per kind on the holdout like
    # lambda, so a shop whose range moves with the seasons weighs this season's
    # baskets more, and a steady one keeps every order at weight 1. Needs timestamps.
    # `size_exponents`: each order counts size ** -e in X'X (trace kept), tried with every
    # lambda and half-life: 0.5 damps the accidental pairs of very large orders.
    # `popularity_exponents`: tried on each kind's chosen model, which keeps one only if
    # it scores better on the holdout: every candidate's weight divided by its
    # buyers ** beta (no extra inverse). Both in recsys/models/ease.py; docs/RESULTS.md.
    # Like no decay, exponent 0 (none) is always tried, first: it wins ties.
    # Above dense_items items the weights are stored sparse, the k largest per item;
    # the large-catalogue head keeps its head_k largest per item (0: every head weight,
    # what EASE on the head computes: on Instacart the top-1000 cut dropped 33% of the
    # weight mass and 0.3-0.8% of basket HR@10, docs/RESULTS.md).
    config_section = "ease"
    config_defaults = {"enabled": True, "lambdas": [50.0, 200.0, 800.0], "k": 1000,
                       "min_buyers": 2, "max_items": 12000, "tail_neighbours": 100,
                       "dense_items": 5000, "head_k": 0, "customer_weight": 0.0,
                       "dropouts": [0.0], "zero_diagonal": True, "half_lives": [0.0, 30.0, 90.0, 180.0],
                       "size_exponents": [0.0, 0.5], "popularity_exponents": [0.0, 0.1, 0.2]}
    # Its holdout search (training.blend_search.fit_ease's grid) fits every setting.
    search_fits = True

    # ------------------------------------------------------------ training
    @classmethod
    def check_config(cls, section: dict) -> None:
        ease_dropouts(section.get("dropouts", [0.0]))
        ease_half_lives(section.get("half_lives", [0.0]))
        ease_exponents(section.get("size_exponents", [0.0]), "ease.size_exponents")
        ease_exponents(section.get("popularity_exponents", [0.0]), "ease.popularity_exponents")
        ease_tail_neighbours(section.get("tail_neighbours", 0))
        if "dense_items" in section:
            ease_dense_items(section["dense_items"])
        ease_head_k(section.get("head_k", 0))

    @classmethod
    def search(cls, ctx, fitted) -> tuple[EASEByKind | None, dict]:
        """Each kind's setting (an ``EASESetting``) chosen on the holdout by the grid of
        training.blend_search.fit_ease; a kind whose model has no weight is left out."""
        return ctx.search.ease(ctx)

    @classmethod
    def fit_period(cls, ctx) -> EASEByKind | None:
        """On all data: the models of the settings the shipped blend uses."""
        return ctx.search.ease(ctx)[0] if ctx.setting else None

    @classmethod
    def shipped_setting(cls, setting: dict, blend: dict) -> dict:
        """The kinds whose shipped blend weighs EASE."""
        setting = setting or {}
        return {kind: setting[kind] for kind, w in blend.items()
                if w.get("ease", 0) > 0 and kind in setting}

    def reuse(self, setting: dict) -> EASEByKind | None:
        return EASEByKind({kind: self.models[kind] for kind in setting})

    @classmethod
    def parameters(cls, section: dict, setting: dict) -> dict:
        """The section, with the setting chosen per kind (what the manifest records)."""
        setting = setting or {}
        return dict(section,
                    lambdas_by_kind={kind: s.lam for kind, s in setting.items()},
                    dropouts_by_kind={kind: s.dropout for kind, s in setting.items()},
                    half_lives_by_kind={kind: s.half_life for kind, s in setting.items()},
                    size_exponents_by_kind={kind: s.size_exponent
                                            for kind, s in setting.items()},
                    popularity_exponents_by_kind={kind: s.popularity_exponent
                                                  for kind, s in setting.items()})

    def __init__(self, models: dict[str, EASEModel] | None = None):
        self.models = {kind: m for kind, m in (models or {}).items()
                       if m is not None and m.similarity_ is not None}

    def for_kind(self, kind: str) -> EASEModel:
        return self.models.get(kind) or self.models.get("next_best") \
            or next(iter(self.models.values()))

    def _sim(self, kind: str):
        return self.for_kind(kind).similarity_

    # ------------------------------------------------------------ state
    @property
    def fitted(self) -> bool:
        return bool(self.models)

    def state(self) -> dict:
        out, seen = {}, set()
        for kind, model in self.models.items():
            if id(model) not in seen:
                seen.add(id(model))
                dense = isinstance(model.similarity_, np.ndarray)
                out[f"ease_{'dense' if dense else 'similarity'}_{kind}"] = model.similarity_
        return out

    def save(self, writer) -> None:
        saved: dict[int, str] = {}
        for kind, model in self.models.items():
            if id(model) in saved:
                writer.add_json(f"ease_alias_{kind}", {"same_as": saved[id(model)]})
                continue
            if isinstance(model.similarity_, np.ndarray):
                writer.add_array(f"ease_dense_{kind}", model.similarity_)
            else:
                writer.add_sparse(f"ease_similarity_{kind}", model.similarity_)
            saved[id(model)] = kind

    @classmethod
    def load(cls, loaded, params: dict) -> EASEByKind | None:
        models: dict[str, EASEModel] = {}
        for kind in BLEND_KINDS:
            if loaded.has(f"ease_similarity_{kind}"):
                models[kind] = EASEModel()
                models[kind].similarity_ = loaded.sparse(f"ease_similarity_{kind}")
            elif loaded.has(f"ease_dense_{kind}"):
                models[kind] = EASEModel()
                models[kind].similarity_ = loaded.array(f"ease_dense_{kind}")
        files = loaded.manifest.get("files", {})
        for kind in BLEND_KINDS:
            if f"ease_alias_{kind}.json" in files:
                models[kind] = models.get(loaded.json(f"ease_alias_{kind}")["same_as"])
        out = cls(models)
        return out if out.fitted else None

    # ------------------------------------------------------------ scores
    def item_scores(self, kind: str, rows: sp.csr_matrix):
        return rows @ self._sim(kind)

    def customer_scores(self, customer_idx: np.ndarray, history: sp.csr_matrix,
                        decay: sp.csr_matrix | None):
        rows = binary(history[customer_idx])
        if decay is not None:
            rows.data *= np.asarray(decay[customer_idx].data, dtype=np.float32)
        return rows @ self._sim("next_best")

    def history_scores(self, histories: sp.csr_matrix):
        return binary(histories) @ self._sim("next_best")

    def buyer_scores(self, item_idx: int, history: sp.csr_matrix) -> np.ndarray:
        column = self._sim("likely_buyers")[:, [item_idx]]
        if sp.issparse(column):
            column = column.toarray()
        return np.asarray(binary(history) @ np.asarray(column)).ravel()

    def query_row(self, kind: str, query: np.ndarray) -> np.ndarray:
        return similarity_row(self._sim(kind), query, None)

    def history_row(self, query: np.ndarray) -> np.ndarray:
        return similarity_row(self._sim("next_best"), query, None)

    def customer_row(self, customer_idx: int, row: sp.csr_matrix,
                     decay: np.ndarray | None) -> np.ndarray:
        return similarity_row(self._sim("next_best"), np.asarray(row.indices, dtype=np.int64),
                              decay)


# ---------------------------------------------------------------- validators
# The ease section's list and count settings (EASEByKind.check_config runs them before any
# data is read; training/blend_search.fit_ease reads the lists through them).


def _setting_floats(values, setting: str, valid, expected: str) -> list[float]:
    """A list setting as floats that all pass ``valid``; a clear config error otherwise."""
    try:
        out = [float(x) for x in values] if isinstance(values, (list, tuple)) else None
        if out is not None and all(valid(x) for x in out):
            return out
    except (TypeError, ValueError):
        pass
    raise ConfigError(f"{setting} must be a list of {expected} (got {values!r})")


def _zero_first(values, setting: str, valid, expected: str) -> list[float]:
    """A list setting whose 0 means "none": 0 first (it wins ties), then the listed
    values above 0 in their order, each once."""
    out = _setting_floats(values, setting, valid, expected)
    return [0.0] + [x for x in dict.fromkeys(out) if x > 0]


def ease_half_lives(values) -> list[float]:
    """``ease.half_lives`` as days >= 0 (0: no decay), no decay first."""
    return _zero_first(values, "ease.half_lives", lambda x: x >= 0, "half-lives in days >= 0")


def ease_exponents(values, setting: str) -> list[float]:
    """``ease.size_exponents`` / ``ease.popularity_exponents``: exponents in [0, 2], 0 first."""
    return _zero_first(values, setting, lambda x: 0.0 <= x <= 2.0, "exponents in [0, 2]")


def _ease_count(value, setting: str, zero_means: str) -> int:
    """A whole number >= 0 of the ``ease`` section (``zero_means``: what 0 does)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{setting} must be a whole number of items >= 0 (0: {zero_means}; "
                          f"got {value!r})")
    return value


def ease_dense_items(value) -> int:
    """``ease.dense_items``: the catalogue size up to which EASE keeps every weight."""
    return _ease_count(value, "ease.dense_items", "always the top ease.k weights per item")


def ease_head_k(value) -> int:
    """``ease.head_k``: weights kept per head item of the large-catalogue EASE (0: all)."""
    return _ease_count(value, "ease.head_k", "every head weight")


def ease_tail_neighbours(value) -> int:
    """``ease.tail_neighbours``: head regressors per tail item (0: no tail)."""
    return _ease_count(value, "ease.tail_neighbours",
                       "EASE on the ease.max_items most-bought items only")


def ease_dropouts(values) -> list[float]:
    """``ease.dropouts`` as floats in [0, 1) (empty: plain EASE)."""
    return _setting_floats(values, "ease.dropouts", lambda x: 0.0 <= x < 1.0,
                           "probabilities in [0, 1)") or [0.0]
