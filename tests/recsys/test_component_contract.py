"""The component contract (recsys.models.base.Component), checked on every registered component.

In the manner of implicit's ``RecommenderBase`` test mixin: one parametrised suite,
and every component of :data:`recsys.models.REGISTRY` must have a fitting recipe in
:data:`FITTED` below, so a new component cannot be registered without passing it.

Planted data: six complementary pairs (2p, 2p+1). Customer c buys pair c % 6; the
first half of each pair's customers buy both items in one order, the other half in
two orders (so the pair is also a substitute: bought by the same customers, half the
time not together). Item 10 has five extra buyers: the best-seller.
"""

from __future__ import annotations

import copy
import inspect
import json
import mmap
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.artifacts import VersionWriter, load_version
from recsys.exceptions import ComponentError
from recsys.models import (
    BLENDED,
    REGISTRY,
    ALSModel,
    CoPurchaseModel,
    EASEByKind,
    EASEModel,
    PopularityModel,
    RecencyWeights,
    SubstituteModel,
)
from recsys.models.base import FULL, HOLDOUT, NEEDS, Component, FitContext
from recsys.sparse import binary, count_row, rows_matrix

N_PAIRS, N_ITEMS, N_CUSTOMERS = 6, 12, 72
BEST_SELLER = 10


def planted() -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(customers x items counts, orders x items) with the pairs planted."""
    cust, orders = [], []
    for c in range(N_CUSTOMERS):
        p = c % N_PAIRS
        if (c // N_PAIRS) % 2 == 0:
            orders.append([2 * p, 2 * p + 1])
        else:
            orders += [[2 * p], [2 * p + 1]]
        cust.append([2 * p, 2 * p + 1])
    for _ in range(5):  # the best-seller's extra buyers
        cust.append([BEST_SELLER])
        orders.append([BEST_SELLER])
    return _matrix(cust), _matrix(orders)


def _matrix(rows: list[list[int]]) -> sp.csr_matrix:
    m = rows_matrix([np.asarray(r) for r in rows], N_ITEMS)
    m.sort_indices()
    return m


def _category_and_price() -> tuple[np.ndarray, np.ndarray]:
    category = np.repeat(np.arange(N_PAIRS), 2).astype(np.int32)
    price = np.tile([10.0, 15.0], N_PAIRS)
    return category, price


def _fit_popularity(customer_items, order_items):
    return PopularityModel().fit(customer_items)


def _fit_copurchase(customer_items, order_items):
    return CoPurchaseModel(min_support=1, shrink=0.0).fit(customer_items, order_items)


def _fit_als(customer_items, order_items):
    return ALSModel(factors=8, iterations=15, regularization=0.01, use_gpu=False,
                    random_state=0, num_threads=1).fit(customer_items)


def _fit_ease(customer_items, order_items):
    model = EASEModel(lam=1.0, min_buyers=1).fit(customer_items, order_items)
    basket = EASEModel(lam=5.0, min_buyers=1).fit(customer_items, order_items)
    return EASEByKind({"next_best": model, "basket": basket, "also_bought": model})


def _fit_recency(customer_items, order_items):
    age = customer_items.copy().astype(np.float32)
    age.data = np.arange(age.nnz, dtype=np.float32) % 3 * 10.0  # 0, 10, 20 days
    return RecencyWeights().fit(age, half_life=10.0)


def _fit_substitutes(customer_items, order_items):
    category, price = _category_and_price()
    return SubstituteModel(als_weight=0.0, shrink=0.0, min_similarity=0.01).fit(
        customer_items, order_items, None, category, price)


# How each registered component is fitted on the planted data (keyed by registry name).
FITTED = {
    "popularity": _fit_popularity,
    "copurchase": _fit_copurchase,
    "als": _fit_als,
    "ease": _fit_ease,
    "recency": _fit_recency,
    "substitutes": _fit_substitutes,
}


@pytest.fixture(scope="module")
def data():
    return planted()


@pytest.fixture(scope="module")
def fitted(data):
    return {name: FITTED[name](*data) for name in REGISTRY}


@pytest.fixture(scope="module")
def reloaded(fitted, tmp_path_factory):
    """Every component saved into one version and loaded back (memory-mapped)."""
    models = str(tmp_path_factory.mktemp("models"))
    # The manifest's parameters, as the trainer writes them: each component's settings.
    params = {name: {key: getattr(component, key) for key in
                     inspect.signature(type(component)).parameters}
              for name, component in fitted.items() if name in ("copurchase", "als",
                                                                 "substitutes")}
    writer = VersionWriter(models)
    with writer:
        for component in fitted.values():
            component.save(writer)
        version = writer.commit({"parameters": params})
    loaded = load_version(models, version)
    return {name: cls.load(loaded, params) for name, cls in REGISTRY.items()}


def test_every_registered_component_has_a_recipe_and_its_registry_name():
    assert set(FITTED) == set(REGISTRY)
    for name, cls in REGISTRY.items():
        assert issubclass(cls, Component) and cls.name == name and cls.strategy
    assert BLENDED == ("copurchase", "als", "ease")


class _Period:
    """The matrices a recsys.period.TrainingPeriod hands a component's fit."""

    customer_is_order = False

    def __init__(self, customer_items, order_items):
        self.customer_items, self.order_items, self.order_rows = \
            customer_items, order_items, order_items
        self.inter = object()  # no basket co-counts from another engine
        self.ages = customer_items.copy().astype(np.float32)
        self.ages.data = np.arange(self.ages.nnz, dtype=np.float32) % 3 * 10.0


