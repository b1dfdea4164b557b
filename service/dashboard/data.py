"""What the dashboard's pages show, computed from the served model and the models folder."""

from __future__ import annotations

import logging
import threading
import weakref
from datetime import datetime, timezone

import numpy as np

from recsys.artifacts import list_versions, load_version, read_manifest
from recsys.exceptions import XsellError
from recsys.purchase_dates import ARRAY as PURCHASE_DAYS
from recsys.purchase_dates import customer_days
from recsys.vocab import UNKNOWN

log = logging.getLogger(__name__)

SEARCH_LIMIT = 20
# Matches collected before ranking: enough for the best 20 among them, bounded per keystroke.
_SEARCH_SCAN = 2000

_per_model: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_per_model_lock = threading.Lock()


def _cached(model, name: str, build):
    """A value built once per served model (dropped with it when a new version swaps in)."""
    with _per_model_lock:
        slot = _per_model.setdefault(model, {})
    if name not in slot:
        slot[name] = build()
    return slot[name]


# ---------------------------------------------------------------- items
class _SearchText:
    """Item ids and names as one lower-case text, ``id<TAB>name`` per line: a substring
    search is a loop of ``str.find`` over it (C speed, no per-item Python work)."""

    def __init__(self, model):
        rec = model.recommender
        names = np.asarray(rec.meta.name).astype(str)
        ids = np.asarray(rec.items.ids).astype(str)
        lines = [f"{i}\t{n}".lower().replace("\n", " ") for i, n in zip(ids, names, strict=True)]
        self.text = "\n".join(lines)
        self.starts = np.cumsum([0] + [len(line) + 1 for line in lines[:-1]])

    def find(self, needle: str, most: int) -> np.ndarray:
        text, found, pos = self.text, [], 0
        while len(found) < most:
            pos = text.find(needle, pos)
            if pos < 0:
                break
            line = int(np.searchsorted(self.starts, pos, side="right")) - 1
            found.append(line)
            # Next line: one hit per item.
            pos = int(self.starts[line + 1]) if line + 1 < len(self.starts) else len(text)
        return np.asarray(found, dtype=np.int64)


def search_items(model, query: str, limit: int = SEARCH_LIMIT) -> list[dict]:
    """Items whose id or name contains ``query`` (case-insensitive): the id itself first,
    then ids that start with it, then by customers who bought them."""
    rec = model.recommender
    counts = np.asarray(rec.popularity.counts_)
    query = query.strip().lower()
    if not query:
        found = np.argsort(-counts, kind="stable")[:limit]
    else:
        index = _cached(model, "search", lambda: _SearchText(model))
        found = index.find(query, _SEARCH_SCAN)
        if len(found):
            ids = [str(rec.items.ids[i]).lower() for i in found]
            rank = sorted(range(len(found)), key=lambda j: (
                ids[j] != query, not ids[j].startswith(query), -int(counts[found[j]]), ids[j]))
            found = found[rank[:limit]]
    return [item_facts(model, int(i)) for i in found]


def item_facts(model, idx: int) -> dict:
    info = dict(model.item_info(idx))
    info["buyers"] = int(model.recommender.popularity.counts_[idx])
    return info


def categories(model) -> list[str]:
    return [str(c) for c in np.asarray(model.recommender.meta.categories.ids)]


def likely_buyers(model, idx: int) -> tuple[str, list[tuple[str, float]]]:
    """Every likely buyer of an item (positive score, not a buyer yet), best first."""
    rec = model.recommender
    scores = rec.score_buyers(idx)
    n = int((scores > 0).sum())
    if n == 0:
        return rec.strategy("likely_buyers"), []
    strategy, pairs = rec.likely_buyers(idx, n, min_score=np.finfo(np.float32).tiny)
    return strategy, [(rec.customers.id_of(c), s) for c, s in pairs if s > 0 and np.isfinite(s)]


# ------------------------------------------------------------ customers
def search_customers(model, query: str, limit: int = SEARCH_LIMIT) -> list[dict]:
    """Customers whose id starts with ``query``; without one, the most active customers."""
    rec = model.recommender
    ids = rec.customers.ids
    activity = model.customer_activity()
    query = query.strip()
    if not query:
        found = np.argsort(-activity, kind="stable")[:limit]
    else:
        lo = int(np.searchsorted(ids, query, side="left"))
        hi = int(np.searchsorted(ids, query + "\U0010ffff", side="left"))
        found = np.arange(lo, min(hi, lo + limit))
    return [{"customer_id": rec.customers.id_of(int(c)), "items": int(activity[c])}
            for c in found]


def _purchase_days(model, models_dir: str | None):
    def build():
        if not models_dir:
            return None
        try:
            loaded = load_version(models_dir, model.version, verify=False)
            return loaded.array(PURCHASE_DAYS) if loaded.has(PURCHASE_DAYS) else None
        except (XsellError, OSError) as exc:
            log.warning("purchase dates of %s unreadable: %s", model.version, exc)
            return None

    return _cached(model, "days", build)


