"""Turning query parameters and JSON bodies into validated queries (400 with a clear message)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from recsys.exceptions import ConfigError
from recsys.kinds import FILTER_FIELDS as FILTER_FIELDS_TABLE
from recsys.kinds import FILTER_NAMES, FilterField
from recsys.rules import Filters

from .errors import bad_request

MAX_ID_LENGTH = 256
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
# Numbers in query strings: plain ASCII digits only (int() and float() also take "1_0",
# "+5", " 5 " and non-ASCII digits, which no client means to send).
_INT_TEXT = re.compile(r"[0-9]{1,12}")
_DECIMAL_TEXT = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
FILTER_FIELDS = FILTER_NAMES


@dataclass
class Query:
    limit: int
    filters: Filters
    fallback: bool


def parse_bool(name: str, value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise bad_request(f"{name} must be true or false, not {value!r}")


def parse_int(name: str, value, low: int, high: int, text: bool = True) -> int:
    """An integer in [low, high]; ``text``: from a query string (else a JSON number)."""
    if isinstance(value, bool) or (isinstance(value, str) and not text):
        raise bad_request(f"{name} must be an integer from {low} to {high}, not {value!r}")
    if isinstance(value, str):
        if not _INT_TEXT.fullmatch(value):
            raise bad_request(f"{name} must be an integer from {low} to {high}, "
                              f"not {value!r}")
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or not low <= value <= high:
        raise bad_request(f"{name} must be an integer from {low} to {high}, not {value!r}")
    return value


def parse_price(name: str, value, text: bool = True) -> float:
    """A finite number >= 0; ``text``: from a query string (else a JSON number)."""
    if isinstance(value, bool) or (isinstance(value, str) and
                                   (not text or not _DECIMAL_TEXT.fullmatch(value))):
        raise bad_request(f"{name} must be a number, not {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise bad_request(f"{name} must be a number, not {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise bad_request(f"{name} must be a finite number >= 0, not {value!r}")
    return number


def check_id(name: str, value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise bad_request(f"{name} must be a non-empty string, not {value!r}")
    if len(value) > MAX_ID_LENGTH:
        raise bad_request(f"{name} is longer than {MAX_ID_LENGTH} characters")
    return value


def id_list(name: str, value, max_items: int, allow_empty: bool = True) -> list[str]:
    if not isinstance(value, list):
        raise bad_request(f"{name} must be a JSON array of id strings, not "
                          f"{type(value).__name__}")
    if len(value) > max_items:
        raise bad_request(f"{name} holds {len(value)} ids; at most {max_items} are allowed",
                          code="too_many_items")
    if not value and not allow_empty:
        raise bad_request(f"{name} must hold at least one id")
    for pos, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise bad_request(f"{name}[{pos}] must be a non-empty string, not {item!r}")
        if len(item) > MAX_ID_LENGTH:
            raise bad_request(f"{name}[{pos}] is longer than {MAX_ID_LENGTH} characters")
    return value


def _split_ids(values: list[str]) -> list[str]:
    out = []
    for value in values:
        out.extend(part.strip() for part in value.split(",") if part.strip())
    return out


def _finish(filters: Filters) -> Filters:
    try:
        return filters.validate()
    except ConfigError as exc:
        raise bad_request(str(exc)) from None


# Parameters given at most once (categories repeat; exclude ids may come in several).
SINGLE_VALUED = ("limit", "fallback", *(field.name for field in FILTER_FIELDS_TABLE
                                         if field.type not in ("categories", "ids")))
# The most ids one list filter (exclude, a body's categories) may hold.
MAX_FILTER_IDS = 1000


def _check_single(args) -> None:
    for name in SINGLE_VALUED:
        if len(args.getlist(name)) > 1:
            raise bad_request(f"{name} is given more than once; give it once")


# ------------------------------------------- filter fields, by their type in the table
# Every filter field of recsys.kinds.FILTER_FIELDS is parsed by its type's rule, in the
# table's order (the first bad field is the one reported). Query parameters are text;
# a body's values are JSON values (numbers must be JSON numbers).


def _body_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise bad_request(f"{name} must be true or false")
    return value


def _scalar(field: FilterField, name: str, value, text: bool):
    """One value of a single-valued field (``name``: as the error message spells it)."""
    if field.type in ("price", "number"):
        return parse_price(name, value, text)
    if field.type == "int":
        return parse_int(name, value, int(field.minimum), int(field.maximum), text)
    if field.type == "bool":
        return parse_bool(name, value) if text else _body_bool(name, value)
    if field.type == "id":
        return check_id(name, value)
    raise TypeError(f"filter field {field.name}: no parser for type {field.type!r}")


def _from_args(field: FilterField, args, filters: Filters) -> None:
    if field.type == "categories":  # repeatable; empty values ignored
        filters.categories = [c for c in args.getlist(field.name) if c != ""]
    elif field.type == "ids":  # comma-separated, possibly in several parameters
        ids = _split_ids(args.getlist(field.name))
        if len(ids) > MAX_FILTER_IDS:
            raise bad_request(f"{field.name} holds more than {MAX_FILTER_IDS} ids",
                              code="too_many_items")
        setattr(filters, field.attribute, ids)
    elif args.get(field.name) is not None:
        setattr(filters, field.attribute, _scalar(field, field.name, args[field.name], True))


def _from_body(field: FilterField, body: dict, filters: Filters) -> None:
    if field.type == "categories":  # a string or an array, spelt either way
        for key in (field.name, field.attribute):
            if key in body:
                value = body[key]
                value = [value] if isinstance(value, str) else value
                filters.categories = id_list(f"filters.{key}", value, MAX_FILTER_IDS)
    elif field.type == "ids":  # a comma-separated string or an array
        if field.name in body:
            value = body[field.name]
            value = _split_ids([value]) if isinstance(value, str) else value
            setattr(filters, field.attribute,
                    id_list(f"filters.{field.name}", value, MAX_FILTER_IDS))
    elif body.get(field.name) is not None:
        setattr(filters, field.attribute,
                _scalar(field, f"filters.{field.name}", body[field.name], False))


def filters_from_args(args) -> Filters:
    """Filters from query parameters (``category`` repeatable, ``exclude`` comma-separated)."""
    if not args:  # the common case: no parameters, the defaults
        return Filters()
    _check_single(args)
    filters = Filters()
    for field in FILTER_FIELDS_TABLE:
        _from_args(field, args, filters)
    return filters


def filters_from_body(body, filters: Filters) -> Filters:
    """Apply a body's ``filters`` object on top of ``filters`` (from the query string)."""
    if body is None:
        return filters
    if not isinstance(body, dict):
        raise bad_request("filters must be a JSON object")
    unknown = sorted(set(body) - set(FILTER_FIELDS) - {"categories"})
    if unknown:
        raise bad_request(f"filters: unknown field(s) {', '.join(unknown)}; known: "
                          f"{', '.join(FILTER_FIELDS)}")
    for field in FILTER_FIELDS_TABLE:
        _from_body(field, body, filters)
    return filters


