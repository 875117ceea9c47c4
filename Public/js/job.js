// Job page: progress, live loss / lr / throughput charts (history first, then SSE), the
// failure text, reconstruction (pretraining) or the held-out accuracy chart (fine-tuning),
// checkpoints, evaluations and the resolved config.

import { api, openEventStream } from './api.js';
import { h, fill, stateBadge, progressCell, num, rate, bytes, duration, timeAgo, shortId, statusLine, errorText, isTerminal, kvTable, median } from './dom.js';
import { LineChart, PALETTE } from './chart.js';
import { actionButtons } from './ui.js';
import { reconstructionPanel } from './reconstruct.js';
import { evaluationsPanel } from './evaluations.js';

const HISTORY_POINTS = 4000;
const pct = (v, digits) => (typeof v === 'number' ? `${(v * 100).toFixed(digits)} %` : '—');
const POLL_MS = 3000;

/** Metrics kept sorted by step, one per step; the three chart series share the order. */
class MetricSeries {
  constructor() { this.steps = []; this.loss = []; this.lr = []; this.rate = []; }
  get lastStep() { return this.steps.length ? this.steps[this.steps.length - 1] : -Infinity; }
  add(m) {
    if (m.step === undefined || m.step === null) return;
    let i = this.steps.length;
    if (m.step <= this.lastStep) {
      i = this.steps.findIndex((s) => s >= m.step);
      if (this.steps[i] === m.step) return;
    }
    this.steps.splice(i, 0, m.step);
    this.loss.splice(i, 0, { x: m.step, y: m.loss ?? NaN, lr: m.lr });
    this.lr.splice(i, 0, { x: m.step, y: m.lr ?? NaN });
    this.rate.splice(i, 0, { x: m.step, y: m.images_per_s ?? NaN });
  }
}

