// A small line chart on <canvas>: linear axes, one colour per series, legend. No dependencies.
// drawChart(canvas, series, opts): series = [{name, points: [[x, y], ...]}], opts = {title}.
"use strict";
const CHART_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

function niceTicks(lo, hi, n) {
  if (!(hi > lo)) { hi = lo + 1; }
  const raw = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map(m => m * mag).find(s => s >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(v);
  return out;
}

function fmt(v) {
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(1) : String(+v.toPrecision(3));
}

function drawChart(canvas, series, opts) {
  const ctx = canvas.getContext("2d"), W = canvas.width, H = canvas.height;
  const L = 56, R = 12, T = 24, B = 40;
  ctx.clearRect(0, 0, W, H);
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, H);
  ctx.fillStyle = "#222"; ctx.font = "13px sans-serif"; ctx.fillText(opts.title || "", L, 16);
  const pts = series.flatMap(s => s.points);
  if (!pts.length) { ctx.fillStyle = "#889"; ctx.fillText("waiting for data…", L + 10, H / 2); return; }
  let x0 = Math.min(...pts.map(p => p[0])), x1 = Math.max(...pts.map(p => p[0]));
  let y0 = Math.min(...pts.map(p => p[1])), y1 = Math.max(...pts.map(p => p[1]));
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { y0 -= 0.5 * Math.abs(y0 || 1); y1 += 0.5 * Math.abs(y1 || 1); }
  const sx = x => L + (x - x0) / (x1 - x0) * (W - L - R), sy = y => H - B - (y - y0) / (y1 - y0) * (H - T - B);
  ctx.strokeStyle = "#e3e6ea"; ctx.fillStyle = "#556"; ctx.font = "11px sans-serif"; ctx.lineWidth = 1;
  for (const v of niceTicks(y0, y1, 5)) { ctx.beginPath(); ctx.moveTo(L, sy(v)); ctx.lineTo(W - R, sy(v)); ctx.stroke(); ctx.fillText(fmt(v), 4, sy(v) + 4); }
  for (const v of niceTicks(x0, x1, 6)) { ctx.fillText(fmt(v), sx(v) - 8, H - B + 14); }
  ctx.fillText("step", W - R - 28, H - B + 28);
  series.forEach((s, k) => {
    const c = CHART_COLOURS[k % CHART_COLOURS.length];
    ctx.strokeStyle = c; ctx.fillStyle = c; ctx.lineWidth = 1.8; ctx.beginPath();
    s.points.forEach((p, j) => j ? ctx.lineTo(sx(p[0]), sy(p[1])) : ctx.moveTo(sx(p[0]), sy(p[1])));
    ctx.stroke();
    if (s.points.length === 1) { ctx.beginPath(); ctx.arc(sx(s.points[0][0]), sy(s.points[0][1]), 3, 0, 7); ctx.fill(); }
    ctx.fillRect(L + 8 + k * 150, H - 14, 10, 3); ctx.fillText(s.name, L + 22 + k * 150, H - 9);
  });
}
window.drawChart = drawChart;