def _training_config() -> dict:
    """Every component's declared defaults, and the train settings ALS reads."""
    return {**{cls.config_section: copy.deepcopy(cls.config_defaults)
               for cls in REGISTRY.values() if cls.config_section},
            "train": {"holdout_als_iterations": 4}}


def test_every_registered_component_trains_from_a_period_and_its_section(data):
    """The training side of the contract: each component declares valid defaults for its
    section, builds itself from a period and that section (or, when its search fits
    every candidate, has that search), and records JSON settings in the manifest."""
    config = _training_config()
    period = _Period(*data)
    category, price = _category_and_price()
    meta = SimpleNamespace(recommendable=np.ones(N_ITEMS, dtype=bool), category=category,
                           price=price)
    fitted: dict = {}
    for name, cls in REGISTRY.items():
        assert cls.fit_stage in ("holdout", "blend", "ship"), name
        if cls.config_section:
            cls.check_config(config[cls.config_section])  # its defaults are valid
        if cls.search_fits:  # fitted by its holdout search (the trainer's): it has one
            assert cls.search.__func__ is not Component.search.__func__, name
            continue
        setting = 10.0 if cls.fit_stage == "blend" else None
        ctx = FitContext(period, config, dict(fitted), stage=HOLDOUT if
                         cls.fit_stage == "holdout" else FULL, setting=setting, meta=meta)
        component = cls.fit_period(ctx)
        assert isinstance(component, cls) and component.fitted, name
        fitted[name] = component
        recorded = cls.parameters(ctx.section(cls), setting)
        assert recorded is None or json.loads(json.dumps(recorded)) == recorded, name
    # Popularity from the period's counts: the best-seller first.
    assert int(np.argmax(fitted["popularity"].counts_)) == BEST_SELLER


def test_a_component_without_a_fit_says_so():
    class Bare(Component):
        name = "bare"

    with pytest.raises(ComponentError, match="bare.*fit_period"):
        Bare.fit_period(FitContext(None, {}))


def _scores(component, kind, rows):
    raw = component.item_scores(kind, rows)
    if sp.issparse(raw):
        return raw.toarray()
    return np.broadcast_to(raw, (rows.shape[0], N_ITEMS)) if raw.ndim == 1 else raw


def _best_other(row: np.ndarray, exclude) -> int:
    row = np.array(row, dtype=np.float64)
    row[list(exclude)] = -np.inf
    return int(np.argmax(row))


