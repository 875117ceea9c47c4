// The MIMServe v1 API: fetch with the bearer token, problem+json errors, connection status.

const TOKEN_KEY = 'mimserve.token';

/** A failed call: `status` 0 means the server could not be reached. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
  /** errors[] of a 422: [{field, reason}]. */
  get fieldErrors() { return this.problem.errors || []; }
}

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

// The app installs these: how to ask the user for a token, and who hears about connectivity.
let askForToken = async () => null;
const connectionListeners = new Set();
let reachable = true;

export function onTokenNeeded(fn) { askForToken = fn; }
export function onConnectionChange(fn) { connectionListeners.add(fn); return () => connectionListeners.delete(fn); }
export function isReachable() { return reachable; }

function setReachable(ok) {
  if (ok === reachable) return;
  reachable = ok;
  for (const fn of connectionListeners) fn(ok);
}

// Several calls may get a 401 at once; the user is asked once.
let pendingPrompt = null;
function promptOnce(reason) {
  pendingPrompt ??= askForToken(reason).finally(() => { pendingPrompt = null; });
  return pendingPrompt;
}

async function readProblem(res) {
  const type = res.headers.get('Content-Type') || '';
  try {
    if (type.includes('json')) return await res.json();
    const text = await res.text();
    return { title: res.statusText || `HTTP ${res.status}`, status: res.status, detail: text.slice(0, 300) };
  } catch {
    return { title: `HTTP ${res.status}`, status: res.status };
  }
}

function url(path, query) {
  const u = new URL(path, location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== '') u.searchParams.set(k, v);
  }
  return u.pathname + u.search;
}

/**
 * One API call. `json` is sent as the JSON body; `body` as is. Returns parsed JSON, a Blob for
 * other content types, or null for 204. A 401 asks for the token once and retries.
 */
export async function request(method, path, { query, json, body, headers, signal } = {}) {
  for (let attempt = 0; ; attempt++) {
    const h = new Headers(headers || {});
    const token = getToken();
    if (token) h.set('Authorization', `Bearer ${token}`);
    let payload = body;
    if (json !== undefined) {
      h.set('Content-Type', 'application/json');
      payload = JSON.stringify(json);
    }
    let res;
    try {
      res = await fetch(url(path, query), { method, headers: h, body: payload, signal });
    } catch (err) {
      if (err.name === 'AbortError') throw err;
      setReachable(false);
      throw new ApiError(0, { title: 'Server unreachable', detail: `No answer from ${location.origin}; is mimserve running?` });
    }
    setReachable(true);
    if (res.status === 401 && attempt === 0) {
      const problem = await readProblem(res);
      const given = await promptOnce(problem.detail || 'This server needs an access token.');
      if (given) continue;
      throw new ApiError(401, problem);
    }
    if (!res.ok) throw new ApiError(res.status, await readProblem(res));
    if (res.status === 204) return null;
    const type = res.headers.get('Content-Type') || '';
    return type.includes('json') ? res.json() : res.blob();
  }
}

/** A random key for Idempotency-Key (crypto.randomUUID needs a secure context). */
export function newIdempotencyKey() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

const job = (id) => `/v1/jobs/${encodeURIComponent(id)}`;

export const api = {
  health: () => request('GET', '/healthz'),
  methods: () => request('GET', '/v1/methods'),
  samples: () => request('GET', '/v1/samples'),
  datasets: () => request('GET', '/v1/datasets'),
  jobs: (query) => request('GET', '/v1/jobs', { query }),
  job: (id) => request('GET', job(id)),
  createJob: (body, idempotencyKey) =>
    request('POST', '/v1/jobs', { json: body, headers: idempotencyKey ? { 'Idempotency-Key': idempotencyKey } : {} }),
  /** action: cancel | pause | resume */
  act: (id, action) => request('POST', `${job(id)}/${action}`),
  deleteJob: (id) => request('DELETE', job(id)),
  metrics: (id, query) => request('GET', `${job(id)}/metrics`, { query }),
  metricsCSV: (id) => `${job(id)}/metrics?format=csv`,
  checkpoints: (id) => request('GET', `${job(id)}/checkpoints`),
  evaluations: (id) => request('GET', `${job(id)}/evaluations`),
  evaluate: (id, dataset) => request('POST', `${job(id)}/evaluate`, { json: { dataset } }),
  /** The strip as a PNG Blob, or with format=json {step, mask_ratio, seed, masked_mse, note, png_base64}. */
  reconstruct: (id, image, query) =>
    request('POST', `${job(id)}/reconstruct`, { query, body: image, headers: { 'Content-Type': image.type } }),
};

/**
 * A job's Server-Sent Events read through fetch, so the token travels in the Authorization
 * header like every other call (never in the URL, where logs and history would keep it).
 * Calls onEvent(type, data, id) per event and onClose({status}) once when the stream ends, fails
 * or is refused; it does not reconnect by itself (the caller decides, with after_step or
 * lastEventId). Returns { close() }.
 */
export function openEventStream(id, { query, lastEventId, onOpen, onEvent, onClose } = {}) {
  const controller = new AbortController();
  let closed = false;
  const done = (status) => {
    if (closed) return;
    closed = true;
    if (onClose) onClose({ status });
  };
  (async () => {
    const h = new Headers({ Accept: 'text/event-stream' });
    const token = getToken();
    if (token) h.set('Authorization', `Bearer ${token}`);
    if (lastEventId) h.set('Last-Event-ID', lastEventId);
    let res;
    try {
      res = await fetch(url(`${job(id)}/events`, lastEventId ? {} : query), { headers: h, signal: controller.signal, cache: 'no-store' });
    } catch {
      done(0);
      return;
    }
    if (!res.ok || !res.body) { done(res.status); return; }
    if (onOpen) onOpen();
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    try {
      for (;;) {
        const { value, done: finished } = await reader.read();
        if (finished) break;
        buffer = (buffer + value).replace(/\r\n?/g, '\n');
        let at;
        while ((at = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, at);
          buffer = buffer.slice(at + 2);
          let type = 'message';
          let eventId = null;
          const data = [];
          for (const line of block.split('\n')) {
            if (!line || line.startsWith(':')) continue;
            const colon = line.indexOf(':');
            const field = colon < 0 ? line : line.slice(0, colon);
            const text = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
            if (field === 'event') type = text;
            else if (field === 'data') data.push(text);
            else if (field === 'id') eventId = text;
          }
          if (data.length && !closed && onEvent) onEvent(type, data.join('\n'), eventId);
        }
      }
    } catch { /* aborted or dropped: reported below */ }
    done(res.status);
  })();
  return {
    close() {
      closed = true;
      controller.abort();
    },
  };
}

/**
 * Downloads a file the server guards with the token: a plain link cannot send the
 * Authorization header, so the file is fetched with it and handed to the browser as a Blob.
 */
export async function downloadWithToken(path, filename) {
  const blob = await request('GET', path);
  const href = URL.createObjectURL(blob instanceof Blob ? blob : new Blob([JSON.stringify(blob)]));
  const a = document.createElement('a');
  a.href = href;
  a.download = filename || '';
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 60000);
}
