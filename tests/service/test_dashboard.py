"""The dashboard through the Flask test client: sign-in, session cookie, CSRF, and the
facts each view shows (known answers: the planted orders and catalog of dashboard_data.py).
"""

from __future__ import annotations

import base64
import csv
import glob
import io
import json
import os
import re
import time
import zlib

import pytest

from recsys.artifacts import current_version
from recsys.exceptions import ConfigError
from tests.service.conftest import make_app
from tests.service.dashboard_data import (
    ADMIN_KEY,
    CRM_KEY,
    KEYS,
    OUT_OF_STOCK,
    copy_models,
    csrf_of,
    sign_in,
)

SECRET = "s" * 40


@pytest.fixture
def models(dashboard_models, tmp_path):
    models, older, newer = dashboard_models
    return copy_models(models, tmp_path / "models"), older, newer


class _App:
    """An app whose test clients send a browser's Accept header (browsers are redirected to
    the sign-in form; other clients get a JSON 401)."""

    def __init__(self, app):
        self.app = app
        self.extensions = app.extensions

    def test_client(self):
        client = self.app.test_client()
        client.environ_base["HTTP_ACCEPT"] = "text/html,application/xhtml+xml,*/*;q=0.8"
        return client

    def app_context(self):
        return self.app.app_context()


def keyed_app(models_dir, **config):
    return _App(make_app(models_dir, API_KEYS=KEYS, **config))


@pytest.fixture
def signed_in(models):
    models_dir, older, newer = models
    client = keyed_app(models_dir).test_client()
    r = sign_in(client)
    assert r.status_code == 303 and r.headers["Location"] == "/dashboard/versions"
    return client, models_dir, older, newer


def token(client, path="/dashboard/versions"):
    return csrf_of(client.get(path).get_data(as_text=True))


def rows_of(html: str, table_id: str) -> list[str]:
    table = html.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
    return re.findall(r'<tr data-item="([^"]+)"', table)


# ------------------------------------------------------------ who may enter
def test_refused_without_a_session_or_with_a_non_admin_key(models):
    models_dir, older, newer = models
    client = keyed_app(models_dir).test_client()
    for path in ("/dashboard", "/dashboard/items/A0", "/dashboard/versions",
                 "/dashboard/customers/Q0_0", "/dashboard/health"):
        r = client.get(path)
        assert r.status_code == 302, path
        assert r.headers["Location"].startswith("/dashboard/sign-in?next=")
    r = client.get("/dashboard/api/items?q=A")
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "sign_in_required"
    # A client that does not ask for HTML is not redirected: 401.
    r = client.get("/dashboard", headers={"Accept": "*/*"})
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "sign_in_required"
    r = client.get("/dashboard/likely-buyers.csv?item=B0",
                   headers={"Accept": "application/json"})
    assert r.status_code == 401
    r = client.post("/dashboard/versions/promote", data={"version": older})
    assert r.status_code == 401
    assert current_version(models_dir) == newer
    # A CRM key, in a header or through the form, is not an admin key.
    for path in ("/dashboard", "/dashboard/versions", "/dashboard/api/items"):
        assert client.get(path, headers={"X-API-Key": CRM_KEY}).status_code == 403
    r = sign_in(client, CRM_KEY)
    assert r.status_code == 401 and "not an admin key" in r.get_data(as_text=True)
    assert CRM_KEY not in r.get_data(as_text=True)
    assert client.get("/dashboard").status_code == 302
    assert sign_in(client, "no-such-key").status_code == 401
    assert client.get("/dashboard").status_code == 302


