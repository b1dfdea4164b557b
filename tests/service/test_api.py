"""Every endpoint and error of the contract through the Flask test client.

The model is trained on planted data (support/synthetic.py): ``Ai`` and ``Bi``
are complements, ``P0`` is the best-seller, customers ``Qi_r`` hold ``Ai``
but never ``Bi``.
"""

from __future__ import annotations

import json

import pytest

from tests.service.conftest import make_app

RESPONSE_KEYS = {"model_version", "strategy", "recommendations"}
ITEM_KEYS = {"item_id", "score", "name", "category", "price", "in_stock", "reason"}


def ids(response):
    return [r["item_id"] for r in response.get_json()["recommendations"]]


def check_shape(body, version):
    assert set(body) >= RESPONSE_KEYS
    assert body["model_version"] == version
    for rec in body["recommendations"]:
        assert set(rec) >= ITEM_KEYS
        assert isinstance(rec["score"], float)
        assert set(rec["reason"]) >= {"because_of", "support"}


def error_code(response):
    body = response.get_json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["message"]
    return body["error"]["code"]


# ------------------------------------------------------------------ answers
def test_also_bought_ranks_planted_complement_first(client, planted_models):
    _, version, truth = planted_models
    for a, b in truth["pairs"].items():
        r = client.get(f"/v1/items/{a}/also-bought")
        assert r.status_code == 200
        body = r.get_json()
        check_shape(body, version)
        assert body["strategy"] in ("co-purchase", "blend")  # chosen on the holdout
        assert ids(r)[0] == b
        assert a not in ids(r)
        first = body["recommendations"][0]
        assert first["reason"]["because_of"] == [a]
        assert first["reason"]["support"] > 10
        assert first["price"] == 5.0 and first["name"] == b
    r = client.get("/v1/items/B3/also-bought?limit=1")
    assert ids(r) == ["A3"]


def test_limit_and_filters(client):
    assert len(ids(client.get("/v1/items/A0/also-bought?limit=3"))) == 3
    assert len(ids(client.get("/v1/items/A0/also-bought"))) == 10
    # B items cost 5, P items 2: a price window keeps only P items.
    got = ids(client.get("/v1/items/A0/also-bought?max_price=3&limit=20"))
    assert got and all(i.startswith("P") for i in got)
    got = ids(client.get("/v1/items/A0/also-bought?min_price=4&limit=5"))
    assert got[0] == "B0" and all(not i.startswith("P") for i in got)
    got = ids(client.get("/v1/items/A0/also-bought?exclude=B0,P0&limit=5"))
    assert "B0" not in got and "P0" not in got
    got = ids(client.get("/v1/items/A0/also-bought?exclude=B0&exclude=P1&limit=5"))
    assert "B0" not in got and "P1" not in got
    # customer_id: what Q0_0 bought (A0, P9, P12) never comes back.
    got = ids(client.get("/v1/items/B0/also-bought?customer_id=Q0_0&limit=20"))
    assert not {"A0", "P9", "P12"} & set(got)
    # No catalog categories in the planted data: a category filter leaves nothing.
    assert ids(client.get("/v1/items/A0/also-bought?category=shoes")) == []
    got = ids(client.get("/v1/items/A0/also-bought?in_stock=true&limit=2"))
    assert got[0] == "B0"


def test_unknown_item_falls_back_to_popular_or_404(client):
    r = client.get("/v1/items/NOPE/also-bought?limit=3")
    assert r.status_code == 200
    body = r.get_json()
    assert body["strategy"] == "popular-fallback"
    assert ids(r)[0] == "P0"
    assert body["recommendations"][0]["reason"]["because_of"] == []
    r = client.get("/v1/items/NOPE/also-bought?fallback=false")
    assert r.status_code == 404 and error_code(r) == "unknown_item"


def test_basket(client, planted_models):
    _, version, _ = planted_models
    r = client.post("/v1/recommendations/basket", json={"items": ["A1", "P5"], "limit": 4})
    assert r.status_code == 200
    check_shape(r.get_json(), version)
    got = ids(r)
    assert got[0] == "B1" and len(got) == 4 and not {"A1", "P5"} & set(got)
    # customer_id (body or filters) excludes what the customer bought.
    r = client.post("/v1/recommendations/basket",
                    json={"items": ["B2"], "customer_id": "Q2_0", "limit": 20})
    assert "A2" not in ids(r)
    r = client.post("/v1/recommendations/basket",
                    json={"items": ["A1"], "filters": {"exclude": ["B1"], "max_price": 4}})
    got = ids(r)
    assert got and "B1" not in got and all(i.startswith("P") for i in got)
    # An unknown id among known ones is reported and ignored.
    r = client.post("/v1/recommendations/basket", json={"items": ["A4", "GHOST"]})
    assert ids(r)[0] == "B4" and r.get_json()["unknown_items"] == ["GHOST"]
    r = client.post("/v1/recommendations/basket", json={"items": ["GHOST"]})
    assert r.get_json()["strategy"] == "popular-fallback"
    r = client.post("/v1/recommendations/basket", json={"items": ["GHOST"], "fallback": False})
    assert r.status_code == 404 and error_code(r) == "unknown_item"
    r = client.post("/v1/recommendations/basket?fallback=false", json={"items": ["GHOST"]})
    assert r.status_code == 404


