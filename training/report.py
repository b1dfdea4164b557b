"""The HTML report of ``xsell evaluate``: one self-contained page, charts as inline SVG."""

from __future__ import annotations

import html
import os

from recsys.evaluation import PRIMARY
from recsys.kinds import KIND

KIND_TITLES = {kind: KIND[kind].label for kind in ("next_best", "basket", "also_bought")}
_PRODUCT_COLOUR = "#1f6f43"
_BASELINE_COLOUR = "#8a9bb0"

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:980px;color:#1d2733;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #dde3ea}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
td,th{padding:.25rem .6rem;border-bottom:1px solid #eef1f4;text-align:right}
td:first-child,th:first-child{text-align:left}
.win{color:#1f6f43;font-weight:600}.loss{color:#a8322d;font-weight:600}
.note{color:#5b6b7c;font-size:.85rem}
"""


def _esc(value) -> str:
    return html.escape(str(value))


def bar_chart(rows: list[tuple[str, float, bool]], metric: str, width: int = 640) -> str:
    """Horizontal bars (label, value, is_product) as an inline SVG."""
    bar_h, gap, label_w = 22, 6, 170
    height = len(rows) * (bar_h + gap) + 24
    top = max((v for _, v, _ in rows), default=0.0) or 1.0
    span = width - label_w - 70
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="{_esc(metric)} per model">']
    for n, (label, value, is_product) in enumerate(rows):
        y = n * (bar_h + gap)
        w = max(1.0, span * value / top)
        colour = _PRODUCT_COLOUR if is_product else _BASELINE_COLOUR
        parts.append(f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end" font-size="12">'
                     f'{_esc(label)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" '
                     f'fill="{colour}"><title>{_esc(label)}: {value:.4f}</title></rect>')
        parts.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 15}" font-size="12">'
                     f'{value:.4f}</text>')
    parts.append(f'<text x="{label_w}" y="{height - 4}" font-size="11" fill="#5b6b7c">'
                 f'{_esc(metric)}</text></svg>')
    return "".join(parts)


def render(result: dict) -> str:
    """The whole report as an HTML string."""
    k = result["k"]
    out = ["<!doctype html><html lang=en><head><meta charset=utf-8>",
           "<title>xsell evaluation</title>", f"<style>{_CSS}</style></head><body>",
           "<h1>xsell evaluation: the product against tuned baselines</h1>",
           f'<p class=note>Orders: {_esc(result["orders"])}. '
           f'Split: {_esc(result["split"]["method"])}'
           f' (train {result["split"]["train_lines"]:,} lines, test '
           f'{result["split"]["test_lines"]:,} lines). Baselines tuned on a validation split '
           f'inside the training period, then refitted on all of it. k = {k}.</p>']
    for kind, comp in result["comparison"].items():
        lo, hi = comp["rel_ci"]
        cls = "win" if lo > 0 else ("loss" if hi < 0 else "")
        out.append(f'<h2>{_esc(KIND_TITLES[kind])}</h2>')
        out.append(f'<p>{_esc(comp["metric"])} over {comp["queries"]:,} queries: product '
                   f'{comp["product"]:.4f} vs best baseline {_esc(comp["best_baseline"])} '
                   f'{comp["baseline"]:.4f}: <span class="{cls}">{comp["rel"]:+.1%}</span> '
                   f'(paired bootstrap 95% interval {lo:+.1%} .. {hi:+.1%}).</p>')
        metric = f"{PRIMARY[kind]}@{k}"
        rows = [(m["name"], m["results"][kind][metric], m["kind"] == "product")
                for m in result["models"] if kind in m.get("results", {})]
        rows.sort(key=lambda r: -r[1])
        out.append(bar_chart(rows, metric))
    out.append("<h2>All figures</h2>")
    out.append(_table(result))
    skipped = [m for m in result["models"] if m.get("skipped") or m.get("note")]
    for m in skipped:
        out.append(f'<p class=note>{_esc(m.get("skipped") or m["note"])}</p>')
    out.append("<h2>Data report</h2>")
    out.append(_data_report(result))
    out.append("</body></html>")
    return "\n".join(out)


def _table(result: dict) -> str:
    k = result["k"]
    kinds = [kind for kind in PRIMARY if kind in result["protocols"]]
    metrics = {kind: sorted({m for mod in result["models"]
                             for m, v in mod["results"].get(kind, {}).items()
                             if "@" in m and isinstance(v, (int, float))}) for kind in kinds}
    head = "".join(f"<th>{_esc(kind)}<br>{_esc(m)}</th>" for kind in kinds for m in metrics[kind])
    rows = [f"<table><tr><th>model</th>{head}<th>fit s</th><th>settings</th></tr>"]
    for mod in result["models"]:
        if mod.get("skipped"):
            continue
        cells = "".join(
            f"<td>{mod['results'][kind][m]:.4f}</td>" if m in mod["results"].get(kind, {})
            else "<td>-</td>"
            for kind in kinds for m in metrics[kind])
        fit = max(mod.get("fit_seconds", {}).values(), default=0.0)
        settings = "; ".join(f"{kind}: {s}" for kind, s in mod.get("settings", {}).items())
        rows.append(f"<tr><td>{_esc(mod['name'])}</td>{cells}<td>{fit:.1f}</td>"
                    f"<td style='text-align:left;font-size:.75rem'>{_esc(settings)}</td></tr>")
    queries = "".join(f"<td>{result['protocols'][kind]['queries']:,}</td>"
                      for kind in kinds for _ in metrics[kind])
    rows.append(f"<tr><td>queries</td>{queries}<td></td><td></td></tr></table>")
    rows.append(f"<p class=note>Primary metrics: nDCG@{k} (next-best), HR@{k} (basket, "
                f"also-bought).</p>")
    return "".join(rows)


def _data_report(result: dict) -> str:
    data = result["data"]
    rep = data["report"]
    rows = [("rows read", rep["rows_read"]), ("rows used", rep["rows_used"]),
            ("rows rejected", rep["rows_rejected"])]
    rows += [(f"  rejected: {reason}", n) for reason, n in rep.get("rejected", {}).items()]
    rows += [("non-product items excluded", rep.get("excluded_items", 0)),
             ("customers", data["customers"]), ("orders", data["orders"]),
             ("items", data["items"])]
    for kind, p in result["protocols"].items():
        if p.get("unknown_targets") is not None:
            rows.append((f"{kind}: hidden targets unknown to train", p["unknown_targets"]))
    body = "".join(f"<tr><td>{_esc(a)}</td><td>{b:,}</td></tr>" for a, b in rows)
    return f"<table>{body}</table>"


def write_report(result: dict, path: str) -> None:
    """Write the report atomically (a temporary file, then a rename)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(render(result))
    os.replace(tmp, path)
