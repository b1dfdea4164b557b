"""Training configuration: defaults, overridden by a TOML or JSON file (``--config``)."""

from __future__ import annotations

import copy
import json
import os

import tomllib

from recsys.ann import DEFAULTS as ANN_DEFAULTS
from recsys.exceptions import ConfigError

DEFAULTS: dict = {
    "data": {
        "exclude_items": None,  # regex over item ids, or a file of ids
        "columns": {},
    },
    "copurchase": {"k": 100, "alpha": 0.5, "shrink": 10.0, "min_support": 2, "basket_weight": 1.0,
                   "max_items_per_customer": 300, "max_basket_size": 100},
    "als": {"factors": 64, "regularization": 0.05, "alpha": 10.0, "iterations": 15,
            "confidence": "log", "use_gpu": None, "random_state": 0},
    # Large catalogues (recsys.ann): above min_items items (min_customers customers) the
    # trainer builds an approximate-neighbour index over the ALS item (customer) factors;
    # next-best (likely-buyers) take candidates from it, then score and filter exactly.
    # nprobe is the smallest reaching recall_target (recall@10 vs exact on a sample);
    # lists 0: 4 * sqrt(rows); overfetch: candidates asked of the index per query.
    "ann": dict(ANN_DEFAULTS),
    # EASE (Steck 2019) as a third blend component, dense on every item with two or
    # more buyers when they number at most max_items (O(n^3) inverse); above that, on
    # the max_items most-bought ones (exact, the head) plus each other item's column
    # regressed on its `tail_neighbours` most co-bought head items
    # (recsys/models/ease_large.py; 0: no tail, EASE on the head alone); lambda is
    # chosen per query kind on the holdout from `lambdas`; the blend search decides
    # whether it is used at all (docs/RESULTS.md). `dropouts`: input-dropout
    # probabilities tried with every lambda (Steck 2020: 0 is plain EASE; above 0 an
    # extra p/(1-p) * diag(X'X) penalty, EDLAE with zero_diagonal, else DLAE), the
    # per-kind choice made on the same holdout; each extra setting is one more dense inverse.
    # `half_lives`: time decay of the training orders (days; 0 = none) tried with every
    # lambda: each order counts 0.5 ** (age / half-life) in X'X, age from the newest
    # order (recsys.models.recency.order_decay); chosen per kind on the holdout like
    # lambda, so a shop whose range moves with the seasons weighs this season's
    # baskets more, and a steady one keeps every order at weight 1. Needs timestamps.
    # `size_exponents`: each order counts size ** -e in X'X (trace kept), tried with every
    # lambda and half-life: 0.5 damps the accidental pairs of very large orders.
    # `popularity_exponents`: tried on each kind's chosen model, which keeps one only if
    # it scores better on the holdout: every candidate's weight divided by its
    # buyers ** beta (no extra inverse). Both in recsys/models/ease.py; docs/RESULTS.md.
    # Like no decay, exponent 0 (none) is always tried, first: it wins ties.
    # Above dense_items items the weights are stored sparse, the k largest per item;
    # the large-catalogue head keeps its head_k largest per item (0: every head weight,
    # what EASE on the head computes: on Instacart the top-1000 cut dropped 33% of the
    # weight mass and 0.3-0.8% of basket HR@10, docs/RESULTS.md).
    "ease": {"enabled": True, "lambdas": [50.0, 200.0, 800.0], "k": 1000, "min_buyers": 2,
             "max_items": 12000, "tail_neighbours": 100, "dense_items": 5000, "head_k": 0,
             "customer_weight": 0.0, "dropouts": [0.0],
             "zero_diagonal": True, "half_lives": [0.0, 30.0, 90.0, 180.0],
             "size_exponents": [0.0, 0.5], "popularity_exponents": [0.0, 0.1, 0.2]},
    "train": {
        "test_fraction": 0.15,
        # ALS runs als.iterations in total: this many on the training period (the
        # model that is evaluated), the rest on all data, warm-started from it.
        # So the trainer pays for about one ALS fit, not two.
        "holdout_als_iterations": 8,
        "refit": True,
        # Queries per protocol on the internal holdout (seeded sample above this).
        "max_eval_queries": 2000,
        # Fewer holdout queries of a kind than this from the time cut and the holdout
        # also takes each customer's last order (next-best) or one customer's lines of
        # one day as a basket (item kinds): training/validation.py.
        "min_holdout_queries": 300,
        "k": 10,
        # Weight levels of each component in the blends tried per query kind.
        "blend_grid": [0.0, 0.25, 0.5, 0.75, 1.0],
        # Weights of a popularity prior tried with every blend (others scaled by 1 - p;
        # 1.0 = popularity alone; see max_item_popularity for item pages):
        # how much best-sellers should pull is measured on the holdout, not assumed.
        "popularity_grid": [0.0, 0.1, 0.3, 1.0],
        # The most popularity may pull on item-anchored answers (also-bought,
        # basket). 1.0 lets the holdout decide, best-sellers alone included, which
        # is what wins on sparse or line-sampled data; a shop that wants item pages
        # always anchored on the item sets e.g. 0.3.
        "max_item_popularity": 1.0,
        # The most any one item may fill of the queries' top k, per query kind: a blend
        # above it is not shipped (training/selection.py). also-bought is measured over
        # every item page of the catalogue: 5% keeps the best-seller off 95% of them
        # (item-kNN baselines on Online Retail: 0.2-2.3%). Carts and customers are
        # measured over the holdout's real carts and customers, where best-sellers are
        # rightly common (a staple in 40% of the carts may well belong in 40% of the
        # completions): no bound by default (1.0), their concentration is reported.
        "max_concentration": {"also_bought": 0.05, "basket": 1.0, "next_best": 1.0},
        # Next-best recency (recsys.models.recency), off by default: half-lives in days
        # tried on the holdout, e.g. [30, 90, 365]; one is adopted only if its best blend
        # beats full histories by two standard errors (training.blend_search.choose_recency).
        # Needs timestamps. docs/RESULTS.md says why it is not on by default.
        "recency_half_lives": [],
        # ALS confidence scales (als.alpha) tried on the holdout: the one whose ALS alone
        # scores the best next-best nDCG is used (training.blend_search.choose_als_alpha; ties:
        # als.alpha); empty: als.alpha. Only with next-best queries (customers with
        # repeat orders). Each extra alpha is one holdout ALS fit (docs/RESULTS.md).
        "als_alphas": [2.0, 10.0, 15.0],
    },
    # Upsell/downsell substitutes (recsys.models.substitutes) and their price bands.
    "substitutes": {"k": 50, "als_weight": 1.0, "shrink": 5.0, "max_basket_share": 0.5,
                    "min_similarity": 0.05,
                    "upsell_band": [1.1, 3.0],
                    # The mirror of the upsell band (1/3 .. 1/1.1): B is an upsell of A
                    # exactly when A is a downsell of B.
                    "downsell_band": [0.3333, 0.9091]},
    # Relevance floor applied when serving (overridable per request with
    # min_support / min_score). Three customers is the least evidence that reads as
    # a pattern rather than one household's habit ("3 customers who bought X also
    # chose this"); pairs seen once or twice have a lift that is mostly noise. Scores
    # are relative to the best candidate, so 0.01 drops the popularity-only padding.
    "floor": {"min_support": 3, "min_score": 0.01,
              "support_kinds": ["also_bought", "basket", "upsell", "downsell",
                                "customer_upsell"]},
    # The Spark engine (xsell train --engine spark; docs/SPARK.md): the master (local[*]:
    # this machine; --spark-master overrides it), the driver's memory, and any spark.*
    # setting in `conf` (executors, shuffle partitions, S3 credentials providers, ...).
    "spark": {"master": "local[*]", "app_name": "xsell-train", "driver_memory": "2g",
              "conf": {}},
    "gate": {
        # Publish only if the primary metric beats popularity by this relative margin.
        "min_lift_over_popularity": 0.05,
        # ... and only if it is not worse than the current version by more than this
        # relative drop, both scored on the same holdout orders newer than the current
        # version's data (its stored metrics when there are none: training.gate._gate).
        "max_drop_vs_current": 0.10,
    },
}


