"""API keys and roles, Prometheus metrics, JSON logs with request ids."""

from __future__ import annotations

import hashlib
import json

import pytest

from recsys.exceptions import ConfigError
from service.auth import ApiKeys
from tests.service.conftest import make_app

KEYS = "storefront:shop-secret,crm:crm-secret,admin:admin-secret"


@pytest.fixture
def keyed(planted_models):
    models, _, _ = planted_models
    return make_app(models, API_KEYS=KEYS).test_client()


STOREFRONT = [("GET", "/v1/items/A0/also-bought", None),
              ("POST", "/v1/recommendations/basket", {"items": ["A0"]}),
              ("POST", "/v1/recommendations/next-best", {"history": ["A0"]})]
CRM = [("GET", "/v1/customers/Q0_0/next-best-products", None),
       ("GET", "/v1/items/B0/likely-buyers", None)]
ADMIN = [("GET", "/v1/model", None), ("GET", "/dashboard", None)]
OPEN = ["/healthz", "/readyz", "/metrics", "/openapi.json"]


def call(client, method, path, body, headers=None):
    if method == "GET":
        return client.get(path, headers=headers or {})
    return client.post(path, json=body, headers=headers or {})


def test_roles(keyed):
    def status(key, method, path, body, bearer=False):
        headers = {}
        if key:
            headers = {"Authorization": f"Bearer {key}"} if bearer else {"X-API-Key": key}
        return call(keyed, method, path, body, headers).status_code

    for method, path, body in STOREFRONT:
        assert status(None, method, path, body) == 401
        assert status("wrong", method, path, body) == 401
        for key in ("shop-secret", "crm-secret", "admin-secret"):
            assert status(key, method, path, body) == 200
        assert status("shop-secret", method, path, body, bearer=True) == 200
    for method, path, body in CRM:
        assert status(None, method, path, body) == 401
        assert status("shop-secret", method, path, body) == 403
        assert status("crm-secret", method, path, body) == 200
        assert status("admin-secret", method, path, body, bearer=True) == 200
    for method, path, body in ADMIN:
        assert status("crm-secret", method, path, body) == 403
        assert status("admin-secret", method, path, body) == 200
    for path in OPEN:
        assert keyed.get(path).status_code == 200


def test_auth_errors_are_json_and_never_echo_the_key(keyed):
    r = keyed.get("/v1/items/A0/also-bought", headers={"X-API-Key": "not-a-key-42"})
    assert r.status_code == 401
    assert r.get_json()["error"]["code"] == "invalid_api_key"
    assert "not-a-key-42" not in r.get_data(as_text=True)
    r = keyed.get("/v1/items/A0/also-bought")
    assert r.get_json()["error"]["code"] == "missing_api_key"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    r = keyed.get("/v1/model", headers={"X-API-Key": "shop-secret"})
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "forbidden"


def test_keys_file_with_hashes(planted_models, tmp_path):
    models, _, _ = planted_models
    path = tmp_path / "keys"
    digest = hashlib.sha256(b"file-key").hexdigest()
    path.write_text(f"# keys\n\ncrm:{digest}\n")
    client = make_app(models, API_KEYS_FILE=str(path)).test_client()
    assert client.get("/v1/items/B0/likely-buyers", headers={"X-API-Key": "file-key"}
                      ).status_code == 200
    assert client.get("/v1/model", headers={"X-API-Key": "file-key"}).status_code == 403
    assert client.get("/v1/items/B0/likely-buyers", headers={"X-API-Key": digest}
                      ).status_code == 401  # the hash itself is not a key


def test_bad_key_configuration_is_a_clear_error_without_the_key(tmp_path):
    with pytest.raises(ConfigError, match="the role is not one of") as err:
        ApiKeys.from_settings("boss:topsecret", None)
    assert "boss" not in str(err.value)  # 'key:role' reversed would echo the key
    with pytest.raises(ConfigError) as err:
        ApiKeys.from_settings("topsecret-without-role", None)
    assert "topsecret" not in str(err.value)
    path = tmp_path / "keys"
    path.write_text("admin:not-hex\n")
    with pytest.raises(ConfigError, match="line 1"):
        ApiKeys.from_settings(None, str(path))


def test_keys_are_stored_hashed():
    keys = ApiKeys.from_settings(KEYS, None)
    assert all(len(d) == 32 and b"secret" not in d for _, d in keys.entries)
    assert keys.role_of("admin-secret") == "admin"
    assert keys.role_of("admin-secret ") is None
    assert keys.role_of("") is None


