"""Training configuration: defaults, overridden by a TOML or JSON file (``--config``).

A model component's section (``copurchase``, ``als``, ``ease``, ``substitutes``, ...) and
its validator live with the component (``config_defaults``, ``check_config`` in
recsys/models); :data:`DEFAULTS` gathers them from :data:`recsys.models.REGISTRY`.
"""

from __future__ import annotations

import copy
import json
import os

import tomllib

from recsys.ann import DEFAULTS as ANN_DEFAULTS
from recsys.exceptions import ConfigError
from recsys.models import REGISTRY
from recsys.models.substitutes import SERVING_RULES

DEFAULTS: dict = {
    "data": {
        "exclude_items": None,  # regex over item ids, or a file of ids
        "columns": {},
    },
    # Each model component's section, as it declares it (recsys/models).
    **{cls.config_section: copy.deepcopy(cls.config_defaults) for cls in REGISTRY.values()
       if cls.config_section},
    # Large catalogues (recsys.ann): above min_items items (min_customers customers) the
    # trainer builds an approximate-neighbour index over the ALS item (customer) factors;
    # next-best (likely-buyers) take candidates from it, then score and filter exactly.
    # nprobe is the smallest reaching recall_target (recall@10 vs exact on a sample);
    # lists 0: 4 * sqrt(rows); overfetch: candidates asked of the index per query.
    "ann": dict(ANN_DEFAULTS),
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
        # Evidence-gated blends (training/gating.py): the best personalised blends of the
        # item kinds are also tried with slots claimed only by items bought with the query
        # item by at least this many customers beyond chance (in Poisson standard
        # deviations for pairs chance gives often), best-sellers (marked filled) in the
        # rest; concentration counts the claimed slots. [] tries none.
        "evidence_gate": [1, 2, 3, 5],
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
    for cls in REGISTRY.values():  # a component registered after this module was read
        if cls.config_section and cls.config_section not in config:
            config[cls.config_section] = copy.deepcopy(cls.config_defaults)
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

# The price bands (serving rules kept in the substitutes section).
BANDS = SERVING_RULES


def check_config(config: dict) -> None:
    """Fail early (before any data is read) on invalid serving rules or component settings."""
    check_rules(config)
    for cls in REGISTRY.values():
        if cls.config_section:
            cls.check_config(config[cls.config_section])


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
