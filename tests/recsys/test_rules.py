"""Business filters, diversity and the relevance floor (tests/recsys/tiers.py data)."""


import numpy as np
import pytest

from recsys.artifacts import load_version
from recsys.exceptions import ConfigError
from recsys.recommender import Recommender
from recsys.rules import Filters, Floor, ItemMeta, build_item_meta, diversify, item_mask
from recsys.vocab import Vocab

LOOSE = dict(min_support=0, min_score=0.0)  # floor off: every known item is a candidate


@pytest.fixture(scope="module")
def tiers(tier_model):
    models, version, truth = tier_model
    return Recommender.load(load_version(models, version)), truth


def names(rec, answer):
    return [rec.items.id_of(r.item_idx) for r in answer.items]


def small_meta():
    items = Vocab(np.array(["a", "b", "c", "d", "e"]))
    from recsys.data import Catalog

    catalog = Catalog(ids=np.array(["a", "b", "c", "d", "e"]),
                      category=np.array(["x", "x", "y", "y", ""], dtype=object),
                      price=np.array([1.0, 5.0, 10.0, np.nan, 3.0]),
                      in_stock=np.array([True, False, True, True, True]))
    return items, build_item_meta(items, catalog, None)


def test_item_mask_each_filter_alone():
    items, meta = small_meta()
    base = np.ones(5, dtype=bool)
    def mask(**kw):
        return items.ids[item_mask(meta, items, Filters(**kw), base)].tolist()

    assert mask(categories=["x"]) == ["a", "b"]
    assert mask(categories=["x", "y"]) == ["a", "b", "c", "d"]
    assert mask(min_price=3.0) == ["b", "c", "e"]  # unknown price never passes a price filter
    assert mask(max_price=3.0) == ["a", "e"]
    assert mask(in_stock=True) == ["a", "c", "d", "e"]
    assert mask(exclude=["a", "zz"]) == ["b", "c", "d", "e"]
    assert mask(categories=["nope"]) == []
    assert mask(categories=["y"], min_price=2.0, in_stock=True) == ["c"]
    assert base.all()  # the base mask is not modified


def test_diversify_caps_each_category_keeps_uncategorised():
    category = np.array([0, 0, 0, 1, 1, -1, -1])
    ranked = np.array([0, 1, 5, 2, 3, 6, 4])
    assert diversify(ranked, category, 1, 10).tolist() == [0, 5, 3, 6]
    assert diversify(ranked, category, 2, 10).tolist() == [0, 1, 5, 3, 6, 4]
    assert diversify(ranked, category, 1, 2).tolist() == [0, 5]
    assert diversify(np.zeros(0, dtype=np.int64), category, 1, 3).tolist() == []


def test_filters_validate():
    for bad in (Filters(min_price=5, max_price=1), Filters(max_per_category=0),
                Filters(min_support=-1), Filters(min_price=float("nan"))):
        with pytest.raises(ConfigError):
            bad.validate()
    assert Filters(min_price=1, max_price=5, max_per_category=2, min_support=0).validate()


def test_floor_defaults_and_overrides():
    floor = Floor.from_dict({"min_support": 3, "min_score": 0.01})
    assert floor.for_kind("also_bought", None) == (3, 0.01)
    assert floor.for_kind("upsell", None) == (3, 0.01)
    assert floor.for_kind("next_best", None) == (0, 0.01)  # ALS evidence is not a count
    assert floor.for_kind("next_best", Filters(min_support=2)) == (2, 0.01)
    assert floor.for_kind("basket", Filters(min_support=0, min_score=0.5)) == (0, 0.5)


def test_each_filter_on_answers(tiers):
    rec, truth = tiers
    n11 = rec.items.index("N11")
    customer = next(c for c in (rec.customers.index(x) for x in truth["stay_basic"])
                    if n11 not in rec.history[c].indices)
    bought = {rec.items.id_of(i) for i in rec.history[customer].indices}
    meta = rec.meta
    def info(name):
        return rec.describe(rec.items.index(name))

    def nb(**kw):
        return names(rec, rec.next_best(customer, 20, Filters(**LOOSE, **kw)))

    everything = nb()
    assert len(everything) == int(rec.known_items.sum()) - len(bought)
    assert {info(n)["category"] for n in nb(categories=["plans"])} == {"plans"}
    assert all(info(n)["price"] >= 8 for n in nb(min_price=8)) and nb(min_price=8)
    assert all(info(n)["price"] <= 8 for n in nb(max_price=8)) and nb(max_price=8)
    assert "N11" in everything and "N11" not in nb(in_stock=True)
    assert all(info(n)["in_stock"] for n in nb(in_stock=True))
    assert "PRO" in everything and "PRO" not in nb(exclude=["PRO", "unknown-id"])
    # customer_id: drop what another customer bought.
    other = "P0"
    theirs = {rec.items.id_of(i) for i in rec.history[rec.customers.index(other)].indices}
    assert not set(nb(customer_id=other)) & theirs
    assert set(nb(customer_id=other)) == set(everything) - theirs
    per_cat = nb(max_per_category=1)
    cats = [info(n)["category"] for n in per_cat]
    assert len(cats) == len(set(cats)) == 2
    assert meta is rec.meta


