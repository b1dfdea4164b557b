"""The OpenAPI 3 document of the service (``GET /openapi.json``).

Written by hand next to the views it describes; ``tests/service/test_openapi.py``
validates it, checks that it names every route of the app, and runs
schemathesis against a live server with it.
"""

from __future__ import annotations

import copy

from recsys.kinds import FILTER_FIELDS, KIND, FilterField

from .config import DEFAULTS
from .params import MAX_ID_LENGTH

_ERROR_CODES = ["invalid_parameter", "invalid_body", "invalid_json", "too_many_items",
                "missing_api_key", "invalid_api_key", "forbidden", "unknown_item",
                "unknown_customer", "no_evidence", "not_found", "method_not_allowed",
                "payload_too_large", "unsupported_media_type", "uri_too_long",
                "headers_too_large", "bad_request", "not_implemented", "no_model",
                "internal_error"]

# Ids: not empty and not only whitespace (the service answers 400 for those).
_NONEMPTY = {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH, "pattern": r"\S"}

# Rules JSON Schema cannot state (it compares no two values and counts no encoded bytes),
# stated where clients read them; tests/reliability/schemathesis_hooks.py tells the fuzzer.
_PRICE_RULE = ("plain decimal number >= 0; min_price must not be above max_price "
               "(400 invalid_parameter)")
MAX_BODY_BYTES = DEFAULTS["MAX_BODY_BYTES"]
_BODY_RULE = (f"JSON (Content-Type application/json, else 415), at most {MAX_BODY_BYTES} bytes "
              f"as sent (XSELL_MAX_BODY_BYTES; chunked bodies too), else 413: the id lists' "
              f"maxItems are not reachable with ids of the maximal length")


def _bounds(field: FilterField, schema: dict) -> dict:
    for key, value in (("minimum", field.minimum), ("maximum", field.maximum)):
        if value is not None:
            schema[key] = value
    return schema


def _query_parameter(field: FilterField) -> dict:
    """A filter field (recsys.kinds.FILTER_FIELDS) as a query parameter."""
    out = {"name": field.name, "in": "query",
           "description": _PRICE_RULE if field.type == "price" else field.help}
    if field.type == "categories":
        return {**out, "style": "form", "explode": True,
                "schema": {"type": "array", "items": {"type": "string"}}}
    if field.type == "bool":
        return {**out, "description": "true: " + field.help, "schema": {"type": "boolean"}}
    schema = {"price": {"type": "number"}, "number": {"type": "number"},
              "int": {"type": "integer"}, "ids": {"type": "string"}, "id": _NONEMPTY}[field.type]
    return {**out, "schema": _bounds(field, dict(schema))}


def _filter_properties() -> dict:
    """The ``filters`` object of a POST body: every filter field, nullable."""
    ids = {"oneOf": [{"type": "string", "minLength": 1}, {"type": "array", "items": _NONEMPTY}]}
    out = {}
    for field in FILTER_FIELDS:
        if field.type == "categories":
            out[field.name] = out["categories"] = ids
        elif field.type == "ids":
            out[field.name] = {"oneOf": [{"type": "string"},
                                         {"type": "array", "items": _NONEMPTY}]}
        elif field.type == "id":
            out[field.name] = {**_NONEMPTY, "nullable": True}
        else:
            kind = {"price": "number", "number": "number", "int": "integer",
                    "bool": "boolean"}[field.type]
            schema = {"type": kind, "nullable": True}
            if field.type == "price":
                schema["description"] = _PRICE_RULE
            out[field.name] = _bounds(field, schema)
    return out

# Options that every POST recommendation body takes besides its own ids.
_REQUEST_OPTIONS = {
    "customer_id": {**_NONEMPTY, "nullable": True},
    "limit": {"type": "integer", "minimum": 1, "maximum": 100, "nullable": True},
    "fallback": {"type": "boolean", "nullable": True},
    "filters": {"$ref": "#/components/schemas/Filters"},
}