def test_sign_in_sets_a_signed_httponly_samesite_cookie_with_an_expiry(models):
    models_dir, _, _ = models
    client = keyed_app(models_dir).test_client()
    r = sign_in(client)
    assert r.status_code == 303
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("xsell_dashboard=")
    for part in ("HttpOnly", "SameSite=Strict", "Path=/dashboard", "Expires="):
        assert part in cookie, cookie
    assert "Secure" not in cookie  # XSELL_SESSION_COOKIE_SECURE is off by default
    value = cookie.split(";", 1)[0].split("=", 1)[1]
    compressed = value.startswith(".")  # itsdangerous zlib-compresses longer payloads
    payload = value.lstrip(".").split(".", 1)[0]
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    decoded = (zlib.decompress(raw) if compressed else raw).decode()
    assert ADMIN_KEY not in decoded and json.loads(decoded)["role"] == "admin"
    assert client.get("/dashboard").status_code == 200
    # The cookie opens the dashboard only: the API takes keys in headers.
    r = client.get("/v1/model", headers={"Cookie": f"xsell_dashboard={value}"})
    assert r.status_code == 401
    # A tampered cookie is refused.
    client.set_cookie("xsell_dashboard", value[:-2] + ("AA" if value[-2:] != "AA" else "BB"),
                      path="/dashboard")
    assert client.get("/dashboard").status_code == 302


def test_session_expires(models):
    models_dir, _, _ = models
    client = keyed_app(models_dir, SESSION_HOURS=1 / 3600).test_client()
    assert sign_in(client).status_code == 303
    assert client.get("/dashboard").status_code == 200
    time.sleep(2.2)
    assert client.get("/dashboard").status_code == 302


def test_a_shared_secret_is_honoured_and_a_removed_key_ends_the_session(models):
    models_dir, _, _ = models
    first = keyed_app(models_dir, SECRET_KEY=SECRET).test_client()
    sign_in(first)
    cookie = first.get_cookie("xsell_dashboard", path="/dashboard").value
    # Another process with the same secret and keys (a second worker or host) accepts it.
    second = keyed_app(models_dir, SECRET_KEY=SECRET).test_client()
    second.set_cookie("xsell_dashboard", cookie, path="/dashboard")
    assert second.get("/dashboard").status_code == 200
    # Without the secret (a per-start one), or once the admin key is rotated, it does not.
    other = keyed_app(models_dir).test_client()
    other.set_cookie("xsell_dashboard", cookie, path="/dashboard")
    assert other.get("/dashboard").status_code == 302
    rotated = _App(make_app(models_dir, API_KEYS="admin:a-new-admin-key", SECRET_KEY=SECRET)
                   ).test_client()
    rotated.set_cookie("xsell_dashboard", cookie, path="/dashboard")
    assert rotated.get("/dashboard").status_code == 302
    with pytest.raises(ConfigError, match="too short") as err:
        keyed_app(models_dir, SECRET_KEY="short-secret")
    assert "short-secret" not in str(err.value)


