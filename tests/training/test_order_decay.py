"""Time decay of the training orders (ease.half_lives): weights, the weighted Gram, the choice.

The planted drift: every customer's anchor item ``Ai`` was bought with ``Bi``
until day 240 and with ``Ci`` from then on (the range moved on). Counted
over the year, ``Bi`` is the likelier companion; in the recent weeks, and in
the holdout and the future, it is ``Ci``. A trainer that weighs orders by age
must see that on its holdout, choose a decay, and answer ``Ci``; one that
keeps every order at weight 1 answers ``Bi``.
"""

import csv
from datetime import datetime, timedelta

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.artifacts import load_version
from recsys.data import read_orders
from recsys.exceptions import ConfigError
from recsys.models.ease import EASEModel
from recsys.models.recency import order_decay
from recsys.recommender import Recommender
from recsys.rules import Filters
from support.synthetic import ORDER_HEADER, write_orders
from training import blend_search as B
from training import train as T
from training.config import load_config

START = datetime(2025, 1, 1)
N_PAIRS = 6
CHANGE_DAY = 240


write = write_orders


def stamp(day: float) -> str:
    return (START + timedelta(days=day)).isoformat(timespec="seconds")


@pytest.fixture(scope="module")
def drift(tmp_path_factory):
    rng = np.random.default_rng(1)
    rows, n = [], 0
    for c in range(500):
        pair = int(rng.integers(N_PAIRS))
        for day in np.sort(rng.uniform(0, 360, int(rng.integers(2, 5)))):
            n += 1
            companion = "B" if day < CHANGE_DAY else "C"
            items = [f"A{pair}", f"{companion}{pair}", f"P{int(rng.integers(0, 15))}"]
            rows += [[f"K{c}", f"O{n}", item, 1, 1.0, stamp(day)] for item in items]
    path = tmp_path_factory.mktemp("drift") / "orders.csv"
    return write(path, rows)


def test_weights_halve_every_half_life_from_the_newest_order(tmp_path):
    path = write(tmp_path / "o.csv", [
        ["X", "o1", "A", 1, 1.0, stamp(0)],
        ["X", "o2", "B", 1, 1.0, stamp(10)],
        ["Y", "o3", "A", 1, 1.0, stamp(20)],
        ["Y", "o3", "C", 1, 1.0, stamp(20)],
    ])
    inter, _ = read_orders(path)
    w = order_decay(inter, 10.0)
    by_order = {inter.orders.id_of(o): w[o] for o in range(len(inter.orders))}
    # Ages 20, 10, 0 days: raw weights 0.25, 0.5, 1, scaled to average 1.
    scale = 3 / 1.75
    assert by_order == pytest.approx({"o1": 0.25 * scale, "o2": 0.5 * scale, "o3": scale})
    # Orders outside the period (a subset's missing ones) weigh nothing.
    part = inter.subset(inter.order_idx != inter.orders.index("o3"))
    w = order_decay(part, 10.0)
    assert w[inter.orders.index("o3")] == 0.0
    assert w[inter.orders.index("o2")] == pytest.approx(2 / 1.5)  # o2 is now the newest
    with pytest.raises(ValueError):
        order_decay(inter, 0.0)


def test_no_timestamps_no_decay(tmp_path):
    path = tmp_path / "o.csv"
    path.write_text("customer_id,order_id,item_id\nX,o1,A\nX,o1,B\n")
    inter, _ = read_orders(str(path))
    assert order_decay(inter, 30.0) is None


def test_weighted_gram_is_x_transpose_w_x():
    orders = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 1]],
                                    dtype=np.float32))
    w = np.array([0.5, 1.0, 2.0, 0.25])
    keep, g = EASEModel(min_buyers=1).gram(orders, orders, w)
    dense = orders.toarray()
    assert np.array_equal(keep, [0, 1, 2])
    np.testing.assert_allclose(g, dense.T @ np.diag(w) @ dense, rtol=1e-6)
    with pytest.raises(ValueError, match="one per row"):
        EASEModel(min_buyers=1).gram(orders, orders, w[:3])


def _also_bought(path, half_lives, tmp_path):
    """Train with ``ease.half_lives``; the best also-bought answer per anchor, and the manifest."""
    config = load_config(None, {"als": {"factors": 8, "iterations": 4},
                                "ease": {"half_lives": half_lives},
                                "train": {"max_eval_queries": 400},
                                "gate": {"min_lift_over_popularity": -1.0}})
    models = str(tmp_path / f"models-{len(half_lives)}")
    summary = T.train(path, models, config)
    rec = Recommender.load(load_version(models, summary["version"]))
    answers = {}
    for i in range(N_PAIRS):
        answer = rec.also_bought(rec.items.index(f"A{i}"), 1, Filters(min_support=0))
        answers[f"A{i}"] = [rec.items.id_of(r.item_idx) for r in answer.items]
    return answers, rec.manifest


