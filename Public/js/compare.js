// Compare: pick several jobs, overlay their loss by step and by wall time, and tabulate
// throughput, peak memory and final loss side by side; for the jobs with evaluations, what
// their encoders are worth (k-NN and linear probe against the baselines, fine-tuned top-1).

import { api } from './api.js';
import { h, fill, stateBadge, num, rate, duration, shortId, statusLine, errorText, isTerminal, replaceQuery, median } from './dom.js';
import { LineChart, PALETTE } from './chart.js';

const POINTS = 2000;
const REFRESH_MS = 3000;

export function mount(main, { query }) {
  let alive = true;
  let timer = null;
  const selected = (query.get('ids') || '').split(',').filter(Boolean);
  const data = new Map(); // id → {job, metrics}
  let candidates = [];
  let nextToken = null;

  const picker = h('div', { class: 'picker', role: 'group', 'aria-labelledby': 'pick-title' });
  const more = h('button', { type: 'button', class: 'small', hidden: true }, 'Load older jobs');
  const methodFilter = h('select', { id: 'compare-method' }, h('option', { value: '' }, 'any method'));
  const logToggle = h('input', { type: 'checkbox', id: 'compare-log' });
  const smoothing = h('input', { type: 'range', id: 'compare-smoothing', min: 0, max: 0.99, step: 0.01, value: '0.6' });
  const smoothingOut = h('output', { for: 'compare-smoothing' }, '0.60');
  const status = h('div');
  const table = h('div', { class: 'table-wrap' });
  const quality = h('div', { class: 'table-wrap' });
  const lossTooltip = (label, fx) => (x, hits) => [`${label} ${fx(x)}`, ...hits.map((hit) =>
    `${hit.series.name}: ${num(hit.smoothed ?? hit.point.y, 4)} at step ${hit.point.step}`)];
  const byStep = new LineChart({ label: 'Loss by step for the selected jobs', xLabel: 'step', height: 280, smoothing: 0.6, legend: true,
    formatX: (x) => String(Math.round(x)), emptyText: 'Pick jobs to compare', tooltip: lossTooltip('step', (x) => String(Math.round(x))) });
  const byTime = new LineChart({ label: 'Loss by wall time for the selected jobs', xLabel: 'wall time', height: 280, smoothing: 0.6, legend: true,
    formatX: (x) => duration(x), emptyText: 'Pick jobs to compare', tooltip: lossTooltip('at', (x) => duration(x)) });
  byStep.el.id = 'compare-by-step';
  byTime.el.id = 'compare-by-time';

  fill(main,
    h('div', { class: 'page-head' }, h('h1', {}, 'Compare jobs')),
    h('div', { class: 'compare-grid' },
      h('section', { class: 'card', 'aria-labelledby': 'pick-title' },
        h('div', { class: 'card-head' }, h('h2', { id: 'pick-title' }, 'Jobs'),
          h('div', { class: 'inline-controls' }, h('label', { for: 'compare-method' }, 'Method'), methodFilter)),
        picker, more),
      h('div', {},
        h('section', { class: 'card', 'aria-labelledby': 'cmp-step-title' },
          h('div', { class: 'card-head' }, h('h2', { id: 'cmp-step-title' }, 'Loss by step'),
            h('div', { class: 'inline-controls' },
              h('label', { for: 'compare-log' }, logToggle, ' Log scale'),
              h('label', { for: 'compare-smoothing' }, 'Smoothing'), smoothing, smoothingOut)),
          byStep.el),
        h('section', { class: 'card', 'aria-labelledby': 'cmp-time-title' }, h('h2', { id: 'cmp-time-title' }, 'Loss by wall time'), byTime.el))),
    status,
    h('section', { class: 'card', 'aria-labelledby': 'cmp-table-title' }, h('h2', { id: 'cmp-table-title' }, 'Efficiency'), table),
    h('section', { class: 'card', 'aria-labelledby': 'cmp-quality-title' }, h('h2', { id: 'cmp-quality-title' }, 'Quality'),
      h('p', { class: 'hint' }, 'The newest probe evaluation of each job (frozen features against raw pixels and a random encoder of the same shape) and a fine-tuning job\'s last held-out score.'),
      quality));

  const colour = (id) => PALETTE[selected.indexOf(id) % PALETTE.length];
  const label = (job) => `${shortId(job.id)} ${job.method}`;

  function renderPicker() {
    // Selected jobs older than the listed pages still get a row.
    const listed = new Set(candidates.map((j) => j.id));
    const extra = selected.filter((id) => !listed.has(id) && data.has(id)).map((id) => data.get(id).job);
    const shown = extra.concat(candidates).filter((j) => !methodFilter.value || j.method === methodFilter.value);
    fill(picker, shown.length ? shown.map((j) => {
      const box = h('input', { type: 'checkbox', id: `pick-${j.id}`, checked: selected.includes(j.id), dataset: { id: j.id } });
      box.addEventListener('change', () => toggle(j.id, box.checked));
      const swatch = selected.includes(j.id) ? h('span', { class: 'swatch', style: `background:${colour(j.id)}` }) : null;
      return h('div', { class: 'pick' }, box, h('label', { for: `pick-${j.id}` }, swatch,
        h('span', { class: 'mono' }, shortId(j.id)), ` ${j.method} · ${j.preset} `, stateBadge(j.state)));
    }) : h('p', { class: 'muted' }, 'No jobs yet.'));
  }

  function toggle(id, on) {
    const i = selected.indexOf(id);
    if (on && i < 0) selected.push(id);
    if (!on && i >= 0) { selected.splice(i, 1); data.delete(id); }
    replaceQuery(new URLSearchParams(selected.length ? { ids: selected.join(',') } : {}));
    renderPicker();
    load();
  }

  function render() {
    const present = selected.filter((id) => data.has(id));
    const seriesBy = (x) => present.map((id) => {
      const { job, metrics } = data.get(id);
      return { name: label(job), color: colour(id), points: metrics.filter((m) => m[x] != null).map((m) => ({ x: m[x], y: m.loss ?? NaN, step: m.step })) };
    });
    byStep.setSeries(seriesBy('step'));
    byTime.setSeries(seriesBy('wall_time_s'));
    fill(table, present.length ? h('table', { class: 'compare', id: 'compare-table' },
      h('thead', {}, h('tr', {}, ['Job', 'Method', 'Preset', 'State', 'Steps', 'Images/s (median)', 'Peak memory', 'Final loss', 'Best loss', 'Wall time']
        .map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, present.map((id) => {
        const { job, metrics } = data.get(id);
        const last = metrics[metrics.length - 1];
        const losses = metrics.map((m) => m.loss).filter(Number.isFinite);
        return h('tr', {},
          h('td', {}, h('span', { class: 'swatch', style: `background:${colour(id)}` }), h('a', { href: `#/jobs/${encodeURIComponent(id)}`, class: 'mono' }, shortId(id))),
          h('td', {}, job.method), h('td', { class: 'col-preset' }, h('span', { class: 'truncate', title: job.preset }, job.preset)), h('td', {}, stateBadge(job.state)),
          h('td', { class: 'num' }, `${job.step ?? 0} / ${job.total_steps ?? '?'}`),
          h('td', { class: 'num' }, rate(median(metrics.map((m) => m.images_per_s)) ?? job.images_per_s)),
          h('td', { class: 'num' }, job.peak_rss_mb != null ? `${Math.round(job.peak_rss_mb)} MB` : '—'),
          h('td', { class: 'num' }, num(last ? last.loss : job.loss)),
          h('td', { class: 'num' }, losses.length ? num(Math.min(...losses)) : '—'),
          h('td', { class: 'num' }, duration(last ? last.wall_time_s : null)));
      }))) : h('p', { class: 'muted' }, 'Select two or more jobs on the left.'));
    renderQuality(present);
  }

  function renderQuality(present) {
    const pct = (v) => h('td', { class: 'num' }, typeof v === 'number' ? `${(v * 100).toFixed(1)} %` : '—');
    const rows = present.map((id) => {
      const { job, evaluations } = data.get(id);
      const probes = evaluations.filter((e) => e.result && (e.result.knn || e.result.linear_probe));
      const probe = probes.sort((a, b) => String(a.created_at).localeCompare(String(b.created_at))).pop();
      const tuned = evaluations.filter((e) => e.result && e.result.kind === 'finetune' && typeof e.result.top1 === 'number')
        .sort((a, b) => a.step - b.step).pop();
      return { id, job, probe, tuned };
    }).filter((r) => r.probe || r.tuned);
    const missing = present.length - rows.length;
    const note = missing ? h('p', { class: 'muted', id: 'compare-quality-missing' },
      `${missing} of the selected jobs ${missing === 1 ? 'has' : 'have'} no evaluation yet: run one from the job's page, or fine-tune it.`) : null;
    const scored = ({ probe, tuned }) => [probe ? `${probe.dataset} at step ${probe.step ?? '?'}` : null,
      tuned ? `held out at step ${tuned.step}` : null].filter(Boolean).join(' · ');
    const table = rows.length ? h('table', { class: 'compare', id: 'compare-quality' },
      h('thead', {}, h('tr', {}, ['Job', 'Method', 'Task', 'k-NN', 'k-NN raw pixels', 'k-NN random', 'Probe', 'Probe raw pixels', 'Probe random',
        'Fine-tuned top-1', 'Starts from', 'Scored on'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows.map((r) => {
        const knn = r.probe?.result.knn || {}, lp = r.probe?.result.linear_probe || {}, init = r.job.config?.init;
        return h('tr', { dataset: { id: r.id } },
          h('td', { class: 'col-job' }, h('span', { class: 'swatch', style: `background:${colour(r.id)}` }), h('a', { href: `#/jobs/${encodeURIComponent(r.id)}`, class: 'mono' }, shortId(r.id))),
          h('td', {}, r.job.method), h('td', {}, r.job.task ?? 'pretrain'),
          pct(knn.encoder), pct(knn.raw_pixels), pct(knn.random_encoder), pct(lp.encoder), pct(lp.raw_pixels), pct(lp.random_encoder),
          h('td', { class: 'num', dataset: { col: 'top1' } }, r.tuned ? `${(r.tuned.result.top1 * 100).toFixed(1)} %` : '—'),
          h('td', {}, init?.job ? h('a', { href: `#/jobs/${encodeURIComponent(init.job)}`, class: 'mono' }, `${shortId(init.job)} @ ${init.step}`)
            : init?.weights ? `weights ${init.weights}` : r.job.task === 'finetune' ? 'scratch' : '—'),
          h('td', { class: 'hint' }, scored(r)));
      }))) : null;
    fill(quality, ...(present.length ? [table, note] : [h('p', { class: 'muted' }, 'Select jobs on the left.')]));
  }

  async function load() {
    clearTimeout(timer);
    const errors = [];
    await Promise.all(selected.map(async (id) => {
      const have = data.get(id);
      if (have && isTerminal(have.job.state) && have.complete) return;
      try {
        const [job, doc, evals] = await Promise.all([api.job(id), api.metrics(id, { max_points: POINTS }), api.evaluations(id)]);
        if (selected.includes(id)) {
          data.set(id, { job, metrics: doc.metrics || [], evaluations: evals.evaluations || [], complete: isTerminal(job.state) });
        }
      } catch (err) {
        errors.push(`${shortId(id)}: ${errorText(err)}`);
      }
    }));
    if (!alive) return;
    fill(status, errors.length ? statusLine('error', `Could not load ${errors.join('; ')}`) : null);
    render();
    renderPicker();
    if (selected.some((id) => !data.get(id)?.complete)) timer = setTimeout(load, REFRESH_MS);
  }

  async function loadCandidates() {
    try {
      const doc = await api.jobs({ limit: 50, page_token: nextToken });
      candidates = candidates.concat(doc.jobs);
      nextToken = doc.next_page_token || null;
      more.hidden = !nextToken;
      renderPicker();
    } catch (err) {
      fill(picker, statusLine('error', `Could not list jobs: ${errorText(err)}`));
    }
  }

  logToggle.addEventListener('change', () => { byStep.setLogY(logToggle.checked); byTime.setLogY(logToggle.checked); });
  smoothing.addEventListener('input', () => {
    smoothingOut.textContent = Number(smoothing.value).toFixed(2);
    byStep.setSmoothing(Number(smoothing.value));
    byTime.setSmoothing(Number(smoothing.value));
  });
  methodFilter.addEventListener('change', renderPicker);
  more.addEventListener('click', loadCandidates);
  api.methods().then((doc) => { for (const m of doc.methods) methodFilter.append(h('option', { value: m.name }, m.name)); }).catch(() => {});

  loadCandidates();
  load();
  return () => { alive = false; clearTimeout(timer); byStep.destroy(); byTime.destroy(); };
}
