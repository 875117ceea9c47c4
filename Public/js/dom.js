// DOM construction and the number/time formats every page shares.

/** h('a', {href: '#/jobs', class: 'x', onclick: fn}, 'text', child…) → element. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key in el && typeof value !== 'string') el[key] = value;
    else el.setAttribute(key, value === true ? '' : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const TERMINAL_STATES = ['succeeded', 'failed', 'cancelled'];
export const STATES = ['queued', 'running', 'paused', 'succeeded', 'failed', 'cancelled'];
export const isTerminal = (state) => TERMINAL_STATES.includes(state);

export function stateBadge(state) {
  return h('span', { class: `badge badge-${state || 'unknown'}` }, state || '—');
}

/** A progress bar with "step / total", and the ETA under it while running. */
export function progressCell(job) {
  const bar = h('progress', { max: job.total_steps || 1, value: job.step || 0 });
  bar.setAttribute('aria-label', `step ${job.step ?? 0} of ${job.total_steps ?? '?'}`);
  const eta = job.state === 'running' && job.eta_s != null ? h('span', { class: 'eta' }, `ETA ${duration(job.eta_s)}`) : null;
  return h('div', { class: 'progress' }, bar, h('span', { class: 'progress-text' }, `${job.step ?? 0} / ${job.total_steps ?? '?'}`), eta);
}

/** The median of the finite values, or null. */
export function median(values) {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (!v.length) return null;
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
}

export function num(value, digits = 4) {
  if (value === null || value === undefined || Number.isNaN(value)) return '—';
  if (!Number.isFinite(value)) return String(value);
  const a = Math.abs(value);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return value.toExponential(Math.max(0, digits - 2));
  return Number(value.toPrecision(digits)).toString();
}

export function rate(value) {
  return value === null || value === undefined ? '—' : `${value >= 100 ? Math.round(value) : num(value, 3)}`;
}

export function bytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i === 0 ? n : n.toFixed(n < 10 ? 2 : 1)} ${units[i]}`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '—';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  const hours = Math.floor(s / 3600);
  if (hours < 48) return `${hours} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

/** "3 min ago" with the full timestamp as a tooltip. */
export function timeAgo(iso) {
  if (!iso) return h('span', {}, '—');
  const t = new Date(iso);
  const seconds = (Date.now() - t.getTime()) / 1000;
  const text = seconds < 5 ? 'just now' : `${duration(seconds).split(' ').slice(0, 2).join(' ')} ago`;
  return h('time', { datetime: iso, title: t.toLocaleString() }, text);
}

export function shortId(id) {
  return id && id.length > 12 ? id.slice(0, 8) : id;
}

/** A status line for loading, error and success messages in one place. */
export function statusLine(kind, text) {
  return h('p', { class: `status status-${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text);
}

/** The human sentence of an ApiError or any other exception. */
export function errorText(err) {
  if (err && err.problem) {
    const p = err.problem;
    const fields = (p.errors || []).map((e) => `${e.field}: ${e.reason}`).join('; ');
    return [p.title, p.detail, fields].filter(Boolean).join(' — ');
  }
  return String(err && err.message ? err.message : err);
}

/** A key/value table of an object, arrays joined with commas. */
export function kvTable(obj, caption) {
  const rows = Object.entries(obj || {}).map(([k, v]) =>
    h('tr', {}, h('th', { scope: 'row' }, k), h('td', {}, Array.isArray(v) ? v.join(', ') : v === null ? 'none' : String(v))));
  return h('table', { class: 'kv' }, caption ? h('caption', {}, caption) : null, h('tbody', {}, rows));
}

/** Parses "#/jobs/abc?x=1" style routes into {parts, query}. */
export function parseHash(hash) {
  const raw = (hash || '').replace(/^#\/?/, '');
  const [path, search] = raw.split('?');
  return { parts: path.split('/').filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(search || '') };
}

/** Rewrites the query part of the current hash without triggering navigation. */
export function replaceQuery(query) {
  const { parts } = parseHash(location.hash);
  const q = query.toString();
  history.replaceState(null, '', `#/${parts.map(encodeURIComponent).join('/')}${q ? `?${q}` : ''}`);
}
