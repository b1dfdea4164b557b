"""Items 3, 4, 8, 9, 10: abusive requests get the contract's JSON errors and cost nothing.

Live tests run ``xsell serve`` (gunicorn, the shipped config) on a loopback port.
"""

from __future__ import annotations

import json
import socket

import pytest

from support.http import Server
from tests.reliability.conftest import make_app


@pytest.fixture(scope="module")
def live(planted_models, tmp_path_factory):
    import shutil

    models, version, _ = planted_models
    dest = str(tmp_path_factory.mktemp("live") / "models")
    shutil.copytree(models, dest)
    server = Server(dest, workers=1, reload_interval=0, threads=4)
    server.wait_ready()
    yield server
    server.stop()


def _raw(port: int, data: bytes, timeout: float = 10) -> tuple[int, dict, bytes]:
    """Send raw bytes; parse the status line, headers and body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    return status, headers, body


def _json_error(status_expected: int, answer) -> dict:
    status, headers, body = answer
    assert status == status_expected, (status, body[:300])
    assert headers.get("content-type", "").startswith("application/json"), headers
    error = json.loads(body)["error"]
    assert error["code"] and error["message"]
    return error


# ---------------------------------------------------------------- item 3: chunked bodies
def test_chunked_body_over_the_limit_is_413(live):
    cart = json.dumps({"items": ["A1"]}).encode()
    body = cart + b" " * (300 * 1024)  # valid JSON followed by 300 KiB of spaces
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 8192]), body[i:i + 8192])
                      for i in range(0, len(body), 8192)) + b"0\r\n\r\n"
    head = (b"POST /v1/recommendations/basket HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    error = _json_error(413, _raw(live.port, head + chunks))
    assert error["code"] == "payload_too_large"
    small = cart
    chunked_small = b"%x\r\n%s\r\n0\r\n\r\n" % (len(small), small)
    status, _, _ = _raw(live.port, head + chunked_small)
    assert status == 200  # a chunked body under the limit is read as usual


# ------------------------------------------------------ item 4: bounded metric labels
def test_made_up_methods_and_paths_do_not_create_metric_series(planted_models):
    models, _, _ = planted_models
    client = make_app(models, METRICS=True).test_client()
    for n in range(30):
        client.open("/v1/items/A1/also-bought", method=f"BOGUS{n}")
        client.get(f"/made-up-path-{n}")
    text = client.get("/metrics").get_data(as_text=True)
    assert "BOGUS" not in text and "made-up-path" not in text
    assert 'method="other"' in text


# ----------------------------------------------- item 9: gunicorn's own errors as JSON
def test_gunicorn_limits_answer_json_414_and_431(live):
    long_line = b"GET /v1/items/" + b"A" * 9000 + b"/also-bought HTTP/1.1\r\nHost: x\r\n\r\n"
    assert _json_error(414, _raw(live.port, long_line))["code"] == "uri_too_long"
    many = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-H%d: v\r\n" % i for i in range(150)) + b"\r\n"
    assert _json_error(431, _raw(live.port, many))["code"] == "headers_too_large"
    big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 9000 + b"\r\n\r\n"
    assert _json_error(431, _raw(live.port, big))["code"] == "headers_too_large"
    bad = b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n"
    assert _json_error(400, _raw(live.port, bad))["code"] == "bad_request"


# ---------------------------------------- item 8: keys never echoed at start or in logs
def test_malformed_header_with_a_key_is_not_logged(live):
    secret = "s3cret-key-0123456789"
    status, _, _ = _raw(live.port, b"GET /v1/model HTTP/1.1\r\nHost: x\r\nX-API-Key " +
                        secret.encode() + b"\r\n\r\n")
    assert status == 400
    out = live.output()
    assert "Invalid request from" in out  # the event is logged...
    assert secret not in out  # ...without the key


@pytest.mark.parametrize("value", ["KEY123secret:storefront", "storefront", "boss:KEY123secret"])
def test_bad_api_keys_fail_serve_in_one_line_without_the_key(planted_models, tmp_path, value):
    from tests.reliability.conftest import run_xsell

    models, _, _ = planted_models
    code, out, err = run_xsell("serve", "--models", models, "--port", "1",
                               env={"XSELL_API_KEYS": value, "TMPDIR": str(tmp_path)},
                               timeout=60)
    assert code != 0
    assert "Traceback" not in out + err and "KEY123secret" not in out + err, err
    assert len(err.strip().splitlines()) == 1 and "XSELL_API_KEYS" in err


# ------------------------------------------------------ item 10: strict numbers, 415
@pytest.mark.parametrize("query", ["limit=1_0", "limit=+5", "limit=%EF%BC%95", "limit=%205",
                                   "limit=5.0", "min_price=1_000", "max_price=+3",
                                   "min_price=%D9%A1", "min_price=nan", "max_price=1e999"])
def test_malformed_numbers_in_the_query_are_400(planted_models, query):
    client = make_app(planted_models[0]).test_client()
    r = client.get(f"/v1/items/A1/also-bought?{query}")
    assert r.status_code == 400, (query, r.get_json())
    assert r.get_json()["error"]["code"] == "invalid_parameter"


@pytest.mark.parametrize("body", [{"items": ["A1"], "limit": "5"},
                                  {"items": ["A1"], "filters": {"min_price": "1"}},
                                  {"items": ["A1"], "filters": {"max_per_category": "2"}}])
def test_numbers_as_strings_in_a_body_are_400(planted_models, body):
    client = make_app(planted_models[0]).test_client()
    r = client.post("/v1/recommendations/basket", json=body)
    assert r.status_code == 400, r.get_json()


def test_plain_numbers_still_work(planted_models):
    client = make_app(planted_models[0]).test_client()
    assert client.get("/v1/items/A1/also-bought?limit=5&min_price=0.5&max_price=100"
                      ).status_code == 200
    assert client.post("/v1/recommendations/basket",
                       json={"items": ["A1"], "limit": 5, "filters": {"min_price": 1}}
                       ).status_code == 200


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded",
                                   "multipart/form-data; boundary=x", "application/xml"])
def test_non_json_bodies_are_415(planted_models, ctype):
    client = make_app(planted_models[0]).test_client()
    r = client.post("/v1/recommendations/basket", data='{"items": ["A1"]}',
                    content_type=ctype)
    assert r.status_code == 415 and r.get_json()["error"]["code"] == "unsupported_media_type"


def test_proxied_requests_are_not_loopback_clients(planted_models):
    """Behind the shipped proxy every request arrives from loopback: without keys, a request
    relayed by it (X-Forwarded-For) must not get the loopback-only open access."""
    client = make_app(planted_models[0]).test_client()
    assert client.get("/v1/items/A1/also-bought").status_code == 200
    r = client.get("/v1/items/A1/also-bought", headers={"X-Forwarded-For": "203.0.113.9"})
    assert r.status_code == 403
