"""The Flask application factory."""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass

from flask import Flask, g, request

from . import metrics
from .api import customers_bp, items_bp, recommendations_bp
from .auth import ApiKeys, authorize
from .config import load_settings
from .errors import register_error_handlers
from .logs import configure_logging, request_id, utc_now, write_access_line
from .ops import ops_bp
from .store import ModelStore

log = logging.getLogger(__name__)


@dataclass
class XsellState:
    """What the views need, kept in ``app.extensions["xsell"]``."""

    settings: dict
    store: ModelStore
    keys: ApiKeys
    # True while warm_up() runs in a preloading gunicorn master: no auth, no accounting.
    warming: bool = False


def create_app(config: dict | None = None) -> Flask:
    """Build the service. ``config`` overrides defaults and ``XSELL_*`` variables.

    Keys are the setting names of :mod:`service.config` (``MODELS_DIR``,
    ``RELOAD_INTERVAL``, ...), with or without the ``XSELL_`` prefix.
    """
    settings = load_settings(config)
    configure_logging(settings["LOG_LEVEL"])
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings["MAX_BODY_BYTES"]
    app.json.sort_keys = False

    keys = ApiKeys.from_settings(settings["API_KEYS"], settings["API_KEYS_FILE"])
    if not keys.enabled:
        log.warning("no API keys configured (XSELL_API_KEYS / XSELL_API_KEYS_FILE): the API "
                    "answers loopback clients only")
    _compile_answer_path()
    store = ModelStore(settings["MODELS_DIR"], settings["RELOAD_INTERVAL"],
                       on_event=metrics.on_store_event if settings["METRICS"] else None,
                       cache_size=max(0, settings["ANSWER_CACHE"]),
                       cache_bytes=max(0, settings["ANSWER_CACHE_BYTES"]),
                       on_cache_lookup=metrics.on_cache_lookup if settings["METRICS"] else None)
    if settings["MODELS_DIR"]:
        store.check()
        if store.model is None:
            log.warning("no model loaded yet from %s: answering 503 until one is published",
                        settings["MODELS_DIR"])
    else:
        log.warning("no models folder configured (XSELL_MODELS_DIR): answering 503")
    state = XsellState(settings, store, keys)
    app.extensions["xsell"] = state

    register_error_handlers(app)
    for bp in (items_bp, customers_bp, recommendations_bp, ops_bp):
        app.register_blueprint(bp)
    from .dashboard import dashboard_bp

    app.register_blueprint(dashboard_bp)
    _install_hooks(app, state)
    return app


@functools.cache
def _compile_answer_path() -> None:
    """Build the compiled answer path (or read it from numba's cache) once per process,
    before the first model is loaded: a model's load time is then its own."""
    from recsys import fastpath

    started = time.perf_counter()
    fastpath.warm()
    if fastpath.available():
        stats = fastpath.cache_stats()
        log.info("compiled answer path ready in %.2f s (numba cache: %d kernels loaded, %d "
                 "compiled, folder %s)", time.perf_counter() - started, stats["loaded"],
                 stats["compiled"], stats["folder"])
    else:
        log.warning("numba is not installed: answers take the slower numpy path")


def warm_up(app: Flask) -> int:
    """Answer one request of every kind in this process (a preloading gunicorn master).

    Lazily built state (imports, caches, numpy and implicit internals, the model's
    lazily computed parts) is then created once before the fork and shared by all
    workers, instead of being built, and copied, in each. Returns requests made.
    """
    state: XsellState = app.extensions["xsell"]
    model = state.store.model
    if model is None:
        return 0
    rec = model.recommender
    import numpy as np

    item = rec.items.id_of(int(np.argmax(np.asarray(rec.popularity.counts_))))
    customer = rec.customers.id_of(0) if len(rec.customers) else "none"
    client = app.test_client()
    state.warming = True
    try:
        calls = [client.get(f"/v1/items/{item}/also-bought"),
                 client.get(f"/v1/items/{item}/upsell"),
                 client.get(f"/v1/items/{item}/likely-buyers"),
                 client.get(f"/v1/customers/{customer}/next-best-products"),
                 client.get(f"/v1/customers/{customer}/upsell"),
                 client.post("/v1/recommendations/basket", json={"items": [item]}),
                 client.post("/v1/recommendations/next-best", json={"history": [item]}),
                 client.get("/v1/model"), client.get("/openapi.json"), client.get("/metrics")]
    finally:
        state.warming = False
    return len(calls)


def _install_hooks(app: Flask, state: XsellState) -> None:
    settings = state.settings
    allow_open = bool(settings.get("ALLOW_OPEN", False))
    use_metrics = settings["METRICS"]
    use_access_log = settings["ACCESS_LOG"]

    # The hooks run on every request: each reads Flask's context-local proxies once.
    @app.before_request
    def _before():
        req = request._get_current_object()
        ctx = g._get_current_object()
        ctx.start = time.perf_counter()
        ctx.request_id = request_id(req.headers.get("X-Request-ID"))
        state.store.ensure_watcher()
        rule = req.url_rule
        view = app.view_functions.get(rule.endpoint) if rule is not None else None
        needed = getattr(view, "xsell_role", None)
        if state.warming:
            ctx.role = "admin"
            return
        ctx.role = authorize(state.keys, needed, req.headers, req.remote_addr, allow_open)

    @app.after_request
    def _after(response):
        req = request._get_current_object()
        ctx = g._get_current_object()
        rid = getattr(ctx, "request_id", None)
        if rid:
            response.headers["X-Request-ID"] = rid
        start = getattr(ctx, "start", None)
        seconds = time.perf_counter() - start if start is not None else 0.0
        rule = req.url_rule
        endpoint = rule.endpoint if rule is not None else "unmatched"
        if state.warming:
            return response
        strategy = getattr(ctx, "xsell_strategy", None)
        if use_metrics and endpoint != "ops.prometheus_metrics":
            metrics.observe(endpoint, req.method, response.status_code, seconds, strategy)
        if use_access_log:
            write_access_line({
                "ts": utc_now(), "level": "INFO", "logger": "xsell.access",
                "message": "request", "method": req.method, "path": req.path,
                "endpoint": endpoint, "status": response.status_code,
                "duration_ms": round(seconds * 1000, 3), "strategy": strategy,
                "remote": req.remote_addr, "request_id": rid})
        return response
