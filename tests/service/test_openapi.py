"""/openapi.json: a valid OpenAPI 3 document naming every route."""

from __future__ import annotations

import re

from service.openapi import document


def test_document_is_valid_openapi(client):
    from openapi_spec_validator import validate

    served = client.get("/openapi.json")
    assert served.status_code == 200
    assert served.get_json() == document()
    validate(document())


def test_every_route_is_documented(app):
    paths = document()["paths"]
    for rule in app.url_map.iter_rules():
        # The workbench's own pages (below /dashboard/) are HTML for browsers, not API:
        # docs/DASHBOARD.md describes them.
        if rule.endpoint == "static" or rule.rule.startswith("/dashboard/"):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        assert path in paths, f"{rule.rule} is not in the OpenAPI document"
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in paths[path], f"{method} {rule.rule} is not documented"
    routes = {re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", r.rule) for r in app.url_map.iter_rules()}
    assert set(paths) <= routes  # nothing documented that does not exist


def test_error_codes_match_the_error_schema(client):
    schema = document()["components"]["schemas"]["Error"]
    for r in (client.get("/v1/items/A0/also-bought?limit=0"), client.get("/nope"),
              client.post("/v1/items/A0/also-bought")):
        body = r.get_json()
        assert set(body) == set(schema["required"])
        assert set(body["error"]) == set(schema["properties"]["error"]["required"])


# schemathesis against a live server, with every check: tests/reliability/test_schemathesis.py