def test_next_best_known_customer(client, planted_models):
    _, version, truth = planted_models
    hits = 0
    for customer, target in truth["query_customers"].items():
        r = client.get(f"/v1/customers/{customer}/next-best-products?limit=3")
        assert r.status_code == 200
        check_shape(r.get_json(), version)
        got = ids(r)
        assert not {"P9", "P12", "A" + target[1:]} & set(got)  # never what they bought
        hits += got[0] == target
    assert hits >= 0.9 * len(truth["query_customers"])
    r = client.get("/v1/customers/NOBODY/next-best-products")
    assert r.get_json()["strategy"] == "popular-fallback" and ids(r)[0] == "P0"
    r = client.get("/v1/customers/NOBODY/next-best-products?fallback=false")
    assert r.status_code == 404 and error_code(r) == "unknown_customer"


def test_next_best_from_history(client):
    r = client.post("/v1/recommendations/next-best", json={"history": ["A7", "P3"], "limit": 5})
    assert r.status_code == 200
    got = ids(r)
    assert got[0] == "B7" and not {"A7", "P3"} & set(got)
    r = client.post("/v1/recommendations/next-best", json={"history": []})
    assert r.get_json()["strategy"] == "popular-fallback"
    r = client.post("/v1/recommendations/next-best", json={"history": ["X"], "fallback": False})
    assert r.status_code == 404


def test_likely_buyers(app, client, planted_models):
    _, version, _ = planted_models
    r = client.get("/v1/items/B5/likely-buyers?limit=5")
    assert r.status_code == 200
    body = r.get_json()
    assert body["model_version"] == version and set(body) == {"model_version", "strategy",
                                                              "customers"}
    customers = [c["customer_id"] for c in body["customers"]]
    assert len(customers) == 5
    # Customers who hold A5 but not yet B5 are the planted likely buyers.
    rec = app.extensions["xsell"].store.model.recommender
    a5, b5 = rec.items.index("A5"), rec.items.index("B5")
    holders = 0
    for customer in customers:
        bought = set(rec.history[rec.customers.index(customer)].indices.tolist())
        assert b5 not in bought, customer  # never someone who already has it
        holders += a5 in bought
    assert holders >= 3, customers
    r = client.get("/v1/items/NOPE/likely-buyers?limit=2")
    assert r.get_json()["strategy"] == "popular-fallback" and len(r.get_json()["customers"]) == 2
    r = client.get("/v1/items/NOPE/likely-buyers?fallback=false")
    assert r.status_code == 404


def test_model_health_ready(client, planted_models):
    _, version, _ = planted_models
    assert client.get("/healthz").get_json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.get_json()["model_version"] == version
    body = client.get("/v1/model").get_json()
    assert body["model_version"] == version
    assert body["data"]["items"] == 40 and body["trained_at"]
    assert "next_best" in body["metrics"]
    assert body["store"]["last_error"] is None and body["store"]["reloads"] == 1


# ------------------------------------------------------------------- errors
@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=abc", "limit=2.5",
                                   "min_price=x", "max_price=-1", "min_price=5&max_price=1",
                                   "in_stock=maybe", "fallback=perhaps", "min_price=nan",
                                   "max_per_category=0"])
def test_bad_query_parameters_are_400(client, query):
    r = client.get(f"/v1/items/A0/also-bought?{query}")
    assert r.status_code == 400
    assert error_code(r) == "invalid_parameter"
    name = query.split("=")[0]
    assert name in r.get_json()["error"]["message"]


