"""Operations endpoints: liveness, readiness, model facts, metrics, OpenAPI."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from . import metrics
from .views import json_response, requires, served_model

ops_bp = Blueprint("ops", __name__)


@ops_bp.get("/healthz")
def healthz():
    return json_response({"status": "ok"})


@ops_bp.get("/readyz")
def readyz():
    store = current_app.extensions["xsell"].store
    model = served_model()  # 503 no_model when none is loaded
    out = {"status": "ready", "model_version": model.version}
    if store.last_error:
        out["last_error"] = store.last_error  # paths of the server redacted (service.faults)
    if store.pointer_error:
        out["pointer_error"] = store.pointer_error
    return json_response(out)


@ops_bp.get("/v1/model")
@requires("admin")
def model_facts():
    store = current_app.extensions["xsell"].store
    model = served_model()
    manifest = model.manifest
    data = manifest.get("data") or {}
    return json_response({
        "model_version": model.version,
        "trained_at": manifest.get("trained_at"),
        "created_at": manifest.get("created_at"),
        "xsell_version": manifest.get("xsell_version"),
        "published": manifest.get("published"),
        "data": {key: data.get(key) for key in ("customers", "orders_count", "items", "lines")
                 if key in data},
        "metrics": manifest.get("metrics", {}),
        "baselines": manifest.get("baselines", {}),
        "blend": manifest.get("blend", {}),
        "gate": manifest.get("gate", {}),
        "store": store.status(),
    })


@ops_bp.get("/metrics")
def prometheus_metrics():
    store = current_app.extensions["xsell"].store
    return Response(metrics.render(store), mimetype=None, content_type=metrics.CONTENT_TYPE)


@ops_bp.get("/openapi.json")
def openapi():
    from .openapi import document

    return json_response(document())