def query_from_args(args, settings: dict) -> Query:
    limit = settings["DEFAULT_LIMIT"]
    if "limit" in args:
        limit = parse_int("limit", args["limit"], 1, settings["MAX_LIMIT"])
    fallback = parse_bool("fallback", args["fallback"]) if "fallback" in args else True
    return Query(limit, _finish(filters_from_args(args)), fallback)


def query_from_body(args, body: dict, settings: dict, allowed: set[str]) -> Query:
    """A POST query: query parameters first, then the body's ``limit``/``fallback``/``filters``."""
    known = allowed | {"limit", "fallback", "filters", "customer_id"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise bad_request(f"unknown body field(s) {', '.join(unknown)}; known: "
                          f"{', '.join(sorted(known))}", code="invalid_body")
    query = query_from_args(args, settings)
    if body.get("limit") is not None:
        query.limit = parse_int("limit", body["limit"], 1, settings["MAX_LIMIT"], text=False)
    if body.get("fallback") is not None:
        query.fallback = _body_bool("fallback", body["fallback"])
    if "filters" in body and not isinstance(body["filters"], dict):
        raise bad_request("filters must be a JSON object")
    filters = filters_from_body(body.get("filters"), query.filters)
    if body.get("customer_id") is not None:
        filters.customer_id = check_id("customer_id", body["customer_id"])
    query.filters = _finish(filters)
    return query
