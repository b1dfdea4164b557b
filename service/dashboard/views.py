"""The dashboard's routes: sign-in, items, customers, versions, health."""

from __future__ import annotations

import csv
import io
import logging
import time
from urllib.parse import quote, urlsplit

import orjson
from flask import Response, current_app, g, redirect, render_template, request, session, url_for
from werkzeug.datastructures import MultiDict

from recsys.exceptions import XsellError
from recsys.vocab import UNKNOWN

from ..auth import authorize, presented_key
from ..errors import ApiError, error_response
from ..views import served_model
from . import dashboard_bp, data, health
from . import session as sessions

log = logging.getLogger(__name__)

_OPEN = {"dashboard.sign_in", "dashboard.static"}
FILTER_FIELDS = ("category", "min_price", "max_price", "in_stock", "limit")
ITEM_LISTS = (("also-bought", "items.also_bought", "Also bought"),
              ("upsell", "items.item_upsell", "Upsell (dearer alternatives)"),
              ("downsell", "items.item_downsell", "Downsell (cheaper alternatives)"))
CUSTOMER_LISTS = (("next-best-products", "customers.next_best", "Next best"),
                  ("upsell", "customers.customer_upsell", "Customer upsell"))
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


def _state():
    return current_app.extensions["xsell"]


@dashboard_bp.record_once
def _setup(setup_state) -> None:
    app = setup_state.app
    sessions.configure(app, app.extensions["xsell"].settings)


@dashboard_bp.before_app_request
def _start_sampler():
    # Every process that answers requests keeps its own hour of samples (not the preloading
    # gunicorn master while it warms up: a thread there would not survive the fork).
    state = current_app.extensions.get("xsell")
    if state is not None and not state.warming and state.settings.get("METRICS"):
        health.history.ensure_sampler()


def _browser() -> bool:
    """A browser's page request: it asks for HTML."""
    return "text/html" in request.headers.get("Accept", "")


def _wants_json() -> bool:
    """JSON errors for the dashboard's data calls, API clients (a key in a header) and any
    client that does not ask for HTML; an HTML page for a browser."""
    return request.path.startswith(f"{sessions.PREFIX}/api/") or not _browser() or (
        presented_key(request.headers) is not None)


@dashboard_bp.before_request
def _guard():
    """Who may see the dashboard: a signed-in session, an admin key in a header, or (no keys
    configured) a loopback client; state-changing requests need a CSRF token unless the
    caller authenticated with a header."""
    state = _state()
    g.dashboard_via = None
    if state.warming:
        return None
    if request.endpoint in _OPEN:
        return None
    keys = state.keys
    if keys.enabled and sessions.session_role(current_app, keys):
        g.dashboard_via = "session"
    elif keys.enabled and presented_key(request.headers) is None:
        # A browser (it asks for HTML) goes to the sign-in form; other clients get a 401.
        if request.method == "GET" and not _wants_json():
            return redirect(url_for(".sign_in", next=_local_path(request.full_path)))
        raise ApiError(401, "sign_in_required", "sign in to the dashboard first (or send an "
                       "admin key in the X-API-Key header)")
    else:
        authorize(keys, "admin", request.headers, request.remote_addr,
                  bool(state.settings.get("ALLOW_OPEN")))
        g.dashboard_via = "header" if keys.enabled else "loopback"
    if request.method == "POST" and g.dashboard_via != "header":
        problem = sessions.csrf_problem()
        if problem:
            raise ApiError(403, "csrf_failed", problem)
    return None


