"""The recommendation API (``/v1``): item, basket and customer endpoints.

Each view parses its parameters into a :class:`~service.params.Query`, maps
external ids to indexes at the boundary, asks the current model, and turns the
:class:`~recsys.recommender.Answer` into the contract's JSON. Unknown ids (and
known ones the model has no evidence for) get popular items, marked
``popular-fallback``, unless ``fallback=false`` asks for a 404.
"""

from __future__ import annotations

import numpy as np
import orjson
from flask import Blueprint, Response, g, request

from recsys.kinds import KIND
from recsys.vocab import UNKNOWN

from .answer_cache import post_key
from .errors import ApiError, bad_request
from .params import Query, check_id, id_list, query_from_args, query_from_body
from .views import (
    FALLBACK,
    cached_get,
    dumps,
    has_evidence,
    json_response,
    payload,
    popular,
    read_body,
    requires,
    served_model,
    settings,
    unknown,
)

items_bp = Blueprint("items", __name__, url_prefix="/v1/items")
customers_bp = Blueprint("customers", __name__, url_prefix="/v1/customers")
recommendations_bp = Blueprint("recommendations", __name__, url_prefix="/v1/recommendations")


def _rule(kind: str, blueprint: Blueprint) -> str:
    """The route of a query kind under ``blueprint`` (paths: recsys.kinds.QUERY_KINDS)."""
    return KIND[kind].rule(blueprint.url_prefix)


_EMPTY = np.zeros(0, dtype=np.int64)


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


@items_bp.get(_rule("also_bought", items_bp))
@requires("storefront")
@cached_get
def also_bought(item_id: str):
    return _item_answer(item_id, lambda model, idx, q: model.recommender.also_bought(
        idx, q.limit, q.filters))


@items_bp.get(_rule("upsell", items_bp))
@requires("storefront")
@cached_get
def item_upsell(item_id: str):
    return _item_answer(item_id, lambda model, idx, q: model.recommender.upsell(
        idx, q.limit, q.filters), evidence_fallback=False)


@items_bp.get(_rule("downsell", items_bp))
@requires("storefront")
@cached_get
def item_downsell(item_id: str):
    return _item_answer(item_id, lambda model, idx, q: model.recommender.downsell(
        idx, q.limit, q.filters), evidence_fallback=False)


@items_bp.get(_rule("likely_buyers", items_bp))
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


@customers_bp.get(_rule("next_best", customers_bp))
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


@customers_bp.get(_rule("customer_upsell", customers_bp))
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
    return json_response(payload(model, model.recommender.customer_upsell(
        idx, query.limit, query.filters)))


def _known_items(model, ids: list[str]) -> tuple[np.ndarray, list[str]]:
    idx = model.item_indices(ids)
    missing = [i for i, j in zip(ids, idx, strict=True) if j == UNKNOWN]
    known = sorted({j for j in idx if j != UNKNOWN})
    return np.asarray(known, dtype=np.int64) if known else _EMPTY, missing


@recommendations_bp.post(_rule("basket", recommendations_bp))
@requires("storefront")
def basket():
    body = read_body()
    if "items" not in body:
        raise bad_request("the body needs 'items': a JSON array of item ids", code="invalid_body")
    ids = id_list("items", body["items"], settings()["MAX_BASKET_ITEMS"], allow_empty=False)
    query = query_from_body(request.args, body, settings(), {"items"})

    def answer(model, known, missing):
        if not len(known):
            if not query.fallback:
                raise unknown("item", missing)
            return payload(model, popular(model, query))
        answer = model.recommender.basket(known, query.limit, query.filters)
        if not has_evidence(answer) and query.fallback:
            answer = popular(model, query, known)
        return payload(model, answer)

    return _cached_post("recommendations.basket", ids, query, answer)


@recommendations_bp.post(_rule("next_best_history", recommendations_bp))
@requires("storefront")
def next_best_history():
    body = read_body()
    if "history" not in body:
        raise bad_request("the body needs 'history': a JSON array of item ids the customer "
                          "bought", code="invalid_body")
    ids = id_list("history", body["history"], settings()["MAX_HISTORY_ITEMS"])
    query = query_from_body(request.args, body, settings(), {"history"})

    def answer(model, known, missing):
        if not len(known):
            if ids and not query.fallback:
                raise unknown("item", missing)
            return payload(model, popular(model, query))
        answer = model.recommender.next_best_for_history(known, query.limit, query.filters)
        if not has_evidence(answer) and query.fallback:
            answer = popular(model, query, known)
        return payload(model, answer)

    return _cached_post("recommendations.next_best_history", ids, query, answer)


def _cached_post(endpoint: str, ids: list[str], query: Query, compute) -> Response:
    """A POSTed cart or history answered from the model's answer cache (keyed on the
    distinct ids, sorted, and the parameters: ``service.answer_cache.post_key``) or by
    ``compute(model, known indexes, unknown ids)`` -> payload, then remembered.

    The cached body leaves ``unknown_items`` out; it is added per request, in the
    client's order."""
    model = served_model()
    key = post_key(endpoint, ids, query)
    hit = model.cached(key)
    if hit is not None:
        body, g.xsell_strategy, any_missing = hit
        missing = [i for i, j in zip(ids, model.item_indices(ids), strict=True)
                   if j == UNKNOWN] if any_missing else None
    else:
        known, missing = _known_items(model, ids)
        body = dumps(compute(model, known, missing))
        model.remember(key, (body, getattr(g, "xsell_strategy", None), bool(missing)))
    if missing:
        body = body[:-1] + b',"unknown_items":' + orjson.dumps(missing) + b"}"
    return Response(body, mimetype="application/json")
