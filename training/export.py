"""Batch recommendations for CRM import: ``xsell export`` as JSON Lines or CSV.

Each recommendation is recorded as the API gives it (item facts and reason,
recsys.reasons), answered query by query through the same methods the service
uses (relevance floor included: a slot nothing supports is left out, not
padded). ``--slim`` records (``item_id`` and ``score``) are scored in batches
(a block of queries at a time through sparse products and one dense top-k,
never a Python loop over the catalog per query; business filters become one
item mask applied before the top-k cut), except where an option needs the
one-query path (``max_per_category`` and the relevance floor, and the
upsell/downsell kinds, whose candidates are sparse).
"""

from __future__ import annotations

import csv
import json
import logging

import numpy as np

from recsys.data import read_text_lines
from recsys.exceptions import ConfigError, DataError
from recsys.kinds import EXPORT_KINDS
from recsys.reasons import recommendation_record
from recsys.recommender import Answer, Recommender
from recsys.rules import Filters

log = logging.getLogger(__name__)

KINDS = tuple(EXPORT_KINDS)
_BATCH = 512


def _one_query(filters: Filters | None) -> bool:
    """Whether ``filters`` need the one-query path (diversity or a relevance floor)."""
    return filters is not None and bool(filters.max_per_category or filters.min_support is not None
                                        or filters.min_score is not None)


def _records_next_best(rec: Recommender, ids: list[str], limit: int,
                       filters: Filters | None = None, slim: bool = False):
    out = _Records(rec, slim)
    idx = rec.customers.indices(ids)
    if _one_query(filters) or not slim:
        for customer_id, cidx in zip(ids, idx, strict=True):
            record = {"customer_id": customer_id}
            if cidx < 0:
                yield record | {"recommendations": [], "error": "unknown_customer"}
            else:
                answer = rec.next_best(int(cidx), limit, filters)
                yield record | {"recommendations": out.answer(answer)}
        return
    allowed = rec.batch_mask(filters)
    for start in range(0, len(ids), _BATCH):
        chunk = idx[start:start + _BATCH]
        known = chunk >= 0
        top = scores = None
        if known.any():
            top, scores = rec.next_best_batch(chunk[known], limit, allowed=allowed)
        row = 0
        for offset, cidx in enumerate(chunk):
            record = {"customer_id": ids[start + offset]}
            if cidx < 0:
                yield record | {"recommendations": [], "error": "unknown_customer"}
                continue
            yield record | {"recommendations": out.items(top[row], scores[row])}
            row += 1


def _records_item_queries(rec: Recommender, kind: str, queries: list, limit: int,
                          filters: Filters | None = None, slim: bool = False):
    """also-bought (one id per query) and basket (a list per query)."""
    out = _Records(rec, slim)
    resolved = []
    for q in queries:
        if isinstance(q, str):
            i = rec.items.index(q)
            resolved.append(np.asarray([i]) if i >= 0 else None)
        elif q is None:
            resolved.append(None)
        else:
            ix = rec.items.indices(q) if q else np.zeros(0, dtype=np.int64)
            ix = ix[ix >= 0]
            resolved.append(ix if len(ix) else None)
    score_kind = "also_bought" if kind == "also-bought" else "basket"
    one_query = _one_query(filters) or not slim
    allowed = None if one_query else rec.batch_mask(filters)
    for start in range(0, len(queries), _BATCH):
        chunk = resolved[start:start + _BATCH]
        ok = [q for q in chunk if q is not None]
        top = scores = None
        if ok and not one_query:
            top, scores = rec.item_query_batch(score_kind, ok, limit, allowed=allowed)
        row = 0
        for offset, q in enumerate(chunk):
            raw = queries[start + offset]
            record = {"item_id": raw} if kind == "also-bought" else {"items": raw}
            if q is None:
                error = "invalid_basket" if kind == "basket" and not isinstance(raw, list) else "unknown_item"
                yield record | {"recommendations": [], "error": error}
                continue
            if one_query:
                method = rec.also_bought if kind == "also-bought" else rec.basket
                yield record | {"recommendations": out.answer(
                    method(q[0] if kind == "also-bought" else q, limit, filters), anchored=True)}
                continue
            yield record | {"recommendations": out.items(top[row], scores[row])}
            row += 1


def _records_substitutes(rec: Recommender, kind: str, ids: list[str], limit: int,
                         filters: Filters | None, slim: bool = False):
    """upsell / downsell: one item id per query; record as for also-bought."""
    method = rec.upsell if kind == "upsell" else rec.downsell
    out = _Records(rec, slim)
    for item_id, idx in zip(ids, rec.items.indices(ids), strict=True):
        if idx < 0:
            yield {"item_id": item_id, "recommendations": [], "error": "unknown_item"}
            continue
        yield {"item_id": item_id, "recommendations": out.answer(method(int(idx), limit,
                                                                       filters))}


class _Records:
    """Recommendations as export records: as the API shows them (item facts and reason,
    recsys.reasons), or ``slim`` (``item_id`` and ``score`` only).

    Full records come from the service's own one-query methods (the same answer,
    relevance floor and reasons as the API; about 2 ms a query through the compiled
    path); slim records from the batched top k (no floor, no reasons), as before."""

    def __init__(self, rec: Recommender, slim: bool):
        self.rec, self.slim = rec, slim
        self._info: dict[int, dict] = {}

    def item_info(self, idx: int) -> dict:
        info = self._info.get(idx)
        if info is None:
            info = self._info[idx] = {"item_id": self.rec.items.id_of(idx),
                                      **self.rec.describe(idx)}
        return info

    def answer(self, answer: Answer, anchored: bool = False) -> list[dict]:
        """One answer of the one-query path (explained already)."""
        if self.slim:
            return [{"item_id": self.rec.items.id_of(r.item_idx),
                     "score": round(float(r.score), 6)} for r in answer.items]
        return [recommendation_record(self.item_info, r, answer.strategy, anchored)
                for r in answer.items]

    def items(self, top: np.ndarray, scores: np.ndarray) -> list[dict]:
        """One row of the batch path (``slim`` only)."""
        return [{"item_id": self.rec.items.id_of(int(i)), "score": round(float(s), 6)}
                for i, s in zip(top, scores, strict=True) if i >= 0]


