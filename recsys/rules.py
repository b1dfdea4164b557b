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
    # Relevance floor; None keeps the model version's default (see ``Floor``).
    min_support: int | None = None
    min_score: float | None = None

    def validate(self) -> Filters:
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            raise ConfigError(f"min_price {self.min_price} is above max_price {self.max_price}")
        for name in ("min_price", "max_price", "min_score"):
            value = getattr(self, name)
            if value is not None and not np.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, not {value!r}")
        if self.max_per_category is not None and self.max_per_category < 1:
            raise ConfigError("max_per_category must be at least 1")
        if self.min_support is not None and self.min_support < 0:
            raise ConfigError(f"min_support must be 0 or more, not {self.min_support}")
        return self

    def mask_key(self) -> tuple:
        """The fields that decide :func:`item_mask` (a cache key)."""
        return (tuple(self.categories), self.min_price, self.max_price, bool(self.in_stock),
                tuple(self.exclude))


@dataclass
class Floor:
    """The relevance floor: weak evidence gives a shorter list, not junk.

    ``min_support``: customers who bought both the evidence item and the
    recommended one; applied by default to the co-purchase and substitute
    kinds (``support_kinds``), to any kind when a request sets it.
    ``min_score``: the lowest score kept (scores are relative to the best
    candidate, so 0.01 drops items with under 1% of the top evidence).
    """

    min_support: int = 3
    min_score: float = 0.01
    support_kinds: tuple = ("also_bought", "basket", "upsell", "downsell", "customer_upsell")

    @classmethod
    def from_dict(cls, values: dict | None) -> Floor:
        values = dict(values or {})
        kinds = values.pop("support_kinds", None)
        floor = cls(**{k: v for k, v in values.items() if k in ("min_support", "min_score")})
        if kinds is not None:
            floor.support_kinds = tuple(kinds)
        return floor

    def for_kind(self, kind: str, filters: Filters | None) -> tuple[int, float]:
        """(min_support, min_score) for one query; request values win over defaults."""
        support = self.min_support if kind in self.support_kinds else 0
        score = self.min_score
        if filters is not None:
            if filters.min_support is not None:
                support = filters.min_support
            if filters.min_score is not None:
                score = filters.min_score
        return int(support), float(score)


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
    """Take ranked items in order, at most ``max_per_category`` from any one category.

    Items without a category (-1) are never capped.
    """
    ranked = np.asarray(ranked, dtype=np.int64)
    if not len(ranked):
        return ranked
    codes = np.asarray(category)[ranked].astype(np.int64)
    # Rank of each item within its category, in list order (a stable sort by code).
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    within = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = within
    keep = (codes < 0) | (rank < max_per_category)
    return ranked[keep][:limit]


def build_item_meta(items: Vocab, catalog=None, order_prices: np.ndarray | None = None,
                    base: ItemMeta | None = None) -> ItemMeta:
    """Align catalog metadata with the item vocabulary, with the contract's fallbacks.

    Starts from ``base`` (an earlier version's metadata, for a catalog refresh)
    or from the defaults: ``name`` is the item id and ``price`` the median
    ``unit_price`` seen in orders. The catalog's values win wherever it has them.
    """
    n = len(items)
    if base is None:
        name = items.ids.astype(object).copy()
        price = np.full(n, np.nan, dtype=np.float32) if order_prices is None else \
            np.asarray(order_prices, dtype=np.float32).copy()
        in_stock = np.ones(n, dtype=bool)
        recommendable = np.ones(n, dtype=bool)
        category_names = np.full(n, "", dtype=object)
        extra: dict[str, list] = {}
    else:
        name = np.asarray(base.name, dtype=object).copy()
        price = np.asarray(base.price, dtype=np.float32).copy()
        in_stock = np.asarray(base.in_stock, dtype=bool).copy()
        recommendable = np.asarray(base.recommendable, dtype=bool).copy()
        codes = np.asarray(base.category, dtype=np.int64)
        category_names = np.full(n, "", dtype=object)
        if len(base.categories):
            known = codes >= 0
            category_names[known] = np.asarray(base.categories.ids, dtype=object)[codes[known]]
        extra = {column: list(values) for column, values in base.extra.items()}
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
            column_values = extra.get(column, [None] * n)
            for p, v in zip(where, np.asarray(values, dtype=object)[hit], strict=True):
                column_values[int(p)] = v
            extra[column] = column_values
    present = category_names != ""
    categories, remap = Vocab.from_unsorted(np.unique(category_names[present].astype(str)))
    category = np.full(n, -1, dtype=np.int32)
    if present.any():
        category[present] = categories.indices(category_names[present].astype(str))
    return ItemMeta(name=name.astype(str), category=category, categories=categories, price=price,
                    in_stock=in_stock, recommendable=recommendable, extra=extra)


def item_info(meta: ItemMeta, item_idx: int) -> dict:
    """Catalog metadata of one item as the service and export show it."""
    price = float(meta.price[item_idx])
    info = {
        "name": str(meta.name[item_idx]),
        "category": meta.category_name(item_idx),
        "price": None if np.isnan(price) else round(price, 4),
        "in_stock": bool(meta.in_stock[item_idx]),
    }
    extra = {column: values[item_idx] for column, values in meta.extra.items()
             if values[item_idx] is not None}
    if extra:
        info["metadata"] = extra
    return info


META_ARRAYS = ("item_name", "item_category", "categories", "item_price", "item_in_stock",
               "item_recommendable")
META_JSON = ("item_extra",)


def write_item_meta(writer, meta: ItemMeta) -> None:
    """Store item metadata in a version being written (``recsys.artifacts.VersionWriter``)."""
    writer.add_array("item_name", meta.name.astype(str))
    writer.add_array("item_category", meta.category.astype(np.int32))
    writer.add_array("categories", meta.categories.ids)
    writer.add_array("item_price", meta.price.astype(np.float32))
    writer.add_array("item_in_stock", meta.in_stock.astype(bool))
    writer.add_array("item_recommendable", meta.recommendable.astype(bool))
    writer.add_json("item_extra", meta.extra)


def read_item_meta(loaded) -> ItemMeta:
    """Item metadata of a loaded version (``recsys.artifacts.LoadedVersion``)."""
    files = loaded.manifest.get("files", {})
    return ItemMeta(
        name=loaded.array("item_name"),
        category=loaded.array("item_category"),
        categories=Vocab(loaded.array("categories")),
        price=loaded.array("item_price"),
        in_stock=loaded.array("item_in_stock"),
        recommendable=loaded.array("item_recommendable"),
        extra=loaded.json("item_extra") if "item_extra.json" in files else {},
    )
