"""Business rules as vectorised masks over the item catalogue.

A :class:`Filters` turns into one boolean mask over all items, applied to the
scores before the top-k cut, so a filter never returns fewer items than exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .exceptions import ConfigError
from .vocab import Vocab


@dataclass
class ItemMeta:
    """Item metadata aligned with the item vocabulary."""

    name: np.ndarray  # str
    category: np.ndarray  # int32 index into categories, -1 for none
    categories: Vocab
    price: np.ndarray  # float32, NaN when unknown
    in_stock: np.ndarray  # bool
    recommendable: np.ndarray  # bool
    extra: dict = field(default_factory=dict)  # column -> list aligned with items

    def category_name(self, idx: int) -> str | None:
        code = int(self.category[idx])
        return None if code < 0 else self.categories.id_of(code)


@dataclass
class Filters:
    """What a caller may restrict a recommendation list by."""

    categories: list[str] = field(default_factory=list)
    min_price: float | None = None
    max_price: float | None = None
    in_stock: bool = False
    exclude: list[str] = field(default_factory=list)
    customer_id: str | None = None
    max_per_category: int | None = None

    def validate(self) -> "Filters":
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            raise ConfigError(f"min_price {self.min_price} is above max_price {self.max_price}")
        if self.max_per_category is not None and self.max_per_category < 1:
            raise ConfigError("max_per_category must be at least 1")
        return self


def item_mask(meta: ItemMeta, items: Vocab, filters: Filters | None, base: np.ndarray) -> np.ndarray:
    """Items allowed by ``filters`` on top of ``base`` (a copy; ``base`` is untouched)."""
    mask = base.copy()
    if filters is None:
        return mask
    if filters.categories:
        codes = meta.categories.indices(filters.categories)
        codes = codes[codes >= 0]
        mask &= np.isin(meta.category, codes) if len(codes) else False
    if filters.min_price is not None:
        mask &= meta.price >= filters.min_price
    if filters.max_price is not None:
        mask &= meta.price <= filters.max_price
    if filters.in_stock:
        mask &= meta.in_stock
    if filters.exclude:
        idx = items.indices(filters.exclude)
        mask[idx[idx >= 0]] = False
    return mask


def diversify(ranked: np.ndarray, category: np.ndarray, max_per_category: int, limit: int) -> np.ndarray:
    """Take ranked items in order, at most ``max_per_category`` from any one category."""
    seen: dict[int, int] = {}
    out = []
    for idx in ranked:
        code = int(category[idx])
        if code >= 0:
            if seen.get(code, 0) >= max_per_category:
                continue
            seen[code] = seen.get(code, 0) + 1
        out.append(idx)
        if len(out) == limit:
            break
    return np.asarray(out, dtype=np.int64)


def build_item_meta(items: Vocab, catalog=None, order_prices: np.ndarray | None = None) -> ItemMeta:
    """Align catalog metadata with the item vocabulary, with the contract's fallbacks.

    Without a catalog (or for items it lacks) ``name`` is the item id and
    ``price`` the median ``unit_price`` seen in orders.
    """
    n = len(items)
    name = items.ids.astype(object).copy()
    price = np.full(n, np.nan, dtype=np.float32) if order_prices is None else \
        np.asarray(order_prices, dtype=np.float32).copy()
    in_stock = np.ones(n, dtype=bool)
    recommendable = np.ones(n, dtype=bool)
    category_names = np.full(n, "", dtype=object)
    extra: dict[str, list] = {}
    if catalog is not None:
        pos = items.indices(catalog.ids)
        hit = pos >= 0
        where = pos[hit]
        if catalog.name is not None:
            names = catalog.name[hit]
            has = names != ""
            name[where[has]] = names[has]
        if catalog.price is not None:
            p = catalog.price[hit]
            ok = ~np.isnan(p)
            price[where[ok]] = p[ok]
        if catalog.in_stock is not None:
            in_stock[where] = catalog.in_stock[hit]
        if catalog.recommendable is not None:
            recommendable[where] = catalog.recommendable[hit]
        if catalog.category is not None:
            category_names[where] = catalog.category[hit]
        for column, values in catalog.extra.items():
            column_values = [None] * n
            for p, v in zip(where, np.asarray(values, dtype=object)[hit]):
                column_values[int(p)] = v
            extra[column] = column_values
    present = category_names != ""
    categories, remap = Vocab.from_unsorted(np.unique(category_names[present].astype(str)))
    category = np.full(n, -1, dtype=np.int32)
    if present.any():
        category[present] = categories.indices(category_names[present].astype(str))
    return ItemMeta(name=name.astype(str), category=category, categories=categories, price=price,
                    in_stock=in_stock, recommendable=recommendable, extra=extra)
