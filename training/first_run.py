"""What a run publishes: the gate's refusal, the first-run rule, too little data.

The gate (``training.train._gate``) guards a models folder that already serves a
version: a new one must beat best-sellers by the margin and not fall below the
current one. On the *first* run there is nothing to protect: refusing leaves the
service with nothing to serve (503 on every request) even when the trained model
beat best-sellers, only by less than the margin. So with no current version the run
publishes the better of the trained model and a best-sellers model (popularity alone
for every item and customer query), and says which and why in the summary line.
Too little data to measure either (fewer than ``MIN_EVAL_QUERIES`` holdout queries)
publishes nothing on any run: the choice would be noise.
"""

from __future__ import annotations

# Fewer holdout queries than this in the gate's protocol: "not enough data to evaluate".
MIN_EVAL_QUERIES = 10


def enough_to_evaluate(gate: dict, metrics: dict) -> dict:
    """``gate`` refused with a clear reason when its protocol has too few holdout queries."""
    kind = gate.get("protocol")
    queries = int((metrics.get(kind) or {}).get("queries", 0)) if kind else 0
    if kind is None or queries < MIN_EVAL_QUERIES:
        return {**gate, "passed": False, "not_enough_data": True, "queries": queries,
                "reason": f"not enough data to evaluate: {queries} holdout queries "
                          f"(at least {MIN_EVAL_QUERIES} needed to tell a model from best-sellers)"}
    return gate


def best_sellers_blend(blend: dict) -> dict:
    """``blend`` with popularity alone for every kind it weighs popularity in."""
    out = {}
    for kind, weights in blend.items():
        if kind == "likely_buyers":  # customers for an item: no best-seller answer
            out[kind] = dict(weights)
            continue
        out[kind] = {name: 0.0 for name in weights if name != "popularity"} | {"popularity": 1.0}
    return out


def first_run_choice(gate: dict, current: dict | None, blend: dict, metrics: dict,
                     pop_metrics: dict) -> tuple[dict, dict, dict]:
    """(gate, blend, metrics) to publish. Unchanged unless this is a first run (no current
    version) that the gate refused on its margin: then the better of the trained model
    and best-sellers is published (ties go to best-sellers, the simpler model)."""
    if gate.get("passed") or current is not None or gate.get("not_enough_data") \
            or "value" not in gate:
        return gate, blend, metrics
    ours, base = float(gate["value"]), float(gate["popularity"])
    if ours > base:
        lift = (ours / base - 1) if base > 0 else float("inf")
        why = (f"first run (no current version): the trained model beats best-sellers "
               f"({gate['metric']} {ours:.4f} vs {base:.4f}, {lift:+.1%}) but by less than the "
               f"{gate['min_lift']:.0%} margin, which guards later runs; published the trained "
               f"model")
        return {**gate, "passed": True, "first_run": "trained", "reason": why}, blend, metrics
    why = (f"first run (no current version): best-sellers do at least as well as the trained "
           f"model ({gate['metric']} {base:.4f} vs {ours:.4f}); published a best-sellers model "
           f"so the service has something to serve; the margin guards later runs")
    chosen = {**metrics, **pop_metrics}  # what the best-sellers model measured
    return ({**gate, "passed": True, "first_run": "best-sellers", "value": base,
             "trained_value": ours, "reason": why}, best_sellers_blend(blend), chosen)
