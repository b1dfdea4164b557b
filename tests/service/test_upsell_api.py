"""Upsell, downsell and customer upsell over HTTP, on planted plan tiers (tests/recsys/tiers.py).

BASIC (10) < ADDON (20, a complement of BASIC) < PRO (25) < ENT (60), category ``plans``.
"""

from __future__ import annotations

import pytest

from tests.service.conftest import make_app


@pytest.fixture(scope="module")
def tiers(tier_model):
    return tier_model


@pytest.fixture
def client(tiers):
    models, _, _ = tiers
    return make_app(models).test_client()


def ids(r):
    return [x["item_id"] for x in r.get_json()["recommendations"]]


def test_item_upsell_and_downsell(client, tiers):
    _, version, _ = tiers
    r = client.get("/v1/items/BASIC/upsell")
    assert r.status_code == 200
    body = r.get_json()
    assert body["model_version"] == version and body["strategy"] == "upsell"
    assert ids(r)[:1] == ["PRO"]
    first = body["recommendations"][0]
    assert first["category"] == "plans" and first["price"] == 25.0
    assert first["name"] == "Pro plan" and first["metadata"] == {"brand": "acme"}
    assert first["reason"]["because_of"] == ["BASIC"]
    assert first["reason"]["price_ratio"] == pytest.approx(2.5)
    assert ids(client.get("/v1/items/PRO/upsell"))[:1] == ["ENT"]
    r = client.get("/v1/items/ENT/downsell")
    assert r.get_json()["strategy"] == "downsell" and ids(r)[:1] == ["PRO"]
    # Nothing above the top tier: an empty list, not best-sellers dressed as upsells.
    r = client.get("/v1/items/ENT/upsell?category=plans")
    assert r.status_code == 200 and ids(r) == []


def test_customer_upsell(client, tiers):
    _, _, truth = tiers
    stays = truth["stay_basic"][0]
    r = client.get(f"/v1/customers/{stays}/upsell")
    assert r.status_code == 200 and ids(r)[:1] == ["PRO"]
    assert r.get_json()["recommendations"][0]["reason"]["because_of"] == ["ADDON"]
    assert ids(client.get("/v1/customers/B0/upsell"))[:1] == ["ENT"]
    r = client.get("/v1/customers/NOBODY/upsell")
    assert r.get_json()["strategy"] == "popular-fallback"
    assert client.get("/v1/customers/NOBODY/upsell?fallback=false").status_code == 404


def test_upsell_filters(client):
    assert ids(client.get("/v1/items/BASIC/upsell?exclude=PRO&limit=5"))[:1] != ["PRO"]
    assert client.get("/v1/items/BASIC/upsell?max_price=20").status_code == 200
    assert "PRO" not in ids(client.get("/v1/items/BASIC/upsell?max_price=20"))
    assert client.get("/v1/items/BASIC/upsell?limit=0").status_code == 400