def _merge(base: dict, override: dict, path: str = "") -> dict:
    for key, value in override.items():
        where = f"{path}{key}"
        if key not in base:
            raise ConfigError(f"config: unknown setting {where!r}; known: {', '.join(sorted(base))}")
        if isinstance(base[key], dict) and key not in ("columns", "conf"):
            if not isinstance(value, dict):
                raise ConfigError(f"config: {where!r} must be a table of settings")
            _merge(base[key], value, f"{where}.")
        else:
            base[key] = value
    return base


def load_config(path: str | None = None, overrides: dict | None = None) -> dict:
    """Defaults, then the file at ``path`` (TOML or JSON), then ``overrides``."""
    config = copy.deepcopy(DEFAULTS)
    if path:
        if not os.path.isfile(path):
            raise ConfigError(f"config file {path} does not exist")
        try:
            if path.endswith(".json"):
                with open(path, encoding="utf-8") as fh:
                    loaded = json.load(fh)
            else:
                with open(path, "rb") as fh:
                    loaded = tomllib.load(fh)
        except (ValueError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"config file {path} cannot be parsed ({exc})") from None
        _merge(config, loaded)
    if overrides:
        _merge(config, overrides)
    return config


# ---------------------------------------------------------------- validators
# Checked before any fitting, so a bad setting fails in a second, not after an hour.