@pytest.mark.parametrize("name", ["popularity", *BLENDED])
def test_known_neighbours(name, fitted, data):
    """Item queries and histories of 2p rank 2p+1 first; customers of pair p rank its items
    first and are the likeliest buyers of them; popularity ranks the best-seller first."""
    component = fitted[name]
    customer_items, _ = data
    if name == "popularity":
        assert _best_other(_scores(component, "also_bought", rows_matrix([[0]], N_ITEMS))[0],
                           []) == BEST_SELLER
        assert component.buyer_scores(0, customer_items) is None
        return
    for p in range(N_PAIRS):
        a, b = 2 * p, 2 * p + 1
        for kind in ("also_bought", "basket"):
            assert _best_other(_scores(component, kind, rows_matrix([[a]], N_ITEMS))[0],
                               [a]) == b
        raw = component.history_scores(rows_matrix([[b]], N_ITEMS))
        assert _best_other(raw.toarray()[0] if sp.issparse(raw) else raw[0], [b]) == a
        raw = component.customer_scores(np.asarray([p]), customer_items, None)
        row = raw.toarray()[0] if sp.issparse(raw) else raw[0]
        assert set(np.argsort(-row, kind="stable")[:2]) == {a, b}
        buyers = component.buyer_scores(a, customer_items)
        assert int(np.argmax(buyers)) % N_PAIRS == p


def test_substitutes_and_recency_known_answers(fitted):
    cand, sim = fitted["substitutes"].neighbours(4)
    assert cand.tolist() == [5] and sim[0] > 0  # same category, pricier, bought apart
    decay = fitted["recency"].decay_
    assert np.allclose(decay.data, np.tile([1.0, 0.5, 0.25], decay.nnz)[:decay.nnz])


@pytest.mark.parametrize("name", [n for n, cls in REGISTRY.items() if cls.blended]
                         + ["popularity"])
def test_one_query_forms_equal_the_batch_forms(name, fitted, data):
    """query_row / history_row / customer_row give the batch scores bit for bit (the
    recommender uses either path)."""
    component, (customer_items, _) = fitted[name], data
    decay = fitted["recency"].decay_
    for query in ([0], [0, 3, 7], []):
        rows = rows_matrix([query], N_ITEMS)
        q = np.asarray(query, dtype=np.int64)
        for kind in ("also_bought", "basket"):
            one = component.query_row(kind, q)
            if one is not None:
                np.testing.assert_array_equal(np.broadcast_to(one, (1, N_ITEMS)),
                                              _scores(component, kind, rows))
        one = component.history_row(q)
        if one is not None:
            raw = component.history_scores(rows)
            np.testing.assert_array_equal(
                np.broadcast_to(one, (1, N_ITEMS)),
                np.broadcast_to(raw.toarray() if sp.issparse(raw) else raw, (1, N_ITEMS)))
    # Known customers: the row as a CSR matrix and as the recommender's light CountRow;
    # and a full history, every item with counts 1-3 (next-best takes customer_row for
    # any history length when compiled).
    long = sp.csr_matrix(np.tile(np.arange(1, N_ITEMS + 1, dtype=np.float32) % 3 + 1,
                                 (customer_items.shape[0], 1)))
    for history, c in ((customer_items, 0), (customer_items, 7), (long, 7)):
        for row in (history[c], count_row(history, c)):
            for d in (None, decay if history is customer_items else None):
                one = component.customer_row(c, row, None if d is None else
                                             np.asarray(d[c].data, dtype=np.float32))
                raw = component.customer_scores(np.asarray([c]), history, d)
                if one is not None:
                    np.testing.assert_array_equal(
                        np.broadcast_to(one, (1, N_ITEMS)),
                        np.broadcast_to(raw.toarray() if sp.issparse(raw) else raw,
                                        (1, N_ITEMS)))


def _is_memory_mapped(array: np.ndarray) -> bool:
    base = array
    while base is not None:
        if isinstance(base, (np.memmap, mmap.mmap)):
            return True
        base = getattr(base, "base", None)
    return False


