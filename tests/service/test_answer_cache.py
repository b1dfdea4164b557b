"""The answer cache for POSTed carts and histories: canonical keys, per version, bounded."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recsys.rules import Filters
from service.answer_cache import AnswerCache, post_key
from service.params import Query

from .conftest import make_app

ENDPOINTS = [("/v1/recommendations/basket", "items", "recommendations.basket"),
             ("/v1/recommendations/next-best", "history", "recommendations.next_best_history")]


def _top_ids(app, n):
    rec = app.extensions["xsell"].store.model.recommender
    top = np.argsort(-np.asarray(rec.popularity.counts_), kind="stable")[:n]
    return [rec.items.id_of(int(i)) for i in top]


def _cache(app):
    return app.extensions["xsell"].store.model.answers


@pytest.mark.parametrize("path,field,endpoint", ENDPOINTS)
def test_reordered_and_repeated_carts_share_one_entry(planted_models, path, field, endpoint):
    models, _, _ = planted_models
    app = make_app(models)
    plain = make_app(models, ANSWER_CACHE=0)
    a, b, c = _top_ids(app, 3)
    client, reference = app.test_client(), plain.test_client()
    first = client.post(path, json={field: [a, b, c], "limit": 5})
    assert first.status_code == 200
    assert _cache(app).status()["misses"] == 1
    again = client.post(path, json={field: [c, a, b, a, c], "limit": 5})
    assert again.status_code == 200
    assert _cache(app).status()["hits"] == 1
    assert again.get_data() == first.get_data()
    # The cached answer is the one the model computes for that cart, byte for byte.
    truth = reference.post(path, json={field: [b, c, a], "limit": 5})
    assert truth.get_data() == first.get_data()
    assert len(truth.get_json()["recommendations"]) > 0
    assert _cache(plain).status()["entries"] == 0
    # Other parameters are other entries.
    other = client.post(path, json={field: [a, b, c], "limit": 3})
    assert len(other.get_json()["recommendations"]) == 3
    filtered = client.post(path, json={field: [a, b, c], "limit": 5,
                                       "filters": {"exclude": [first.get_json()[
                                           "recommendations"][0]["item_id"]]}})
    assert filtered.get_data() != first.get_data()
    assert _cache(app).status()["misses"] == 3
    assert _cache(app).status()["entries"] == 3


@pytest.mark.parametrize("path,field,endpoint", ENDPOINTS)
def test_unknown_items_keep_the_clients_order_on_a_hit(planted_models, path, field, endpoint):
    models, _, _ = planted_models
    app = make_app(models)
    client = app.test_client()
    a, b = _top_ids(app, 2)
    first = client.post(path, json={field: [a, "nope-2", b, "nope-1"]}).get_json()
    assert first["unknown_items"] == ["nope-2", "nope-1"]
    hit = client.post(path, json={field: ["nope-1", b, "nope-2", a]})
    assert _cache(app).status()["hits"] == 1
    body = hit.get_json()
    assert body["unknown_items"] == ["nope-1", "nope-2"]
    assert body["recommendations"] == first["recommendations"]
    # A cart whose known items are the same but without unknown ids is its own entry and
    # has no unknown_items.
    clean = client.post(path, json={field: [a, b]}).get_json()
    assert "unknown_items" not in clean
    assert clean["recommendations"] == first["recommendations"]


def test_errors_are_not_cached_and_a_swap_empties_the_cache(planted_models):
    models, _, _ = planted_models
    app = make_app(models)
    client = app.test_client()
    body = {"items": ["nope"], "fallback": False}
    assert client.post("/v1/recommendations/basket", json=body).status_code == 404
    assert client.post("/v1/recommendations/basket", json=body).status_code == 404
    assert _cache(app).status()["entries"] == 0
    (a,) = _top_ids(app, 1)
    client.post("/v1/recommendations/basket", json={"items": [a]})
    assert _cache(app).status()["entries"] == 1
    # The cache belongs to the served model version: a newly loaded one starts empty.
    store = app.extensions["xsell"].store
    store._model = None
    store.check()
    assert len(_cache(app)) == 0


def test_hits_and_misses_reach_metrics(planted_models):
    models, _, _ = planted_models
    app = make_app(models)
    client = app.test_client()
    (a,) = _top_ids(app, 1)
    for _ in range(3):
        client.post("/v1/recommendations/next-best", json={"history": [a]})
    text = client.get("/metrics").get_data(as_text=True)
    lines = [line for line in text.splitlines()
             if line.startswith("xsell_answer_cache_lookups_total")
             and 'endpoint="recommendations.next_best_history"' in line]
    values = {("hit" if 'result="hit"' in line else "miss"): float(line.split()[-1])
              for line in lines}
    assert values["hit"] >= 2 and values["miss"] >= 1
    status = client.get("/v1/model").get_json()
    assert status["store"]["answer_cache"]["hits"] >= 2


def test_cache_is_bounded_in_entries_and_bytes():
    cache = AnswerCache(max_entries=100, max_bytes=10_000)
    for n in range(1000):
        cache.put(("e", n), (b"x" * 500, "s"))
        assert cache.bytes <= 10_000 and len(cache) <= 100
    assert len(cache) == 10_000 // (500 + 400)
    assert cache.get(("e", 999)) is not None and cache.get(("e", 0)) is None
    # Least recently used goes first: a read keeps an old entry in.
    oldest = min(k for k in cache._entries)
    cache.get(oldest)
    cache.put(("e", "new"), (b"y" * 500, "s"))
    assert cache.get(oldest) is not None
    cache.put(("big",), (b"z" * 20_000, "s"))  # larger than the whole cache: not kept
    assert cache.get(("big",)) is None
    small = AnswerCache(max_entries=3, max_bytes=1 << 20)
    for n in range(10):
        small.put(n, (b"a", None))
    assert sorted(small._entries) == [7, 8, 9]
    off = AnswerCache(0, 1 << 20)
    off.put(1, (b"a", None))
    assert off.get(1) is None and off.status()["misses"] == 0


def test_post_key_is_canonical():
    q = Query(10, Filters(categories=["b", "a", "a"], exclude=["y", "x"]), True)
    q2 = Query(10, Filters(categories=["a", "b"], exclude=["x", "y", "x"]), True)
    assert post_key("e", ["2", "1", "2"], q) == post_key("e", ["1", "2"], q2)
    assert post_key("e", ["1"], q) != post_key("e", ["1"], Query(10, Filters(), True))
    assert post_key("e", ["1"], q) != post_key("e", ["1"], Query(10, q.filters, False))
    assert json.dumps(post_key("e", ["1"], q))  # plain values only