BANDS = ("upsell_band", "downsell_band")


def model_params(cfg: dict) -> dict:
    """The substitutes settings the model takes (the price bands are serving rules)."""
    return {k: v for k, v in cfg.items() if k not in BANDS}


def check_rules(config: dict) -> None:
    """Fail early (before any fitting) on invalid price bands or relevance floor."""
    cfg, floor = config["substitutes"], config["floor"]
    try:
        for band in BANDS:
            values = cfg[band]
            if not (isinstance(values, (list, tuple)) and len(values) == 2
                    and 0 < float(values[0]) <= float(values[1])):
                raise ValueError
        if int(floor["min_support"]) < 0 or not 0 <= float(floor["min_score"]) <= 1:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(
            f"invalid rules: substitutes.upsell_band/downsell_band must be [low, high] with "
            f"0 < low <= high (got {cfg['upsell_band']!r}, {cfg['downsell_band']!r}); "
            f"floor.min_support must be 0 or more (got {floor['min_support']!r}) and "
            f"floor.min_score in [0, 1] (got {floor['min_score']!r})") from None


def _setting_floats(values, setting: str, valid, expected: str) -> list[float]:
    """A list setting as floats that all pass ``valid``; a clear config error otherwise."""
    try:
        out = [float(x) for x in values] if isinstance(values, (list, tuple)) else None
        if out is not None and all(valid(x) for x in out):
            return out
    except (TypeError, ValueError):
        pass
    raise ConfigError(f"{setting} must be a list of {expected} (got {values!r})")


def _zero_first(values, setting: str, valid, expected: str) -> list[float]:
    """A list setting whose 0 means "none": 0 first (it wins ties), then the listed
    values above 0 in their order, each once."""
    out = _setting_floats(values, setting, valid, expected)
    return [0.0] + [x for x in dict.fromkeys(out) if x > 0]


def ease_half_lives(values) -> list[float]:
    """``ease.half_lives`` as days >= 0 (0: no decay), no decay first."""
    return _zero_first(values, "ease.half_lives", lambda x: x >= 0, "half-lives in days >= 0")


def ease_exponents(values, setting: str) -> list[float]:
    """``ease.size_exponents`` / ``ease.popularity_exponents``: exponents in [0, 2], 0 first."""
    return _zero_first(values, setting, lambda x: 0.0 <= x <= 2.0, "exponents in [0, 2]")


def _ease_count(value, setting: str, zero_means: str) -> int:
    """A whole number >= 0 of the ``ease`` section (``zero_means``: what 0 does)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{setting} must be a whole number of items >= 0 (0: {zero_means}; "
                          f"got {value!r})")
    return value


def ease_dense_items(value) -> int:
    """``ease.dense_items``: the catalogue size up to which EASE keeps every weight."""
    return _ease_count(value, "ease.dense_items", "always the top ease.k weights per item")


def ease_head_k(value) -> int:
    """``ease.head_k``: weights kept per head item of the large-catalogue EASE (0: all)."""
    return _ease_count(value, "ease.head_k", "every head weight")


def ease_tail_neighbours(value) -> int:
    """``ease.tail_neighbours``: head regressors per tail item (0: no tail)."""
    return _ease_count(value, "ease.tail_neighbours",
                       "EASE on the ease.max_items most-bought items only")


def ease_dropouts(values) -> list[float]:
    """``ease.dropouts`` as floats in [0, 1) (empty: plain EASE)."""
    return _setting_floats(values, "ease.dropouts", lambda x: 0.0 <= x < 1.0,
                           "probabilities in [0, 1)") or [0.0]
