"""The recommendation API (``/v1``): item, basket and customer endpoints.

Each view parses its parameters into a :class:`~service.params.Query`, maps
external ids to indexes at the boundary, asks the current model, and turns the
:class:`~recsys.recommender.Answer` into the contract's JSON. Unknown ids (and
known ones the model has no evidence for) get popular items, marked
``popular-fallback``, unless ``fallback=false`` asks for a 404.
"""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import orjson
from flask import Blueprint, Response, current_app, g, request

from recsys.reasons import recommendation_record
from recsys.vocab import UNKNOWN

from .errors import ApiError, bad_request
from .params import Query, check_id, id_list, query_from_args, query_from_body

items_bp = Blueprint("items", __name__, url_prefix="/v1/items")
customers_bp = Blueprint("customers", __name__, url_prefix="/v1/customers")
recommendations_bp = Blueprint("recommendations", __name__, url_prefix="/v1/recommendations")

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
    """The request body as a JSON object (400 otherwise; 413 above the size limit)."""
    data = request.get_data(cache=True)
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


def item_index(model, item_id: str) -> int:
    check_id("item_id", item_id)
    return model.recommender.items.index(item_id)


def customer_index(model, customer_id: str) -> int:
    check_id("customer_id", customer_id)
    return model.recommender.customers.index(customer_id)


def _item_answer(item_id: str, ask, evidence_fallback: bool = True) -> Response:
    """Shared body of the single-item endpoints: unknown -> fallback or 404.

    ``evidence_fallback``: a known item the model has no evidence for also gets
    popular items (also-bought); upsell/downsell answer their own, maybe empty, list
    (a best-seller is no upsell)."""
    query = query_from_args(request.args, settings())
    model = served_model()
    idx = item_index(model, item_id)
    if idx == UNKNOWN:
        if not query.fallback:
            raise unknown("item", [item_id])
        return json_response(payload(model, popular(model, query)))
    answer = ask(model, idx, query)
    if evidence_fallback and not has_evidence(answer):
        if not query.fallback:
            raise ApiError(404, "no_evidence", f"the model has no evidence for item {item_id!r} "
                           "yet (use fallback=true for popular items instead)")
        answer = popular(model, query, np.asarray([idx]))
    return json_response(payload(model, answer))


@items_bp.get("/<path:item_id>/also-bought")
@requires("storefront")
@cached_get
def also_bought(item_id: str):
    return _item_answer(item_id, lambda model, idx, q: model.recommender.also_bought(
        idx, q.limit, q.filters))


def _optional_method(model, name: str):
    method = getattr(model.recommender, name, None)
    if method is None:
        raise ApiError(501, "not_implemented", f"this model release has no {name} yet")
    return method


@items_bp.get("/<path:item_id>/upsell")
@requires("storefront")
@cached_get
def item_upsell(item_id: str):
    return _item_answer(item_id, lambda model, idx, q: _optional_method(model, "upsell")(
        idx, q.limit, q.filters), evidence_fallback=False)


@items_bp.get("/<path:item_id>/downsell")
@requires("storefront")
@cached_get
def item_downsell(item_id: str):
    return _item_answer(item_id, lambda model, idx, q: _optional_method(model, "downsell")(
        idx, q.limit, q.filters), evidence_fallback=False)


@items_bp.get("/<path:item_id>/likely-buyers")
@requires("crm")
@cached_get
def likely_buyers(item_id: str):
    query = query_from_args(request.args, settings())
    model = served_model()
    rec = model.recommender
    idx = item_index(model, item_id)
    if idx == UNKNOWN:
        if not query.fallback:
            raise unknown("item", [item_id])
        activity = model.customer_activity()
        best = np.argsort(-activity, kind="stable")[:query.limit]
        top = activity[best[0]] if len(best) and activity[best[0]] > 0 else 1.0
        strategy, pairs = FALLBACK, [(int(c), float(activity[c] / top)) for c in best]
    else:
        strategy, pairs = rec.likely_buyers(idx, query.limit)
    g.xsell_strategy = strategy
    customers = [{"customer_id": rec.customers.id_of(c), "score": round(s, 6)} for c, s in pairs]
    return json_response({"model_version": model.version, "strategy": strategy,
                          "customers": customers})


@customers_bp.get("/<path:customer_id>/next-best-products")
@requires("crm")
@cached_get
def next_best(customer_id: str):
    query = query_from_args(request.args, settings())
    model = served_model()
    idx = customer_index(model, customer_id)
    if idx == UNKNOWN:
        if not query.fallback:
            raise unknown("customer", [customer_id])
        return json_response(payload(model, popular(model, query)))
    answer = model.recommender.next_best(idx, query.limit, query.filters)
    if not has_evidence(answer):
        if not query.fallback:
            raise ApiError(404, "no_evidence", f"the model has no evidence for customer "
                           f"{customer_id!r} yet (use fallback=true for popular items instead)")
        bought = model.recommender.history[idx].indices.astype(np.int64)
        answer = popular(model, query, bought)
    return json_response(payload(model, answer))


@customers_bp.get("/<path:customer_id>/upsell")
@requires("crm")
@cached_get
def customer_upsell(customer_id: str):
    query = query_from_args(request.args, settings())
    model = served_model()
    idx = customer_index(model, customer_id)
    if idx == UNKNOWN:
        if not query.fallback:
            raise unknown("customer", [customer_id])
        return json_response(payload(model, popular(model, query)))
    method = _optional_method(model, "customer_upsell")
    return json_response(payload(model, method(idx, query.limit, query.filters)))


def _known_items(model, ids: list[str]) -> tuple[np.ndarray, list[str]]:
    idx = model.item_indices(ids)
    missing = [i for i, j in zip(ids, idx, strict=True) if j == UNKNOWN]
    known = sorted({j for j in idx if j != UNKNOWN})
    return np.asarray(known, dtype=np.int64) if known else _EMPTY, missing


@recommendations_bp.post("/basket")
@requires("storefront")
def basket():
    body = read_body()
    if "items" not in body:
        raise bad_request("the body needs 'items': a JSON array of item ids", code="invalid_body")
    ids = id_list("items", body["items"], settings()["MAX_BASKET_ITEMS"], allow_empty=False)
    query = query_from_body(request.args, body, settings(), {"items"})
    model = served_model()
    known, missing = _known_items(model, ids)
    if not len(known):
        if not query.fallback:
            raise unknown("item", missing)
        out = payload(model, popular(model, query))
    else:
        answer = model.recommender.basket(known, query.limit, query.filters)
        if not has_evidence(answer) and query.fallback:
            answer = popular(model, query, known)
        out = payload(model, answer)
    if missing:
        out["unknown_items"] = missing
    return json_response(out)


@recommendations_bp.post("/next-best")
@requires("storefront")
def next_best_history():
    body = read_body()
    if "history" not in body:
        raise bad_request("the body needs 'history': a JSON array of item ids the customer "
                          "bought", code="invalid_body")
    ids = id_list("history", body["history"], settings()["MAX_HISTORY_ITEMS"])
    query = query_from_body(request.args, body, settings(), {"history"})
    model = served_model()
    known, missing = _known_items(model, ids)
    if not len(known):
        if ids and not query.fallback:
            raise unknown("item", missing)
        out = payload(model, popular(model, query))
    else:
        answer = model.recommender.next_best_for_history(known, query.limit, query.filters)
        if not has_evidence(answer) and query.fallback:
            answer = popular(model, query, known)
        out = payload(model, answer)
    if missing:
        out["unknown_items"] = missing
    return json_response(out)