def customer_history(model, customer_idx: int, models_dir: str | None) -> tuple[list, bool]:
    """A customer's items, latest purchase first: (rows, whether dates are known)."""
    rec = model.recommender
    history = rec.history
    days = _purchase_days(model, models_dir)
    start, end = int(history.indptr[customer_idx]), int(history.indptr[customer_idx + 1])
    order = np.argsort(np.asarray(history.indices[start:end]), kind="stable")
    items = np.asarray(history.indices[start:end])[order]
    counts = np.asarray(history.data[start:end])[order]
    dated = days is not None and len(days) == history.nnz
    if dated:
        items, last = customer_days(days, history, customer_idx)
    rows = []
    for j, idx in enumerate(items):
        row = dict(model.item_info(int(idx)), times=float(counts[j]))
        if dated and last[j] > np.iinfo(np.int32).min:
            row["last_bought"] = datetime.fromtimestamp(int(last[j]) * 86400, timezone.utc
                                                        ).date().isoformat()
        rows.append(row)
    rows.sort(key=lambda r: (r.get("last_bought") or "", r["times"]), reverse=True)
    return rows, dated


# ------------------------------------------------------------- versions
def _gate_reason(gate: dict) -> str:
    for key in ("reason", "reasons", "message"):
        value = gate.get(key)
        if value:
            return "; ".join(map(str, value)) if isinstance(value, list) else str(value)
    return ""


def version_rows(models_dir: str) -> list[dict]:
    """Every version, oldest first, with its data report, metrics, gate and blend."""
    rows = []
    for entry in list_versions(models_dir):
        row = dict(entry)
        if entry["status"] == "ok":
            try:
                manifest = read_manifest(models_dir, entry["version"])
            except XsellError as exc:
                row.update(status="broken", error=str(exc))
                rows.append(row)
                continue
            data = manifest.get("data") or {}
            orders = data.get("orders") or {}
            gate = manifest.get("gate") or {}
            row.update(
                trained_at=manifest.get("trained_at"),
                report={"rows_read": orders.get("rows_read"), "rows_used": orders.get("rows_used"),
                        "rows_rejected": orders.get("rows_rejected"),
                        "rejected": orders.get("rejected") or {}},
                counts={k: data.get(k) for k in ("customers", "orders_count", "items", "lines")},
                baseline=(manifest.get("baselines") or {}).get("popularity") or {},
                gate=gate, gate_passed=gate.get("passed"), gate_reason=_gate_reason(gate),
                blend=manifest.get("blend") or {},
                previous_version=manifest.get("previous_version"),
            )
        rows.append(row)
    return rows


def headline_metrics(rows: list[dict]) -> list[tuple[str, str]]:
    """(kind, metric) pairs present in the versions, the @10 accuracy metrics first."""
    seen = {}
    for row in rows:
        for kind, values in (row.get("metrics") or {}).items():
            for name, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    seen.setdefault((kind, name), None)
    preferred = [p for p in seen if p[1] in ("ndcg@10", "hr@10")]
    return preferred or list(seen)[:6]


def metric_series(rows: list[dict]) -> list[dict]:
    """Chart data: for each headline metric, one point per version (and popularity's)."""
    out = []
    for kind, name in headline_metrics(rows):
        points, baseline = [], []
        for row in rows:
            value = ((row.get("metrics") or {}).get(kind) or {}).get(name)
            base = ((row.get("baseline") or {}).get(kind) or {}).get(name)
            label = row["version"]
            points.append([label, value if isinstance(value, (int, float)) else None])
            baseline.append([label, base if isinstance(base, (int, float)) else None])
        out.append({"title": f"{kind} {name}", "unit": "",
                    "series": [{"name": "model", "points": points},
                               {"name": "popularity", "points": baseline}]})
    return out


class _VersionCache:
    """Versions loaded for comparison (besides the served one): the two most recent."""

    def __init__(self, size: int = 2):
        self.size = size
        self.models: dict = {}
        self.lock = threading.Lock()

    def get(self, store, version: str):
        from ..store import load_model

        served = store.model
        if served is not None and served.version == version:
            return served
        key = (store.models_dir, version)
        with self.lock:
            model = self.models.get(key)
            if model is None:
                model = load_model(store.models_dir, version)
                while len(self.models) >= self.size:
                    del self.models[next(iter(self.models))]
                self.models[key] = model
            return model


loaded_versions = _VersionCache()


def compare_versions(store, version_a: str, version_b: str, n_items: int = 20, k: int = 10
                     ) -> dict:
    """How the also-bought lists of the best-selling items changed from ``version_a`` to
    ``version_b``: overlap@k = shared items of the two top-k lists / k, per item and mean."""
    a = loaded_versions.get(store, version_a)
    b = loaded_versions.get(store, version_b)
    counts = np.asarray(b.recommender.popularity.counts_)
    rows = []
    for idx_b in np.argsort(-counts, kind="stable"):
        if len(rows) >= n_items or counts[idx_b] <= 0:
            break
        item_id = b.recommender.items.id_of(int(idx_b))
        idx_a = a.recommender.items.index(item_id)
        if idx_a == UNKNOWN:
            continue
        list_a = [a.recommender.items.id_of(r.item_idx)
                  for r in a.recommender.also_bought(idx_a, k).items]
        list_b = [b.recommender.items.id_of(r.item_idx)
                  for r in b.recommender.also_bought(int(idx_b), k).items]
        shared = set(list_a) & set(list_b)
        rows.append({"item": b.item_info(int(idx_b)), "a": list_a, "b": list_b,
                     "shared": shared, "overlap": len(shared) / k})
    mean = float(np.mean([r["overlap"] for r in rows])) if rows else None
    return {"a": version_a, "b": version_b, "k": k, "rows": rows, "mean_overlap": mean}
