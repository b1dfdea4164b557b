"""Prometheus metrics: requests, latency, model version and age, reloads, fallbacks.

Under gunicorn the workers are separate processes, so the config module sets
``PROMETHEUS_MULTIPROC_DIR`` before this module is imported and each scrape
merges every worker's values (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import glob
import os
import time
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import multiprocess as mp
from prometheus_client.core import GaugeMetricFamily

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

REQUESTS = Counter("xsell_http_requests", "HTTP requests answered",
                   ["endpoint", "method", "status"], registry=None)
LATENCY = Histogram("xsell_http_request_duration_seconds", "Time to answer a request",
                    ["endpoint", "status"], buckets=_BUCKETS, registry=None)
ANSWERS = Counter("xsell_recommendations", "Recommendation answers by strategy "
                  "(strategy=popular-fallback counts fallbacks)", ["endpoint", "strategy"],
                  registry=None)
RELOADS = Counter("xsell_model_reloads", "Model versions swapped in", registry=None)
RELOAD_FAILURES = Counter("xsell_model_reload_failures",
                          "New model versions that could not be loaded", registry=None)
LOAD_SECONDS = Histogram("xsell_model_load_seconds", "Time to load and verify a model version",
                         buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=None)
CACHE_LOOKUPS = Counter("xsell_answer_cache_lookups", "Answer cache lookups (result=hit|miss)",
                        ["endpoint", "result"], registry=None)
_OWN = (REQUESTS, LATENCY, ANSWERS, RELOADS, RELOAD_FAILURES, LOAD_SECONDS, CACHE_LOOKUPS)


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def on_store_event(kind: str, seconds: float) -> None:
    if kind == "reload":
        RELOADS.inc()
        LOAD_SECONDS.observe(seconds)
    else:
        RELOAD_FAILURES.inc()


_children: dict = {}


def on_cache_lookup(endpoint: str, hit: bool) -> None:
    _child(CACHE_LOOKUPS, endpoint, "hit" if hit else "miss").inc()


def _child(metric, *labels):
    # labels() takes a lock and validates on every call; the set of label values is small.
    key = (metric, labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


# Label values must stay bounded: any client can send a made-up method name.
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))


def observe(endpoint: str, method: str, status: int, seconds: float, strategy: str | None):
    code = str(status)
    if method not in METHODS:
        method = "other"
    _child(REQUESTS, endpoint, method, code).inc()
    _child(LATENCY, endpoint, code).observe(seconds)
    if strategy is not None:
        _child(ANSWERS, endpoint, strategy).inc()


def _parse_time(text) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return None


class ModelCollector:
    """Facts of the model the scraped process serves, computed at scrape time."""

    def __init__(self, store):
        self.store = store

    def collect(self):
        model = self.store.model
        info = GaugeMetricFamily("xsell_model_info", "The model version being served (value 1)",
                                 labels=["version"])
        loaded = GaugeMetricFamily("xsell_model_loaded", "1 when a model is loaded")
        loaded.add_metric([], 1.0 if model is not None else 0.0)
        yield loaded
        if model is None:
            yield info
            return
        info.add_metric([model.version], 1.0)
        yield info
        trained = _parse_time(model.manifest.get("trained_at")) or \
            _parse_time(model.manifest.get("created_at"))
        if trained is not None:
            age = GaugeMetricFamily("xsell_model_age_seconds",
                                    "Seconds since the served model was trained")
            age.add_metric([], max(0.0, time.time() - trained))
            yield age
        since = GaugeMetricFamily("xsell_model_loaded_age_seconds",
                                  "Seconds since this process loaded the served model")
        since.add_metric([], max(0.0, time.time() - model.loaded_at))
        yield since


class _WrittenFiles(mp.MultiProcessCollector):
    """prometheus_client's multiprocess collector over the workers' files, less any file a
    worker has created but not yet given its 8-byte header (it holds no value yet; read as
    is, prometheus_client raises ``struct.error`` and ``/metrics`` would answer 500 while a
    worker starts)."""

    def collect(self):
        files = []
        for name in glob.glob(os.path.join(self._path, "*.db")):
            try:
                if os.path.getsize(name) >= 8:
                    files.append(name)
            except OSError:  # a dead worker's file removed since the glob
                continue
        return self.merge(files, accumulate=True)


def worker_files_collector(registry=None) -> _WrittenFiles:
    """The workers' metrics (:class:`_WrittenFiles`), registered in ``registry`` if given."""
    return _WrittenFiles(registry)


def render(store) -> bytes:
    registry = CollectorRegistry()
    if multiprocess():
        worker_files_collector(registry)
    else:
        for metric in _OWN:
            registry.register(metric)
    registry.register(ModelCollector(store))
    return generate_latest(registry)