def test_filters_combined_and_before_the_cut(tiers):
    rec, truth = tiers
    customer = rec.customers.index(truth["stay_basic"][0])
    f = Filters(categories=["snacks"], max_price=9, in_stock=True, exclude=["N0"], **LOOSE)
    got = names(rec, rec.next_best(customer, 3, f))
    bought = {rec.items.id_of(i) for i in rec.history[customer].indices}
    eligible = {f"N{j}" for j in range(1, 9)} - bought  # snacks priced 2..9, N0 excluded
    assert len(got) == min(3, len(eligible))  # the filter never leaves the list short
    assert set(got) <= eligible
    # The same filter on every recommendation method.
    basic = rec.items.index("BASIC")
    for answer in (rec.also_bought(basic, 5, f), rec.basket([basic], 5, f),
                   rec.next_best_for_history([basic], 5, f), rec.popular(5, f, np.array([basic]))):
        assert answer.items and set(names(rec, answer)) <= {f"N{j}" for j in range(1, 9)}


def test_filter_removing_everything_gives_empty_list(tiers):
    rec, truth = tiers
    basic = rec.items.index("BASIC")
    customer = rec.customers.index(truth["stay_basic"][0])
    for f in (Filters(categories=["no-such-category"]), Filters(min_price=1e9),
              Filters(categories=["plans"], max_price=1.0)):
        for answer in (rec.also_bought(basic, 5, f), rec.next_best(customer, 5, f),
                       rec.upsell(basic, 5, f), rec.downsell(basic, 5, f),
                       rec.customer_upsell(customer, 5, f), rec.basket([basic], 5, f)):
            assert answer.items == []


def test_out_of_stock_never_returned_with_in_stock(tiers):
    rec, _ = tiers
    n11 = rec.items.index("N11")
    assert not rec.meta.in_stock[n11]
    seen_without = 0
    for i in np.flatnonzero(rec.known_items):
        for method in (rec.also_bought, rec.upsell, rec.downsell):
            loose = method(int(i), 20, Filters(**LOOSE))
            seen_without += n11 in {r.item_idx for r in loose.items}
            strict = method(int(i), 20, Filters(in_stock=True, **LOOSE))
            assert all(rec.meta.in_stock[r.item_idx] for r in strict.items)
    assert seen_without > 0  # the out-of-stock item was a real candidate


def test_relevance_floor(tiers):
    rec, _ = tiers
    basic = rec.items.index("BASIC")
    loose = rec.also_bought(basic, 15, Filters(**LOOSE))
    assert len(loose.items) == 15 and not loose.truncated_by_floor
    default = rec.also_bought(basic)
    assert all(r.support >= rec.floor.min_support for r in default.items)
    assert all(r.score >= rec.floor.min_score for r in default.items)
    strict = rec.also_bought(basic, 10, Filters(min_support=230))
    assert [rec.items.id_of(r.item_idx) for r in strict.items] == ["ADDON"]  # 240 bought both
    assert strict.truncated_by_floor
    none = rec.also_bought(basic, 10, Filters(min_support=10_000))
    assert none.items == [] and none.truncated_by_floor
    high = rec.also_bought(basic, 10, Filters(min_support=0, min_score=0.5))
    assert all(r.score >= 0.5 for r in high.items)


def test_likely_buyers_rules(tiers):
    rec, _ = tiers
    pro = rec.items.index("PRO")
    owners = set(rec.history[:, [pro]].tocoo().row)
    _, buyers = rec.likely_buyers(pro, 50)
    assert buyers and not owners & {c for c, _ in buyers}
    _, strict = rec.likely_buyers(pro, 50, min_score=buyers[0][1])
    assert [c for c, _ in strict] == [c for c, s in buyers if s >= buyers[0][1]]


def test_metadata_in_answers(tiers):
    rec, _ = tiers
    info = rec.describe(rec.items.index("PRO"))
    assert info == {"name": "Pro plan", "category": "plans", "price": 25.0, "in_stock": True,
                    "metadata": {"brand": "acme"}}


def test_item_meta_is_what_the_mask_uses():
    items, meta = small_meta()
    assert isinstance(meta, ItemMeta)
    assert meta.category_name(4) is None and meta.category_name(0) == "x"


def test_floor_looks_past_the_first_chunk():
    from recsys.recommender.selection import _ranked_chunks

    scores = np.random.default_rng(0).random(1000).astype(np.float32)
    parts = list(_ranked_chunks(scores, 10))
    assert [len(p) for p in parts] == [10, 80, 910]
    assert np.array_equal(scores[np.concatenate(parts)], np.sort(scores)[::-1])
    assert list(_ranked_chunks(scores[:0], 10)) == []
