"""The trainer's choices on its holdout: the blend per query kind and next-best recency."""

import csv
from datetime import datetime, timedelta

import numpy as np
import pytest

from recsys.data import read_orders
from recsys.exceptions import ConfigError
from training.blend_search import choose_blend
from training.config import load_config
from training.selection import choose, max_concentration
from training.train import fit_product

N = 100


def hits(*ranges):
    out = np.zeros(N)
    for lo, hi in ranges:
        out[lo:hi] = 1.0
    return out


def results(**blends):
    """{blend key: {"next_best": entry}} from per-query nDCG arrays, keyed like the trainer."""
    names = {"best": (1.0, 0.0, 0.0), "even": (0.5, 0.5, 0.0), "pop": (0.0, 0.0, 1.0)}
    out = {}
    for name, per_query in blends.items():
        cp, als, pop = names[name]
        key = (("copurchase", cp), ("als", als), ("popularity", pop))
        out[key] = {"next_best": {"ndcg@10": float(per_query.mean()),
                                  "_per_query": {"ndcg": per_query}}}
    return out


def chosen(res):
    return choose_blend(res, 10)[0]["next_best"]


def test_the_best_model_blend_wins_over_a_more_even_one_the_data_cannot_separate():
    # even: 0.29 vs best 0.30, paired difference 0.01 with standard error 0.03.
    res = results(best=hits((0, 30)), even=hits((5, 34)), pop=hits((60, 70)))
    assert chosen(res) == {"copurchase": 1.0, "als": 0.0}


POPULAR = {"copurchase": 0.0, "als": 0.0, "popularity": 1.0}


def test_personalised_unless_best_sellers_are_clearly_better():
    # Popularity best, the model blends clearly below (0.40 vs 0.25, se ~0.04): best-sellers.
    res = results(best=hits((0, 25)), even=hits((0, 20)), pop=hits((0, 40)))
    assert chosen(res) == POPULAR
    reason = choose(res, 10)[2]["next_best"]
    assert "more than one standard error" in reason["why"] and reason["queries"] is None
    # Popularity 0.31 vs the best model blend 0.30: paired difference 0.01, standard
    # error 0.017: the holdout cannot tell, so the personalised blend ships (before:
    # best-sellers, which on a one-item-per-order dataset scored 0.53x of plain EASE).
    res = results(best=hits((0, 30)), even=hits((0, 20)), pop=hits((2, 33)))
    assert chosen(res) == {"copurchase": 1.0, "als": 0.0}
    assert "cannot tell" in choose(res, 10)[2]["next_best"]["why"]
    # A model blend above best-sellers: it wins.
    res = results(best=hits((0, 40)), even=hits((0, 20)), pop=hits((1, 30), (50, 51)))
    assert chosen(res) == {"copurchase": 1.0, "als": 0.0}
    # A shop capping popularity on item pages never gets best-sellers alone there.
    item = {key: {"basket": {"hr@10": e["next_best"]["ndcg@10"],
                             "_per_query": {"hr": e["next_best"]["_per_query"]["ndcg"]}}}
            for key, e in results(best=hits((0, 25)), even=hits((0, 20)),
                                  pop=hits((0, 40))).items()}
    assert choose_blend(item, 10, max_item_popularity=0.3)[0]["basket"] == \
        {"copurchase": 1.0, "als": 0.0}


def with_concentration(res, kind, **shares):
    """``res`` re-keyed to ``kind`` with each blend's concentration@10."""
    names = {"best": 1.0, "even": 0.5, "pop": 0.0}
    out = {}
    for key, entry in res.items():
        e = dict(entry["next_best"])
        e["hr@10"], e["_per_query"] = e.pop("ndcg@10"), {"hr": e["_per_query"]["ndcg"]}
        name = next(n for n, cp in names.items() if dict(key)["copurchase"] == cp)
        out[key] = {kind: e | {"concentration@10": shares[name]}}
    return out


