"""What a rendered dashboard chart must look like, beyond "the query returned rows".

`RENDERED_JS` runs in the dashboard page and reads every ECharts instance back (through Superset's
own webpack copy of ECharts, or the React ref that holds the instance): its axes' types and the
extents ECharts computed, the category labels, the numbers it plots, and the boxes of the texts it
drew. `axis_problems` compares that with the chart's spec (mbats.dashboards.bundle) and with the
rows the chart data API answered, and returns one sentence per defect, e.g. a y-axis from 0 for an
equity curve of 100,000 ± 300 (a flat line), a time axis that does not span the data, labels drawn
on top of each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

TIMESERIES = {"echarts_timeseries_line", "echarts_timeseries_bar", "echarts_area", "echarts_timeseries"}
NUMERIC, STRING, TEMPORAL = 0, 1, 2  # Superset's GenericDataType in the data API's `coltypes`
MAX_SPAN_RATIO = 5.0  # a fitted axis spans at most this many times the data's range
OVERLAP = 0.25  # two texts overlap when their boxes share this much of the smaller one's area

RENDERED_JS = r"""
const api = (() => {
  if (window.echarts && window.echarts.getInstanceByDom) return window.echarts;
  const chunks = self.webpackChunksuperset;
  if (!chunks) return null;
  let req = null;
  chunks.push([["mbats-probe-" + Math.random()], {}, r => { req = r; }]);
  if (!req) return null;
  for (const id in (req.c || {})) {
    const e = req.c[id] && req.c[id].exports;
    try { if (e && typeof e.getInstanceByDom === 'function') return e; } catch (err) {}
  }
  return null;
})();
function instanceOf(dom) {
  if (api) { const i = api.getInstanceByDom(dom); if (i) return i; }
  // Superset's Echart component keeps the instance in a React ref (useRef): walk up the fibers
  const key = Object.keys(dom).find(k => k.startsWith('__reactFiber$'));
  let fiber = key ? dom[key] : null;
  for (let depth = 0; fiber && depth < 12; depth++, fiber = fiber.return) {
    let hook = fiber.memoizedState;
    for (let n = 0; hook && typeof hook === 'object' && n < 60; n++, hook = hook.next) {
      const cur = hook.memoizedState && hook.memoizedState.current;
      if (cur && typeof cur.getOption === 'function' && typeof cur.getModel === 'function') return cur;
    }
  }
  return null;
}
function axes(model, dim) {
  const out = [];
  for (let i = 0; ; i++) {
    const c = model.getComponent(dim + 'Axis', i);
    if (!c) break;
    const ax = c.axis, scale = ax.scale;
    const extent = scale.getExtent().slice();  // in data units, also for a log scale
    const meta = scale.getOrdinalMeta ? scale.getOrdinalMeta() : null;
    out.push({type: ax.type, scale: scale.type, extent: extent, show: c.get('show') !== false,
              categories: meta ? meta.categories.map(String) : null,
              min_option: c.option.min === undefined ? null : c.option.min, scale_option: !!c.option.scale});
  }
  return out;
}
function texts(inst) {
  const out = [];
  for (const el of inst.getZr().storage.getDisplayList(true)) {
    if ((el.type !== 'text' && el.type !== 'tspan') || el.ignore || el.invisible || !el.style || !el.style.text) continue;
    if (el.style.opacity === 0) continue;
    let r = el.getBoundingRect().clone();
    r.applyTransform(el.getComputedTransform());
    // a scroll legend clips the items past its page: only the visible part of a text counts
    for (const clip of (el.__clipPaths || [])) {
      const c = clip.getBoundingRect().clone();
      c.applyTransform(clip.getComputedTransform());
      const x0 = Math.max(r.x, c.x), y0 = Math.max(r.y, c.y);
      const x1 = Math.min(r.x + r.width, c.x + c.width), y1 = Math.min(r.y + r.height, c.y + c.height);
      r = {x: x0, y: y0, width: Math.max(0, x1 - x0), height: Math.max(0, y1 - y0)};
    }
    if (r.width > 0 && r.height > 0) out.push({text: String(el.style.text), x: r.x, y: r.y, w: r.width, h: r.height});
  }
  return out;
}
const charts = [];
for (const holder of document.querySelectorAll('.chart-slice[data-test-chart-id]')) {
  const doms = holder.querySelectorAll('[_echarts_instance_]');
  const entry = {slice_id: Number(holder.getAttribute('data-test-chart-id')),
                 name: holder.getAttribute('data-test-chart-name'), viz: holder.getAttribute('data-test-viz-type'),
                 text: holder.innerText.slice(0, 2000), echarts: doms.length, api: !!api, instances: []};
  for (const dom of doms) {
    const inst = instanceOf(dom);
    if (!inst) { entry.instances.push(null); continue; }
    const model = inst.getModel(), option = inst.getOption();
    const series = (option.series || []).map(s => ({type: s.type, name: s.name,
      data: (s.data || []).map(d => (d && d.value !== undefined) ? d.value : d)}));
    entry.instances.push({x: axes(model, 'x'), y: axes(model, 'y'), series: series, texts: texts(inst),
                          width: inst.getWidth(), height: inst.getHeight()});
  }
  charts.push(entry);
}
return charts;
"""

# an in-page edit that brings back the old equity defect (a y-axis that includes 0) on one chart
OLD_DEFECT_JS = RENDERED_JS.split("const charts = [];")[0] + r"""
const holder = document.querySelector('.chart-slice[data-test-chart-id="' + arguments[0] + '"]');
const inst = instanceOf(holder.querySelector('[_echarts_instance_]'));
inst.setOption({yAxis: {scale: false, min: 0, max: null}});
return true;
"""


@dataclass
class Rendered:
    """One chart as drawn in the page (from RENDERED_JS)."""

    slice_id: int
    name: str
    viz: str
    text: str
    echarts: int
    instances: list = field(default_factory=list)


def data_ranges(payload: dict, x_column: str | None = None) -> dict:
    """min/max of the temporal (ms), string and numeric columns of a chart data API answer; a
    numeric ``x_column`` (e.g. a percentile axis) is ranged apart (``x_num``), not as a y value."""
    out: dict = {"x_time": None, "x_text": None, "x_num": None, "y": None, "rows": 0}
    for result in payload.get("result") or []:
        names, types = result.get("colnames") or [], result.get("coltypes") or []
        rows = result.get("data") or []
        out["rows"] += len(rows)
        kind = dict(zip(names, types))
        for row in rows:
            for col, value in row.items():
                if value is None:
                    continue
                t = kind.get(col)
                if t == TEMPORAL and isinstance(value, (int, float)):
                    out["x_time"] = _widen(out["x_time"], float(value))
                elif t == STRING:
                    out["x_text"] = _widen(out["x_text"], str(value))
                elif t == NUMERIC and isinstance(value, (int, float)) and math.isfinite(value):
                    key = "x_num" if col == x_column else "y"
                    out[key] = _widen(out[key], float(value))
    return out


def _widen(rng, value):
    return (value, value) if rng is None else (min(rng[0], value), max(rng[1], value))


def _brackets(extent, lo, hi, tol: float = 1e-9) -> bool:
    pad = tol * max(1.0, abs(lo), abs(hi))
    return extent[0] <= lo + pad and extent[1] >= hi - pad


def _overlaps(texts: list[dict]) -> list[tuple[str, str]]:
    hits = []
    for i, a in enumerate(texts):
        for b in texts[i + 1:]:
            w = min(a["x"] + a["w"], b["x"] + b["w"]) - max(a["x"], b["x"])
            h = min(a["y"] + a["h"], b["y"] + b["h"]) - max(a["y"], b["y"])
            if w > 0 and h > 0 and w * h > OVERLAP * min(a["w"] * a["h"], b["w"] * b["h"]):
                hits.append((a["text"], b["text"]))
    return hits


def plotted_values(series: list[dict], dim: int) -> list[float]:
    """The numbers a chart's series plot along one dimension (0 = x, 1 = y) of [x, y] points."""
    out = []
    for s in series:
        for d in s["data"]:
            v = d[dim] if isinstance(d, (list, tuple)) and len(d) > dim else (d if dim == 1 else None)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                out.append(float(v))
    return out


