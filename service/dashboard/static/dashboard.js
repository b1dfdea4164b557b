/* xsell dashboard: search as you type, small SVG line charts, health refresh.
   No library; loaded with `defer` from this package (the page's CSP allows only 'self'). */
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#8a6d00", "#56B4E9", "#000000", "#7a3e9d"];

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }
  function svgEl(tag, attrs) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    return node;
  }
  function fmt(v) {
    if (v === null || v === undefined || !isFinite(v)) { return "–"; }
    var a = Math.abs(v);
    if (a >= 100) { return v.toFixed(0); }
    if (a >= 10) { return v.toFixed(1); }
    if (a >= 1) { return v.toFixed(2); }
    return v.toFixed(3);
  }
  function clock(t) {
    var d = new Date(t * 1000);
    return ("0" + d.getHours()).slice(-2) + ":" + ("0" + d.getMinutes()).slice(-2);
  }

  /* ------------------------------------------------------------- line chart
     spec: {title, unit, series: [{name, points: [[x, y|null], ...]}]}; xKind "category"
     (labels, evenly spaced: one point per version) or "time" (seconds since the epoch). */
  function lineChart(figure, spec, xKind) {
    var W = 480, H = 220, L = 52, R = 12, T = 10, B = 34;
    var old = figure.querySelector("svg"); if (old) { old.remove(); }
    var oldLegend = figure.querySelector(".legend-list"); if (oldLegend) { oldLegend.remove(); }
    var svg = svgEl("svg", {viewBox: "0 0 " + W + " " + H, role: "img",
                            "aria-label": spec.title + (spec.unit ? " (" + spec.unit + ")" : "")});
    var xs = [], ys = [];
    spec.series.forEach(function (s) {
      s.points.forEach(function (p, i) {
        xs.push(xKind === "time" ? p[0] : i);
        if (p[1] !== null && isFinite(p[1])) { ys.push(p[1]); }
      });
    });
    var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs);
    if (!isFinite(x0)) { x0 = 0; x1 = 1; }
    if (x1 === x0) { x0 -= 1; x1 += 1; }
    var y1 = ys.length ? Math.max.apply(null, ys) : 1, y0 = 0;
    if (ys.length && Math.min.apply(null, ys) < 0) { y0 = Math.min.apply(null, ys); }
    if (y1 <= y0) { y1 = y0 + 1; }
    y1 = y1 * 1.08;
    function px(x) { return L + (x - x0) / (x1 - x0) * (W - L - R); }
    function py(y) { return H - B - (y - y0) / (y1 - y0) * (H - T - B); }
    for (var g = 0; g <= 4; g++) {
      var yv = y0 + (y1 - y0) * g / 4, yy = py(yv);
      svg.appendChild(svgEl("line", {x1: L, x2: W - R, y1: yy, y2: yy, stroke: "#d0d5dc", "stroke-width": 1}));
      var lab = svgEl("text", {x: L - 6, y: yy + 4, "text-anchor": "end", "font-size": 11, fill: "#4a5360"});
      lab.textContent = fmt(yv); svg.appendChild(lab);
    }
    svg.appendChild(svgEl("line", {x1: L, x2: W - R, y1: H - B, y2: H - B, stroke: "#4a5360"}));
    var first = spec.series.length ? spec.series[0].points : [];
    var ticks = xKind === "time" ? [x0, (x0 + x1) / 2, x1] : first.map(function (p, i) { return i; });
    var step = Math.max(1, Math.ceil(ticks.length / 6));
    ticks.forEach(function (t, i) {
      if (i % step !== 0 && i !== ticks.length - 1) { return; }
      var anchor = ticks.length > 1 && i === 0 ? "start" : (ticks.length > 1 && i === ticks.length - 1 ? "end" : "middle");
      var text = svgEl("text", {x: px(t), y: H - B + 16, "text-anchor": anchor, "font-size": 11, fill: "#4a5360"});
      /* Version names start with their UTC time (20261207T0128...): date and hour suffice. */
      text.textContent = xKind === "time" ? clock(t) : String(first[t][0]).slice(0, 13);
      svg.appendChild(text);
    });
    var legend = el("ul", {"class": "legend-list"});
    spec.series.forEach(function (s, si) {
      var color = COLORS[si % COLORS.length], path = "", pen = false;
      s.points.forEach(function (p, i) {
        var x = xKind === "time" ? p[0] : i;
        if (p[1] === null || !isFinite(p[1])) { pen = false; return; }
        path += (pen ? " L" : " M") + px(x).toFixed(1) + " " + py(p[1]).toFixed(1);
        pen = true;
      });
      if (path) {
        svg.appendChild(svgEl("path", {d: path.trim(), fill: "none", stroke: color, "stroke-width": 2,
                                       "stroke-dasharray": si % 2 ? "5 3" : "none"}));
      }
      s.points.forEach(function (p, i) {
        if (p[1] === null || !isFinite(p[1])) { return; }
        if (xKind === "time" && s.points.length > 60) { return; }
        var dot = svgEl("circle", {cx: px(xKind === "time" ? p[0] : i), cy: py(p[1]), r: 3, fill: color});
        var tip = svgEl("title", {});
        tip.textContent = s.name + " · " + (xKind === "time" ? clock(p[0]) : p[0]) + ": " + fmt(p[1]);
        dot.appendChild(tip); svg.appendChild(dot);
      });
      var item = el("li", {}, s.name);
      item.style.setProperty("--swatch", color);
      legend.appendChild(item);
    });
    figure.appendChild(svg);
    figure.appendChild(legend);
  }

  function drawStaticCharts() {
    document.querySelectorAll("figure.chart[data-chart]").forEach(function (figure) {
      var source = document.getElementById(figure.getAttribute("data-chart"));
      if (!source) { return; }
      lineChart(figure, JSON.parse(source.textContent), figure.getAttribute("data-x"));
    });
  }

  /* ------------------------------------------------------- search as you type */
  function liveSearch(input) {
    var list = document.getElementById(input.getAttribute("data-results"));
    var status = document.getElementById(input.getAttribute("data-results") + "-status");
    var endpoint = input.getAttribute("data-live-search");
    var itemUrl = input.getAttribute("data-item-url");
    var timer = null, seq = 0;
    function render(items) {
      list.textContent = "";
      if (!items.length) { list.appendChild(el("li", {"class": "note"}, "No item matches.")); }
      items.forEach(function (it) {
        var li = el("li");
        var a = el("a", {href: itemUrl.replace("ITEM", encodeURIComponent(it.item_id))});
        a.appendChild(el("span", {"class": "id"}, it.item_id));
        a.appendChild(document.createTextNode(" "));
        a.appendChild(el("span", {"class": "name"}, it.name));
        li.appendChild(a);
        var price = it.price === null ? "–" : Number(it.price).toFixed(2);
        li.appendChild(el("span", {"class": "meta"}, (it.category || "") + " · " + price + " · " + it.buyers + " buyers"));
        list.appendChild(li);
      });
      if (status) { status.textContent = items.length + " items"; }
    }
    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        var mine = ++seq;
        fetch(endpoint + "?q=" + encodeURIComponent(input.value), {credentials: "same-origin",
              headers: {"Accept": "application/json"}})
          .then(function (r) { return r.ok ? r.json() : {items: []}; })
          .then(function (body) { if (mine === seq) { render(body.items || []); } })
          .catch(function () { /* offline or signed out: the form still works */ });
      }, 150);
    });
  }

  /* ------------------------------------------- customer view: drivers on focus */
  function driverHighlight() {
    var history = document.getElementById("history");
    if (!history) { return; }
    function mark(row, on) {
      (row.getAttribute("data-drivers") || "").split(" ").forEach(function (id) {
        if (!id) { return; }
        history.querySelectorAll("tr[data-item]").forEach(function (h) {
          if (h.getAttribute("data-item") === id) { h.classList.toggle("driver-focus", on); }
        });
      });
    }
    document.querySelectorAll("tr[data-drivers]").forEach(function (row) {
      ["mouseenter", "focus"].forEach(function (ev) { row.addEventListener(ev, function () { mark(row, true); }); });
      ["mouseleave", "blur"].forEach(function (ev) { row.addEventListener(ev, function () { mark(row, false); }); });
    });
  }

  /* ----------------------------------------------------------------- health */
  var HEALTH_CHARTS = [["rps", "Requests per second", "req/s"], ["p50_ms", "Latency p50", "ms"],
                       ["p99_ms", "Latency p99", "ms"], ["error_rate", "Error rate (5xx share)", "share"],
                       ["fallback_rate", "Fallback rate (popular-fallback share)", "share"]];
  function health(root) {
    var source = root.getAttribute("data-source");
    var every = Math.max(2, Number(root.getAttribute("data-interval")) || 10) * 1000;
    var charts = document.getElementById("health-charts");
    var tbody = document.querySelector("#health-table tbody");
    var updated = document.getElementById("health-updated");
    var figures = {};
    HEALTH_CHARTS.forEach(function (c) {
      var fig = el("figure", {"class": "chart", id: "health-" + c[0]});
      fig.appendChild(el("figcaption", {}, c[1] + " (" + c[2] + ")"));
      charts.appendChild(fig);
      figures[c[0]] = fig;
    });
    function refresh() {
      fetch(source, {credentials: "same-origin", headers: {"Accept": "application/json"}})
        .then(function (r) { if (!r.ok) { throw new Error(String(r.status)); } return r.json(); })
        .then(function (body) {
          var names = Object.keys(body.endpoints).filter(function (n) {
            return body.endpoints[n].summary.requests > 0; });
          HEALTH_CHARTS.forEach(function (c) {
            lineChart(figures[c[0]], {title: c[1], unit: c[2], series: names.map(function (n) {
              return {name: n, points: body.endpoints[n].points.map(function (p) { return [p.t, p[c[0]]]; })};
            })}, "time");
          });
          tbody.textContent = "";
          if (!names.length) {
            var empty = el("tr"); empty.appendChild(el("td", {colspan: 8, "class": "note"}, "No requests in the last hour yet."));
            tbody.appendChild(empty);
          }
          names.forEach(function (n) {
            var s = body.endpoints[n].summary, tr = el("tr");
            tr.appendChild(el("td", {}, n));
            [s.requests, s.rps, s.p50_ms, s.p99_ms].forEach(function (v) { tr.appendChild(el("td", {"class": "n"}, fmt(v))); });
            [s.error_rate, s.client_error_rate, s.fallback_rate].forEach(function (v) {
              tr.appendChild(el("td", {"class": "n"}, v === null ? "–" : (100 * v).toFixed(1) + "%"));
            });
            tbody.appendChild(tr);
          });
          if (updated) { updated.textContent = "Updated " + new Date().toLocaleTimeString() + "."; }
        })
        .catch(function (e) { if (updated) { updated.textContent = "Update failed (" + e.message + ")."; } });
    }
    refresh();
    setInterval(refresh, every);
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawStaticCharts();
    document.querySelectorAll("input[data-live-search]").forEach(liveSearch);
    driverHighlight();
    var root = document.getElementById("health");
    if (root) { health(root); }
  });
})();
