"""The merchandiser dashboard: one server-rendered HTML page of the served model's facts."""

from __future__ import annotations

from html import escape

import numpy as np
from flask import Blueprint, Response, current_app

from .views import requires, served_model

dashboard_bp = Blueprint("dashboard", __name__)


def _table(rows: list[tuple], header: tuple) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


@dashboard_bp.get("/dashboard")
@requires("admin")
def dashboard():
    store = current_app.extensions["xsell"].store
    model = served_model()
    manifest = model.manifest
    rec = model.recommender
    metric_rows = [(kind, name, f"{value:.4f}" if isinstance(value, float) else value)
                   for kind, values in (manifest.get("metrics") or {}).items()
                   for name, value in values.items()]
    top = np.argsort(-np.asarray(rec.popularity.counts_), kind="stable")[:20]
    top_rows = []
    for idx in top:
        info = model.item_info(int(idx))
        top_rows.append((info["item_id"], info["name"], info["category"] or "",
                         info["price"] if info["price"] is not None else "",
                         int(rec.popularity.counts_[idx])))
    status = store.status()
    data = manifest.get("data") or {}
    facts = [("model version", model.version), ("trained at", manifest.get("trained_at")),
             ("customers", data.get("customers")), ("orders", data.get("orders_count")),
             ("items", data.get("items")), ("loaded at", status.get("loaded_at")),
             ("reloads", status["reloads"]), ("reload failures", status["reload_failures"]),
             ("last error", (status["last_error"] or {}).get("message", "none"))]
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>xsell dashboard</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:2em}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}</style></head>
<body><h1>xsell: model {escape(str(model.version))}</h1>
<h2>Model</h2>{_table(facts, ("fact", "value"))}
<h2>Holdout metrics</h2>{_table(metric_rows, ("query kind", "metric", "value"))}
<h2>Best-selling items</h2>{_table(top_rows, ("item", "name", "category", "price", "customers"))}
</body></html>"""
    return Response(html, mimetype="text/html")
