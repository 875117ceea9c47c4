// New job: a form rendered from the job request's JSON Schema in GET /v1/methods (method →
// preset → the fields that method reads) and the dataset list. Each field's input follows its
// type: a select for choices, a checkbox for booleans, a list for lists; its help and default
// are shown. The server validates; its field errors are shown next to their inputs.
// `?from=ID` clones a job, `&continue=1` continues its pretraining from its newest checkpoint,
// `&finetune=1` fine-tunes its encoder (task "finetune", the fields of group "finetune").

import { api, newIdempotencyKey } from './api.js';
import { h, fill, statusLine, errorText } from './dom.js';

export function mount(main, { query }) {
  let alive = true;
  fill(main, h('h1', {}, 'New job'), statusLine('info', 'Loading methods and datasets…'));
  Promise.all([api.methods(), api.datasets(), query.get('from') ? api.job(query.get('from')) : null])
    .then(([methods, datasets, from]) => {
      if (alive) render(main, methods, datasets.datasets, from, { continuing: query.get('continue') === '1', finetune: query.get('finetune') === '1' });
    })
    .catch((err) => { if (alive) fill(main, h('h1', {}, 'New job'), statusLine('error', `Could not load the form: ${errorText(err)}`)); });
  return () => { alive = false; };
}

/**
 * The settings a request may carry, from the schema: top-level ones (group "request") and the
 * overrides (group "model" or "training"), each {name, group, type, nullable, choices, help,
 * default, methods, min, max}.
 */
export function schemaFields(schema) {
  const top = schema.properties || {};
  const overrides = (top.overrides && top.overrides.properties) || {};
  const describe = (name, p, group) => {
    const types = Array.isArray(p.type) ? p.type : [p.type];
    return {
      name, group,
      type: types.find((t) => t !== 'null'),
      nullable: types.includes('null'),
      choices: p.enum ? p.enum.filter((v) => v !== null) : null,
      help: p.description || '',
      // Float32 settings come as doubles (0.10000000149011612): the default the user reads and
      // compares against is the value as it was written.
      default: typeof p.default === 'number' ? Number(p.default.toPrecision(7)) : p.default,
      methods: p['x-methods'] || null,
      min: p.minimum ?? p.exclusiveMinimum, max: p.maximum ?? p.exclusiveMaximum,
      order: p['x-order'] ?? 0,
    };
  };
  const request = Object.entries(top).filter(([n, p]) => n !== 'overrides' && ['integer', 'number'].includes(p.type))
    .map(([n, p]) => describe(n, p, 'request'));
  return [...request, ...Object.entries(overrides).map(([n, p]) => describe(n, p, p['x-group'] || 'model'))]
    .sort((a, b) => a.order - b.order);
}

function inputFor(field, id) {
  if (field.type === 'boolean') return h('input', { type: 'checkbox', id, name: field.name });
  if (field.choices) {
    return h('select', { id, name: field.name },
      field.nullable ? h('option', { value: '' }, 'none') : null,
      field.choices.map((c) => h('option', { value: c }, c)));
  }
  const mode = field.type === 'integer' || field.type === 'array' ? 'numeric' : field.type === 'number' ? 'decimal' : 'text';
  return h('input', { type: 'text', id, name: field.name, inputmode: mode, autocomplete: 'off', spellcheck: 'false' });
}

function show(value) {
  if (value === null || value === undefined) return '';
  return Array.isArray(value) ? value.join(', ') : String(value);
}

/**
 * Reads an input as the field's JSON type; throws a sentence for the user. Ranges are the
 * server's to check: it names the field and says what the field takes. A blank input is
 * undefined (the default: nothing is sent); "none" is null (no value, e.g. no clipping), as is
 * a select's "none".
 */