@dashboard_bp.after_request
def _headers(response):
    response.headers.setdefault("Content-Security-Policy", _CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if response.mimetype == "text/html":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


@dashboard_bp.errorhandler(ApiError)
def _dashboard_error(exc: ApiError):
    if _wants_json():
        return error_response(exc.status, exc.code, exc.message, exc.headers)
    html = render_template("dashboard/error.html", status=exc.status, code=exc.code,
                           message=exc.message)
    return Response(html, status=exc.status, mimetype="text/html")


@dashboard_bp.app_context_processor
def _template_globals():
    if not request or not request.path.startswith(sessions.PREFIX):
        return {}
    return {"csrf_token": sessions.csrf_token, "signed_in": g.get("dashboard_via") == "session",
            "quote": lambda s: quote(str(s), safe="")}


def _local_path(path: str | None) -> str:
    """A redirect target inside the dashboard only (no open redirect)."""
    path = (path or "").rstrip("?")
    parts = urlsplit(path)
    if parts.scheme or parts.netloc or not path.startswith(sessions.PREFIX) or "\\" in path:
        return url_for(".overview")
    return path


def _page(template: str, status: int = 200, **context) -> Response:
    return Response(render_template(f"dashboard/{template}", **context), status=status,
                    mimetype="text/html")


# --------------------------------------------------------------- sign-in
@dashboard_bp.route("/sign-in", methods=["GET", "POST"])
def sign_in():
    state = _state()
    target = _local_path(request.values.get("next"))
    if request.method == "GET":
        return _page("sign_in.html", next=target, error=None, keys=state.keys.enabled)
    problem = sessions.csrf_problem()
    if problem:
        return _page("sign_in.html", 403, next=target, error=problem, keys=state.keys.enabled)
    if not state.keys.enabled:
        return _page("sign_in.html", 400, next=target, keys=False,
                     error="no API keys are configured: this dashboard needs no sign-in "
                           "from this machine")
    key = (request.form.get("key") or "").strip()
    key_digest = sessions.admin_digest(state.keys, key) if key else None
    if key_digest is None:
        # One message for unknown and non-admin keys; never echo the key.
        log.warning("dashboard sign-in refused from %s", request.remote_addr)
        return _page("sign_in.html", 401, next=target, keys=True,
                     error="that is not an admin key of this service")
    sessions.sign_in(current_app, key_digest)
    log.info("dashboard sign-in from %s", request.remote_addr)
    return redirect(target, code=303)


@dashboard_bp.post("/sign-out")
def sign_out():
    sessions.sign_out()
    return redirect(url_for(".sign_in", signed_out=1), code=303)


# -------------------------------------------------------------- overview
@dashboard_bp.get("")
@dashboard_bp.get("/")
def overview():
    store = _state().store
    model = served_model()
    manifest = model.manifest
    facts = [("Model version", model.version), ("Trained at", manifest.get("trained_at")),
             ("Customers", (manifest.get("data") or {}).get("customers")),
             ("Orders", (manifest.get("data") or {}).get("orders_count")),
             ("Items", (manifest.get("data") or {}).get("items"))]
    status = store.status()
    facts += [("Loaded at", status.get("loaded_at")), ("Reloads", status["reloads"]),
              ("Reload failures", status["reload_failures"]),
              ("Last error", (status["last_error"] or {}).get("message", "none"))]
    return _page("overview.html", model=model, facts=facts, metrics=manifest.get("metrics") or {},
                 baseline=(manifest.get("baselines") or {}).get("popularity") or {},
                 best=data.search_items(model, "", 20))


# ----------------------------------------------------------------- items
@dashboard_bp.get("/items")
def items():
    q = request.args.get("q", "")
    model = served_model()
    return _page("items.html", q=q, results=data.search_items(model, q))


@dashboard_bp.get("/api/items")
def api_items():
    model = served_model()
    results = data.search_items(model, request.args.get("q", ""))
    return Response(orjson.dumps({"model_version": model.version, "items": results}),
                    mimetype="application/json")


def _api_answer(endpoint: str, path: str, args: MultiDict, **view_args):
    """The API's own answer (view ``endpoint``) as JSON, or (None, the API's error)."""
    app = current_app._get_current_object()
    try:
        with app.test_request_context(path, query_string=args):
            response = app.view_functions[endpoint](**view_args)
    except ApiError as exc:
        return None, exc
    finally:
        g.xsell_strategy = None  # the dashboard's own request serves no recommendation
    return orjson.loads(response.get_data()), None


def _filter_args() -> MultiDict:
    args = MultiDict()
    for name in FILTER_FIELDS:
        for value in request.args.getlist(name):
            if value.strip():
                args.add(name, value.strip())
    return args


def _known(vocab, ident: str, kind: str) -> int:
    idx = vocab.index(ident)
    if idx == UNKNOWN:
        raise ApiError(404, f"unknown_{kind}", f"the model has not seen {kind} {ident!r}")
    return idx


def _api_lists(kind: str, ident: str, specs) -> tuple[list[dict], str | None]:
    """The API's lists for one item or customer (``specs``: (path slug, view, title)) under
    the page's filters, and the message of a filter the API refused (400)."""
    args = _filter_args()
    lists, error = [], None
    for slug, endpoint, title in specs:
        body, exc = _api_answer(endpoint, f"/v1/{kind}s/{quote(ident, safe='')}/{slug}", args,
                                **{f"{kind}_id": ident})
        if exc is not None and exc.status == 400:
            error = exc.message
        lists.append({"slug": slug, "title": title, "body": body,
                      "message": None if exc is None else exc.message})
    return lists, error


@dashboard_bp.get("/items/<path:item_id>")
def item(item_id: str):
    model = served_model()
    idx = _known(model.recommender.items, item_id, "item")
    lists, error = _api_lists("item", item_id, ITEM_LISTS)
    strategy, buyers = data.likely_buyers(model, idx)
    return _page("item.html", 400 if error else 200, item=data.item_facts(model, idx),
                 lists=lists, error=error, args=request.args,
                 categories=data.categories(model), likely_buyers=len(buyers),
                 buyers_strategy=strategy, top_buyers=buyers[:10])


@dashboard_bp.get("/likely-buyers.csv")
def likely_buyers_csv():
    model = served_model()
    item_id = request.args.get("item", "")
    idx = _known(model.recommender.items, item_id, "item")
    _, buyers = data.likely_buyers(model, idx)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["customer_id", "score", "item_id", "model_version"])
    for customer, score in buyers:
        writer.writerow([customer, f"{score:.6f}", item_id, model.version])
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in item_id)[:60]
    return Response(out.getvalue(), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="likely-buyers-{safe}.csv"'})


# ------------------------------------------------------------- customers
@dashboard_bp.get("/customers")
def customers():
    q = request.args.get("q", "")
    return _page("customers.html", q=q, results=data.search_customers(served_model(), q))


@dashboard_bp.get("/customers/<path:customer_id>")
def customer(customer_id: str):
    model = served_model()
    idx = _known(model.recommender.customers, customer_id, "customer")
    lists, _ = _api_lists("customer", customer_id, CUSTOMER_LISTS)
    drivers: dict[str, list[str]] = {}
    for entry in lists:
        for rec in (entry["body"] or {}).get("recommendations", []):
            for because in rec["reason"].get("because_of", []):
                drivers.setdefault(because, []).append(rec["item_id"])
    history, dated = data.customer_history(model, idx, _state().store.models_dir)
    return _page("customer.html", customer_id=customer_id, history=history, dated=dated,
                 lists=lists, drivers=drivers, args=request.args)


# -------------------------------------------------------------- versions
def _models_dir() -> str:
    models_dir = _state().store.models_dir
    if not models_dir:
        raise ApiError(503, "no_models_dir", "no models folder is configured (XSELL_MODELS_DIR)")
    return models_dir


@dashboard_bp.get("/versions")
def versions():
    store = _state().store
    # The worker answering may not have seen a promotion made through another worker yet:
    # check the pointer now (what its watcher would do at its next tick).
    store.check()
    rows = data.version_rows(_models_dir())
    served = store.model
    return _page("versions.html", rows=rows, charts=data.metric_series(rows),
                 kinds=data.headline_metrics(rows),
                 served=served.version if served is not None else None,
                 message=session.pop("flash", None) if g.dashboard_via == "session" else None)


def _version_row(version: str) -> tuple[dict, list[dict]]:
    rows = data.version_rows(_models_dir())
    for row in rows:
        if row["version"] == version:
            return row, rows
    raise ApiError(404, "unknown_version", f"there is no model version {version!r}")


@dashboard_bp.get("/versions/promote")
def promote_confirm():
    row, rows = _version_row(request.args.get("version", ""))
    current = next((r for r in rows if r["current"]), None)
    return _page("promote.html", row=row, current=current, kinds=data.headline_metrics(rows))


@dashboard_bp.post("/versions/promote")
def promote():
    """Make a version current: ``xsell models promote``'s own code (checksums verified, the
    pointer moved by an atomic rename); this worker then swaps at once, the others on their
    next pointer check."""
    from recsys.artifacts import set_current

    version = request.form.get("version", "")
    row, _ = _version_row(version)
    if row["status"] != "ok":
        raise ApiError(409, "broken_version", f"version {version} cannot be served: "
                       f"{row.get('error')}")
    store = _state().store
    try:
        set_current(_models_dir(), version)
    except XsellError as exc:
        raise ApiError(409, "promote_failed", str(exc)) from None
    store.check(force=True)
    served = store.model.version if store.model is not None else None
    log.info("dashboard: version %s promoted (serving %s)", version, served)
    message = f"{version} is now the current version" + (
        "" if served == version else f"; this worker still serves {served} "
        f"({(store.last_error or {}).get('message', 'see the service log')})")
    if g.dashboard_via != "session":
        return Response(orjson.dumps({"current": version, "serving": served}),
                        mimetype="application/json")
    session["flash"] = message
    return redirect(url_for(".versions"), code=303)


@dashboard_bp.get("/versions/compare")
def compare():
    rows = data.version_rows(_models_dir())
    ok = [r["version"] for r in rows if r["status"] == "ok"]
    a = request.args.get("a") or (ok[-2] if len(ok) > 1 else None)
    b = request.args.get("b") or (ok[-1] if ok else None)
    result = None
    if a and b:
        for version in (a, b):
            if version not in ok:
                raise ApiError(404, "unknown_version", f"there is no usable version {version!r}")
        try:
            result = data.compare_versions(_state().store, a, b)
        except (XsellError, OSError) as exc:
            raise ApiError(409, "version_unreadable", str(exc)) from None
    return _page("compare.html", versions=ok, a=a, b=b, result=result)


# ---------------------------------------------------------------- health
@dashboard_bp.get("/health")
def health_page():
    return _page("health.html", interval=health.history.interval,
                 metrics_on=bool(_state().settings.get("METRICS")))


@dashboard_bp.get("/api/health")
def api_health():
    hist = health.history
    if not hist.samples or hist.samples[-1][0] < time.time() - 1.0:
        hist.sample()
    return Response(orjson.dumps(hist.series()), mimetype="application/json")
