// p50/p95 latency and errors over time, from GET .../stats (figures the API computes from the
// monitor records; nothing is counted on the invoke path for them), drawn as plain SVG.
import { fnPath, get } from "./api.js";
import { errorNotice, h, ms, percent, replace, svg } from "./dom.js";

const WINDOWS = [
  [3600, "last hour"],
  [6 * 3600, "last 6 hours"],
  [24 * 3600, "last 24 hours"],
];
const REFRESH_MS = 15_000;
const W = 640;
const H = 160;
const PAD = 36;

export function showCharts(panel, { ct, ft }) {
  const pick = h("select", { id: "chart-window" }, WINDOWS.map(([s, label]) => h("option", { value: String(s) }, label)));
  const figures = h("div", { id: "chart-figures" }, h("p", { class: "muted" }, "Loading…"));
  replace(panel, h("div", { class: "title-row" }, h("h2", {}, "Charts"), h("label", { class: "filter" }, "Window ", pick)), figures);
  const draw = async () => {
    try {
      const stats = (await get(fnPath(ct, ft, "/stats"), { window: pick.value })).body;
      replace(figures, summary(stats), latencyChart(stats), errorChart(stats));
    } catch (error) {
      replace(figures, errorNotice(error));
    }
  };
  pick.addEventListener("change", draw);
  draw();
  const timer = setInterval(draw, REFRESH_MS);
  return () => clearInterval(timer);
}

function summary(s) {
  return h(
    "dl",
    { class: "facts wide", id: "chart-summary" },
    [["Invocations", String(s.invocations)], ["Errors", `${s.errors} (${percent(s.error_rate)})`], ["p50", ms(s.p50_ms)], ["p95", ms(s.p95_ms)]].flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
    s.complete ? null : [h("dt", {}, "Note"), h("dd", {}, "more records than one read takes: figures are partial")],
  );
}

function frame(label, s, yMax, yText) {
  const clock = (unix) => new Date(unix * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return svg(
    "svg",
    { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": label },
    svg("title", {}, label),
    svg("line", { x1: PAD, y1: H - PAD / 2, x2: W, y2: H - PAD / 2, class: "axis" }),
    text(2, 12, yText(yMax)),
    text(2, H - PAD / 2, yText(0)),
    text(PAD, H - 3, clock(s.since)),
    text(W - 4, H - 3, clock(s.until), "end"),
  );
}

function text(x, y, content, anchor = "start") {
  const node = svg("text", { x, y, class: "tick", "text-anchor": anchor });
  node.textContent = content;
  return node;
}

const x = (i, n) => PAD + ((W - PAD) * (i + 0.5)) / n;
const y = (v, max) => H - PAD / 2 - ((H - PAD) * v) / (max || 1);

function latencyChart(s) {
  const max = Math.max(1, ...s.series.map((b) => b.p95_ms ?? 0));
  const chart = frame(`Latency p50 and p95, ${s.window_s / 60} minutes`, s, max, (v) => ms(v));
  for (const [key, cls] of [["p95_ms", "p95"], ["p50_ms", "p50"]]) {
    const points = s.series.map((b, i) => (b[key] === null ? null : `${x(i, s.series.length).toFixed(1)},${y(b[key], max).toFixed(1)}`)).filter(Boolean);
    if (points.length) chart.append(svg("polyline", { points: points.join(" "), class: `line ${cls}` }));
    for (const point of points) {
      const [cx, cy] = point.split(",");
      chart.append(svg("circle", { cx, cy, r: 2.5, class: `dot ${cls}` }));
    }
  }
  return h("figure", {}, chart, h("figcaption", {}, h("span", { class: "key p50" }, "p50"), " ", h("span", { class: "key p95" }, "p95"), " latency per bucket of ", `${s.step_s} s`));
}

function errorChart(s) {
  const max = Math.max(1, ...s.series.map((b) => b.invocations));
  const chart = frame(`Invocations and errors, ${s.window_s / 60} minutes`, s, max, (v) => String(Math.round(v)));
  const width = Math.max(1, (W - PAD) / s.series.length - 2);
  s.series.forEach((b, i) => {
    if (!b.invocations) return;
    const left = (x(i, s.series.length) - width / 2).toFixed(1);
    chart.append(svg("rect", { x: left, y: y(b.invocations, max), width, height: H - PAD / 2 - y(b.invocations, max), class: "bar ok" }));
    if (b.errors) chart.append(svg("rect", { x: left, y: y(b.errors, max), width, height: H - PAD / 2 - y(b.errors, max), class: "bar bad" }));
  });
  return h("figure", {}, chart, h("figcaption", {}, h("span", { class: "key ok" }, "invocations"), " ", h("span", { class: "key bad" }, "errors"), ` per ${s.step_s} s`));
}
