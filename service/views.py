"""Helpers every view shares: the served model, JSON responses, the answer cache, roles,
request bodies and the contract's recommendation payload."""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import orjson
from flask import Response, current_app, g, request

from recsys.reasons import recommendation_record

from .errors import ApiError, bad_request
from .params import Query

FALLBACK = "popular-fallback"
# Blended model scores are normalised to [0, 1]; popularity only adds ties below 1e-6.
_EVIDENCE = 1e-5
_EMPTY = np.zeros(0, dtype=np.int64)


def requires(role: str):
    """Mark a view with the least role that may call it (see ``service.auth``)."""

    def mark(view):
        view.xsell_role = role
        return view

    return mark


def _finite(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def dumps(payload: dict) -> bytes:
    """Compact UTF-8 JSON; NaN and infinities (e.g. in a manifest's metrics) become null.

    orjson: a recommendation list encodes in a tenth of the standard library's time.
    """
    try:
        return orjson.dumps(payload)
    except TypeError:  # a type orjson does not take (e.g. a key that is not a string)
        return json.dumps(_finite(payload), separators=(",", ":"), allow_nan=False,
                          ensure_ascii=False).encode()


def json_response(payload: dict, status: int = 200) -> Response:
    return Response(dumps(payload), status=status, mimetype="application/json")


def cached_get(view):
    """Serve a GET answer from the model's answer cache, or compute and remember it.

    The key is the endpoint, the path and the raw query string; only 200 answers
    are kept, and the cache belongs to the model, so a swap empties it.
    """

    @functools.wraps(view)
    def wrapper(**kwargs):
        model = served_model()
        req = request._get_current_object()
        key = (req.url_rule.endpoint, req.path, req.query_string)
        hit = model.cached(key)
        if hit is not None:
            g.xsell_strategy = hit[1]
            return Response(hit[0], mimetype="application/json")
        response = view(**kwargs)
        ctx = g._get_current_object()
        if response.status_code == 200 and getattr(ctx, "xsell_model", None) is model:
            model.remember(key, (response.get_data(), getattr(ctx, "xsell_strategy", None)))
        return response

    return wrapper


def served_model():
    """The model answering this request: fixed at its first use, so a swap halfway through
    a request cannot mix two versions."""
    ctx = g._get_current_object()
    model = getattr(ctx, "xsell_model", None)
    if model is not None:
        return model
    store = current_app.extensions["xsell"].store
    model = ctx.xsell_model = store.model
    if model is None:
        detail = ""
        if store.last_error:
            detail = f"; last load error: {store.last_error['message']}"
        elif store.pointer_error:
            detail = f"; {store.pointer_error}"
        raise ApiError(503, "no_model", "no model version is loaded yet; train one with "
                       f"'xsell train --models DIR'{detail}", {"Retry-After": "5"})
    return model


def settings() -> dict:
    return current_app.extensions["xsell"].settings


def read_body() -> dict:
    """The request body as a JSON object (400 otherwise; 413 above the size limit, with or
    without Content-Length; 415 for a Content-Type other than JSON)."""
    req = request._get_current_object()
    mimetype = req.mimetype
    if mimetype and mimetype != "application/json" and not mimetype.endswith("+json"):
        raise ApiError(415, "unsupported_media_type", f"the body must be application/json, "
                       f"not {mimetype[:100]}")
    data = read_limited(req, current_app.config["MAX_CONTENT_LENGTH"])
    if not data.strip():
        raise bad_request("the request body is empty; send a JSON object", code="invalid_body")
    try:
        body = orjson.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"the request body is not valid JSON ({exc})",
                          code="invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request(f"the request body must be a JSON object, not {type(body).__name__}",
                          code="invalid_body")
    return body


def read_limited(req, limit: int) -> bytes:
    """The body, at most ``limit`` bytes; a longer one is 413 whether or not it declared its
    length (a chunked body is read up to the limit, never whole)."""
    if req.content_length is not None:
        return req.get_data(cache=True)  # werkzeug checks the declared length
    stream = req.environ.get("wsgi.input")
    if stream is None or not req.environ.get("wsgi.input_terminated"):
        return req.get_data(cache=True)
    chunks, size = [], 0
    while size <= limit:
        chunk = stream.read(min(65536, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise ApiError(413, "payload_too_large",
                       f"request body is larger than the limit of {limit} bytes")
    return b"".join(chunks)


def payload(model, answer, fallback: bool = False) -> dict:
    items = [recommendation_record(model.item_info, r, answer.strategy) for r in answer.items]
    g.xsell_strategy = answer.strategy
    out = {"model_version": model.version, "strategy": answer.strategy,
           "recommendations": items}
    if getattr(answer, "truncated_by_floor", False):
        out["truncated_by_floor"] = True
    return out


def popular(model, query: Query, query_idx=_EMPTY):
    return model.recommender.popular(query.limit, query.filters, query_idx)


def has_evidence(answer) -> bool:
    return any(r.score > _EVIDENCE for r in answer.items)


def unknown(kind: str, ids) -> ApiError:
    shown = ", ".join(repr(i) for i in ids[:5]) + (" ..." if len(ids) > 5 else "")
    return ApiError(404, f"unknown_{kind}", f"unknown {kind} id {shown}: the model has not seen "
                    "it (use fallback=true for popular items instead)")
