"""One recommendation as the API and the CRM export show it: item facts and its reason."""

from __future__ import annotations


def recommendation_record(item_info, rec, strategy: str | None = None,
                          anchored: bool = False) -> dict:
    """``{"item_id", "score", name, category, price, ..., "reason": {...}}`` of one
    :class:`recsys.recommender.Recommendation`; ``item_info(idx)`` gives an item's facts
    with its ``item_id``.

    The reason carries ``because_of`` (the query or history items that explain it),
    ``support`` (customers who bought both), ``lift``, ``confidence`` and, for
    upsell/downsell, ``price_ratio``. A slot filled for lack of evidence says
    so, ``"filled": "popular"``, so it is never passed off as "also bought":
    one without any reason (what a popularity prior or the tie-break put
    there), every slot of a best-sellers answer (strategy "popular" or
    "popular-fallback"), and on item-anchored
    answers (``anchored``: also-bought, basket) one that no customer bought
    together with the query item (support 0). (The service's relevance floor
    keeps those off item pages unless a request lowers it; the export's batch
    path has no floor.)
    """
    info = item_info(rec.item_idx)
    reason = {"because_of": [item_info(b)["item_id"] for b in rec.because_of],
              "support": rec.support}
    if rec.lift is not None:
        reason["lift"] = round(float(rec.lift), 4)
    if rec.confidence is not None:
        reason["confidence"] = round(float(rec.confidence), 4)
    if rec.price_ratio is not None:
        reason["price_ratio"] = round(float(rec.price_ratio), 4)
    if strategy in ("popular-fallback", "popular") or (rec.price_ratio is None and (
            not rec.because_of or (anchored and not rec.support))):
        reason["filled"] = "popular"
    return {"item_id": info["item_id"], "score": round(float(rec.score), 6), **info,
            "reason": reason}
