/* Accessibility checks run in the browser on each dashboard view (returns a list of problems):
   a language, one h1, a label for every form control, a name for every link, button and
   chart, and WCAG AA contrast (4.5:1, 3:1 for large text) for every visible text. */
var problems = [];
function parse(c) {
  var m = c.match(/rgba?\(([^)]+)\)/);
  if (!m) { return null; }
  var p = m[1].split(",").map(function (x) { return parseFloat(x); });
  return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1};
}
function lum(c) {
  var f = [c.r, c.g, c.b].map(function (v) { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
  return 0.2126 * f[0] + 0.7152 * f[1] + 0.0722 * f[2];
}
function background(el) {
  for (var e = el; e; e = e.parentElement) {
    var c = parse(getComputedStyle(e).backgroundColor);
    if (c && c.a > 0.5) { return c; }
  }
  return {r: 255, g: 255, b: 255, a: 1};
}
if (!document.documentElement.lang) { problems.push("no lang on <html>"); }
if (document.querySelectorAll("h1").length !== 1) { problems.push("not exactly one h1"); }
document.querySelectorAll("input:not([type=hidden]), select, textarea").forEach(function (e) {
  var labelled = (e.id && document.querySelector('label[for="' + e.id + '"]')) ||
    e.getAttribute("aria-label") || e.closest("label");
  if (!labelled) { problems.push("unlabelled control " + e.outerHTML.slice(0, 80)); }
});
document.querySelectorAll("a, button").forEach(function (e) {
  if (!e.textContent.trim() && !e.getAttribute("aria-label")) { problems.push("nameless " + e.outerHTML.slice(0, 80)); }
});
document.querySelectorAll("svg").forEach(function (s) {
  if (!s.getAttribute("aria-label")) { problems.push("chart without a name"); }
});
document.querySelectorAll("body *").forEach(function (el) {
  var own = Array.prototype.some.call(el.childNodes, function (n) { return n.nodeType === 3 && n.textContent.trim(); });
  if (!own || el.closest("svg, script, .sr-only, .skip")) { return; }
  var st = getComputedStyle(el);
  if (st.visibility === "hidden" || st.display === "none" || el.getClientRects().length === 0) { return; }
  var fg = parse(st.color), bg = background(el);
  if (!fg) { return; }
  var l1 = lum(fg), l2 = lum(bg), ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
  var size = parseFloat(st.fontSize), bold = parseInt(st.fontWeight, 10) >= 700;
  var need = (size >= 24 || (bold && size >= 18.66)) ? 3 : 4.5;
  if (ratio < need) { problems.push("contrast " + ratio.toFixed(2) + " < " + need + ": " + el.textContent.trim().slice(0, 40)); }
});
return problems;
