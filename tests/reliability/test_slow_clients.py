"""Item 2: slow clients cannot take the service down in the shipped deployment shape.

The shape: Debian's nginx with the shipped configuration (deploy/nginx, rendered with
loopback ports exactly as deploy/nginx/entrypoint.sh renders it in the containers)
in front of ``xsell serve`` (gunicorn, the shipped gunicorn config). A dozen clients
trickle their headers, a dozen more send less body than their Content-Length; all the
while /healthz and a recommendation must answer promptly. Against gunicorn alone the
same clients hold every request thread (``test_bare_gunicorn_is_what_the_proxy_fixes``
shows it, so this test can fail). Bounded: 24 slow connections, under a minute.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from support.http import Server, request
from support.proxy import NGINX, Proxy

SLOW = 12  # connections of each kind


def slow_clients(port: int, stop: threading.Event) -> list[socket.socket]:
    """SLOW connections trickling headers, SLOW with a body shorter than announced."""
    socks = []
    for i in range(SLOW):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        socks.append(s)
    for i in range(SLOW):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"POST /v1/recommendations/basket HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"items\"")
        socks.append(s)

    def trickle():
        while not stop.wait(0.5):
            for s in socks[:SLOW]:
                try:
                    s.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    pass

    threading.Thread(target=trickle, daemon=True).start()
    return socks


def answers_promptly(port: int, seconds: float = 8.0) -> list:
    """For ``seconds``: /healthz and a recommendation, each with a 2 s time-out."""
    results = []
    deadline = time.time() + seconds
    while time.time() < deadline:
        for path in ("/healthz", "/v1/items/A1/also-bought"):
            started = time.time()
            try:
                status, _, _ = request(port, "GET", path, timeout=2)
            except OSError as exc:
                status = type(exc).__name__
            results.append((path, status, round(time.time() - started, 2)))
        time.sleep(0.2)
    return results


def _under_attack(port: int) -> list:
    stop = threading.Event()
    socks = slow_clients(port, stop)
    try:
        time.sleep(1.0)
        return answers_promptly(port)
    finally:
        stop.set()
        for s in socks:
            s.close()


@pytest.fixture
def backend(models_copy):
    models, _, _ = models_copy
    # threads=4, workers=2: the shipped worker class with a small pool, as on a small host.
    server = Server(models, workers=2, threads=4, reload_interval=0,
                    env={"XSELL_ALLOW_OPEN": "true"})
    server.wait_ready()
    yield server
    server.stop()


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (scripts/test.sh installs it)")
def test_slow_clients_do_not_block_the_service_behind_the_shipped_proxy(backend, tmp_path):
    proxy = Proxy(str(tmp_path), backend.port)
    try:
        results = _under_attack(proxy.port)
    finally:
        proxy.stop()
    failed = [r for r in results if r[1] != 200]
    assert results and not failed, failed


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (scripts/test.sh installs it)")
def test_proxy_errors_are_json(backend, tmp_path):
    proxy = Proxy(str(tmp_path), backend.port)
    try:
        body = b'{"items": ["A1"]' + b" " * (100 * 1024) + b"}"
        status, headers, answer = request(proxy.port, "POST", "/v1/recommendations/basket",
                                          body=body)
        assert status == 413 and answer["error"]["code"] == "payload_too_large"
        status, _, answer = request(proxy.port, "GET", "/v1/items/" + "A" * 9000 + "/upsell")
        assert status == 414 and answer["error"]["code"] == "uri_too_long"
        status, _, answer = request(proxy.port, "GET", "/v1/items/A1/also-bought")
        assert status == 200
        # No key configured: a proxied client is not a loopback client (ALLOW_OPEN aside).
    finally:
        proxy.stop()


def test_bare_gunicorn_is_what_the_proxy_fixes(backend):
    """The same attack against gunicorn alone: requests time out (the fault of item 2)."""
    results = _under_attack(backend.port)
    failed = [r for r in results if r[1] != 200]
    assert failed, "gunicorn alone withstood the slow clients: the proxy test proves nothing"