def test_state_changes_need_the_csrf_token(signed_in):
    client, models_dir, older, newer = signed_in
    # Another worker (its own app, no watcher) opened before the promotion.
    other = keyed_app(models_dir).test_client()
    sign_in(other)
    good = token(client)
    r = client.post("/dashboard/versions/promote", data={"version": older})
    assert r.status_code == 403 and "CSRF" in r.get_data(as_text=True)
    r = client.post("/dashboard/versions/promote", data={"version": older, "csrf_token": "x" * 43})
    assert r.status_code == 403
    r = client.post("/dashboard/versions/promote", data={"version": older, "csrf_token": good},
                    headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    assert current_version(models_dir) == newer
    assert client.post("/dashboard/sign-out").status_code == 403
    assert client.get("/dashboard").status_code == 200  # still signed in
    r = client.post("/dashboard/versions/promote", data={"version": older, "csrf_token": good})
    assert r.status_code == 303
    assert current_version(models_dir) == older
    page = client.get("/dashboard/versions").get_data(as_text=True)
    assert f"{older} is now the current version" in page
    assert re.search(rf'id="served-version">{older}<', page)
    # The other worker's versions page checks the pointer before it says what it serves.
    page = other.get("/dashboard/versions").get_data(as_text=True)
    assert re.search(rf'id="served-version">{older}<', page)
    # The API answers with it at once (this process swapped on promotion).
    r = client.get("/v1/items/A0/also-bought", headers={"X-API-Key": ADMIN_KEY})
    assert r.get_json()["model_version"] == older
    # Sign-in itself needs the form's token (no login CSRF).
    fresh = keyed_app(models_dir).test_client()
    assert fresh.post("/dashboard/sign-in", data={"key": ADMIN_KEY}).status_code == 403
    assert fresh.get("/dashboard").status_code == 302
    # Sign-out with the token ends the session.
    r = client.post("/dashboard/sign-out", data={"csrf_token": token(client)})
    assert r.status_code == 303
    assert client.get("/dashboard/versions").status_code == 302


def test_promote_refuses_a_broken_version_and_header_clients_need_no_token(models):
    models_dir, older, newer = models
    client = keyed_app(models_dir).test_client()
    admin = {"X-API-Key": ADMIN_KEY}
    path = os.path.join(models_dir, "versions", older, "copurchase_similarity.data.npy")
    with open(path, "r+b") as fh:
        fh.truncate(os.path.getsize(path) // 2)
    r = client.post("/dashboard/versions/promote", data={"version": older}, headers=admin)
    assert r.status_code == 409 and "checksum" in r.get_json()["error"]["message"]
    assert current_version(models_dir) == newer
    r = client.post("/dashboard/versions/promote", data={"version": "nope"}, headers=admin)
    assert r.status_code == 404
    r = client.post("/dashboard/versions/promote", data={"version": newer}, headers=admin)
    assert r.status_code == 200 and r.get_json() == {"current": newer, "serving": newer}


def test_no_open_redirect_after_sign_in(models):
    models_dir, _, _ = models
    client = keyed_app(models_dir).test_client()
    page = client.get("/dashboard/sign-in").get_data(as_text=True)
    for target in ("https://evil.example/", "//evil.example/x", "/v1/model"):
        r = client.post("/dashboard/sign-in", data={"key": ADMIN_KEY, "next": target,
                                                    "csrf_token": csrf_of(page)})
        assert r.headers["Location"] == "/dashboard/", target
        page = client.get("/dashboard/sign-in").get_data(as_text=True)


# ------------------------------------------------------------------- views
def test_item_search_view_and_filters(signed_in):
    client, _, _, _ = signed_in
    found = client.get("/dashboard/api/items?q=lb pack 3").get_json()["items"]
    assert [i["item_id"] for i in found] == ["B3"]
    found = client.get("/dashboard/api/items?q=b3").get_json()["items"]
    assert found[0]["item_id"] == "B3"  # the id itself first
    assert found[0]["name"] == "Bulb pack 3" and found[0]["price"] == 5.0
    html = client.get("/dashboard/items/A3").get_data(as_text=True)
    assert "Anchor lamp 3" in html
    assert rows_of(html, "list-also-bought")[0] == "B3"
    # Reasons: because_of, support, lift, confidence of the planted pair.
    row = html.split('<tr data-item="B3"', 1)[1].split("</tr>", 1)[0]
    assert '<span class="chip">A3</span>' in row
    cheap = client.get("/dashboard/items/A3?max_price=3").get_data(as_text=True)
    got = rows_of(cheap, "list-also-bought")
    assert got and all(i.startswith("P") for i in got)
    bulbs = rows_of(client.get("/dashboard/items/A3?category=bulbs&limit=20").get_data(
        as_text=True), "list-also-bought")
    assert bulbs and all(i.startswith("B") for i in bulbs)
    a7 = client.get("/dashboard/items/A7?in_stock=true").get_data(as_text=True)
    assert OUT_OF_STOCK not in rows_of(a7, "list-also-bought")
    assert rows_of(client.get("/dashboard/items/A7").get_data(as_text=True),
                   "list-also-bought")[0] == OUT_OF_STOCK
    r = client.get("/dashboard/items/A3?min_price=cheap")
    assert r.status_code == 400 and "min_price" in r.get_data(as_text=True)
    assert client.get("/dashboard/items/NOPE").status_code == 404


def test_likely_buyers_count_and_csv(signed_in):
    client, _, _, _ = signed_in
    html = client.get("/dashboard/items/B0").get_data(as_text=True)
    shown = int(re.search(r'id="likely-buyers">(\d+)', html).group(1))
    r = client.get("/dashboard/likely-buyers.csv?item=B0")
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert "attachment" in r.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    assert len(rows) == shown > 3
    scores = [float(x["score"]) for x in rows]
    assert scores == sorted(scores, reverse=True) and scores[-1] > 0
    customers = {x["customer_id"] for x in rows}
    # The planted query customers hold A0 but not B0: likely buyers; B0's buyers are not.
    assert {"Q0_0", "Q0_1", "Q0_2"} <= customers
    api = client.get("/v1/items/B0/likely-buyers?limit=100", headers={"X-API-Key": ADMIN_KEY})
    top = api.get_json()["customers"][:5]
    # The same ranking as the API: the same scores in the same order, and each of the API's
    # customers with its score (customers with equal scores may come in either order).
    assert [round(float(x["score"]), 5) for x in rows[:5]] == \
        [round(c["score"], 5) for c in top]
    by_id = {x["customer_id"]: round(float(x["score"]), 5) for x in rows}
    assert all(by_id.get(c["customer_id"]) == round(c["score"], 5) for c in top)


def test_customer_view_dates_and_drivers(signed_in):
    client, _, _, _ = signed_in
    assert "Q3_0" in client.get("/dashboard/customers?q=Q3").get_data(as_text=True)
    html = client.get("/dashboard/customers/Q3_0").get_data(as_text=True)
    history = html.split('id="history"', 1)[1].split("</table>", 1)[0]
    # Planted: Q3_0 bought A3 and P9 on day 10, A3 and P12 on day 40 of 2025.
    a3 = history.split('data-item="A3"', 1)[1].split("</tr>", 1)[0]
    p9 = history.split('data-item="P9"', 1)[1].split("</tr>", 1)[0]
    assert "2025-02-10" in a3 and "2025-01-11" in p9
    assert '<tr data-item="A3" class="driver">' in history
    assert rows_of(html, "list-next-best-products")[0] == "B3"
    assert client.get("/dashboard/customers/nobody").status_code == 404


def test_versions_view_and_comparison(signed_in, planted):
    client, models_dir, older, newer = signed_in
    _, truth = planted
    html = client.get("/dashboard/versions").get_data(as_text=True)
    assert older in html and newer in html
    assert f"Roll back to {older}" in html
    assert "vs popularity" in html and "Gate:" in html
    read = re.findall(r"<dt>Rows read</dt><dd>(\d+)</dd>", html)
    assert read == [str(truth["n_rows"] + 3)] * 2
    assert re.findall(r"<dt>Rows rejected</dt><dd>(\d+)</dd>", html) == ["3"] * 2
    for reason in ("missing item id", "non positive quantity", "unparsable timestamp"):
        assert html.count(f'<dt class="sub">{reason}</dt><dd>1</dd>') == 2, reason
    assert 'data-chart="chart-1"' in html
    html = client.get(f"/dashboard/versions/promote?version={older}").get_data(as_text=True)
    assert f"Make {older} current?" in html and 'name="csrf_token"' in html
    # The newer version is a copy of the older: every best-seller's list is the same.
    html = client.get(f"/dashboard/versions/compare?a={older}&b={newer}").get_data(as_text=True)
    assert re.search(r'id="mean-overlap">1.00<', html)
    assert len(rows_of(html.replace("<tr><td><a", '<tr data-item="x"><td><a'), "overlap")) == 20


def test_health_rates_from_the_service_metrics(signed_in):
    from service.dashboard.health import HealthHistory, quantile

    client, _, _, _ = signed_in
    admin = {"X-API-Key": ADMIN_KEY}
    history = HealthHistory(interval=10)
    history.sample(now=1000.0)
    for item in ("A0", "A1", "A2", "unknown-1", "unknown-2"):
        assert client.get(f"/v1/items/{item}/also-bought", headers=admin).status_code == 200
    assert client.get("/v1/items/A0/also-bought?limit=0", headers=admin).status_code == 400
    history.sample(now=1010.0)
    summary = history.series(now=1010.0)["endpoints"]["items.also_bought"]["summary"]
    assert summary["requests"] == 6
    assert summary["rps"] == pytest.approx(0.6)
    assert summary["fallback_rate"] == pytest.approx(2 / 5)
    assert summary["client_error_rate"] == pytest.approx(1 / 6)
    assert summary["error_rate"] == 0
    assert 0 < summary["p50_ms"] <= summary["p99_ms"]
    # The app's own history: its sampler thread may have sampled before the requests
    # above (the view adds a sample at most once a second); emptied, the view samples now.
    from service.dashboard import health

    health.history.samples.clear()
    body = client.get("/dashboard/api/health").get_json()
    assert "items.also_bought" in body["endpoints"]
    assert quantile(0.5, {0.001: 50, 0.01: 100, float("inf"): 100}) == pytest.approx(0.001)
    assert quantile(0.99, {0.001: 50, 0.01: 100, float("inf"): 100}) == \
        pytest.approx(0.001 + 0.009 * 49 / 50)
    assert quantile(0.5, {0.1: 0, float("inf"): 0}) is None


def test_pages_ship_with_the_package_and_load_nothing_from_elsewhere(signed_in):
    """The package data globs of pyproject.toml cover every template and asset (a
    non-editable install carries them), and no page names an outside address."""
    import tomllib

    client, _, _, _ = signed_in
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, "pyproject.toml"), "rb") as fh:
        globs = tomllib.load(fh)["tool"]["setuptools"]["package-data"]["service.dashboard"]
    package = os.path.join(root, "service", "dashboard")
    shipped = {p for g in globs for p in glob.glob(os.path.join(package, g))}
    files = {p for folder in ("templates", "static")
             for p in glob.glob(os.path.join(package, folder, "**", "*"), recursive=True)
             if os.path.isfile(p)}
    assert files and files <= shipped
    for path in ("/dashboard", "/dashboard/items", "/dashboard/health", "/dashboard/versions",
                 "/dashboard/static/dashboard.js", "/dashboard/static/dashboard.css"):
        text = client.get(path).get_data(as_text=True)
        assert not re.search(r"(src|href)=\"(https?:)?//", text), path
        assert "@import" not in text and "url(http" not in text
    r = client.get("/dashboard")
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]