function parse(field, input) {
  if (field.type === 'boolean') return input.checked;
  const text = input.value.trim();
  if (field.choices) return text === '' ? null : text;
  if (text === '') return undefined;
  if (text.toLowerCase() === 'none' || text.toLowerCase() === 'null') return null;
  const number = (s) => {
    const v = Number(s);
    if (s === '' || !Number.isFinite(v)) throw new Error(`expected a number, got “${s}”`);
    return v;
  };
  if (field.type === 'array') return text.split(/[\s,]+/).filter(Boolean).map(number);
  if (field.type === 'number' || field.type === 'integer') return number(text);
  return text;
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const labelled = (d) => Array.isArray(d.classes) && d.classes.length > 1;

/** The labelled dataset a fine-tune starts with: Fashion-MNIST when installed, else synthetic. */
function pickLabelled(datasets) {
  return ['fashion-mnist', 'synthetic'].find((id) => datasets.some((d) => d.id === id)) ?? datasets[0]?.id;
}

/**
 * Fine-tuning mode: `?finetune=1` on a pretraining job, or a clone of a fine-tuning job.
 * Returns null (pretraining), or {init} with the weights it starts from (null: none).
 */
function finetuneOf(from, asked) {
  if (!from) return null;
  if (from.task === 'finetune') return { init: (from.config && from.config.init) || null };
  return asked ? { init: { job: from.id } } : null;
}

function render(main, methodsDoc, datasets, from, mode) {
  const fields = schemaFields(methodsDoc.schema || {});
  const methods = methodsDoc.methods;
  const tuning = finetuneOf(from, mode.finetune);
  const continuing = !tuning && mode.continuing;
  // Fine-tuning from weights: the method, preset and model are the source's.
  const fixedModel = !!(tuning && tuning.init);
  const offered = tuning ? datasets.filter(labelled) : datasets;
  let idempotencyKey = newIdempotencyKey();
  let controls = new Map(); // field name → {field, input, defaultValue, errorEl}

  const methodSelect = h('select', { id: 'f-method', name: 'method' }, methods.map((m) => h('option', { value: m.name }, m.name)));
  const methodHelp = h('p', { class: 'hint', id: 'f-method-help' });
  const presetSelect = h('select', { id: 'f-preset', name: 'preset', 'aria-describedby': 'f-preset-help' });
  const presetHelp = h('p', { class: 'hint', id: 'f-preset-help' });
  const datasetSelect = h('select', { id: 'f-dataset', name: 'dataset', 'aria-describedby': 'f-dataset-help' },
    offered.map((d) => h('option', { value: d.id }, `${d.name || d.id} (${d.id})`)));
  const datasetHelp = h('p', { class: 'hint', id: 'f-dataset-help' });
  const basics = h('div', { class: 'form-grid' });
  const modelFields = h('div', { class: 'form-grid' });
  const trainingFields = h('div', { class: 'form-grid' });
  const finetuneFields = h('div', { class: 'form-grid' });
  const summary = h('div', { id: 'form-errors' });
  const submit = h('button', { type: 'submit', class: 'primary', id: 'f-submit' }, 'Start training');
  const errors = new Map([['method', h('p', { class: 'field-error', id: 'err-method', hidden: true })],
    ['preset', h('p', { class: 'field-error', id: 'err-preset', hidden: true })],
    ['dataset', h('p', { class: 'field-error', id: 'err-dataset', hidden: true })]]);

  // Continued pretraining: the new job starts from the weights of `from`'s newest checkpoint.
  const initBox = from && continuing ? h('input', { type: 'checkbox', id: 'f-init', name: 'init', checked: true }) : null;
  const initField = initBox ? h('div', { class: 'field check wide' },
    h('label', { for: 'f-init' }, initBox, ' Start from the weights of job ', h('span', { class: 'mono' }, from.id),
      ' (its newest checkpoint), with this job\'s own schedule, optimizer and data'),
    h('p', { class: 'field-error', id: 'err-init', hidden: true })) : null;
  if (initBox) errors.set('init', initField.querySelector('#err-init'));
  if (tuning) errors.set('init', h('p', { class: 'field-error', id: 'err-init', hidden: true }));
  const tuningSet = tuning ? h('fieldset', { id: 'finetune-fields' }, h('legend', {}, 'Fine-tuning'),
    h('p', { class: 'hint', id: 'finetune-source' }, ...finetuneSource(tuning.init)), errors.get('init'), finetuneFields) : null;

  const form = h('form', { id: 'new-job-form', novalidate: true },
    summary,
    initField ? h('fieldset', {}, h('legend', {}, 'Continue pretraining'), initField) : null,
    h('fieldset', {}, h('legend', {}, tuning ? 'What to fine-tune' : 'What to train'),
      h('div', { class: 'form-grid' },
        h('div', { class: 'field' }, h('label', { for: 'f-method' }, 'Method'), methodSelect, methodHelp, errors.get('method')),
        h('div', { class: 'field wide' }, h('label', { for: 'f-preset' }, 'Preset'), presetSelect, presetHelp, errors.get('preset')),
        h('div', { class: 'field' }, h('label', { for: 'f-dataset' }, 'Dataset'), datasetSelect, datasetHelp, errors.get('dataset'))),
      basics),
    tuningSet,
    fixedModel ? null : h('details', { class: 'fieldset', id: 'model-fields' }, h('summary', {}, 'Model overrides'),
      h('p', { class: 'hint' }, 'Defaults come from the preset; only changed values are sent.'), modelFields),
    h('details', { class: 'fieldset', id: 'training-fields' }, h('summary', {}, 'Training overrides'),
      h('p', { class: 'hint' }, tuning
        ? 'Empty fields follow the fine-tuning recipe, scaled by batch size and total steps; only filled or changed values are sent.'
        : 'Learning rates and warm-up follow the preset recipe, scaled by batch size and total steps, unless changed here.'), trainingFields),
    h('div', { class: 'form-actions' }, submit, h('span', { class: 'hint' }, 'Submitting again after a network error reuses the same Idempotency-Key.')));

  fill(main, h('div', { class: 'page-head' }, heading(),
    from && !(tuning && from.task !== 'finetune') ? h('span', { class: 'muted' }, `${continuing ? 'continuing' : 'cloned from'} ${from.id}`) : null), form);

  function heading() {
    if (!tuning) return h('h1', {}, 'New job');
    if (!tuning.init) return h('h1', {}, 'New fine-tuning job');
    return h('h1', {}, 'Fine-tuning job ', h('span', { class: 'mono' }, tuning.init.job));
  }

  function finetuneSource(init) {
    if (!init) return ['A classifier trained from the seed\'s initialisation (no pretrained weights).'];
    return ['A classifier head on the encoder of job ', h('a', { href: `#/jobs/${encodeURIComponent(init.job)}`, class: 'mono' }, init.job),
      init.step ? ` at step ${init.step}` : ' (its newest checkpoint)',
      ', trained on a labelled dataset and scored on a held-out split. The method, preset and model are that job\'s.'];
  }

  const method = () => methods.find((m) => m.name === methodSelect.value);
  const preset = () => method().presets.find((p) => p.name === presetSelect.value);

  function fillPresets() {
    const m = method();
    methodHelp.textContent = m.summary || '';
    presetSelect.replaceChildren(...m.presets.map((p) =>
      h('option', { value: p.name }, `${p.name}${p.tiny ? ' — tiny' : ''}${p.small ? ' — small images' : ''}${p.default ? ' — paper default' : ''}`)));
    // The tiny preset first: this is a CPU server and it trains in seconds.
    const pick = m.presets.find((p) => p.tiny) || m.presets.find((p) => p.default) || m.presets[0];
    if (pick) presetSelect.value = pick.name;
  }

  function fieldControl(doc, value) {
    const name = doc.name;
    const id = `f-${name}`;
    const input = inputFor(doc, id);
    const errorEl = h('p', { class: 'field-error', id: `err-${name}`, hidden: true });
    const said = (doc.help || '').trim();
    const sentence = !said || /[.!?]$/.test(said) ? said : `${said}.`;
    const listHint = doc.type === 'array' ? ' A list, comma-separated.' : '';
    const help = h('p', { class: 'hint', id: `help-${name}` }, sentence, listHint, value !== undefined ? ` Default: ${show(value) || 'none'}.` : '');
    input.setAttribute('aria-describedby', `help-${name} err-${name}`);
    setValue(doc, input, value);
    if (doc.type !== 'boolean' && !doc.choices) input.placeholder = value === null ? 'none' : value === undefined && tuning ? 'recipe' : '';
    const wrap = h('div', { class: `field${doc.type === 'boolean' ? ' check' : ''}` },
      doc.type === 'boolean' ? h('label', { for: id }, input, ` ${name}`) : [h('label', { for: id }, name), input],
      help, errorEl);
    input.addEventListener(doc.choices || doc.type === 'boolean' ? 'change' : 'input', () => {
      wrap.classList.toggle('changed', !matchesDefault(name));
      clearError(name);
      idempotencyKey = newIdempotencyKey();
    });
    controls.set(name, { field: doc, input, defaultValue: value, errorEl, wrap });
    return wrap;
  }

  function matchesDefault(name) {
    const c = controls.get(name);
    try {
      const value = parse(c.field, c.input);
      return value === undefined || same(value, c.defaultValue ?? null);
    } catch { return false; }
  }

  /**
   * The preset's value of a field, else the method's documented default, else none. A fine-tune
   * follows its own recipe, which the presets do not list: its training fields left empty are the
   * recipe's (undefined: no default shown, nothing sent).
   */
  function defaultOf(field, p) {
    if (tuning && field.group === 'training') return field.default;
    const own = { ...(p.training || {}), ...(p.model || {}) };
    if (field.name in own) return own[field.name];
    if (field.default !== undefined) return field.default;
    return field.nullable ? null : undefined;
  }

  function fillFields() {
    const p = preset();
    const m = method();
    controls = new Map();
    const mine = fields.filter((f) => !f.methods || f.methods.includes(m.name)).map((f) => poolsOf(f, m));
    const group = (g) => mine.filter((f) => f.group === g).map((f) => fieldControl(f, defaultOf(f, p)));
    basics.replaceChildren(...group('request'));
    modelFields.replaceChildren(...(fixedModel ? [] : group('model')));
    trainingFields.replaceChildren(...group('training'));
    // Fine-tuning settings exist only in fine-tuning mode: a pretraining job is refused them.
    finetuneFields.replaceChildren(...(tuning ? group('finetune') : []));
    presetHelp.textContent = p.summary || '';
    clearAllErrors();
  }

  /** The head's pooling choices the method has (`pools` of GET /v1/methods). */
  function poolsOf(field, m) {
    if (field.name !== 'pool' || !field.choices || !Array.isArray(m.pools)) return field;
    return { ...field, choices: field.choices.filter((c) => m.pools.includes(c)) };
  }

  function describeDataset() {
    const d = datasets.find((x) => x.id === datasetSelect.value);
    if (!d) { datasetHelp.textContent = ''; return; }
    const side = d.image_size || (d.image_width && d.image_height ? `${d.image_width}×${d.image_height}` : null);
    const labelled = Array.isArray(d.classes) && d.classes.length > 0;
    datasetHelp.textContent = [d.kind, d.count != null ? `${d.count} images` : null, side ? `${side} px` : 'mixed sizes',
      labelled ? `${d.classes.length} classes` : 'unlabelled', d.licence].filter(Boolean).join(' · ');
  }

  function clearError(name) {
    const c = controls.get(name);
    const el = c ? c.errorEl : errors.get(name);
    if (!el) return;
    el.hidden = true;
    el.textContent = '';
    const input = c ? c.input : form.querySelector(`#f-${name}`);
    if (input) input.removeAttribute('aria-invalid');
  }

  function clearAllErrors() {
    for (const name of [...controls.keys(), ...errors.keys()]) clearError(name);
    summary.replaceChildren();
  }

  /** Puts each {field, reason} next to its input; returns those that match no input. */
  function showErrors(list) {
    const unmatched = [];
    let first = null;
    for (const { field, reason } of list) {
      const name = String(field || '').replace(/^overrides\./, '').replace(/^init\..+$/, 'init');
      const c = controls.get(name);
      const el = c ? c.errorEl : errors.get(name);
      if (!el) { unmatched.push(`${field || 'request'}: ${reason}`); continue; }
      el.textContent = el.textContent ? `${el.textContent} ${reason}` : reason;
      el.hidden = false;
      const input = c ? c.input : form.querySelector(`#f-${name}`);
      input.setAttribute('aria-invalid', 'true');
      const details = input.closest('details');
      if (details) details.open = true;
      first ??= input;
    }
    return { unmatched, first };
  }

  function buildRequest() {
    const body = { method: methodSelect.value, preset: presetSelect.value, dataset: datasetSelect.value };
    if (tuning) {
      body.task = 'finetune';
      // With weights to start from and no preset, the job takes the source's preset and model.
      if (tuning.init) { body.init = { ...tuning.init }; delete body.preset; }
    }
    const overrides = {};
    const problems = [];
    for (const [name, c] of controls) {
      let value;
      try { value = parse(c.field, c.input); } catch (err) { problems.push({ field: name, reason: err.message }); continue; }
      // A cleared field means "the preset's value"; only real changes are sent.
      if (value === undefined) continue;
      if (c.field.group === 'request') { body[name] = value; continue; }
      if (!same(value, c.defaultValue ?? null)) overrides[name] = value;
    }
    if (Object.keys(overrides).length) body.overrides = overrides;
    if (initBox && initBox.checked) body.init = { job: from.id };
    return { body, problems };
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearAllErrors();
    const { body, problems } = buildRequest();
    if (problems.length) {
      const { first } = showErrors(problems);
      fill(summary, statusLine('error', 'Some values cannot be read; see the marked fields.'));
      first?.focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = 'Submitting…';
    try {
      const job = await api.createJob(body, idempotencyKey);
      location.hash = `#/jobs/${encodeURIComponent(job.id)}`;
    } catch (err) {
      if (err.status === 422 && err.fieldErrors.length) {
        const { unmatched, first } = showErrors(err.fieldErrors);
        const n = err.fieldErrors.length;
        fill(summary, h('div', { class: 'status status-error', role: 'alert' },
          h('strong', {}, `The server rejected ${n === 1 ? 'one field' : `${n} fields`}.`),
          unmatched.length ? h('ul', {}, unmatched.map((u) => h('li', {}, u))) : ' See the marked fields below.'));
        (first || summary).focus?.();
        idempotencyKey = newIdempotencyKey();
      } else {
        fill(summary, statusLine('error', `Could not submit: ${errorText(err)}`));
      }
    } finally {
      submit.disabled = false;
      submit.textContent = 'Start training';
    }
  });

  methodSelect.addEventListener('change', () => { fillPresets(); fillFields(); clearError('method'); });
  presetSelect.addEventListener('change', () => { fillFields(); clearError('preset'); });
  datasetSelect.addEventListener('change', () => { describeDataset(); clearError('dataset'); idempotencyKey = newIdempotencyKey(); });

  fillPresets();
  if (from && methods.some((m) => m.name === from.method)) {
    methodSelect.value = from.method;
    fillPresets();
    if (method().presets.some((p) => p.name === from.preset)) presetSelect.value = from.preset;
    if (offered.some((d) => d.id === from.dataset) && (!tuning || from.task === 'finetune')) datasetSelect.value = from.dataset;
    else if (tuning) datasetSelect.value = pickLabelled(offered) ?? '';
  }
  if (fixedModel) {
    methodSelect.disabled = true;
    presetSelect.disabled = true;
  }
  fillFields();
  describeDataset();
  // A pretraining job's settings are no fine-tune's: fine-tuning from one starts from the recipe.
  if (from && !(tuning && from.task !== 'finetune')) prefill(from);

  /**
   * Puts a job's settings into the fields (a clone), marking those that differ from the defaults.
   * The job's request as it was sent, when the server kept it: what it left to the preset and
   * recipe stays at their defaults, so a learning rate scaled by batch or a warm-up that is a
   * share of the steps is derived again from whatever the clone changes. Else (older jobs) the
   * resolved configuration, every value as it was.
   */
  function prefill(job) {
    const r = job.request;
    const values = r ? { ...r, ...(r.overrides || {}) }
      : { ...(job.config?.training || {}), ...(job.config?.model || {}), ...(job.config?.finetune || {}) };
    for (const [name, c] of controls) {
      if (!(name in values)) continue;
      // A value set to none (no clipping) reads "none", which a blank input would not say.
      if (values[name] === null && !c.field.choices && c.field.type !== 'boolean') c.input.value = 'none';
      else setValue(c.field, c.input, values[name]);
      c.wrap.classList.toggle('changed', !matchesDefault(name));
    }
  }
}

function setValue(field, input, value) {
  if (field.type === 'boolean') input.checked = !!value;
  else input.value = show(value);
}
