"""The answer cache: finished JSON answers of one model version, bounded in entries and bytes.

An answer depends only on the model version and the request, so a finished answer
stays right until the model is swapped out, and the cache goes with it (it belongs to
the :class:`~service.store.ServedModel`). GET answers are keyed on the endpoint, the
path and the raw query string; POSTed carts and histories on their canonical form
(:func:`post_key`): the distinct item ids, sorted, and the parsed parameters, so
``["b", "a", "a"]`` and ``["a", "b"]`` share one entry.

Eviction is least-recently-used. Storefront traffic is skewed (a few product pages
and carts come back again and again), so the popular answers stay while the long tail
cycles through. Hits and misses are counted per endpoint (``/metrics``:
``xsell_answer_cache_lookups_total{endpoint, result}``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from recsys.rules import Filters

# Bytes an entry costs besides its answer: the key, the tuple, the dict slot (measured
# roughly with sys.getsizeof; a bound, not an exact figure).
_ENTRY_OVERHEAD = 400


class AnswerCache:
    """Least-recently-used ``key -> (answer bytes, strategy)``, at most ``max_entries``
    entries and ``max_bytes`` bytes of answers (0 for either: no cache)."""

    def __init__(self, max_entries: int, max_bytes: int, on_lookup=None):
        self.max_entries = max(0, int(max_entries))
        self.max_bytes = max(0, int(max_bytes))
        self.enabled = self.max_entries > 0 and self.max_bytes > 0
        self.on_lookup = on_lookup  # callback(endpoint, hit: bool), e.g. the metrics
        self._entries: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key, endpoint: str = ""):
        if not self.enabled:
            return None
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
        if self.on_lookup is not None:
            self.on_lookup(endpoint, value is not None)
        return value

    def put(self, key, value: tuple[bytes, str | None]) -> None:
        if not self.enabled:
            return
        size = len(value[0]) + _ENTRY_OVERHEAD
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes -= len(old[0]) + _ENTRY_OVERHEAD
            while self._entries and (len(self._entries) >= self.max_entries
                                     or self.bytes + size > self.max_bytes):
                _, evicted = self._entries.popitem(last=False)
                self.bytes -= len(evicted[0]) + _ENTRY_OVERHEAD
            self._entries[key] = value
            self.bytes += size

    def status(self) -> dict:
        return {"entries": len(self._entries), "bytes": self.bytes, "max_entries":
                self.max_entries, "max_bytes": self.max_bytes, "hits": self.hits,
                "misses": self.misses}


def filters_key(filters: Filters | None) -> tuple:
    """Every field of ``filters`` in a canonical, hashable form (the order of categories
    and excluded ids, and repeats, do not change an answer)."""
    if filters is None:
        return ()
    return (tuple(sorted(set(filters.categories))), filters.min_price, filters.max_price,
            bool(filters.in_stock), tuple(sorted(set(filters.exclude))), filters.customer_id,
            filters.max_per_category, filters.min_support, filters.min_score)


def post_key(endpoint: str, ids: list[str], query) -> tuple:
    """The cache key of a POSTed cart or history: distinct ids sorted, and the query's
    limit, fallback and filters. The answer (less ``unknown_items``, which keeps the
    client's order and is added per request) depends on nothing else."""
    return (endpoint, tuple(sorted(set(ids))), query.limit, query.fallback,
            filters_key(query.filters))