SCHEMAS = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {"error": {
            "type": "object",
            "required": ["code", "message"],
            "additionalProperties": False,
            "properties": {
                "code": {"type": "string", "description": "machine-readable, e.g. "
                         + ", ".join(_ERROR_CODES)},
                "message": {"type": "string", "description": "what is wrong and what to do"},
            },
        }},
    },
    "Reason": {
        "type": "object",
        "required": ["because_of", "support"],
        "additionalProperties": False,
        "properties": {
            "because_of": {"type": "array", "items": {"type": "string"},
                           "description": "query or history item ids behind this item"},
            "support": {"type": "integer", "nullable": True, "minimum": 0,
                        "description": "customers behind the evidence (co-bought with the "
                                       "first because_of item; buyers for popular items)"},
            "lift": {"type": "number", "description": "P(item | because_of[0]) / P(item)"},
            "confidence": {"type": "number", "description": "P(item | because_of[0])"},
            "price_ratio": {"type": "number",
                            "description": "upsell/downsell: price / because_of[0]'s price"},
            "filled": {"type": "string", "enum": ["popular"],
                       "description": "a slot no customer bought together with a query "
                                      "item: filled for lack of evidence, not co-bought"},
        },
    },
    "Recommendation": {
        "type": "object",
        "required": ["item_id", "score", "name", "category", "price", "in_stock", "reason"],
        "properties": {
            "item_id": {"type": "string"},
            "score": {"type": "number"},
            "name": {"type": "string"},
            "category": {"type": "string", "nullable": True},
            "price": {"type": "number", "nullable": True},
            "in_stock": {"type": "boolean"},
            "metadata": {"type": "object", "description": "further catalog columns"},
            "reason": {"$ref": "#/components/schemas/Reason"},
        },
    },
    "Recommendations": {
        "type": "object",
        "required": ["model_version", "strategy", "recommendations"],
        "properties": {
            "model_version": {"type": "string"},
            "strategy": {"type": "string", "description": "co-purchase, als, blend, "
                         "popular-fallback, ..."},
            "recommendations": {"type": "array",
                                "items": {"$ref": "#/components/schemas/Recommendation"}},
            "unknown_items": {"type": "array", "items": {"type": "string"},
                              "description": "ids of the request the model does not know"},
            "truncated_by_floor": {"type": "boolean", "description": "the relevance floor "
                                   "removed candidates: fewer items than asked"},
        },
    },
    "LikelyBuyers": {
        "type": "object",
        "required": ["model_version", "strategy", "customers"],
        "properties": {
            "model_version": {"type": "string"},
            "strategy": {"type": "string"},
            "customers": {"type": "array", "items": {
                "type": "object", "required": ["customer_id", "score"],
                "properties": {"customer_id": {"type": "string"},
                               "score": {"type": "number"}}}},
        },
    },
    "Filters": {
        "type": "object",
        "additionalProperties": False,
        "properties": _filter_properties(),
    },
    "BasketRequest": {
        "type": "object",
        "required": ["items"],
        "additionalProperties": False,
        "properties": {
            "items": {"type": "array", "minItems": 1, "maxItems": 100, "items": _NONEMPTY},
            **_REQUEST_OPTIONS,
        },
    },
    "HistoryRequest": {
        "type": "object",
        "required": ["history"],
        "additionalProperties": False,
        "properties": {
            "history": {"type": "array", "maxItems": 1000, "items": _NONEMPTY},
            **_REQUEST_OPTIONS,
        },
    },
    "ModelFacts": {
        "type": "object",
        "required": ["model_version", "trained_at", "data", "metrics", "store"],
        "properties": {
            "model_version": {"type": "string"},
            "trained_at": {"type": "string", "nullable": True},
            "created_at": {"type": "string", "nullable": True},
            "xsell_version": {"type": "string", "nullable": True},
            "published": {"type": "boolean", "nullable": True},
            "data": {"type": "object"},
            "metrics": {"type": "object"},
            "baselines": {"type": "object"},
            "blend": {"type": "object"},
            "gate": {"type": "object"},
            "store": {"type": "object", "description": "reload state: pointer, reloads, "
                      "reload_failures, last_error (a new version that could not be served)"},
        },
    },
}

QUERY_PARAMETERS = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                "maximum": 100, "default": 10}},
    {"name": "fallback", "in": "query",
     "description": "true (default): unknown or too-new ids get popular items, marked "
                    "popular-fallback; false: 404",
     "schema": {"type": "boolean", "default": True}},
    *(_query_parameter(field) for field in FILTER_FIELDS),
]
_REQUEST_ID = {"X-Request-ID": {"description": "the caller's X-Request-ID, or a new one",
                                "schema": {"type": "string"}}}