def test_a_blend_over_the_concentration_bound_is_not_shipped():
    res = results(best=hits((0, 40)), even=hits((0, 35)), pop=hits((0, 45)))
    # also-bought (bound 5% by default): "best" shows one item on 30% of the pages.
    item = with_concentration(res, "also_bought", best=0.30, even=0.04, pop=1.0)
    blend, metrics, reasons = choose(item, 10)
    assert blend["also_bought"] == {"copurchase": 0.5, "als": 0.5}
    assert metrics["also_bought"]["concentration@10"] == 0.04
    assert reasons["also_bought"]["excluded_by_concentration"] == 2
    # A looser bound lets "best" back in; best-sellers stay out (bound 0.5 < 1.0).
    assert choose(item, 10, bounds={"also_bought": 0.5})[0]["also_bought"] == \
        {"copurchase": 1.0, "als": 0.0}
    # A catalogue of 100 items shows a tenth of itself on every page: no bound under
    # 5 x 10 / 100 = 50% there.
    assert choose(item, 10, n_items=100)[0]["also_bought"] == {"copurchase": 1.0, "als": 0.0}
    # Nothing under the bound (a tiny catalogue): the least concentrated blend, said so.
    item = with_concentration(res, "also_bought", best=0.6, even=0.5, pop=1.0)
    blend, _, reasons = choose(item, 10)
    assert blend["also_bought"] == {"copurchase": 0.5, "als": 0.5}
    assert reasons["also_bought"]["bound_raised"] is True
    # basket and next-best have no bound by default (best-sellers, clearly better here,
    # would win: they are out of the cart above only because of also-bought's bound).
    assert choose(with_concentration(res, "basket", best=0.6, even=0.5, pop=1.0),
                  10)[0]["basket"] == POPULAR
    res = results(best=hits((0, 40)), even=hits((0, 35)), pop=hits((0, 38)))
    item = with_concentration(res, "basket", best=0.6, even=0.5, pop=1.0)
    assert choose(item, 10)[0]["basket"] == {"copurchase": 1.0, "als": 0.0}


@pytest.mark.parametrize("value", [0, 1.5, "x", {"nope": 0.1}, {"basket": -1}])
def test_max_concentration_must_be_shares(value):
    with pytest.raises(ConfigError):
        max_concentration(value)
    assert max_concentration(0.2)["basket"] == 0.2
    assert max_concentration({"basket": 0.3}) == {"also_bought": 0.05, "basket": 0.3,
                                                  "next_best": 1.0}


def write_drift(path, recent_truth: bool, seed: int = 0):
    """Pairs Ai -> Bi taught by one-order customers; query customers buy an old Aj, then a
    recent Ak, then (after the holdout cutoff for most) the complement of the recent one
    (``recent_truth``) or of either at random (no time signal)."""
    rng = np.random.default_rng(seed)
    start = datetime(2025, 1, 1)
    rows, n = [], 0

    def order(customer, items, day):
        nonlocal n
        n += 1
        ts = (start + timedelta(days=float(day))).isoformat(timespec="seconds")
        rows.extend([customer, f"O{n}", item, 1, 1.0, ts] for item in items)

    for c in range(500):
        i = int(rng.integers(10))
        order(f"T{c}", [f"A{i}", f"B{i}"], rng.uniform(0, 300))
    for c in range(400):
        j, k = rng.choice(10, size=2, replace=False)
        order(f"Q{c}", [f"A{j}"], rng.uniform(0, 60))
        order(f"Q{c}", [f"A{k}"], rng.uniform(120, 200))
        target = k if recent_truth or rng.random() < 0.5 else j
        order(f"Q{c}", [f"B{target}"], rng.uniform(240, 300))
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["customer_id", "order_id", "item_id", "quantity", "unit_price", "timestamp"])
        out.writerows(rows)
    return str(path)