def _records_likely_buyers(rec: Recommender, ids: list[str], limit: int,
                           min_score: float | None = None):
    for item_id in ids:
        idx = rec.items.index(item_id)
        if idx < 0:
            yield {"item_id": item_id, "customers": [], "error": "unknown_item"}
            continue
        _, buyers = rec.likely_buyers(idx, limit, min_score=min_score)
        yield {"item_id": item_id, "customers": [
            {"customer_id": rec.customers.id_of(c), "score": round(s, 6)} for c, s in buyers]}


def _read_baskets(path: str) -> list:
    baskets = []
    for line in read_text_lines(path):
        try:
            value = json.loads(line)
        except ValueError:
            value = None
        if not (isinstance(value, list) and all(isinstance(v, (str, int)) for v in value)):
            baskets.append(None)
        else:
            baskets.append([str(v) for v in value])
    return baskets


def export(rec: Recommender, kind: str, out_path: str, input_path: str | None = None,
           limit: int = 10, filters: Filters | None = None, slim: bool = False) -> int:
    """Write one record per query, in input order; returns the number of records.

    ``filters`` apply to every query (likely-buyers uses only ``min_score``).
    Each recommendation carries the item's facts and its reason as the API
    shows them (recsys.reasons); ``slim`` keeps ``item_id`` and ``score`` only.
    """
    if kind not in KINDS:
        raise ConfigError(f"--kind {kind!r} is unknown; use one of {', '.join(KINDS)}")
    if limit < 1:
        raise ConfigError("--limit must be at least 1")
    if filters is not None:
        filters.validate()
    if kind == "next-best":
        ids = read_text_lines(input_path) if input_path else [str(c) for c in rec.customers.ids]
        records = _records_next_best(rec, ids, limit, filters, slim)
    elif kind == "basket":
        if not input_path:
            raise ConfigError("--kind basket needs --input: one JSON array of item ids per line")
        records = _records_item_queries(rec, kind, _read_baskets(input_path), limit, filters,
                                        slim)
    elif kind == "also-bought":
        ids = read_text_lines(input_path) if input_path else [str(i) for i in rec.items.ids]
        records = _records_item_queries(rec, kind, ids, limit, filters, slim)
    elif kind in ("upsell", "downsell"):
        ids = read_text_lines(input_path) if input_path else [str(i) for i in rec.items.ids]
        records = _records_substitutes(rec, kind, ids, limit, filters, slim)
    else:
        ids = read_text_lines(input_path) if input_path else [str(i) for i in rec.items.ids]
        records = _records_likely_buyers(rec, ids, limit,
                                         None if filters is None else filters.min_score)
    lower = out_path.lower()
    if lower.endswith(".jsonl") or lower.endswith(".json"):
        return _write_jsonl(records, out_path)
    if lower.endswith(".csv"):
        return _write_csv(records, out_path, slim or kind == "likely-buyers")
    raise ConfigError(f"--out {out_path}: use a .jsonl or .csv file name")


def _write_jsonl(records, path: str) -> int:
    n = 0
    try:
        with open(path, "w", encoding="utf-8") as fh:
            for record in records:
                fh.write(json.dumps(record, separators=(",", ":")))
                fh.write("\n")
                n += 1
    except OSError as exc:
        raise DataError(f"{path}: cannot write ({exc.strerror})") from None
    return n


# The CSV's flat columns for a recommendation's facts and reason (not with --slim).
CSV_DETAIL = ("name", "category", "price", "in_stock", "because_of", "support", "lift",
              "confidence", "price_ratio", "filled")


def _csv_detail(entry: dict) -> list:
    reason = entry.get("reason") or {}
    flat = {**{k: entry.get(k) for k in ("name", "category", "price", "in_stock")}, **reason,
            "because_of": "|".join(reason.get("because_of") or [])}
    return ["" if flat.get(col) is None else flat[col] for col in CSV_DETAIL]


def _write_csv(records, path: str, slim: bool = False) -> int:
    """One row per recommendation: query, rank, id, score, then (unless ``slim``) the item's
    facts and reason as flat columns (``because_of`` ids joined by ``|``), and error (an
    error row has no id)."""
    n = 0
    detail = () if slim else CSV_DETAIL
    try:
        with open(path, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["query", "rank", "id", "score", *detail, "error"])
            for record in records:
                n += 1
                query = record.get("customer_id") or record.get("item_id")
                if query is None:
                    query = json.dumps(record.get("items"))
                entries = record.get("recommendations", record.get("customers", []))
                if not entries:
                    writer.writerow([query, "", "", "", *[""] * len(detail),
                                     record.get("error", "no_recommendations")])
                for rank, entry in enumerate(entries, 1):
                    ident = entry.get("item_id", entry.get("customer_id"))
                    writer.writerow([query, rank, ident, entry["score"],
                                     *(_csv_detail(entry) if detail else ()), ""])
    except OSError as exc:
        raise DataError(f"{path}: cannot write ({exc.strerror})") from None
    return n