def test_a_moved_range_is_learnt_with_decay_and_missed_without(drift, tmp_path):
    fresh, manifest = _also_bought(drift, [0.0, 30.0, 90.0], tmp_path)
    chosen = manifest["parameters"]["ease"]["half_lives_by_kind"]
    assert chosen.get("also_bought", 0) > 0, manifest["parameters"]["ease"]
    assert fresh == {f"A{i}": [f"C{i}"] for i in range(N_PAIRS)}

    stale, manifest = _also_bought(drift, [0.0], tmp_path)
    assert set(manifest["parameters"]["ease"]["half_lives_by_kind"].values()) <= {0.0}
    assert stale == {f"A{i}": [f"B{i}"] for i in range(N_PAIRS)}


def test_every_half_life_is_scored_and_the_best_kept_per_kind(drift):
    from recsys.evaluation import evaluate_variants
    from tests.holdout import holdout
    from training.blend_search import BlendScorer

    config = load_config(None, {"als": {"factors": 8, "iterations": 2},
                                "ease": {"lambdas": [50.0], "half_lives": [30.0, 0.0, 90.0],
                                         "size_exponents": [0.0], "popularity_exponents": [0.0]}})
    inter, _ = read_orders(drift)
    h = holdout(inter, config, als_iterations=2)
    models, chosen = T.fit_ease(h.train_part, config, h.data, h.recommender, 10,
                                customer_items=h.data.train_customer_items)
    scores = {}
    for life in (0.0, 30.0, 90.0):  # no decay first: it wins ties
        weights = order_decay(h.train_part, life) if life else None
        cfg = {k: v for k, v in config["ease"].items()
               if k not in ("lambdas", "dropouts", "enabled", "half_lives", "zero_diagonal",
                            "size_exponents", "popularity_exponents", "tail_neighbours",
                            "head_k")}
        m = EASEModel(lam=50.0, **cfg)
        m.fit(h.data.train_customer_items, h.train_part.order_items(),
              gram=m.gram(h.data.train_customer_items, h.train_part.order_items(), weights))
        scores[life] = evaluate_variants(BlendScorer(h.recommender(m), [(1.0,)], ("ease",)),
                                         h.data, 10)[(1.0,)]
    assert scores[30.0]["also_bought"]["hr@10"] > scores[0.0]["also_bought"]["hr@10"]
    for kind, metric in B.PRIMARY.items():
        if kind not in scores[0.0]:
            continue
        values = {life: r[kind][f"{metric}@10"] for life, r in scores.items()}
        best = max(values.values())
        life = next(v for v in values if values[v] == best)
        assert chosen[kind] == (50.0, 0.0, life, 0.0, 0.0), kind
        assert models[kind].half_life == chosen[kind][2]


@pytest.mark.parametrize("bad", [[-1.0], ["x"], 30.0, "30"])
def test_bad_half_lives_are_a_config_error(drift, bad):
    config = load_config(None, {"ease": {"half_lives": bad}})
    inter, _ = read_orders(drift)
    with pytest.raises(ConfigError, match="ease.half_lives"):
        T.fit_ease(inter, config)


@pytest.mark.parametrize("bad", [-1, "5000", 2.5, True])
def test_bad_dense_items_are_a_config_error(drift, bad):
    config = load_config(None, {"ease": {"dense_items": bad}})
    inter, _ = read_orders(drift)
    with pytest.raises(ConfigError, match="ease.dense_items"):
        T.fit_ease(inter, config)


def test_orders_without_customers_are_weighed_by_their_own_time(drift, tmp_path):
    """No customer column: every order is its own customer, and the decay still applies."""
    with open(drift, encoding="utf-8") as fh:
        rows = list(csv.reader(fh))[1:]
    path = write_orders(tmp_path / "anonymous.csv", [row[1:] for row in rows], ORDER_HEADER[1:])
    answers, manifest = _also_bought(path, [0.0, 30.0], tmp_path)
    assert manifest["parameters"]["ease"]["half_lives_by_kind"].get("also_bought", 0) > 0
    assert answers == {f"A{i}": [f"C{i}"] for i in range(N_PAIRS)}
