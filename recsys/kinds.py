"""The query kinds and the filter fields: one source of truth for their names and spellings.

Each query kind has a Python name (also the manifest's and the blend's key,
``also_bought``), a command-line spelling (``xsell export --kind also-bought``)
and a service path. Request parsing, the CLI's options and the OpenAPI
document are derived from :data:`QUERY_KINDS` and :data:`FILTER_FIELDS`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QueryKind:
    """One kind of question a shop asks."""

    name: str  # Python, manifest and blend spelling
    cli: str | None  # ``xsell export --kind`` spelling; None: not exported
    path: str  # the service's path (OpenAPI form)
    method: str  # the Recommender method that answers one query
    blended: bool  # answered by a blend of components whose weights the trainer chooses
    label: str  # in reports

    def rule(self, prefix: str) -> str:
        """The Flask rule of :attr:`path` under a blueprint's ``prefix`` (ids may hold /)."""
        if not self.path.startswith(prefix):
            raise ValueError(f"{self.path} is not under {prefix}")
        rest = self.path[len(prefix):]
        for anchor in ("item_id", "customer_id"):
            rest = rest.replace("{" + anchor + "}", f"<path:{anchor}>")
        return rest


QUERY_KINDS = (
    QueryKind("also_bought", "also-bought", "/v1/items/{item_id}/also-bought", "also_bought",
              True, "Also bought (item page)"),
    QueryKind("basket", "basket", "/v1/recommendations/basket", "basket", True,
              "Basket completion"),
    QueryKind("next_best", "next-best", "/v1/customers/{customer_id}/next-best-products",
              "next_best", True, "Next-best products (CRM)"),
    QueryKind("next_best_history", None, "/v1/recommendations/next-best",
              "next_best_for_history", False, "Next best products (a history)"),
    QueryKind("likely_buyers", "likely-buyers", "/v1/items/{item_id}/likely-buyers",
              "likely_buyers", True, "Likely buyers (CRM)"),
    QueryKind("upsell", "upsell", "/v1/items/{item_id}/upsell", "upsell", False, "Upsell"),
    QueryKind("downsell", "downsell", "/v1/items/{item_id}/downsell", "downsell", False,
              "Downsell"),
    QueryKind("customer_upsell", None, "/v1/customers/{customer_id}/upsell", "customer_upsell",
              False, "Upsell (customer)"),
)
KIND = {kind.name: kind for kind in QUERY_KINDS}
# The kinds whose answer is a blend the trainer chooses, in the manifest's order.
BLEND_KINDS = tuple(kind.name for kind in QUERY_KINDS if kind.blended)
# Item-anchored kinds: popularity may pull them at most train.max_item_popularity.
ITEM_KINDS = ("also_bought", "basket")
# ``xsell export --kind`` spellings, and the kind each names.
EXPORT_KINDS = {kind.cli: kind for kind in QUERY_KINDS if kind.cli}
# The strategy an upsell/downsell answer reports.
SUBSTITUTE_STRATEGY = {"upsell": "upsell", "downsell": "downsell", "customer_upsell": "upsell"}


@dataclass(frozen=True)
class FilterField:
    """One business filter or relevance-floor field of a query."""

    name: str  # query parameter and JSON body field
    type: str  # "categories" (repeatable), "price", "bool", "ids" (comma-separated), "id",
    # "int" or "number"
    help: str
    minimum: float | None = None
    maximum: float | None = None

    @property
    def option(self) -> str:
        """The command-line option (``--min-price``)."""
        return "--" + self.name.replace("_", "-")

    @property
    def attribute(self) -> str:
        """The ``recsys.rules.Filters`` attribute it sets (``category`` fills ``categories``;
        a body may spell it either way)."""
        return "categories" if self.type == "categories" else self.name


FILTER_FIELDS = (
    FilterField("category", "categories", "only these categories (repeatable)"),
    FilterField("min_price", "price", "lowest price", 0),
    FilterField("max_price", "price", "highest price", 0),
    FilterField("in_stock", "bool", "only items in stock"),
    FilterField("exclude", "ids", "comma-separated item ids never to return"),
    FilterField("customer_id", "id", "never recommend what this customer already bought"),
    FilterField("max_per_category", "int", "at most this many items of one category", 1, 100),
    FilterField("min_support", "int", "relevance floor: customers behind the evidence "
                "(model default if absent)", 0, 10**9),
    FilterField("min_score", "number", "relevance floor on the score", 0),
)
FILTER_NAMES = tuple(field.name for field in FILTER_FIELDS)