@pytest.mark.parametrize("body, word", [
    ('{"items": "A0"}', "items"),
    ('{"items": [1, 2]}', "items[0]"),
    ('{"items": []}', "at least one"),
    ('{"items": [""]}', "items[0]"),
    ('{"items": ["A0"], "limit": 0}', "limit"),
    ('{"items": ["A0"], "limit": "ten"}', "limit"),
    ('{"items": ["A0"], "filters": {"colour": "red"}}', "colour"),
    ('{"items": ["A0"], "filters": []}', "filters"),
    ('{"items": ["A0"], "fallback": "no"}', "fallback"),
    ('{"items": ["A0"], "bogus": 1}', "bogus"),
    ('{"basket": ["A0"]}', "items"),
    ('["A0"]', "JSON object"),
    ('{"items": ["A0"', "not valid JSON"),
    ("", "empty"),
    ("\xff\xfe", "JSON"),
])
def test_bad_basket_bodies_are_400(client, body, word):
    r = client.post("/v1/recommendations/basket", data=body.encode("latin-1"),
                    content_type="application/json")
    assert r.status_code == 400, r.get_data()
    error_code(r)
    assert word in r.get_json()["error"]["message"]


def test_too_many_basket_items_is_400(client):
    r = client.post("/v1/recommendations/basket", json={"items": [f"I{i}" for i in range(101)]})
    assert r.status_code == 400 and error_code(r) == "too_many_items"
    assert "101" in r.get_json()["error"]["message"]


def test_oversized_body_is_413(client):
    r = client.post("/v1/recommendations/basket",
                    data=json.dumps({"items": ["A" * 200] * 400}),
                    content_type="application/json")
    assert r.status_code == 413 and error_code(r) == "payload_too_large"


def test_flask_404_and_405_are_json(client):
    r = client.get("/v1/nothing/here")
    assert r.status_code == 404 and error_code(r) == "not_found"
    r = client.post("/v1/items/A0/also-bought")
    assert r.status_code == 405 and error_code(r) == "method_not_allowed"
    assert "GET" in r.headers["Allow"]
    r = client.get("/v1/recommendations/basket")
    assert r.status_code == 405 and error_code(r) == "method_not_allowed"


def test_body_must_be_json_or_untyped(client):
    # CONTRACT.md: 415 for a body that is not application/json; a body with no
    # Content-Type at all is read as JSON.
    r = client.post("/v1/recommendations/basket", data='{"items": ["A2"]}',
                    content_type="text/plain")
    assert r.status_code == 415 and r.get_json()["error"]["code"] == "unsupported_media_type"
    r = client.post("/v1/recommendations/basket", data='{"items": ["A2"]}')
    assert r.status_code == 200 and ids(r)[0] == "B2"


def test_no_model_answers_503_but_healthz_200(tmp_path):
    app = make_app(str(tmp_path))
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    for r in (client.get("/readyz"), client.get("/v1/items/A0/also-bought"),
              client.post("/v1/recommendations/basket", json={"items": ["A0"]}),
              client.get("/v1/model")):
        assert r.status_code == 503 and error_code(r) == "no_model"
        assert "xsell train" in r.get_json()["error"]["message"]
    # A body error is still reported before the missing model.
    r = client.post("/v1/recommendations/basket", json={"items": 3})
    assert r.status_code == 400


def test_unexpected_exception_is_json_500(app, monkeypatch):
    model = app.extensions["xsell"].store.model

    def boom(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(model.recommender, "also_bought", boom)
    r = app.test_client().get("/v1/items/A0/also-bought")
    assert r.status_code == 500 and error_code(r) == "internal_error"
    assert "bug" not in r.get_data(as_text=True)


def test_request_id_is_echoed_or_made(client):
    r = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert r.headers["X-Request-ID"] == "abc-123"
    made = client.get("/healthz").headers["X-Request-ID"]
    assert len(made) == 32
    # A hostile id (newline, huge) is replaced, never echoed.
    r = client.get("/healthz", headers={"X-Request-ID": "x" * 500})
    assert r.headers["X-Request-ID"] != "x" * 500


def test_config_from_environment(monkeypatch, planted_models):
    models, _, _ = planted_models
    monkeypatch.setenv("XSELL_MODELS_DIR", models)
    monkeypatch.setenv("XSELL_MAX_LIMIT", "5")
    monkeypatch.setenv("XSELL_DEFAULT_LIMIT", "5")
    monkeypatch.setenv("XSELL_RELOAD_INTERVAL", "0")
    from service import create_app

    client = create_app().test_client()
    assert client.get("/v1/items/A0/also-bought?limit=5").status_code == 200
    assert client.get("/v1/items/A0/also-bought?limit=6").status_code == 400
    monkeypatch.setenv("XSELL_MAX_LIMIT", "many")
    from recsys.exceptions import ConfigError

    with pytest.raises(ConfigError, match="XSELL_MAX_LIMIT"):
        create_app()