def test_no_keys_open_to_loopback_only(planted_models):
    models, _, _ = planted_models
    client = make_app(models).test_client()
    assert client.get("/v1/model").status_code == 200
    r = client.get("/v1/model", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert r.status_code == 403 and "XSELL_API_KEYS" in r.get_json()["error"]["message"]
    assert client.get("/healthz", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200
    assert client.get("/v1/items/A0/also-bought",
                      environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    opened = make_app(models, ALLOW_OPEN=True).test_client()
    assert opened.get("/v1/model", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200


def _metric(text: str, prefix: str) -> float:
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_latency_fallbacks_and_model(client, planted_models):
    _, version, _ = planted_models
    before = client.get("/metrics").get_data(as_text=True)
    ok = 'xsell_http_requests_total{endpoint="items.also_bought",method="GET",status="200"}'
    bad = 'xsell_http_requests_total{endpoint="items.also_bought",method="GET",status="400"}'
    fallback = ('xsell_recommendations_total{endpoint="items.also_bought",'
                'strategy="popular-fallback"}')
    latency = ('xsell_http_request_duration_seconds_count{endpoint="items.also_bought",'
               'status="200"}')
    client.get("/v1/items/A0/also-bought")
    client.get("/v1/items/A1/also-bought")
    client.get("/v1/items/UNKNOWN/also-bought")
    client.get("/v1/items/A0/also-bought?limit=0")
    r = client.get("/metrics")
    assert r.status_code == 200 and r.content_type.startswith("text/plain")
    after = r.get_data(as_text=True)
    assert _metric(after, ok) - _metric(before, ok) == 3
    assert _metric(after, bad) - _metric(before, bad) == 1
    assert _metric(after, fallback) - _metric(before, fallback) == 1
    assert _metric(after, latency) - _metric(before, latency) == 3
    assert f'xsell_model_info{{version="{version}"}} 1.0' in after
    assert _metric(after, "xsell_model_age_seconds") > 0
    assert "xsell_model_reload_failures_total" in after


def test_reload_metrics(models_copy):
    from support.versions import publish_copy

    models, version, _ = models_copy
    app = make_app(models)
    client = app.test_client()
    before = client.get("/metrics").get_data(as_text=True)
    publish_copy(models, version, "20990101T000000Z-ffff", corrupt="truncate")
    app.extensions["xsell"].store.check()
    publish_copy(models, version, "20990101T000000Z-aaaa")
    app.extensions["xsell"].store.check()
    after = client.get("/metrics").get_data(as_text=True)
    for name, delta in (("xsell_model_reload_failures_total", 1),
                        ("xsell_model_reloads_total", 1)):
        assert _metric(after, name) - _metric(before, name) == delta
    assert 'xsell_model_info{version="20990101T000000Z-aaaa"} 1.0' in after


def test_access_log_is_json_with_request_id_and_no_key(planted_models, capfd):
    models, _, _ = planted_models
    client = make_app(models, API_KEYS=KEYS, ACCESS_LOG=True).test_client()
    capfd.readouterr()
    client.get("/v1/items/A0/also-bought?limit=2",
               headers={"X-API-Key": "shop-secret", "X-Request-ID": "trace-77"})
    err = capfd.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    access = [line for line in lines if line["logger"] == "xsell.access"]
    assert len(access) == 1
    entry = access[0]
    assert entry["request_id"] == "trace-77" and entry["status"] == 200
    assert entry["path"] == "/v1/items/A0/also-bought" and entry["strategy"] in ("co-purchase", "blend")
    assert "shop-secret" not in err


def test_library_logs_are_json(models_copy, capfd):
    from support.versions import publish_copy

    models, version, _ = models_copy
    app = make_app(models)
    capfd.readouterr()
    publish_copy(models, version, "20990101T000000Z-dddd", corrupt="truncate")
    app.extensions["xsell"].store.check()
    err = capfd.readouterr().err
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(r["level"] == "ERROR" and "20990101T000000Z-dddd" in r["message"]
               for r in records)


def test_master_warm_up_answers_everything_without_accounting(planted_models):
    from service.app import warm_up

    models, _, _ = planted_models
    app = make_app(models, API_KEYS=KEYS)
    client = app.test_client()
    before = client.get("/metrics").get_data(as_text=True)
    assert warm_up(app) == 10
    after = client.get("/metrics").get_data(as_text=True)
    count = 'xsell_http_requests_total{endpoint="items.also_bought",method="GET",status="200"}'
    assert _metric(after, count) == _metric(before, count)
    # Warm-up bypassed auth only while it ran.
    assert client.get("/v1/items/A0/also-bought").status_code == 401


def test_metrics_skip_a_worker_file_not_yet_written(client, tmp_path, monkeypatch):
    """Under gunicorn a starting worker creates its prometheus file before writing its
    header; ``/metrics`` read meanwhile must still answer 200 with the other workers'
    values (prometheus_client alone raises struct.error on the 0-byte file: a 500)."""
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    from service import metrics

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    written = MmapedDict(str(tmp_path / "counter_111.db"))
    written.write_value(mmap_key("xsell_planted", "xsell_planted_total", [], [], "planted"),
                        7.0, 0.0)
    written.close()
    (tmp_path / "counter_222.db").write_bytes(b"")
    text = metrics.render(client.application.extensions["xsell"].store).decode()
    assert _metric(text, "xsell_planted_total") == 7.0
    r = client.get("/metrics")
    assert r.status_code == 200 and "xsell_planted_total 7.0" in r.get_data(as_text=True)
