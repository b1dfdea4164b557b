"""ALS matrix factorisation for implicit feedback (Hu, Koren & Volinsky 2008) via ``implicit``.

The customer x item matrix holds how many orders of a customer contain an
item; the confidence given to ALS is ``log1p(count)`` (``confidence="log"``)
or BM25-weighted counts (``"bm25"``), times ``alpha`` inside implicit. Log
scaling keeps one wholesale customer who re-buys an item weekly from
dominating the factors. Runs on the GPU when implicit finds CUDA and
``use_gpu`` is not False.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
from scipy.linalg.lapack import dpotrf, dpotrs

from .. import fastpath
from ..exceptions import ConfigError
from ..sparse import as_csr
from .base import Component, check_fitted

log = logging.getLogger(__name__)


class ALSModel(Component):
    """Latent factors for customers and items, learned with implicit's ALS."""

    name = "als"
    strategy = "als"
    blended = True
    explains_histories = True
    config_section = "als"
    config_defaults = {"factors": 64, "regularization": 0.05, "alpha": 10.0, "iterations": 15,
                       "confidence": "log", "use_gpu": None, "random_state": 0}

    # ------------------------------------------------------------ training
    # ALS runs als.iterations in total: train.holdout_als_iterations on the training
    # period (the model the holdout evaluates), the rest on all data warm-started from
    # it. Its confidence scale is chosen on the holdout (train.als_alphas).
    @staticmethod
    def holdout_iterations(config: dict) -> int:
        """The iterations of the holdout's fit (the rest run on all data)."""
        return min(int(config["als"]["iterations"]),
                   int(config["train"]["holdout_als_iterations"]))

    @classmethod
    def fit_period(cls, ctx) -> ALSModel:
        section = ctx.section(cls)
        total, holdout = int(section["iterations"]), cls.holdout_iterations(ctx.config)
        warm_start = None
        if ctx.stage == "holdout":
            iterations = holdout
        else:
            if ctx.setting is not None and ctx.setting != float(section["alpha"]):
                section["alpha"] = ctx.setting
            warm_start, iterations = ctx.previous, max(1, total - holdout)
        model = cls(**section)
        bar = ctx.progress("ALS", iterations)
        model.fit(ctx.period.customer_items, warm_start=warm_start, iterations=iterations,
                  progress=bar)
        bar.close()
        return model

    @classmethod
    def search(cls, ctx, fitted):
        """The confidence scale (``train.als_alphas``): training.blend_search.choose_als_alpha."""
        return ctx.search.als_alpha(ctx, fitted)

    @classmethod
    def parameters(cls, section: dict, setting) -> dict:
        return dict(section, alpha=setting)

    def __init__(self, factors: int = 64, regularization: float = 0.05, alpha: float = 10.0,
                 iterations: int = 15, confidence: str = "log", use_gpu: bool | None = None,
                 random_state: int = 0, num_threads: int = 0):
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.confidence = confidence
        self.use_gpu = use_gpu
        self.random_state = random_state
        self.num_threads = num_threads
        self.user_factors_ = None
        self.item_factors_ = None
        self._solver = None
        self._base = None
        self._base_inverse = None

    # ------------------------------------------------------------ fitting
    def weight(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        """Confidence matrix handed to ALS for a customers x items count matrix."""
        if self.confidence == "log":
            out = counts.tocsr(copy=True).astype(np.float32)
            out.data = np.log1p(out.data)
            return out
        if self.confidence == "bm25":
            from implicit.nearest_neighbours import bm25_weight

            return bm25_weight(counts.tocsr().astype(np.float32), K1=100, B=0.8).tocsr()
        if self.confidence == "raw":
            return counts.tocsr(copy=True).astype(np.float32)
        raise ConfigError(f"als.confidence {self.confidence!r} is unknown; use log, bm25 or raw")

    def fit(self, customer_items: sp.csr_matrix, warm_start: ALSModel | None = None,
            iterations: int | None = None, progress=None):
        """Fit on a customers x items count matrix; ``warm_start`` reuses earlier factors."""
        import implicit

        use_gpu = implicit.gpu.HAS_CUDA if self.use_gpu is None else bool(self.use_gpu)
        shape = (customer_items.shape[0], self.factors), (customer_items.shape[1], self.factors)
        warm = (warm_start is not None and not use_gpu and warm_start.user_factors_ is not None
                and (warm_start.user_factors_.shape, warm_start.item_factors_.shape) == shape)
        if warm_start is not None and not warm:
            # A warm start that cannot be used (GPU solver, other shapes): the few extra
            # iterations asked for would leave a half-fitted model, so fit from scratch.
            log.info("ALS warm start not applicable (gpu=%s): %d iterations from scratch",
                     use_gpu, self.iterations)
            iterations = self.iterations
        solver = implicit.als.AlternatingLeastSquares(
            factors=self.factors, regularization=self.regularization, alpha=self.alpha,
            iterations=iterations or self.iterations, random_state=self.random_state,
            use_gpu=use_gpu, **({} if use_gpu else {"num_threads": self.num_threads}),
        )
        if warm:
            solver.user_factors = np.array(warm_start.user_factors_, dtype=np.float32)
            solver.item_factors = np.array(warm_start.item_factors_, dtype=np.float32)
        callback = (lambda *_: progress(1)) if progress is not None else None
        solver.fit(self.weight(customer_items), show_progress=False, callback=callback)
        if use_gpu:
            solver = solver.to_cpu()
        self.user_factors_ = np.ascontiguousarray(solver.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(solver.item_factors, dtype=np.float32)
        self._solver = None
        self._base = None
        self._base_inverse = None
        log.info("ALS fitted on %s (gpu=%s)", customer_items.shape, use_gpu)
        return self

    def set_factors(self, user_factors: np.ndarray, item_factors: np.ndarray):
        """Use factors loaded from a model version."""
        self.user_factors_ = user_factors
        self.item_factors_ = item_factors
        self._solver = None
        self._base = None
        self._base_inverse = None
        return self

    # ------------------------------------------------------------ contract
    def state(self) -> dict:
        return {"als_user_factors": self.user_factors_, "als_item_factors": self.item_factors_}

    @classmethod
    def load(cls, loaded, params: dict) -> ALSModel | None:
        if not loaded.has("als_item_factors"):
            return None
        return cls(**params.get("als", {})).set_factors(
            loaded.array("als_user_factors"), loaded.array("als_item_factors"))

    def item_scores(self, kind: str, rows: sp.csr_matrix) -> np.ndarray:
        """Basket: the cart folded in as a history; also-bought: factor-space cosine."""
        if kind == "basket":
            return self.score_histories(rows)
        return self.score_similar_rows(rows)

    def customer_scores(self, customer_idx: np.ndarray, history, decay) -> np.ndarray:
        return self.score_customers(customer_idx)

    def history_scores(self, histories: sp.csr_matrix) -> np.ndarray:
        return self.score_histories(histories)

    def buyer_scores(self, item_idx: int, history) -> np.ndarray:
        return self.score_buyers(item_idx)

    def query_row(self, kind: str, query: np.ndarray) -> np.ndarray | None:
        if kind == "basket":
            return self.history_row(query)
        return self._similar_row(query)

    def history_row(self, query: np.ndarray) -> np.ndarray | None:
        """``score_histories`` of one binary history row: the same least squares
        (:meth:`user_vectors`) on the query items' factors only, with ``Y'Y + reg I``
        computed once per model (:meth:`base_matrix`). None when the confidence is not
        log or raw."""
        confidence = self._unit_confidence(len(query))
        if confidence is None:
            return None
        items = np.asarray(self.item_factors_)
        vector = np.zeros((1, items.shape[1]), dtype=np.float32)
        if len(query):
            y = np.asarray(items[np.asarray(query, dtype=np.int64)], dtype=np.float64)
            vector[0] = self.solve_user(y, confidence)
        return vector @ items.T

    def _unit_confidence(self, m: int) -> np.ndarray | None:
        """The confidences of ``m`` items each bought once, as :meth:`history_row` folds
        them in (float64, read-only), or None when the confidence is not log or raw. The
        same arithmetic every time, so it is remembered per length (a few numpy calls
        less per query)."""
        if self.confidence not in ("log", "raw"):
            return None
        cache = self.__dict__.setdefault("_unit_confidences", {})
        key = (self.confidence, self.alpha, m)
        confidence = cache.get(key)
        if confidence is None:
            values = np.ones(m, dtype=np.float32)
            if self.confidence == "log":
                values = np.log1p(values)
            confidence = self.alpha * values.astype(np.float64)
            confidence.flags.writeable = False
            if len(cache) >= 256:
                cache.clear()
            cache[key] = confidence
        return confidence

    def customer_row(self, customer_idx: int, row, decay) -> np.ndarray:
        # The stored factor (a 1 x f view, read through the plain array: indexing the
        # memory map runs Python code), times the item factors.
        user = np.asarray(self.user_factors_)[customer_idx:customer_idx + 1]
        return user @ np.asarray(self.item_factors_).T

    def _similar_row(self, query: np.ndarray) -> np.ndarray:
        """``score_similar_rows`` of one binary query row: the normalised factors of the
        query items summed in index order (as scipy's sparse x dense product does)."""
        normed = self._normed_items()
        vector = np.zeros((1, normed.shape[1]), dtype=normed.dtype)
        for j in np.asarray(query).tolist():
            vector[0] += normed[j]
        return vector @ normed.T

    # ------------------------------------------------------------ scoring
    def score_customers(self, customer_idx: np.ndarray) -> np.ndarray:
        """Dense scores (customers x items) for known customers."""
        check_fitted(self, "item_factors_")
        return np.asarray(self.user_factors_[np.asarray(customer_idx)]) @ self.item_factors_.T

    def user_vectors(self, histories: sp.csr_matrix) -> np.ndarray:
        """Factors for unseen customers from their histories, item factors held fixed.

        The same regularised least squares as implicit's ``recalculate_user``
        (one ALS half-step, Hu et al. 2008 eq. 4), written with numpy so that it
        works on read-only memory-mapped factors shared by service workers.
        """
        check_fitted(self, "item_factors_")
        weighted = self.weight(histories).tocsr()
        factors = np.asarray(self.item_factors_)
        f = factors.shape[1]
        out = np.zeros((weighted.shape[0], f), dtype=np.float32)
        for row in range(weighted.shape[0]):
            lo, hi = weighted.indptr[row], weighted.indptr[row + 1]
            if lo == hi:
                continue
            # Only the history's rows in float64, not a copy of every item's factors.
            y = factors[weighted.indices[lo:hi]].astype(np.float64)
            confidence = self.alpha * weighted.data[lo:hi].astype(np.float64)
            out[row] = self.solve_user(y, confidence)
        return out

    def solve_user(self, y: np.ndarray, confidence: np.ndarray) -> np.ndarray:
        """One user vector: ``(B + Y'(C - I)Y)^-1 Y'c`` with ``B = Y_all'Y_all + reg I``,
        ``y`` the history items' factors (float64) and ``c`` their confidences.

        A history shorter than the factor count changes ``B`` by a low-rank term,
        so it is solved with ``B^-1`` (computed once per model) and the
        Woodbury identity in the form without ``(C - I)^-1``: an m x m system
        instead of a factors x factors one (a basket of 3 items: 3 x 3 instead
        of 64 x 64). Longer histories solve the full system. Both are the same
        least squares; every caller (batch and single query) goes through here,
        so they agree to the bit.
        """
        m, f = y.shape
        if m >= f:
            return np.linalg.solve(self.base_matrix() + (y.T * (confidence - 1.0)) @ y,
                                   y.T @ confidence)
        inverse = self._base_inverse
        if inverse is None:
            inverse = np.linalg.inv(self.base_matrix())
            inverse.flags.writeable = False
            self._base_inverse = inverse
        if fastpath.available():  # the same arithmetic in one compiled call
            vector, ok = fastpath.woodbury_solve(
                fastpath.readonly(np.asarray(y, dtype=np.float64)),
                fastpath.readonly(np.asarray(confidence, dtype=np.float64)), inverse)
            if ok:
                return vector
        b = y.T @ confidence
        w = inverse @ y.T  # B^-1 Y'
        scale = confidence - 1.0
        small = np.eye(m) + scale[:, None] * (y @ w)  # I + (C - I) Y B^-1 Y'
        return inverse @ b - w @ np.linalg.solve(small, scale * (w.T @ b))

    def base_matrix(self) -> np.ndarray:
        """``Y'Y + reg I`` (float64) over all item factors, once per fitted model: the fixed
        part of every fold-in (:meth:`solve_user`) and of the explain arithmetic."""
        if self._base is None:
            factors = np.asarray(self.item_factors_, dtype=np.float64)
            self._base = factors.T @ factors + self.regularization * np.eye(factors.shape[1])
        return self._base

    def score_histories(self, histories: sp.csr_matrix) -> np.ndarray:
        """Dense scores (queries x items) for histories given as a count matrix."""
        return self.user_vectors(histories) @ self.item_factors_.T

    def score_buyers(self, item_idx: int) -> np.ndarray:
        """Affinity of every known customer for one item."""
        check_fitted(self, "user_factors_")
        return np.asarray(self.user_factors_) @ np.asarray(self.item_factors_[item_idx])

    def score_similar(self, item_idx: np.ndarray) -> np.ndarray:
        """Cosine similarity in factor space between query items and every item (summed)."""
        return self.score_similar_rows(sp.csr_matrix(
            (np.ones(len(item_idx), dtype=np.float32), np.asarray(item_idx), [0, len(item_idx)]),
            shape=(1, self.item_factors_.shape[0])))[0]

    def score_similar_rows(self, query_rows: sp.csr_matrix) -> np.ndarray:
        """:meth:`score_similar` for a batch: (queries x items) binary rows, one matmul."""
        check_fitted(self, "item_factors_")
        normed = self._normed_items()
        return np.asarray(query_rows @ normed) @ normed.T

    def _normed_items(self) -> np.ndarray:
        cached = getattr(self, "_normed", None)
        if cached is None or cached[0] is not self.item_factors_:
            norms = np.linalg.norm(self.item_factors_, axis=1)
            norms[norms == 0] = 1.0
            cached = (self.item_factors_, (self.item_factors_ / norms[:, None]).astype(np.float32))
            self._normed = cached
        return cached[1]

    def explain_rows(self, history_row, best: np.ndarray, top: int = 3) -> list[list[int]]:
        """The history items that contribute most (positively) to each of several
        recommended items ``best`` of one history row (a 1 x items count row), best first.

        Hu, Koren & Volinsky (2008), section 5: history item j contributes
        ``c_j * y_j' W_u y_i`` to the score of item i, with
        ``W_u = (Y'Y + Y'(C_u - I)Y + reg I)^-1``. The same arithmetic as
        implicit's ``explain`` (:meth:`explain`), with ``W_u`` factorised
        once per answer instead of once per item.
        """
        if self.confidence == "log" and history_row.shape[0] == 1:
            # weight() for one row, without building sparse matrices: log(1 + count).
            history = np.asarray(history_row.indices, dtype=np.int64)
            values = np.log1p(np.asarray(history_row.data, dtype=np.float32))
        else:
            weighted = self.weight(as_csr(history_row)).tocsr()
            history = np.asarray(weighted.indices, dtype=np.int64)
            values = weighted.data
        if not len(history):
            return [[] for _ in best]
        confidence = self.alpha * np.asarray(values, dtype=np.float64)
        factors = np.asarray(self.item_factors_)
        y_hist = factors[history].astype(np.float64)
        a = self.base_matrix() + (y_hist.T * (confidence - 1.0)) @ y_hist
        # cho_solve(cho_factor(a), b) without scipy's per-call checks and batching layer:
        # the same LAPACK routines (potrf upper, potrs) on the same arrays.
        factor, info = dpotrf(a, lower=0, clean=0, overwrite_a=1) \
            if np.isfinite(a).all() else (None, -1)
        if info != 0:  # explain is an aid: never fail an answer for it
            log.debug("ALS explain: the matrix cannot be factorised (potrf info %d)", info)
            return [[] for _ in best]
        weighted_items, info = dpotrs(factor, factors[best].astype(np.float64).T, lower=0)
        if info != 0:
            log.debug("ALS explain: potrs info %d", info)
            return [[] for _ in best]
        contributions = (y_hist @ weighted_items) * confidence[:, None]  # history x best
        order = np.argsort(-contributions, axis=0, kind="stable")[:top]
        positive = np.take_along_axis(contributions, order, axis=0) > 0
        history_list = history.tolist()
        return [[history_list[o] for o, p in zip(col_order, col_ok, strict=True) if p]
                for col_order, col_ok in zip(order.T.tolist(), positive.T.tolist(), strict=True)]

    def explain(self, history: sp.csr_matrix, item_idx: int, top: int = 3) -> list[tuple[int, float]]:
        """The history items that contributed most to one recommendation (implicit's explain)."""
        check_fitted(self, "item_factors_")
        solver = self._cpu_solver()
        _, contributions, _ = solver.explain(0, self.weight(history), item_idx, N=top)
        return [(int(i), float(c)) for i, c in contributions]

    def _cpu_solver(self):
        if self._solver is None:
            from implicit.cpu.als import AlternatingLeastSquares

            solver = AlternatingLeastSquares(
                factors=self.item_factors_.shape[1], regularization=self.regularization,
                alpha=self.alpha, num_threads=1,
            )
            solver.item_factors = np.asarray(self.item_factors_, dtype=np.float32)
            solver.user_factors = np.zeros((0, solver.factors), dtype=np.float32)
            self._solver = solver
        return self._solver
