// A small canvas line chart: several series, linear or log y, EMA smoothing, hover/keyboard
// tooltip. Points are {x, y, …extra}; series are {name, color, points} with points sorted by x.

import { h, num } from './dom.js';

const PAD = { left: 60, right: 14, top: 12, bottom: 34 };

/** Debiased exponential moving average (as TensorBoard's smoothing slider). */
export function smooth(points, weight) {
  if (!weight) return points.map((p) => p.y);
  let last = 0;
  let n = 0;
  return points.map((p) => {
    if (!Number.isFinite(p.y)) return NaN;
    n += 1;
    last = last * weight + (1 - weight) * p.y;
    return last / (1 - weight ** n);
  });
}

/** About `count` round tick values covering [lo, hi]. */
export function niceTicks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return ticks;
}

/** Ticks for a log10 axis whose domain [lo, hi] is already in log10 units. */
function logTicks(lo, hi) {
  let ticks = [];
  for (let e = Math.floor(lo); e <= Math.ceil(hi); e++) {
    for (const m of [1, 2, 5]) {
      const v = e + Math.log10(m);
      if (v >= lo - 1e-9 && v <= hi + 1e-9) ticks.push(v);
    }
  }
  if (ticks.length > 7) ticks = ticks.filter((v) => Math.abs(v - Math.round(v)) < 1e-9);
  if (ticks.length < 3) ticks = niceTicks(10 ** lo, 10 ** hi, 4).filter((v) => v > 0).map(Math.log10);
  return ticks;
}

function lowerBound(points, x) {
  let lo = 0;
  let hi = points.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (points[mid].x < x) lo = mid + 1; else hi = mid;
  }
  return lo;
}

function nearest(points, x) {
  if (!points.length) return -1;
  const i = lowerBound(points, x);
  if (i <= 0) return 0;
  if (i >= points.length) return points.length - 1;
  return x - points[i - 1].x <= points[i].x - x ? i - 1 : i;
}

export class LineChart {
  /**
   * options: label (accessible name), xLabel, formatX, formatY, height, logY, smoothing,
   * zeroBased (y starts at 0), xDomain ([lo, hi] or null), tooltip(x, hits) → [lines],
   * emptyText, legend (show series names).
   */
  constructor(options = {}) {
    this.options = { height: 240, formatX: (x) => num(x, 6), formatY: (y) => num(y, 4), emptyText: 'No data yet', ...options };
    this.series = [];
    this.logY = !!options.logY;
    this.smoothing = options.smoothing || 0;
    this.hoverX = null;
    this.canvas = h('canvas', { tabindex: 0, role: 'img', 'aria-label': options.label || 'chart' });
    this.tip = h('div', { class: 'chart-tip', hidden: true, role: 'status' });
    this.legend = h('ul', { class: 'chart-legend' });
    this.el = h('div', { class: 'chart', dataset: { points: '0' } },
      h('div', { class: 'chart-area' }, this.canvas, this.tip), this.legend);
    this.canvas.style.height = `${this.options.height}px`;
    this.canvas.addEventListener('mousemove', (e) => this.hoverAt(e.offsetX));
    this.canvas.addEventListener('mouseleave', () => this.setHover(null));
    this.canvas.addEventListener('keydown', (e) => this.onKey(e));
    this.canvas.addEventListener('blur', () => this.setHover(null));
    this.resizer = new ResizeObserver(() => this.draw());
    this.resizer.observe(this.el);
    this.scheduled = false;
  }

  setSeries(series) { this.series = series; this.update(); }
  setLogY(on) { this.logY = on; this.update(); }
  setSmoothing(weight) { this.smoothing = weight; this.update(); }
  setXDomain(domain) { this.options.xDomain = domain; this.update(); }

