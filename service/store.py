"""The model store: the current model version, swapped in without a restart.

A watcher thread checks the ``CURRENT`` pointer of the models folder every
``RELOAD_INTERVAL`` seconds (and at once on SIGHUP). A new version is loaded
and verified (checksums, then a smoke query) on that thread, off the request
path, and then swapped in by one reference assignment, which is atomic in
CPython: a request sees the old model or the new one, never half of each.
If the new version is unreadable or fails its checks, the old one keeps
answering and the error is logged and shown by ``/v1/model``.

Arrays stay memory-mapped (``recsys.artifacts``), so the gunicorn workers
share one copy of their pages. Threads do not survive ``fork``: under a
preloading gunicorn every worker starts its own watcher (``ensure_watcher``,
called from the post-fork hook and, as a safety net, on each request).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from datetime import datetime, timezone

import numpy as np

from recsys.exceptions import NoModelError, XsellError
from recsys.objectstore import open_models
from recsys.recommender import Recommender
from recsys.recommender.servable import load_servable

from .answer_cache import AnswerCache
from .faults import changed_files, file_identity, redact

log = logging.getLogger(__name__)

# Item ids whose indexes a served model remembers (then it starts afresh): bounded, as
# unknown ids come from clients.
_MAX_REMEMBERED_IDS = 100_000


def _utc(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


class ServedModel:
    """A loaded version plus the per-process caches the request path uses."""

    def __init__(self, recommender: Recommender, load_seconds: float, cache_size: int = 0,
                 cache_bytes: int = 64 << 20, on_cache_lookup=None):
        self.recommender = recommender
        # Finished answers (JSON bytes) of GET queries and POSTed carts and histories: an
        # answer depends only on the model and the request, so it stays right until this
        # model is swapped out with its cache (service.answer_cache).
        self.cache_size = cache_size
        self.answers = AnswerCache(cache_size, cache_bytes, on_cache_lookup)
        self.version = recommender.version
        self.manifest = recommender.manifest
        self.loaded_at = time.time()
        self.load_seconds = load_seconds
        self._items: dict[int, dict] = {}
        self._index: dict[str, int] = {}  # item id -> index, filled as ids are asked for
        self._customer_activity = None
        self.strategy_cache: dict[str, str] = {}
        # Files of the version as loaded (service.faults): checked on every poll.
        self.path: str | None = None
        self.identity: dict = {}

    def item_info(self, item_idx: int) -> dict:
        """``item_id``, ``name``, ``category``, ``price``, ``in_stock`` (+ ``metadata``), cached."""
        info = self._items.get(item_idx)
        if info is None:
            rec = self.recommender
            info = {"item_id": rec.items.id_of(item_idx), **rec.describe(item_idx)}
            self._items[item_idx] = info
        return info

    def item_indices(self, ids: list[str]) -> list[int]:
        """Indexes of item ids (``UNKNOWN`` for ids the model has not seen), remembered per
        id: a binary search over the memory-mapped vocabulary costs microseconds per id."""
        index = self._index
        out = []
        for item_id in ids:
            idx = index.get(item_id)
            if idx is None:
                idx = self.recommender.items.index(item_id)
                if len(index) >= _MAX_REMEMBERED_IDS:
                    index.clear()
                index[item_id] = idx
            out.append(idx)
        return out

    def cached(self, key):
        return self.answers.get(key, key[0])

    def remember(self, key, value) -> None:
        self.answers.put(key, value)

    def customer_activity(self) -> np.ndarray:
        """Purchases per known customer (for the likely-buyers fallback)."""
        if self._customer_activity is None:
            history = self.recommender.history
            self._customer_activity = np.asarray(history.sum(axis=1)).ravel().astype(np.float32)
        return self._customer_activity


def load_model(models_dir: str, version: str, cache_size: int = 0, **cache) -> ServedModel:
    """Load and verify one version; raises ``XsellError`` (or OSError) if it is not usable."""
    start = time.perf_counter()
    rec, loaded = load_servable(models_dir, version)
    served = ServedModel(rec, time.perf_counter() - start, cache_size, **cache)
    served.path = loaded.path
    served.identity = file_identity(loaded.path)
    return served


class ModelStore:
    """Holds the current :class:`ServedModel` of a models folder and keeps it current."""

    def __init__(self, models_dir: str | None, interval: float = 5.0, on_event=None,
                 cache_size: int = 0, **cache):
        self.models_dir = models_dir
        self.cache_size = cache_size
        self.cache = cache  # ServedModel's cache_bytes, on_cache_lookup
        # A folder, or s3://bucket/prefix whose versions are downloaded to a local cache.
        self.source = open_models(models_dir) if models_dir else None
        self.interval = float(interval)
        self.on_event = on_event  # callback(kind: "reload" | "failure", seconds)
        self._model: ServedModel | None = None
        self._load_lock = threading.Lock()
        self._wake = threading.Event()
        self._force = False
        self._stop = False
        self._thread: threading.Thread | None = None
        self._thread_pid: int | None = None
        self.pointer: str | None = None
        self.pointer_error: str | None = None
        self.failed_version: str | None = None
        self.last_error: dict | None = None
        self.last_check: float | None = None
        self.reloads = 0
        self.reload_failures = 0
        # The model served before the current one: restored when the current one's files
        # change under it and it cannot be reloaded (service.faults).
        self._previous: ServedModel | None = None

    @property
    def model(self) -> ServedModel | None:
        return self._model

    # ------------------------------------------------------------ checking
    def check(self, force: bool = False) -> bool:
        """Load the version ``CURRENT`` points at if it is new; True when a swap happened."""
        if not self.models_dir:
            return False
        with self._load_lock:
            self.last_check = time.time()
            try:
                pointer = self.source.current()
                error = None if pointer else (
                    "the models folder has no CURRENT pointer (no model published yet, "
                    "or the folder was removed)")
            except XsellError as exc:
                # An unusable pointer is a reload failure like the others: logged once, the
                # current model kept (workers booting later keep the preloaded one).
                pointer, error = None, self._public(str(exc))
                if error != self.pointer_error:
                    self._fail(None, exc)
            if error is None and self.last_error and self.last_error.get("version") is None:
                self.last_error = None  # the pointer is readable again
            self.pointer_error = error
            self.pointer = pointer
            self._check_files()
            if pointer is None:
                return False
            current = self._model.version if self._model is not None else None
            if pointer == current and self.failed_version is not None:
                # The pointer was moved back (e.g. 'xsell models promote'): not an error now.
                self.failed_version = None
                self.last_error = None
            if pointer == current or (pointer == self.failed_version and not force):
                return False
            try:
                model = load_model(self.source.fetch(pointer), pointer, self.cache_size,
                                   **self.cache)
            except NoModelError as exc:
                self._fail(pointer, exc)
                return False
            except (XsellError, OSError, ValueError, KeyError, IndexError, TypeError,
                    MemoryError) as exc:
                self._fail(pointer, exc)
                return False
            if self._model is not None:
                self._previous = self._model
            self._model = model
            self.failed_version = None
            self.last_error = None
            self.reloads += 1
            log.info("model version %s now serving (previous %s, loaded in %.3f s)",
                     pointer, current, model.load_seconds)
            if self.on_event:
                self.on_event("reload", model.load_seconds)
            return True

    def _public(self, message: str) -> str:
        models = self.models_dir
        return redact(message, models, os.path.abspath(models) if models else None)

    def _check_files(self) -> None:
        """Files of the served version changed after load (truncated, rewritten in place):
        reload it if it verifies again, else restore the previous model, else serve nothing
        (503, /readyz failing) rather than crash on every request touching a mapped file."""
        model = self._model
        if model is None or not model.identity or not model.path:
            return
        changed = changed_files(model.path, model.identity)
        if not changed:
            return
        exc = XsellError(f"version {model.version}: files changed on disk after load "
                         f"({', '.join(changed[:5])})")
        try:
            fresh = load_model(self.source.fetch(model.version), model.version,
                               self.cache_size, **self.cache)
        except (XsellError, OSError, ValueError, KeyError, IndexError, TypeError,
                MemoryError) as reload_exc:
            exc = XsellError(f"{exc}; reloading it failed: {reload_exc}")
            fresh = None
        if fresh is not None:
            self._model = fresh
            log.warning("model version %s: files changed on disk after load, reloaded",
                        model.version)
            return
        previous = self._previous
        if previous is not None and (not previous.path or
                                     changed_files(previous.path, previous.identity)):
            previous = None
        self._model, self._previous = previous, None
        self._fail(model.version, exc)

    def _fail(self, version: str | None, exc: BaseException) -> None:
        self.failed_version = version
        self.reload_failures += 1
        serving = self._model.version if self._model is not None else None
        self.last_error = {"version": version, "message": self._public(str(exc)),
                           "at": _utc(time.time())}
        log.error("model version %s cannot be served, still serving %s: %s",
                  version or "(CURRENT pointer)", serving or "nothing", exc)
        if self.on_event:
            self.on_event("failure", 0.0)

    # ------------------------------------------------------------- watcher
    def request_check(self, force: bool = True) -> None:
        """Ask the watcher to check now (safe to call from a signal handler)."""
        self._force = self._force or force
        self._wake.set()

    def ensure_watcher(self) -> None:
        """Start the watcher thread in this process if it is not running (e.g. after fork)."""
        if self.interval <= 0 or not self.models_dir:
            return
        pid = os.getpid()
        if self._thread is not None and self._thread_pid == pid and self._thread.is_alive():
            return
        with self._load_lock:
            if self._thread is not None and self._thread_pid == pid and self._thread.is_alive():
                return
            self._stop = False
            self._wake = threading.Event()
            self._thread = threading.Thread(target=self._run, name="xsell-model-watcher",
                                            daemon=True)
            self._thread_pid = pid
            self._thread.start()

    def install_sighup(self) -> bool:
        """On SIGHUP, check the pointer at once (main thread only; gunicorn workers call it)."""
        if threading.current_thread() is not threading.main_thread():
            return False
        signal.signal(signal.SIGHUP, lambda *_: self.request_check(force=True))
        return True

    def stop(self) -> None:
        self._stop = True
        self._wake.set()
        if self._thread is not None and self._thread_pid == os.getpid():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop:
                break
            force, self._force = self._force, False
            try:
                self.check(force=force)
            except Exception:  # the watcher must never die
                log.exception("model watcher: unexpected error")

    # -------------------------------------------------------------- status
    def status(self) -> dict:
        model = self._model
        out = {
            "models_dir": self.models_dir,  # /v1/model is for admins only
            "pointer": self.pointer,
            "reload_interval_s": self.interval,
            "reloads": self.reloads,
            "reload_failures": self.reload_failures,
            "last_check": _utc(self.last_check),
            "last_error": self.last_error,
        }
        if self.pointer_error:
            out["pointer_error"] = self.pointer_error
        if model is not None:
            out["loaded_at"] = _utc(model.loaded_at)
            out["load_seconds"] = round(model.load_seconds, 4)
            out["answer_cache"] = model.answers.status()  # this worker's
        return out
