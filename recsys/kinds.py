"""The query kinds: one source of truth for their names.

The blended kinds are the ones whose answer is a blend of components, with
weights the trainer chooses per kind on its holdout.
"""

from __future__ import annotations

BLEND_KINDS = ("also_bought", "basket", "next_best", "likely_buyers")
# Item-anchored kinds: popularity may pull them at most train.max_item_popularity.
ITEM_KINDS = ("also_bought", "basket")
# The strategy an upsell/downsell answer reports.
SUBSTITUTE_STRATEGY = {"upsell": "upsell", "downsell": "downsell", "customer_upsell": "upsell"}