def _error(description: str) -> dict:
    return {"description": description, "headers": _REQUEST_ID,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _json(schema: str, description: str) -> dict:
    return {"description": description, "headers": _REQUEST_ID,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


def _errors(*statuses: int) -> dict:
    text = {
        400: "an invalid parameter or body",
        401: "a missing or wrong API key (when keys are configured)",
        403: "a key whose role may not call this, or a non-loopback client without keys",
        404: "an unknown id with fallback=false, or no such path",
        405: "method not allowed",
        413: "the body is larger than the limit",
        415: "unsupported media type",
        500: "a bug in the service (never caused by a request)",
        503: "no model is loaded yet",
    }
    return {str(s): _error(text[s]) for s in statuses}


# 'Authorization: Bearer <key>' is accepted too; documented in the descriptions only, since
# a second scheme would read as "either header" to clients and fuzzers alike.
_SECURITY = [{"ApiKey": []}]


def _operation(summary: str, role: str, ok: dict, errors: tuple, parameters=None,
               body: str | None = None, op_id: str = "") -> dict:
    op = {"summary": summary, "operationId": op_id,
          "description": f"Role: {role} or above (when API keys are configured: send "
                         "'X-API-Key: <key>' or 'Authorization: Bearer <key>').",
          "security": _SECURITY,
          "responses": {"200": ok, **_errors(*errors)}}
    if parameters:
        op["parameters"] = parameters
    if body:
        op["requestBody"] = {"required": True, "description": _BODY_RULE,
                             "x-max-body-bytes": MAX_BODY_BYTES,
                             "content": {"application/json": {
                                 "schema": {"$ref": f"#/components/schemas/{body}"}}}}
    return op


def _path_param(name: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": _NONEMPTY}


_GET_ERRORS = (400, 401, 403, 404, 405, 500, 503)
_POST_ERRORS = (400, 401, 403, 404, 405, 413, 415, 500, 503)


def _item_get(summary: str, op_id: str) -> dict:
    return {"get": _operation(summary, "storefront", _json("Recommendations", "recommendations"),
                              _GET_ERRORS,
                              [_path_param("item_id"), *QUERY_PARAMETERS], op_id=op_id)}


def _document() -> dict:
    paths = {
        KIND["also_bought"].path: _item_get(
            "Customers who bought this item also chose (complements)", "alsoBought"),
        KIND["upsell"].path: _item_get(
            "A higher-priced alternative to this item", "itemUpsell"),
        KIND["downsell"].path: _item_get(
            "A cheaper alternative to this item", "itemDownsell"),
        KIND["likely_buyers"].path: {"get": _operation(
            "Customers most likely to buy this item next", "crm",
            _json("LikelyBuyers", "customers"), _GET_ERRORS,
            [_path_param("item_id"), *QUERY_PARAMETERS], op_id="likelyBuyers")},
        KIND["next_best"].path: {"get": _operation(
            "Next-best products for a known customer", "crm",
            _json("Recommendations", "recommendations"), _GET_ERRORS,
            [_path_param("customer_id"), *QUERY_PARAMETERS], op_id="nextBestProducts")},
        KIND["customer_upsell"].path: {"get": _operation(
            "The next tier of what this customer already bought", "crm",
            _json("Recommendations", "recommendations"), _GET_ERRORS,
            [_path_param("customer_id"), *QUERY_PARAMETERS], op_id="customerUpsell")},
        KIND["basket"].path: {"post": _operation(
            "Cart completion for several items at once", "storefront",
            _json("Recommendations", "recommendations"), _POST_ERRORS, QUERY_PARAMETERS,
            body="BasketRequest", op_id="basket")},
        KIND["next_best_history"].path: {"post": _operation(
            "Next-best products for a customer the model has not seen, from a history",
            "storefront", _json("Recommendations", "recommendations"), _POST_ERRORS,
            QUERY_PARAMETERS, body="HistoryRequest", op_id="nextBestFromHistory")},
        "/v1/model": {"get": _operation(
            "The current model: version, trained_at, data counts, evaluation metrics",
            "admin", _json("ModelFacts", "model facts"), (401, 403, 405, 500, 503),
            op_id="model")},
        "/healthz": {"get": {"summary": "Liveness", "operationId": "healthz", "security": [],
                             "responses": {"200": {"description": "alive", "content": {
                                 "application/json": {"schema": {
                                     "type": "object", "required": ["status"],
                                     "properties": {"status": {"type": "string"}}}}}},
                                 **_errors(405, 500)}}},
        "/readyz": {"get": {"summary": "Readiness: a model is loaded", "operationId": "readyz",
                            "security": [],
                            "responses": {"200": {"description": "ready", "content": {
                                "application/json": {"schema": {
                                    "type": "object", "required": ["status", "model_version"],
                                    "properties": {"status": {"type": "string"},
                                                   "model_version": {"type": "string"},
                                                   "last_error": {"type": "object"}}}}}},
                                **_errors(405, 500, 503)}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "operationId": "metrics",
                             "security": [],
                             "responses": {"200": {"description": "Prometheus text format",
                                                   "content": {"text/plain": {
                                                       "schema": {"type": "string"}}}},
                                           **_errors(405, 500)}}},
        "/openapi.json": {"get": {"summary": "This document", "operationId": "openapi",
                                  "security": [],
                                  "responses": {"200": {"description": "OpenAPI 3",
                                                        "content": {"application/json": {
                                                            "schema": {"type": "object"}}}},
                                                **_errors(405, 500)}}},
        "/dashboard": {"get": {"summary": "The merchandiser's workbench (HTML)",
                               "operationId": "dashboard", "security": _SECURITY,
                               "description": "Role: admin (when API keys are configured). "
                               "A browser without a key header is sent to the sign-in form "
                               "(/dashboard/sign-in) and then keeps a session cookie; see "
                               "docs/DASHBOARD.md.",
                               "responses": {"200": {"description": "HTML page",
                                                     "content": {"text/html": {
                                                         "schema": {"type": "string"}}}},
                                             "302": {"description": "to the sign-in form"},
                                             **_errors(401, 403, 405, 500, 503)}}},
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "xsell", "version": _version(),
                 "description": "Cross-sell and upsell recommendations. Errors are "
                                "{\"error\": {\"code\", \"message\"}}."},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                           "description": "or 'Authorization: Bearer <key>'"},
            },
        },
    }


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("xsell")
    except Exception:  # not installed (a source checkout)
        from recsys import __version__

        return __version__


_CACHE: dict = {}


def document() -> dict:
    if "doc" not in _CACHE:
        _CACHE["doc"] = _document()
    return copy.deepcopy(_CACHE["doc"])