  /** Redraws on the next frame (many SSE events in one frame cost one draw). */
  update() {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => { this.scheduled = false; this.draw(); });
  }

  destroy() { this.resizer.disconnect(); }

  visiblePoints(points) {
    return points.filter((p) => Number.isFinite(p.y) && (!this.logY || p.y > 0));
  }

  layout() {
    const width = this.canvas.clientWidth;
    const height = this.options.height;
    const all = this.series.flatMap((s) => this.visiblePoints(s.points));
    if (!all.length || width < 50) return null;
    let [x0, x1] = this.options.xDomain || [Infinity, -Infinity];
    if (!this.options.xDomain) for (const p of all) { x0 = Math.min(x0, p.x); x1 = Math.max(x1, p.x); }
    else for (const p of all) x1 = Math.max(x1, p.x);
    if (x1 <= x0) { x1 = x0 + 1; }
    const ty = this.logY ? Math.log10 : (v) => v;
    let y0 = Infinity;
    let y1 = -Infinity;
    for (const p of all) { const v = ty(p.y); y0 = Math.min(y0, v); y1 = Math.max(y1, v); }
    if (this.options.zeroBased && !this.logY) y0 = Math.min(0, y0);
    if (y1 - y0 < 1e-12) { const d = Math.abs(y1) * 0.1 || (this.logY ? 0.5 : 1); y0 -= d; y1 += d; }
    const pad = (y1 - y0) * 0.05;
    if (!(this.options.zeroBased && !this.logY && y0 === 0)) y0 -= pad;
    y1 += pad;
    const plotW = width - PAD.left - PAD.right;
    const plotH = height - PAD.top - PAD.bottom;
    return {
      width, height, x0, x1, y0, y1, ty,
      sx: (x) => PAD.left + ((x - x0) / (x1 - x0)) * plotW,
      sy: (v) => PAD.top + (1 - (v - y0) / (y1 - y0)) * plotH,
      invX: (px) => x0 + ((px - PAD.left) / plotW) * (x1 - x0),
    };
  }

  draw() {
    const dpr = window.devicePixelRatio || 1;
    const width = this.canvas.clientWidth;
    const height = this.options.height;
    if (!width) return;
    this.canvas.width = Math.round(width * dpr);
    this.canvas.height = Math.round(height * dpr);
    const ctx = this.canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const css = getComputedStyle(this.el);
    const color = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
    const text = color('--chart-text', '#444');
    const grid = color('--chart-grid', '#ddd');
    ctx.font = '12px system-ui, sans-serif';
    const count = this.series.reduce((n, s) => n + s.points.length, 0);
    this.el.dataset.points = String(count);
    this.renderLegend();
    const L = this.layout();
    this.lastLayout = L;
    if (!L) {
      ctx.fillStyle = text;
      ctx.textAlign = 'center';
      ctx.fillText(this.options.emptyText, width / 2, height / 2);
      this.tip.hidden = true;
      return;
    }
    // Grid and tick labels.
    ctx.strokeStyle = grid;
    ctx.fillStyle = text;
    ctx.lineWidth = 1;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    const yt = this.logY ? logTicks(L.y0, L.y1) : niceTicks(L.y0, L.y1, 5);
    for (const v of yt) {
      const y = Math.round(L.sy(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(PAD.left, y); ctx.lineTo(width - PAD.right, y); ctx.stroke();
      ctx.fillText(this.options.formatY(this.logY ? 10 ** v : v), PAD.left - 6, y);
    }
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    const xt = niceTicks(L.x0, L.x1, Math.max(2, Math.floor((width - PAD.left) / 90)));
    for (const v of xt) {
      const x = Math.round(L.sx(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(x, PAD.top); ctx.lineTo(x, height - PAD.bottom); ctx.stroke();
      ctx.fillText(this.options.formatX(v), x, height - PAD.bottom + 5);
    }
    if (this.options.xLabel) {
      ctx.textAlign = 'right';
      ctx.fillText(this.options.xLabel, width - PAD.right, height - 14);
    }
    // Series: raw faint under the smoothed line when smoothing is on.
    ctx.save();
    ctx.beginPath();
    ctx.rect(PAD.left, PAD.top - 2, width - PAD.left - PAD.right, height - PAD.top - PAD.bottom + 4);
    ctx.clip();
    for (const s of this.series) {
      const pts = this.visiblePoints(s.points);
      if (this.smoothing > 0) {
        this.stroke(ctx, L, pts, pts.map((p) => p.y), s.color, 1, 0.25);
        this.stroke(ctx, L, pts, smooth(pts, this.smoothing), s.color, 2, 1);
      } else {
        this.stroke(ctx, L, pts, pts.map((p) => p.y), s.color, 1.75, 1);
      }
      if (pts.length === 1) {
        ctx.fillStyle = s.color;
        ctx.beginPath(); ctx.arc(L.sx(pts[0].x), L.sy(L.ty(pts[0].y)), 3, 0, 2 * Math.PI); ctx.fill();
      }
    }
    ctx.restore();
    this.drawHover(ctx, L, text);
  }

  stroke(ctx, L, pts, ys, color, width, alpha) {
    ctx.strokeStyle = color;
    ctx.globalAlpha = alpha;
    ctx.lineWidth = width;
    ctx.lineJoin = 'round';
    ctx.beginPath();
    let pen = false;
    pts.forEach((p, i) => {
      const y = ys[i];
      if (!Number.isFinite(y) || (this.logY && y <= 0)) { pen = false; return; }
      const px = L.sx(p.x);
      const py = L.sy(L.ty(y));
      if (pen) ctx.lineTo(px, py); else ctx.moveTo(px, py);
      pen = true;
    });
    ctx.stroke();
    ctx.globalAlpha = 1;
  }

  renderLegend() {
    const show = this.options.legend && this.series.length > 0;
    this.legend.hidden = !show;
    if (!show) return;
    const key = this.series.map((s) => s.name + s.color).join('|');
    if (key === this.legendKey) return;
    this.legendKey = key;
    this.legend.replaceChildren(...this.series.map((s) =>
      h('li', {}, h('span', { class: 'swatch', style: `background:${s.color}` }), s.name)));
  }

  hoverAt(px) {
    const L = this.lastLayout;
    this.setHover(L ? L.invX(px) : null);
  }

  setHover(x) {
    this.hoverX = x;
    this.update();
  }

  onKey(e) {
    const pts = this.series.length ? this.visiblePoints(this.series[0].points) : [];
    if (!pts.length) return;
    let i = this.hoverX === null ? -1 : nearest(pts, this.hoverX);
    if (e.key === 'ArrowRight') i = Math.min(pts.length - 1, i + Math.max(1, e.shiftKey ? 10 : 1));
    else if (e.key === 'ArrowLeft') i = i < 0 ? pts.length - 1 : Math.max(0, i - (e.shiftKey ? 10 : 1));
    else if (e.key === 'Home') i = 0;
    else if (e.key === 'End') i = pts.length - 1;
    else if (e.key === 'Escape') { this.setHover(null); return; }
    else return;
    e.preventDefault();
    this.setHover(pts[i].x);
  }

  drawHover(ctx, L, textColor) {
    if (this.hoverX === null || this.hoverX < L.x0 || this.hoverX > L.x1) { this.tip.hidden = true; return; }
    const hits = [];
    for (const s of this.series) {
      const pts = this.visiblePoints(s.points);
      const i = nearest(pts, this.hoverX);
      if (i < 0) continue;
      const smoothed = this.smoothing > 0 ? smooth(pts, this.smoothing)[i] : null;
      hits.push({ series: s, point: pts[i], smoothed });
    }
    if (!hits.length) { this.tip.hidden = true; return; }
    const x = hits[0].point.x;
    const px = L.sx(x);
    ctx.strokeStyle = textColor;
    ctx.globalAlpha = 0.5;
    ctx.beginPath(); ctx.moveTo(px, PAD.top); ctx.lineTo(px, L.height - PAD.bottom); ctx.stroke();
    ctx.globalAlpha = 1;
    for (const hit of hits) {
      const y = hit.smoothed ?? hit.point.y;
      ctx.fillStyle = hit.series.color;
      ctx.beginPath(); ctx.arc(L.sx(hit.point.x), L.sy(L.ty(y)), 4, 0, 2 * Math.PI); ctx.fill();
    }
    const lines = this.options.tooltip ? this.options.tooltip(x, hits) : this.defaultTooltip(x, hits);
    this.tip.replaceChildren(...lines.map((line) => h('div', {}, line)));
    this.tip.hidden = false;
    const tipW = this.tip.offsetWidth;
    const left = px + 12 + tipW > L.width ? px - 12 - tipW : px + 12;
    this.tip.style.left = `${Math.max(0, left)}px`;
    this.tip.style.top = `${PAD.top}px`;
  }

  defaultTooltip(x, hits) {
    const f = this.options.formatY;
    return [`${this.options.xLabel || 'x'} ${this.options.formatX(x)}`,
      ...hits.map((hit) => `${this.series.length > 1 ? `${hit.series.name}: ` : ''}${f(hit.point.y)}${hit.smoothed !== null ? ` (smoothed ${f(hit.smoothed)})` : ''}`)];
  }
}

/** Distinct colours readable on light and dark backgrounds. */
export const PALETTE = ['#2f6fdf', '#e0602a', '#1f9d55', '#b83fb4', '#c49a00', '#0f9aa8', '#d6336c', '#6f5bd6'];