def test_comparison_counts_what_changed(models, tmp_path):
    """A catalog update that makes the best-seller P0 unrecommendable: B's also-bought lists
    are A's without P0 (and one more item at the end), so overlap@10 is 0.9 exactly where
    A's top-10 held P0, and 1.0 elsewhere."""
    from service.dashboard.data import compare_versions
    from training.catalog import update_catalog

    models_dir, _, newer = models
    catalog = tmp_path / "p0.csv"
    catalog.write_text("item_id,recommendable\nP0,false\n")
    changed = update_catalog(models_dir, str(catalog), base_version=newer)["version"]
    app = keyed_app(models_dir)
    with app.app_context():
        result = compare_versions(app.extensions["xsell"].store, newer, changed)
    assert len(result["rows"]) == 20
    expected = [0.9 if "P0" in row["a"] else 1.0 for row in result["rows"]]
    assert [row["overlap"] for row in result["rows"]] == pytest.approx(expected)
    assert 0.9 in expected and all("P0" not in row["b"] for row in result["rows"])
    assert result["mean_overlap"] == pytest.approx(sum(expected) / 20)


def test_health_sampler_logs_an_unreadable_metrics_file_in_one_line(tmp_path, monkeypatch,
                                                                    caplog):
    """A worker's prometheus file that cannot be read (here: truncated inside its header)
    gives one warning line, no traceback, no sample; the next sample, once the file is
    whole, is taken. A file not yet written at all (0 bytes: a worker starting) is skipped
    and the sample is taken."""
    import logging

    from service.dashboard.health import HealthHistory

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    starting = tmp_path / "counter_12344.db"
    starting.write_bytes(b"")
    history = HealthHistory()
    history.sample_logged()
    assert len(history.samples) == 1
    half = tmp_path / "counter_12345.db"
    half.write_bytes(b"\x40\x00\x00\x00\x08\x00\x00\x00\x05")  # claims 64 bytes used
    with caplog.at_level(logging.WARNING, logger="service.dashboard.health"):
        history.sample_logged()
    assert len(history.samples) == 1
    [record] = [r for r in caplog.records if "health sampler" in r.getMessage()]
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert "not readable yet" in record.getMessage()
    half.unlink()
    history.sample_logged()
    assert len(history.samples) == 2