def _without_data(text: str, payload: dict) -> str:
    """The chart's own words: ``text`` with every string value of the data API answer taken out."""
    values = {str(v) for result in payload.get("result") or [] for row in result.get("data") or []
              for v in (row.values() if isinstance(row, dict) else row) if isinstance(v, str) and v}
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, " ")
    return text


def axis_problems(chart, rendered: Rendered, payload: dict, temporal_x: bool) -> list[str]:
    """Defects of one rendered chart: ``chart`` is its bundle spec, ``payload`` its data API answer,
    ``temporal_x`` whether its x column is a time column."""
    name = f"{chart.name!r}"
    problems = []
    chrome = _without_data(rendered.text, payload).lower()  # a table may hold "error" as data (a stop reason)
    for phrase in ("No results", "No data", "Error", "Unexpected error"):
        if phrase.lower() in chrome:
            problems.append(f"{name}: the chart says {phrase!r}: {rendered.text[:200]!r}")
    is_echarts = chart.viz_type.startswith("echarts") or chart.viz_type in ("heatmap_v2", "histogram_v2")
    if not is_echarts:
        return problems
    if rendered.echarts != 1 or not rendered.instances or rendered.instances[0] is None:
        return problems + [f"{name}: expected one ECharts instance, found {rendered.echarts} "
                           f"(readable: {[i is not None for i in rendered.instances]})"]
    inst = rendered.instances[0]
    data = data_ranges(payload, chart.params.get("x_axis"))
    for overlap in _overlaps(inst["texts"]):
        problems.append(f"{name}: labels drawn on top of each other: {overlap}")
    if chart.viz_type not in TIMESERIES:
        return problems
    x, y = inst["x"][0], inst["y"][0]
    horizontal = chart.params.get("orientation") == "horizontal"
    if horizontal:
        x, y = y, x
    # x-axis: time for a time column, spanning the data; categories cover the data's first and last
    if temporal_x:
        if x["type"] != "time":
            problems.append(f"{name}: x column is a time but the x-axis is {x['type']!r}")
        elif data["x_time"] and not _brackets(x["extent"], *data["x_time"], tol=1e-6):
            problems.append(f"{name}: time axis {x['extent']} does not span the data {data['x_time']}")
    elif x["type"] == "category" and data["x_text"]:
        missing = [v for v in data["x_text"] if v not in (x["categories"] or [])]
        if missing:
            problems.append(f"{name}: x categories lack the data's first/last value {missing}")
    elif x["type"] == "value" and data["x_num"] and not _brackets(x["extent"], *data["x_num"], tol=1e-6):
        problems.append(f"{name}: number x-axis {x['extent']} does not span the data {data['x_num']}")
    # y-axis: brackets what the API answered and what is plotted
    values = plotted_values(inst["series"], 0 if horizontal else 1)
    lo_hi = data["y"] if data["y"] else None
    if values:
        lo_hi = _widen(_widen(lo_hi, min(values)), max(values)) if lo_hi else (min(values), max(values))
    if lo_hi is None:
        return problems + [f"{name}: nothing plotted"]
    lo, hi = lo_hi
    if not _brackets(y["extent"], lo, hi, tol=1e-6):
        problems.append(f"{name}: y-axis {y['extent']} does not bracket the data [{lo}, {hi}]")
    if chart.params.get("truncateYAxis"):
        span, axis_span = hi - lo, y["extent"][1] - y["extent"][0]
        if span > 0 and axis_span > MAX_SPAN_RATIO * span:
            problems.append(f"{name}: y-axis {y['extent']} spans {axis_span / span:.0f}x the data "
                            f"[{lo}, {hi}]: the curve is drawn flat")
    if chart.params.get("logAxis") and y["scale"] != "log":
        problems.append(f"{name}: log y-axis asked for, drawn {y['scale']!r}")
    return problems
