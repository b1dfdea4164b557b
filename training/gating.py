"""Evidence-gated blends: item-specific answers first, best-sellers only in the slots
an item's own evidence leaves free.

The concentration bound of training/selection.py judges a blend over every item
page. On data with little co-purchase evidence (a line sample, a catalogue of a
few dozen categories) that forces a choice between two bad answers: blends that
lean on popularity everywhere (over the bound: the same best-seller on every
page) or item-specific blends that answer thin pages with noise (Dunnhumby's
line sample: also-bought HR@10 0.0107 against 0.0301 for best-sellers).

A gated blend decides per query and per slot instead. A slot is *claimed* by an
item when its evidence with the query item reaches the gate ``s``: the customers
who bought both beyond what chance gives, ``(support - e) / max(1, sqrt(e))``
with ``e = buyers(q) buyers(j) / customers`` (the most over a basket's items;
recsys.recommender.Selection.query_evidence), and the personalised blend scores
it above the relevance floor's ``min_score``. Claimed items come first, in the
blend's order. The slots left are best-sellers, marked ``"filled": "popular"``
by the service and the export, never passed off as "also bought".
Concentration is then measured on the claimed slots (what the page says the
item's buyers bought), with the every-slot figure beside it.

Why this evidence: pair support is what a shopper can check ("n customers
bought both") and what the relevance floor already counts, but raw support
cannot tell a complement from a best-seller: an item most customers buy is
"co-bought" with every item by chance (planted data: with raw support >= 5 the
#1 best-seller still claimed 33% of the pages). Subtracting chance and scaling
by its Poisson spread keeps the pair count for rare pairs (e < 1: evidence about
the support itself) and asks a best-seller to beat chance by ``s`` standard
deviations. ``s`` is not fixed by hand: each of the ``train.evidence_gate``
levels (default 1, 2, 3, 5) is tried on the holdout on the best personalised
blends of each item kind, and the gated blends compete with the plain ones
under the same rule (training/selection.py): a gated blend ships only where it
scores best under the bound.
"""

from __future__ import annotations

import logging

from recsys.evaluation import PRIMARY, evaluate_variants
from recsys.exceptions import ConfigError
from recsys.recommender.blending import GATE

log = logging.getLogger(__name__)

ITEM_KINDS = ("also_bought", "basket")
DEFAULT_THRESHOLDS = (1, 2, 3, 5)
# The best personalised blends of each item kind that are also tried gated.
GATED_BLENDS = 2


def thresholds(value) -> tuple[int, ...]:
    """``train.evidence_gate``: the gate levels tried (empty: no gated blends)."""
    if value is None:
        return DEFAULT_THRESHOLDS
    if isinstance(value, (list, tuple)) and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value):
        return tuple(sorted(set(value)))
    raise ConfigError(f"train.evidence_gate must be a list of gate levels (whole numbers >= 1, "
                      f"e.g. [1, 2, 3, 5]; [] for no gated blends); got {value!r}")


def gated_key(key: tuple, level: int) -> tuple:
    """The results key of blend ``key`` gated at ``level``."""
    return tuple(key) + ((GATE, int(level)),)


def is_gated(key) -> bool:
    return any(name == GATE for name, _ in key)


class GatedScorer:
    """Top k of gated blends for the item kinds, through the recommender's own
    :meth:`~recsys.recommender.Selection.gated_top_k` (what the service answers)."""

    def __init__(self, rec, variants: dict[str, list[tuple]]):
        self.rec = rec
        self.variants = variants  # {kind: [(blend key, gate level), ...]}

    def next_best(self, customer_idx, histories, k):
        return {}

    def item_query(self, kind, query_lists, k):
        variants = self.variants.get(kind, [])
        if not variants:
            return {}
        rec = self.rec
        names = tuple(dict.fromkeys(name for key, _ in variants for name, w in key
                                    if w > 0 and name in rec.components))
        parts = rec.item_parts(kind, query_lists, names)
        evidence = rec.query_evidence(query_lists)
        out, scored = {}, {}
        for key, level in variants:
            if key not in scored:
                scored[key] = rec.combine(parts, {n: w for n, w in key if n in parts},
                                          len(query_lists))
            out[gated_key(key, level)] = rec.gated_top_k(
                kind, query_lists, scored[key], k, gate=level, evidence=evidence)
        return out


def evaluate_gated(rec, results: dict[tuple, dict], data, k: int, train_cfg: dict,
                   bounds: dict[str, float] | None = None) -> dict[tuple, dict]:
    """Holdout results of the gated forms of the best personalised blends per item kind,
    keyed like ``results`` (the blend key plus ``(GATE, support)``).

    The blends gated: the ``GATED_BLENDS`` best personalised ones (no popularity weight)
    and the ``GATED_BLENDS`` best of those whose every-slot concentration keeps under the
    kind's bound (``bounds``): gating moves slots from weak evidence to best-sellers, so
    a blend that already keeps under the bound gains accuracy on thin pages, and one that
    does not may come under it on its claimed slots."""
    levels = thresholds(train_cfg.get("evidence_gate"))
    bounds = bounds or {}
    variants = {}
    for kind in ITEM_KINDS:
        key_m, key_c = f"{PRIMARY[kind]}@{k}", f"concentration@{k}"
        personal = sorted(((res[kind][key_m], key, res[kind].get(key_c, 0.0))
                           for key, res in results.items()
                           if kind in res and not is_gated(key)
                           and dict(key).get("popularity", 0.0) <= 1e-9
                           and any(w > 0 for name, w in key if name != "popularity")),
                          key=lambda t: -t[0])
        under = [t for t in personal if t[2] <= bounds.get(kind, 1.0) + 1e-12]
        best = list(dict.fromkeys(key for _, key, _ in personal[:GATED_BLENDS]
                                  + under[:GATED_BLENDS]))
        variants[kind] = [(key, level) for key in best for level in levels]
    if not any(variants.values()):
        return {}
    scored = evaluate_variants(GatedScorer(rec, variants), data, k, per_query=True)
    out = {key: res for key, res in scored.items() if key is not None and res}
    log.info("evidence gate: %d gated blends scored on the holdout (levels %s)",
             len(out), list(levels))
    return out