@pytest.mark.parametrize("recent_truth", [True, False])
def test_recency_is_adopted_only_where_the_holdout_shows_it(tmp_path, recent_truth):
    inter, _ = read_orders(write_drift(tmp_path / "o.csv", recent_truth))
    config = load_config(None, {"als": {"factors": 8, "iterations": 4},
                                "train": {"recency_half_lives": [0, 30, 365]}})
    product = fit_product(inter, config)
    if recent_truth:
        assert product.half_life == 30.0
        assert product.history_decay is not None
        assert product.metrics["next_best"]["ndcg@10"] > 0.9
    else:
        assert product.half_life is None and product.history_decay is None
    # Off by default: the same data without the setting keeps full histories.
    if recent_truth:
        plain = fit_product(inter, load_config(None, {"als": {"factors": 8, "iterations": 4}}))
        assert plain.half_life is None
        assert plain.metrics["next_best"]["ndcg@10"] < product.metrics["next_best"]["ndcg@10"]


def test_the_reasons_carry_the_trade_off_curve():
    res = results(best=hits((0, 40)), even=hits((0, 35)), pop=hits((0, 45)))
    item = with_concentration(res, "also_bought", best=0.30, even=0.04, pop=1.0)
    frontier = choose(item, 10)[2]["also_bought"]["frontier"]
    assert [(f["bound"], f["hr@10"]) for f in frontier] == \
        [(0.05, 0.35), (0.1, 0.35), (0.2, 0.35), (0.5, 0.4), (1.0, 0.45)]


def test_cross_fitting_removes_the_winners_curse():
    """No signal: 40 blends whose per-query hits are coin flips of the same rate. The
    best of them on the holdout looks better than it is; the cross-fitted value of the
    choice does not (training.selection.cross_fitted)."""
    import numpy as np

    from training.selection import choose, cross_fitted

    rng = np.random.default_rng(3)
    n, rate = 600, 0.2
    results = {}
    for i in range(40):
        hits = (rng.random(n) < rate).astype(float)
        key = (("copurchase", round(i / 40, 4)), ("als", round(1 - i / 40, 4)),
               ("popularity", 0.0))
        results[key] = {"basket": {"hr@10": hits.mean(), "queries": n,
                                   "_per_query": {"hr": hits}}}
    _, metrics, _ = choose(results, 10, bounds=1.0)
    fair = cross_fitted(results, 10, 1.0, {"basket": 1.0}, None)["basket"]
    assert metrics["basket"]["hr@10"] > rate + 0.02  # the winner's curse
    assert abs(fair["value"] - rate) < 0.02 and fair["folds"] == 2
    assert len(fair["picks"]) == 2


def test_a_gated_blend_must_beat_the_plain_one_by_a_standard_error():
    """Evidence gating (training/gating.py) ships only where the holdout clearly says so."""
    import numpy as np

    from recsys.recommender.blending import GATE
    from training.selection import choose

    rng = np.random.default_rng(5)
    base = (rng.random(800) < 0.3).astype(float)
    plain = (("copurchase", 1.0), ("popularity", 0.0))

    def entry(hits):
        return {"also_bought": {"hr@10": hits.mean(), "queries": len(hits),
                                "concentration@10": 0.01, "_per_query": {"hr": hits}}}

    close = base.copy()
    close[np.flatnonzero(base == 0)[:10]] = 1  # 10 hits more, 8 fewer: within noise
    close[np.flatnonzero(base == 1)[:8]] = 0
    clear = base.copy()
    clear[np.flatnonzero(base == 0)[:80]] = 1  # 80 more: clearly better
    for gated, ships in ((close, False), (clear, True)):
        results = {plain: entry(base), plain + ((GATE, 2),): entry(gated)}
        blend, _, reasons = choose(results, 10, n_items=10_000)
        assert (blend["also_bought"].get(GATE, 0) == 2) is ships, reasons["also_bought"]["why"]
        assert "standard error" in reasons["also_bought"]["why"]
