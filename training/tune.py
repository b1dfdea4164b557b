"""``xsell evaluate --tune``: search the product's settings on the validation split.

The search never touches the test period: it splits the training period
(the same rule as ``xsell evaluate``), fits on its past, and scores every
candidate on its validation orders with the product's own blend selection.
It is a coordinate search (co-purchase first, then ALS), a few fits each,
and writes the winner as a TOML file that ``xsell train --config`` reads.
"""

from __future__ import annotations

import copy
import json
import logging
import math

from recsys.data import ItemExclusion, read_orders
from recsys.evaluation import PRIMARY, build_eval_data, split, split_interactions
from recsys.recommender import Recommender
from recsys.rules import build_item_meta

log = logging.getLogger(__name__)

SEARCH = [
    ("copurchase", "alpha", [0.3, 0.5, 0.7]),
    ("copurchase", "shrink", [2.0, 10.0, 50.0]),
    ("als", "factors", [64, 128]),
    ("als", "alpha", [2.0, 10.0, 20.0]),
    ("als", "regularization", [0.01, 0.05, 0.2]),
]


def score_settings(inter_train, data, config: dict, k: int = 10,
                   ease_memo: dict | None = None) -> dict:
    """Fit the product's models on ``inter_train``; its best blend per kind on ``data``.

    Returns ``{kind: primary metric}`` of the best blend per kind. ``ease_memo``
    keeps the EASE models per ``ease`` section across calls: the EASE choice scores
    EASE alone, so it does not depend on the co-purchase and ALS settings the
    search varies, and the search fits it once instead of once per candidate (with
    the default lambdas, half-lives and size exponents, 24 dense inverses each).
    """
    from training.train import choose_blend, evaluate_blends, fit_ease, fit_models

    hist, pop, cp, als = fit_models(inter_train, config, _null)
    meta = build_item_meta(inter_train.items, None, None)

    def make_rec(ease_model):
        return Recommender(inter_train.items, inter_train.customers, hist, pop, cp, als, meta,
                           ease=ease_model)

    key = json.dumps(config["ease"], sort_keys=True)
    if ease_memo is not None and key in ease_memo:
        ease = ease_memo[key]
    else:
        ease, _ = fit_ease(inter_train, config, data, make_rec, k)
        if ease_memo is not None:
            ease_memo[key] = ease
    levels = [float(w) for w in config["train"]["blend_grid"]]
    results = evaluate_blends(make_rec(ease), data, levels, k,
                              config["train"].get("popularity_grid", [0.0]))
    _, metrics = choose_blend(results, k, float(config["train"].get("max_item_popularity", 1.0)))
    return {kind: metrics[kind][f"{PRIMARY[kind]}@{k}"] for kind in metrics}


def _null(desc, total=None):
    class _Bar:
        def __call__(self, n=1):
            pass

        def close(self):
            pass

    return _Bar()


def _relative(metrics: dict, reference: dict) -> float:
    kinds = [kind for kind in reference if reference[kind] > 0]
    if not kinds:
        return 0.0
    return sum(metrics.get(kind, 0.0) / reference[kind] for kind in kinds) / len(kinds)


def tune(inter, config: dict, k: int = 10, progress=None, search=SEARCH) -> tuple[dict, list]:
    """Coordinate search over ``search``; returns (best config, trial log)."""
    say = progress or (lambda text: None)
    s = split(inter, test_fraction=float(config["train"]["test_fraction"]))
    train_part, _ = split_interactions(inter, s)
    sv = split(train_part, test_fraction=float(config["train"]["test_fraction"]))
    val_train, val_test = split_interactions(train_part, sv)
    data = build_eval_data(val_train, val_test, max_queries=config["train"]["max_eval_queries"])
    best = copy.deepcopy(config)
    ease_memo: dict = {}
    reference = score_settings(val_train, data, best, k, ease_memo)
    best_score = 1.0
    trials = [{"settings": "defaults", "metrics": reference, "score": 1.0}]
    say(f"tune: defaults {reference}")
    for section, key, values in search:
        for value in values:
            if math.isclose(float(best[section][key]), float(value)):
                continue
            cand = copy.deepcopy(best)
            cand[section][key] = value
            metrics = score_settings(val_train, data, cand, k, ease_memo)
            score = _relative(metrics, reference)
            trials.append({"settings": f"{section}.{key}={value}", "metrics": metrics,
                           "score": round(score, 4)})
            say(f"tune: {section}.{key}={value}: {score:.4f} of defaults")
            # A change must win by a clear margin: small differences are noise.
            if score > best_score * 1.01:
                best, best_score = cand, score
    return best, trials


def to_toml(config: dict) -> str:
    """The settings sections of a config as TOML (the format ``--config`` reads)."""
    lines = ["# Written by `xsell evaluate --tune`: settings chosen on the validation split."]
    for section in ("data", "copurchase", "als", "ease", "train", "gate"):
        values = config.get(section, {})
        scalars = {key: v for key, v in values.items() if not isinstance(v, dict) and v is not None}
        lines.append(f"\n[{section}]")
        lines.extend(f"{key} = {_toml_value(v)}" for key, v in scalars.items())
        for key, v in values.items():
            if isinstance(v, dict) and v:
                lines.append(f"\n[{section}.{key}]")
                lines.extend(f"{kk} = {_toml_value(vv)}" for kk, vv in v.items())
    return "\n".join(lines) + "\n"


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def tune_to_file(orders: str, config: dict, out_path: str, catalog=None, columns=None,
                 k: int = 10, progress=None) -> dict:
    """Read orders, tune, write the config file; returns the chosen config."""
    inter, _ = read_orders(orders, columns or config["data"].get("columns"),
                           exclude=ItemExclusion(config["data"].get("exclude_items")))
    best, trials = tune(inter, config, k, progress)
    if columns:
        best["data"]["columns"] = dict(columns)
    with open(out_path, "w", encoding="utf-8") as fh:
        fh.write(to_toml(best))
    if progress:
        progress(f"tune: wrote {out_path} ({len(trials)} trials)")
    return best