export function mount(main, { id }) {
  let alive = true;
  let job = null;
  let events = null;
  let pollTimer = null;
  let summaryQueued = false;
  const series = new MetricSeries();
  let accuracy = []; // a fine-tuning job's held-out top-1 by step: [{x, y, loss, images}]
  let hasCheckpoint = false;
  let recon = null; // pretraining jobs only: a fine-tuning job has no decoder
  const isFinetune = () => job.task === 'finetune';

  const head = h('div', { class: 'page-head' });
  const summary = h('section', { class: 'card job-summary', 'aria-label': 'Progress' });
  const errorBox = h('div', { id: 'job-error' });
  const actions = actionButtons((action, result) => {
    if (action === 'delete') { location.hash = '#/jobs'; return; }
    setJob(result);
    if (!isTerminal(result.state)) connect();
  });

  const logToggle = h('input', { type: 'checkbox', id: 'loss-log' });
  const smoothing = h('input', { type: 'range', id: 'loss-smoothing', min: 0, max: 0.99, step: 0.01, value: '0.6' });
  const smoothingOut = h('output', { for: 'loss-smoothing' }, '0.60');
  const lossChart = new LineChart({
    label: 'Training loss by step', xLabel: 'step', height: 280, smoothing: 0.6, formatX: (x) => String(Math.round(x)),
    emptyText: 'Waiting for the first step…',
    tooltip: (x, [hit]) => [`step ${hit.point.x}`, `loss ${num(hit.point.y, 5)}${hit.smoothed !== null ? ` (smoothed ${num(hit.smoothed, 5)})` : ''}`, `lr ${num(hit.point.lr, 3)}`],
  });
  const lrChart = new LineChart({ label: 'Learning rate by step', xLabel: 'step', height: 180, zeroBased: true, formatX: (x) => String(Math.round(x)), formatY: (y) => num(y, 2) });
  const rateChart = new LineChart({ label: 'Throughput in images per second by step', xLabel: 'step', height: 180, zeroBased: true, formatX: (x) => String(Math.round(x)), formatY: (y) => num(y, 3) });
  lossChart.el.id = 'loss-chart';
  const accuracyChart = new LineChart({
    label: 'Held-out top-1 accuracy by step', xLabel: 'step', height: 220, zeroBased: true,
    formatX: (x) => String(Math.round(x)), formatY: (y) => pct(y, 0), emptyText: 'Waiting for the first score…',
    tooltip: (x, [hit]) => [`step ${hit.point.x}`, `top-1 ${pct(hit.point.y, 1)}`, `loss ${num(hit.point.loss, 4)}`, `${hit.point.images} held-out images`],
  });
  accuracyChart.el.id = 'accuracy-chart';

  const reconSlot = h('div');
  const accuracySlot = h('div');
  const checkpointsBody = h('div', { id: 'checkpoints-list' });
  const evaluations = evaluationsPanel(id, { onLoad: setAccuracy });
  const config = h('div', { class: 'config' });

  fill(main,
    head, summary, errorBox,
    h('section', { class: 'card', 'aria-labelledby': 'loss-title' },
      h('div', { class: 'card-head' }, h('h2', { id: 'loss-title' }, 'Loss'),
        h('div', { class: 'inline-controls' },
          h('label', { for: 'loss-log' }, logToggle, ' Log scale'),
          h('label', { for: 'loss-smoothing' }, 'Smoothing'), smoothing, smoothingOut)),
      lossChart.el),
    accuracySlot,
    h('div', { class: 'two-col' },
      h('section', { class: 'card', 'aria-labelledby': 'lr-title' }, h('h2', { id: 'lr-title' }, 'Learning rate'), lrChart.el),
      h('section', { class: 'card', 'aria-labelledby': 'rate-title' }, h('h2', { id: 'rate-title' }, 'Throughput (images/s)'), rateChart.el)),
    reconSlot,
    h('section', { class: 'card', id: 'checkpoints', 'aria-labelledby': 'ckpt-title' }, h('h2', { id: 'ckpt-title' }, 'Checkpoints'), checkpointsBody),
    evaluations.el,
    h('section', { class: 'card', id: 'config', 'aria-labelledby': 'config-title' }, h('h2', { id: 'config-title' }, 'Resolved configuration'), config));

  logToggle.addEventListener('change', () => lossChart.setLogY(logToggle.checked));
  smoothing.addEventListener('input', () => {
    smoothingOut.textContent = Number(smoothing.value).toFixed(2);
    lossChart.setSmoothing(Number(smoothing.value));
  });

  function redrawCharts() {
    lossChart.setSeries([{ name: 'loss', color: PALETTE[0], points: series.loss }]);
    lrChart.setSeries([{ name: 'lr', color: PALETTE[2], points: series.lr }]);
    rateChart.setSeries([{ name: 'images/s', color: PALETTE[1], points: series.rate }]);
  }

  /** The fine-tuning scores among a job's evaluations, as chart points sorted by step. */
  function setAccuracy(list) {
    accuracy = list.filter((e) => e.result && e.result.kind === 'finetune' && typeof e.result.top1 === 'number')
      .map((e) => ({ x: e.step, y: e.result.top1, loss: e.result.loss, images: e.result.images }))
      .sort((a, b) => a.x - b.x);
    accuracyChart.setSeries([{ name: 'top-1', color: PALETTE[2], points: accuracy }]);
    if (job) setJob(job);
  }

  /** What only one task has: the accuracy chart (fine-tuning) or reconstruction (pretraining). */
  function mountTaskPanels() {
    if (isFinetune()) {
      fill(accuracySlot, h('section', { class: 'card', id: 'accuracy', 'aria-labelledby': 'accuracy-title' },
        h('h2', { id: 'accuracy-title' }, 'Held-out top-1 accuracy'),
        h('p', { class: 'hint' }, `Scored every ${job.config?.finetune?.eval_every ?? '?'} steps and at the end on images the job never trains on.`),
        accuracyChart.el));
      return;
    }
    recon = reconstructionPanel(id);
    fill(reconSlot, recon.el);
    const ratio = job.config && job.config.model ? job.config.model.mask_ratio : null;
    if (typeof ratio === 'number') {
      const input = main.querySelector('#recon-ratio');
      input.value = String(ratio);
      input.dispatchEvent(new Event('input'));
    }
    api.methods().then((doc) => {
      const m = (doc.methods || []).find((x) => x.name === job.method);
      if (alive && m && m.fixed_mask_ratio != null) recon.fixRatio(m.fixed_mask_ratio);
    }).catch(() => { /* the slider stays free; the server still says what it used */ });
  }

  /** A pretraining job with a checkpoint can be continued or fine-tuned; a fine-tuning job neither. */
  function fromWeightsLinks() {
    if (isFinetune() || !hasCheckpoint) return null;
    const from = `#/new?from=${encodeURIComponent(job.id)}`;
    return [
      h('a', { class: 'button small ghost', id: 'continue-job', href: `${from}&continue=1`,
        title: 'A new job that starts from this job\'s newest checkpoint' }, 'Continue pretraining'),
      h('a', { class: 'button small ghost', id: 'finetune-job', href: `${from}&finetune=1`,
        title: 'A classifier on this job\'s encoder (its newest checkpoint), trained on a labelled dataset' }, 'Fine-tune'),
    ];
  }

  function renderHead() {
    fill(head,
      h('div', {},
        h('p', { class: 'crumbs' }, h('a', { href: '#/jobs' }, 'Jobs'), ' / ', h('span', { class: 'mono' }, job.id)),
        h('h1', {}, `${job.method} · `, h('span', { class: 'preset-name' }, job.preset), ' ', stateBadge(job.state))),
      h('div', { class: 'head-actions' }, actions.el,
        h('a', { class: 'button small ghost', href: `#/new?from=${encodeURIComponent(job.id)}` }, 'Clone'),
        fromWeightsLinks(),
        h('a', { class: 'button small ghost', href: `#/compare?ids=${encodeURIComponent(job.id)}` }, 'Compare'),
        h('a', { class: 'button small ghost', href: api.metricsCSV(job.id), download: `metrics-${job.id}.csv` }, 'Metrics CSV')));
    actions.update(job);
  }

  function renderSummary() {
    const wall = job.started_at ? ((job.finished_at ? new Date(job.finished_at) : new Date()) - new Date(job.started_at)) / 1000 : null;
    const stat = (label, value, key) => h('div', { class: 'stat', dataset: { stat: key } }, h('dt', {}, label), h('dd', {}, value));
    const latest = accuracy.length ? accuracy[accuracy.length - 1] : null;
    fill(summary,
      progressCell(job),
      h('dl', { class: 'stats' },
        stat('Task', job.task ?? 'pretrain', 'task'),
        stat('Dataset', job.dataset, 'dataset'),
        stat('Step', `${job.step ?? 0} / ${job.total_steps ?? '?'}`, 'step'),
        stat('Loss', num(job.loss), 'loss'),
        stat('Learning rate', num(job.lr, 3), 'lr'),
        isFinetune() ? stat('Top-1 (held out)', latest ? `${pct(latest.y, 1)} at step ${latest.x}` : '—', 'top1') : null,
        // A finished job's row no longer carries a rate: show the median of its metrics.
        stat(job.images_per_s == null && series.rate.length ? 'Images/s (median)' : 'Images/s',
          rate(job.images_per_s ?? median(series.rate.map((p) => p.y))), 'images_per_s'),
        stat('ETA', isTerminal(job.state) ? '—' : duration(job.eta_s), 'eta'),
        stat('Peak memory', job.peak_rss_mb != null ? `${Math.round(job.peak_rss_mb)} MB` : '—', 'peak_rss'),
        stat('Trained by', job.worker ?? '—', 'worker'),
        stat('Interruptions', String(job.interruptions ?? 0), 'interruptions'),
        stat('Wall time', duration(wall), 'wall'),
        stat('Created', timeAgo(job.created_at), 'created'),
        stat('Started', timeAgo(job.started_at), 'started'),
        stat('Finished', timeAgo(job.finished_at), 'finished')));
    fill(errorBox, job.error ? h('div', { class: 'status status-error', role: 'alert' },
      h('strong', {}, job.state === 'failed' ? 'This job failed' : 'Error'), h('pre', { class: 'error-text' }, job.error)) : null);
  }

  function renderConfig() {
    const c = job.config || {};
    fill(config,
      h('p', {}, `method ${c.method ?? job.method} · preset `, h('span', { class: 'mono' }, c.preset ?? job.preset), ` · dataset ${c.dataset ?? job.dataset}`),
      c.init ? h('p', { id: 'config-init' }, 'Started from the weights of job ',
        h('a', { href: `#/jobs/${encodeURIComponent(c.init.job)}`, class: 'mono' }, c.init.job), ` at step ${c.init.step}`) : null,
      requested(job.request),
      h('div', { class: 'two-col' }, kvTable(c.model, 'Model'), kvTable(c.training, 'Training')),
      c.finetune ? h('div', { class: 'two-col' }, kvTable(c.finetune, 'Fine-tuning')) : null,
      h('details', {}, h('summary', {}, 'JSON'), h('pre', { class: 'json' }, JSON.stringify(c, null, 2))));
  }

  /** What the request itself set (the rest is the preset's or its recipe's, or derived). */
  function requested(r) {
    if (!r) return null;
    const set = [...['total_steps', 'batch_size', 'seed'].filter((k) => k in r).map((k) => [k, r[k]]), ...Object.entries(r.overrides || {})];
    const text = (v) => (v === null ? 'none' : Array.isArray(v) ? v.join(', ') : String(v));
    return h('p', { id: 'config-request' }, set.length
      ? ['Set in the request: ', ...set.map(([k, v], i) => [i ? ', ' : '', h('span', { class: 'mono' }, `${k} ${text(v)}`)]),
        '. Everything else is the preset\'s or its recipe\'s.']
      : 'The request set nothing: every value is the preset\'s or its recipe\'s.');
  }

  function setJob(next) {
    const stateChanged = !job || job.state !== next.state;
    job = next;
    if (stateChanged) renderHead(); else actions.update(job);
    // Progress events can come every few milliseconds: one summary render per frame.
    if (!summaryQueued) {
      summaryQueued = true;
      requestAnimationFrame(() => { summaryQueued = false; if (alive) renderSummary(); });
    }
    const domain = [0, Math.max(job.total_steps || 1, series.lastStep)];
    [lossChart, lrChart, rateChart, accuracyChart].forEach((c) => c.setXDomain(domain));
  }

  async function loadCheckpoints() {
    try {
      const doc = await api.checkpoints(id);
      const list = [...(doc.checkpoints || [])].sort((a, b) => a.step - b.step);
      recon?.setCheckpoints(list);
      if (!hasCheckpoint && list.length && job) { hasCheckpoint = true; renderHead(); }
      fill(checkpointsBody, list.length
        ? h('div', { class: 'table-wrap' }, h('table', { class: 'checkpoints' },
          h('thead', {}, h('tr', {}, ['Step', 'Size', 'SHA-256', 'Written', 'File'].map((t) => h('th', { scope: 'col' }, t)))),
          h('tbody', {}, list.map((c) => h('tr', {},
            h('td', { class: 'num' }, String(c.step), c.final ? h('span', { class: 'badge badge-final' }, 'final') : null),
            h('td', { class: 'num' }, bytes(c.bytes)),
            h('td', { class: 'mono', title: c.sha256 }, (c.sha256 || '').slice(0, 16) + (c.sha256 ? '…' : '')),
            h('td', {}, timeAgo(c.created_at)),
            h('td', {}, c.url ? h('a', { href: c.url, download: `${job ? job.id : id}-step${c.step}.safetensors` }, `Download (${bytes(c.bytes)})`) : '—'))))))
        : h('p', { class: 'muted' }, 'No checkpoint yet.'));
    } catch (err) {
      fill(checkpointsBody, statusLine('error', `Could not load checkpoints: ${errorText(err)}`));
    }
  }

  async function loadHistory() {
    const doc = await api.metrics(id, { max_points: HISTORY_POINTS });
    for (const m of doc.metrics || []) series.add(m);
    redrawCharts();
    if (job) setJob(job);
  }

  /**
   * Opens the event stream after the history: `after_step` makes the server replay every
   * metric past what the page holds. When the stream drops, the next poll opens it again.
   */
  function connect() {
    if (events || !alive) return;
    const data = (text) => { try { return JSON.parse(text); } catch { return {}; } };
    const stream = openEventStream(id, {
      query: { after_step: Math.max(0, series.lastStep) },
      onEvent: (type, text) => {
        const d = data(text);
        if (type === 'metric') { series.add(d); redrawCharts(); }
        else if (type === 'progress') {
          if (job.state === 'queued') refresh();
          setJob({ ...job, ...d });
        } else if (type === 'state') {
          // The new state's actions are the server's to say: no button is offered until it has.
          setJob({ ...job, state: d.state, error: d.error ?? job.error, actions: [] });
          refresh();
          if (isTerminal(d.state)) { disconnect(); finish(); }
        } else if (type === 'checkpoint') loadCheckpoints();
        else if (type === 'evaluation') evaluations.refresh();
        else if (type === 'end') {
          // deleted: the job is gone; shutdown: the server is stopping (the poll reconnects).
          disconnect();
          if (d.reason === 'deleted') fill(errorBox, statusLine('error', 'This job no longer exists.'));
        }
      },
      onClose: () => { if (events === stream) events = null; },
    });
    events = stream;
  }

  /** The job row again (after a state change the stream reported). */
  let refreshing = false;
  function refresh() {
    if (refreshing) return;
    refreshing = true;
    api.job(id).then((next) => { if (alive) setJob(next); }).catch(() => { /* the poll shows the error */ })
      .finally(() => { refreshing = false; });
  }

  function disconnect() {
    if (events) { events.close(); events = null; }
  }

  /** After a terminal state: the final row, every metric the stream may have skipped, checkpoints. */
  async function finish() {
    try {
      setJob(await api.job(id));
      await loadHistory();
    } catch { /* the poll shows the error */ }
    loadCheckpoints();
    evaluations.refresh();
  }

  async function poll() {
    clearTimeout(pollTimer);
    try {
      const next = await api.job(id);
      if (!alive) return;
      const wasTerminal = isTerminal(job.state);
      setJob(next);
      if (!isTerminal(next.state)) connect();
      else if (!wasTerminal) { disconnect(); finish(); }
      if (!events && !isTerminal(next.state)) {
        const doc = await api.metrics(id, { after_step: Math.max(0, series.lastStep) });
        for (const m of doc.metrics || []) series.add(m);
        redrawCharts();
      }
    } catch (err) {
      if (err.status === 404) { fill(errorBox, statusLine('error', 'This job no longer exists.')); disconnect(); return; }
    }
    if (alive) pollTimer = setTimeout(poll, POLL_MS);
  }

  (async () => {
    try {
      job = await api.job(id);
    } catch (err) {
      fill(main, h('h1', {}, `Job ${shortId(id)}`), statusLine('error', err.status === 404 ? 'No such job.' : `Could not load the job: ${errorText(err)}`),
        h('p', {}, h('a', { href: '#/jobs' }, '← All jobs')));
      return;
    }
    if (!alive) return;
    renderHead();
    setJob(job);
    renderConfig();
    mountTaskPanels();
    try { await loadHistory(); } catch (err) { fill(errorBox, statusLine('error', `Could not load metrics: ${errorText(err)}`)); }
    redrawCharts();
    if (!isTerminal(job.state)) connect();
    loadCheckpoints();
    evaluations.refresh();
    pollTimer = setTimeout(poll, POLL_MS);
  })();

  return () => {
    alive = false;
    clearTimeout(pollTimer);
    disconnect();
    recon?.destroy();
    [lossChart, lrChart, rateChart, accuracyChart].forEach((c) => c.destroy());
  };
}
