// Jobs: a live table with filters, lifecycle actions, pagination and picking jobs to compare.

import { api } from './api.js';
import { h, fill, STATES, stateBadge, progressCell, num, rate, timeAgo, shortId, statusLine, errorText, replaceQuery } from './dom.js';
import { actionButtons } from './ui.js';

const PAGE_SIZE = 20;
const REFRESH_MS = 2000;

export function mount(main, { query }) {
  const filters = { state: query.get('state') || '', method: query.get('method') || '' };
  // Tokens of the pages before the current one; the first page has none.
  const pageTokens = [];
  let pageToken = null;
  let nextToken = null;
  let timer = null;
  let alive = true;
  const rows = new Map();
  const selected = new Set();

  const stateSelect = h('select', { id: 'filter-state' }, h('option', { value: '' }, 'any state'),
    STATES.map((s) => h('option', { value: s, selected: s === filters.state }, s)));
  const methodSelect = h('select', { id: 'filter-method' }, h('option', { value: '' }, 'any method'));
  const status = h('div', { class: 'table-status' });
  const tbody = h('tbody');
  const prev = h('button', { type: 'button', class: 'small', disabled: true }, '← Newer');
  const next = h('button', { type: 'button', class: 'small', disabled: true }, 'Older →');
  const pageLabel = h('span', { class: 'muted' });
  const compareLink = h('a', { class: 'button small', href: '#/compare', 'aria-disabled': 'true' }, 'Compare selected');

  fill(main,
    h('div', { class: 'page-head' },
      h('h1', {}, 'Jobs'),
      h('a', { class: 'button primary', href: '#/new' }, '+ New job')),
    h('div', { class: 'toolbar', role: 'search' },
      h('label', { for: 'filter-state' }, 'State'), stateSelect,
      h('label', { for: 'filter-method' }, 'Method'), methodSelect,
      h('span', { class: 'spacer' }),
      compareLink),
    status,
    h('div', { class: 'table-wrap' },
      h('table', { class: 'jobs', id: 'jobs-table' },
        h('caption', { class: 'visually-hidden' }, 'Training jobs, newest first'),
        h('thead', {}, h('tr', {},
          h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Select for comparison')),
          ['Job', 'Method', 'Preset', 'Dataset', 'State', 'Progress', 'Loss', 'Images/s', 'Created', 'Actions']
            .map((t) => h('th', { scope: 'col', class: `col-${t.toLowerCase().replace('/', '')}` }, t)))),
        tbody)),
    h('div', { class: 'pager' }, prev, pageLabel, next));

  api.methods().then((doc) => {
    for (const m of doc.methods) methodSelect.append(h('option', { value: m.name, selected: m.name === filters.method }, m.name));
  }).catch(() => {});

  function updateCompareLink() {
    const ids = [...selected];
    compareLink.href = `#/compare?ids=${ids.map(encodeURIComponent).join(',')}`;
    compareLink.setAttribute('aria-disabled', ids.length ? 'false' : 'true');
    compareLink.textContent = ids.length ? `Compare selected (${ids.length})` : 'Compare selected';
  }

  function makeRow(job) {
    const check = h('input', { type: 'checkbox', 'aria-label': `Select job ${shortId(job.id)} for comparison`, checked: selected.has(job.id) });
    check.addEventListener('change', () => {
      if (check.checked) selected.add(job.id); else selected.delete(job.id);
      updateCompareLink();
    });
    const cells = {
      method: h('td'), preset: h('td', { class: 'col-preset' }), dataset: h('td', { class: 'col-dataset' }), state: h('td'),
      progress: h('td', { class: 'col-progress' }), loss: h('td', { class: 'num', 'data-label': 'loss' }), rate: h('td', { class: 'num col-imagess', 'data-label': 'images/s' }),
      created: h('td', { class: 'col-created' }),
    };
    const actions = actionButtons(() => refresh());
    const tr = h('tr', { dataset: { id: job.id } },
      h('td', {}, check),
      h('td', {}, h('a', { href: `#/jobs/${encodeURIComponent(job.id)}`, class: 'mono', title: job.id }, shortId(job.id))),
      cells.method, cells.preset, cells.dataset, cells.state, cells.progress, cells.loss, cells.rate, cells.created,
      h('td', {}, actions.el));
    return {
      tr,
      update(j) {
        fill(cells.method, j.method);
        fill(cells.preset, h('span', { class: 'truncate', title: j.preset }, j.preset));
        fill(cells.dataset, j.dataset);
        fill(cells.state, stateBadge(j.state));
        fill(cells.progress, progressCell(j));
        fill(cells.loss, num(j.loss));
        fill(cells.rate, rate(j.images_per_s));
        fill(cells.created, timeAgo(j.created_at));
        actions.update(j);
      },
    };
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const doc = await api.jobs({ state: filters.state, method: filters.method, limit: PAGE_SIZE, page_token: pageToken });
      if (!alive) return;
      nextToken = doc.next_page_token || null;
      const ids = new Set(doc.jobs.map((j) => j.id));
      for (const [id, row] of rows) if (!ids.has(id)) { row.tr.remove(); rows.delete(id); }
      doc.jobs.forEach((job, index) => {
        let row = rows.get(job.id);
        if (!row) { row = makeRow(job); rows.set(job.id, row); }
        row.update(job);
        if (tbody.children[index] !== row.tr) tbody.insertBefore(row.tr, tbody.children[index] || null);
      });
      fill(status, doc.jobs.length ? null : statusLine('info',
        filters.state || filters.method || pageToken ? 'No jobs match these filters.' : 'No jobs yet: start one with “New job”.'));
      prev.disabled = pageTokens.length === 0;
      next.disabled = !nextToken;
      pageLabel.textContent = `Page ${pageTokens.length + 1}`;
    } catch (err) {
      if (!alive) return;
      fill(status, statusLine('error', `Could not load jobs: ${errorText(err)}`));
    }
    if (alive) timer = setTimeout(refresh, REFRESH_MS);
  }

  function resetPaging() {
    pageTokens.length = 0;
    pageToken = null;
    for (const row of rows.values()) row.tr.remove();
    rows.clear();
  }

  function onFilter() {
    filters.state = stateSelect.value;
    filters.method = methodSelect.value;
    replaceQuery(new URLSearchParams(Object.entries(filters).filter(([, v]) => v)));
    resetPaging();
    refresh();
  }
  stateSelect.addEventListener('change', onFilter);
  methodSelect.addEventListener('change', onFilter);
  next.addEventListener('click', () => { if (!nextToken) return; pageTokens.push(pageToken); pageToken = nextToken; refresh(); });
  prev.addEventListener('click', () => { if (!pageTokens.length) return; pageToken = pageTokens.pop(); refresh(); });
  compareLink.addEventListener('click', (e) => { if (!selected.size) e.preventDefault(); });

  refresh();
  return () => { alive = false; clearTimeout(timer); };
}