@pytest.mark.parametrize("name", list(REGISTRY))
def test_save_load_round_trip(name, fitted, reloaded, data):
    """The loaded arrays equal the fitted ones, are read-only and memory-mapped, and every
    score the component gives is bit-identical."""
    before, after = fitted[name], reloaded[name]
    assert type(after) is type(before) and after.fitted
    state_before, state_after = before.state(), after.state()
    assert sorted(state_after) == sorted(state_before)
    for file, value in state_after.items():
        parts = (value.data, value.indices, value.indptr) if sp.issparse(value) else (value,)
        for array in parts:
            assert not array.flags.writeable, file
        # The entries are mapped; a CSR's indptr (one per row) may be scipy's small copy.
        for array in parts[:2]:
            assert _is_memory_mapped(array), file
        old = state_before[file]
        if sp.issparse(value):
            assert (value != old).nnz == 0 and value.dtype == old.dtype
        else:
            np.testing.assert_array_equal(value, old)
            assert value.dtype == old.dtype
    customer_items, _ = data
    rows = rows_matrix([[0], [0, 3], []], N_ITEMS)
    for kind in NEEDS:
        if not before.supports(kind):
            continue
        if kind in ("also_bought", "basket"):
            np.testing.assert_array_equal(_scores(after, kind, rows), _scores(before, kind, rows))
        elif kind == "next_best":
            for a, b in ((after.history_scores(rows), before.history_scores(rows)),
                         (after.customer_scores(np.arange(5), customer_items, None),
                          before.customer_scores(np.arange(5), customer_items, None))):
                np.testing.assert_array_equal(_dense(a), _dense(b))
        else:
            a, b = after.buyer_scores(3, customer_items), before.buyer_scores(3, customer_items)
            assert (a is None and b is None) or np.array_equal(a, b)


def _dense(raw):
    return raw.toarray() if sp.issparse(raw) else np.asarray(raw)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_empty_inputs_and_absent_files(name, fitted, data, tmp_path):
    """An empty query or history scores zero everywhere (popularity: its prior), and a
    version without the component's files loads as None."""
    component = fitted[name]
    empty = sp.csr_matrix((2, N_ITEMS), dtype=np.float32)
    if component.supports("basket"):
        scores = _scores(component, "basket", empty)
        assert scores.shape == (2, N_ITEMS) and np.isfinite(scores).all()
        if name != "popularity":
            assert not scores.any()
            assert not _dense(component.history_scores(empty)).any()
    writer = VersionWriter(str(tmp_path))
    with writer:
        writer.add_array("unrelated", np.zeros(3))
        version = writer.commit({"parameters": {}})
    assert REGISTRY[name].load(load_version(str(tmp_path), version), {}) is None


@pytest.mark.parametrize("name", [n for n, cls in REGISTRY.items() if not cls.blended
                                  and n != "popularity"])
def test_a_missing_score_is_a_clear_error(name, fitted, data):
    """A component without a kind's scores says so (never a silent fall-through)."""
    component = fitted[name]
    rows = rows_matrix([[0]], N_ITEMS)
    assert not any(component.supports(kind) for kind in NEEDS)
    with pytest.raises(ComponentError, match=name):
        component.item_scores("basket", rows)
    with pytest.raises(ComponentError, match="customer_scores"):
        component.customer_scores(np.asarray([0]), data[0], None)
    with pytest.raises(ComponentError, match="likely buyers"):
        component.buyer_scores(0, data[0])


def test_recommender_rejects_blends_and_names_it_cannot_serve(fitted, data):
    from recsys.recommender import Recommender
    from recsys.rules import build_item_meta
    from recsys.vocab import Vocab

    customer_items, _ = data
    items = Vocab(np.asarray([f"i{j}" for j in range(N_ITEMS)]))
    customers = Vocab(np.asarray([f"c{j}" for j in range(customer_items.shape[0])]))
    meta = build_item_meta(items, None, None)
    args = (items, customers, customer_items, fitted["popularity"], fitted["copurchase"],
            None, meta)
    rec = Recommender(*args, blend={"basket": {"copurchase": 1.0}})
    assert list(rec.components) == ["popularity", "copurchase"]
    with pytest.raises(ComponentError, match="substitutes"):
        Recommender(*args, substitutes=fitted["substitutes"],
                    blend={"basket": {"substitutes": 1.0}})
    with pytest.raises(ComponentError, match="unknown component"):
        Recommender(*args, components={"itemknn": fitted["copurchase"]})
    assert binary(customer_items).nnz == customer_items.nnz
