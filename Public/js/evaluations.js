// Evaluation results of a job: k-NN and linear-probe accuracy of the encoder against the
// raw-pixel and random-encoder baselines, and a button to run a new evaluation. A fine-tuning
// job's own held-out scores (result kind "finetune") are the job page's accuracy chart, not
// tables here: the panel hands every evaluation to `onLoad` and lists the probe results.

import { api } from './api.js';
import { h, fill, statusLine, errorText, timeAgo } from './dom.js';

const PROBES = { knn: 'k-NN', linear_probe: 'Linear probe' };
const pct = (v) => (typeof v === 'number' ? `${(v * 100).toFixed(1)} %` : '—');

function bar(value, kind) {
  const width = typeof value === 'number' ? Math.max(0, Math.min(1, value)) * 100 : 0;
  return h('span', { class: 'acc' }, h('span', { class: 'acc-track' }, h('span', { class: `acc-bar acc-${kind}`, style: `width:${width}%` })),
    h('span', { class: 'acc-text' }, pct(value)));
}

function evaluationTable(evaluation) {
  const rows = Object.entries(evaluation.result || {})
    .filter(([, v]) => v && typeof v === 'object' && 'encoder' in v)
    .map(([probe, r]) => {
      const delta = typeof r.encoder === 'number' && typeof r.raw_pixels === 'number' ? r.encoder - r.raw_pixels : null;
      return h('tr', {},
        h('th', { scope: 'row' }, PROBES[probe] || probe),
        h('td', {}, bar(r.encoder, 'encoder')),
        h('td', {}, bar(r.raw_pixels, 'raw')),
        h('td', {}, bar(r.random_encoder, 'random')),
        h('td', { class: `num ${delta === null ? '' : delta >= 0 ? 'better' : 'worse'}` },
          delta === null ? '—' : `${delta >= 0 ? '+' : '−'}${(Math.abs(delta) * 100).toFixed(1)} pt`));
    });
  const r = evaluation.result || {};
  const o = r.options || {};
  const facts = [r.train_count != null ? `${r.train_count} train / ${r.test_count} test images` : null,
    r.classes != null ? `${r.classes} classes` : null, r.feature_dim != null ? `${r.feature_dim}-d features` : null,
    o.k != null ? `k = ${o.k}` : null, o.probe_epochs != null ? `probe ${o.probe_epochs} epochs` : null].filter(Boolean);
  return h('table', { class: 'evaluation' },
    h('caption', {}, `${evaluation.dataset} at step ${evaluation.step ?? '?'} · `, timeAgo(evaluation.created_at),
      facts.length ? h('span', { class: 'hint caption-facts' }, facts.join(' · ')) : null),
    h('thead', {}, h('tr', {}, ['Probe', 'Encoder', 'Raw pixels', 'Random encoder', 'Encoder vs raw pixels'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, rows));
}

const isProbe = (evaluation) => !(evaluation.result && evaluation.result.kind === 'finetune');

/** jobId, {onLoad(evaluations)} → {el, refresh()} */
export function evaluationsPanel(jobId, { onLoad } = {}) {
  const list = h('div', { class: 'evaluations' });
  const status = h('div', { 'aria-live': 'polite' });
  const datasetSelect = h('select', { id: 'eval-dataset' });
  const run = h('button', { type: 'button', id: 'eval-run' }, 'Evaluate');
  const el = h('section', { class: 'card', id: 'evaluations', 'aria-labelledby': 'eval-title' },
    h('div', { class: 'card-head' }, h('h2', { id: 'eval-title' }, 'Evaluation'),
      h('div', { class: 'inline-controls' }, h('label', { for: 'eval-dataset' }, 'Labelled dataset'), datasetSelect, run)),
    h('p', { class: 'hint' }, 'Accuracy of frozen encoder features against raw pixels and a randomly initialised encoder of the same shape.'),
    status, list);

  api.datasets().then((doc) => {
    const labelled = doc.datasets.filter((d) => Array.isArray(d.classes) && d.classes.length > 1);
    datasetSelect.replaceChildren(...labelled.map((d) => h('option', { value: d.id }, d.name || d.id)));
    if (!labelled.length) { run.disabled = true; datasetSelect.disabled = true; }
  }).catch(() => {});

  async function refresh() {
    try {
      const doc = await api.evaluations(jobId);
      const all = doc.evaluations || [];
      const evaluations = all.filter(isProbe).sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
      const none = all.length > evaluations.length ? 'No probe evaluation yet; the fine-tuning scores are in the accuracy chart above.' : 'No evaluation yet.';
      fill(list, evaluations.length ? evaluations.map(evaluationTable) : h('p', { class: 'muted' }, none));
      if (onLoad) onLoad(all);
    } catch (err) {
      fill(list, statusLine('error', `Could not load evaluations: ${errorText(err)}`));
    }
  }

  run.addEventListener('click', async () => {
    run.disabled = true;
    fill(status, statusLine('info', `Evaluating on ${datasetSelect.value}… (features of every image, then the probes)`));
    try {
      await api.evaluate(jobId, datasetSelect.value);
      fill(status);
      await refresh();
    } catch (err) {
      fill(status, statusLine('error', `Evaluation failed: ${errorText(err)}`));
    } finally {
      run.disabled = false;
    }
  });

  return { el, refresh };
}
