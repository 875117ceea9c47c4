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

/** The SSE URL of a job; EventSource cannot send headers, so the token rides in the query. */
export function eventsURL(id, query = {}) {
  const token = getToken();
  return url(`${job(id)}/events`, token ? { ...query, access_token: token } : query);
}
