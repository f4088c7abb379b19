// Thin wrappers over the vendored uPlot (window.uPlot): one chart per element, updated in place.
const charts = new Map(); // element id -> uPlot
const ranges = new Map(); // element id -> [from, to] of the x axis (seconds)

export const COLORS = {
  COMPLETED: "#2e7d32",
  FAILED: "#c62828",
  TIMED_OUT: "#ef6c00",
  CANCELLED: "#757575",
  cache: "#6a1b9a",
  p50: "#1565c0",
  p99: "#c62828",
  cold: "#0277bd",
  wait: "#ef6c00",
  idle: "#f9a825",
  running: "#2e7d32",
  starting: "#0277bd",
  busy: "#2e7d32",
  cold_start: "#0277bd",
  reserved: "#6d4c41",
};

// series: [{label, color, scale?}]; scales other than "y" get an axis on the right.
// xRange: the window shown, so one point is not stretched over years.
export function drawChart(id, title, series, data, units = {}, xRange = null) {
  const el = document.getElementById(id);
  if (!el) return;
  ranges.set(id, xRange);
  const existing = charts.get(id);
  if (existing && existing.root.isConnected && existing.series.length === series.length + 1) {
    existing.setData(data);
    return;
  }
  if (existing) existing.destroy();
  el.innerHTML = "";
  const scales = [...new Set(series.map((s) => s.scale || "y"))];
  const axes = [
    {},
    ...scales.map((scale, i) => ({
      scale,
      side: i === 0 ? 3 : 1,
      label: units[scale] || "",
      size: 70,
      // Dollars per hour are often fractions of a cent: show significant digits, not "0".
      values: (u, ticks) => ticks.map((v) => (v === 0 || Math.abs(v) >= 1 ? `${v}` : v.toPrecision(2))),
    })),
  ];
  const opts = {
    title,
    width: Math.max(el.clientWidth, 300),
    height: 200,
    scales: { x: { time: true, range: (u, min, max) => ranges.get(id) || [min, max] } },
    axes,
    series: [
      {},
      ...series.map((s) => ({
        label: s.label,
        stroke: s.color,
        scale: s.scale || "y",
        width: 2,
        points: { show: true, size: s.pointSize || 4 },
        spanGaps: false,
      })),
    ],
  };
  charts.set(id, new window.uPlot(opts, data, el));
}
