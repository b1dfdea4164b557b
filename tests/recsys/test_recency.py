"""Next-best recency weights (recsys.models.recency) and their use by the Recommender."""

import csv

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.artifacts import VersionWriter, load_version
from recsys.data import read_orders
from recsys.models import CoPurchaseModel, PopularityModel
from recsys.models.recency import decay_weights, last_purchase_age
from recsys.recommender import Recommender
from recsys.rules import build_item_meta
from support.synthetic import write_orders

write = write_orders


def day(d):
    return f"2025-01-{1 + d:02d}T00:00:00" if d < 31 else f"2025-02-{d - 30:02d}T00:00:00"


@pytest.fixture()
def orders(tmp_path):
    """X bought A (day 0) and C (day 20); Y bought A twice (days 0 and 10) and B (day 10);
    Z bought D (day 5) and C (day 5). Anonymous lines carry no history."""
    return write(tmp_path / "o.csv", [
        ["X", "o1", "A", 1, 1.0, day(0)],
        ["X", "o2", "C", 1, 1.0, day(20)],
        ["Y", "o3", "A", 1, 1.0, day(0)],
        ["Y", "o4", "A", 1, 1.0, day(10)],
        ["Y", "o4", "B", 1, 1.0, day(10)],
        ["Z", "o5", "D", 1, 1.0, day(5)],
        ["Z", "o5", "C", 1, 1.0, day(5)],
        ["", "o6", "B", 1, 1.0, day(30)],
    ])


def test_ages_are_days_to_the_customers_last_purchase(orders):
    inter, _ = read_orders(orders)
    hist = inter.customer_items()
    age = last_purchase_age(inter, hist)
    assert np.array_equal(age.indptr, hist.indptr) and np.array_equal(age.indices, hist.indices)
    got = {(inter.customers.id_of(c), inter.items.id_of(i)): float(age[c, i])
           for c, i in zip(*hist.nonzero(), strict=True)}
    # X: A 20 days before its last purchase, C at it; Y: A's *last* purchase is day 10.
    assert got == {("X", "A"): 20.0, ("X", "C"): 0.0, ("Y", "A"): 0.0, ("Y", "B"): 0.0,
                   ("Z", "C"): 0.0, ("Z", "D"): 0.0}
    decay = decay_weights(age, 10.0)
    x, a = inter.customers.index("X"), inter.items.index("A")
    assert decay[x, a] == pytest.approx(0.25)  # two half-lives
    assert decay[x, inter.items.index("C")] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        decay_weights(age, 0)


def test_no_timestamps_no_recency(tmp_path):
    path = tmp_path / "o.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["customer_id", "order_id", "item_id"], ["X", "o1", "A"]])
    inter, _ = read_orders(str(path))
    assert last_purchase_age(inter, inter.customer_items()) is None


def planted_recommender(inter, decay=None):
    """Co-purchase planted by hand: A -> B and C -> D with equal weight."""
    n = len(inter.items)
    idx = inter.items.index
    sim = sp.csr_matrix((np.ones(4, dtype=np.float32),
                         ([idx("A"), idx("B"), idx("C"), idx("D")],
                          [idx("B"), idx("A"), idx("D"), idx("C")])), shape=(n, n))
    hist = inter.customer_items()
    cp = CoPurchaseModel()
    cp.similarity_ = sim
    cp.support_ = sim.copy()
    return Recommender(inter.items, inter.customers, hist, PopularityModel().fit(hist), cp, None,
                       build_item_meta(inter.items, None, None),
                       blend={"next_best": {"copurchase": 1.0}}, history_decay=decay)


def test_recency_decides_next_best_and_survives_save_and_load(orders, tmp_path):
    inter, _ = read_orders(orders)
    x = inter.customers.index("X")
    # Full histories: B (after A) and D (after C) score the same; popularity (B has two
    # buyers, D one) breaks the tie for B.
    plain = planted_recommender(inter)
    assert inter.items.id_of(plain.next_best(x, 1).items[0].item_idx) == "B"
    # X bought C most recently: with a 10-day half-life D comes first, in every answer path.
    age = last_purchase_age(inter, inter.customer_items())
    rec = planted_recommender(inter, decay_weights(age, 10.0))
    assert [inter.items.id_of(r.item_idx) for r in rec.next_best(x, 2).items] == ["D", "B"]
    batch = rec.next_best_batch(np.asarray([x]), 2)
    batch = batch[0] if isinstance(batch, tuple) else batch
    assert [inter.items.id_of(i) for i in np.asarray(batch)[0][:2]] == ["D", "B"]
    scores = rec.score_customers(np.asarray([x]))[0]
    assert scores[inter.items.index("B")] == pytest.approx(0.25, abs=1e-4)  # 0.25 / 1.0
    writer = VersionWriter(str(tmp_path / "m"))
    with writer:
        rec.save(writer)
        version = writer.commit({"blend": rec.blend})
    loaded = Recommender.load(load_version(str(tmp_path / "m"), version))
    assert loaded.history_decay is not None
    assert [inter.items.id_of(r.item_idx) for r in loaded.next_best(x, 2).items] == ["D", "B"]


def test_single_query_next_best_scores_equal_the_batch_scores_with_recency(planted):
    """The single-query path weighs history items like the batch path, for every component
    that reads the history (co-purchase: log counts x decay; EASE: decay)."""
    from recsys.models.ease import EASEModel

    inter, _ = read_orders(planted[0])
    hist = inter.customer_items()
    age = last_purchase_age(inter, hist)
    cp = CoPurchaseModel().fit(hist, inter.order_items())
    ease = EASEModel(lam=50.0).fit(hist, inter.order_items())
    rec = Recommender(inter.items, inter.customers, hist, PopularityModel().fit(hist), cp, None,
                      build_item_meta(inter.items, None, None),
                      blend={"next_best": {"copurchase": 0.5, "ease": 0.5}},
                      ease={"next_best": ease}, history_decay=decay_weights(age, 30.0))
    seen = {}
    answer = rec.answer

    def spy(kind, scores, *args, **kwargs):
        seen["scores"] = np.array(scores, copy=True)
        return answer(kind, scores, *args, **kwargs)

    rec.answer = spy
    plain = Recommender(inter.items, inter.customers, hist, rec.popularity, cp, None, rec.meta,
                        blend=rec.blend, ease={"next_best": ease})
    differs = 0
    for c in range(0, len(inter.customers), 7):
        rec.next_best(c, 5)
        batch = rec.score_customers(np.asarray([c]))[0]
        assert np.array_equal(seen["scores"], batch)
        differs += not np.array_equal(batch, plain.score_customers(np.asarray([c]))[0])
    assert differs > 0  # the decay changed scores: the comparison above is not vacuous
