// Reconstruction panel: drop or pick an image (or a sample photo), choose mask ratio, seed and
// checkpoint, and show the server's strip: original · masked · reconstruction · + visible.

import { api } from './api.js';
import { h, fill, statusLine, errorText, bytes, num } from './dom.js';

const PARTS = ['original', 'masked', 'reconstruction', 'reconstruction + visible'];

function pngBlob(base64) {
  const text = atob(base64);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return new Blob([bytes], { type: 'image/png' });
}

/** PNG and JPEG go as they are; anything else the browser can decode is re-encoded as PNG. */
async function asPNGorJPEG(blob) {
  if (blob.type === 'image/png' || blob.type === 'image/jpeg') return blob;
  const bitmap = await createImageBitmap(blob);
  const canvas = document.createElement('canvas');
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  canvas.getContext('2d').drawImage(bitmap, 0, 0);
  return new Promise((resolve, reject) => canvas.toBlob((b) => (b ? resolve(b) : reject(new Error('could not encode the image'))), 'image/png'));
}

/**
 * jobId, defaultMaskRatio → {el, setCheckpoints(list), destroy()}. Object URLs are revoked
 * when replaced and on destroy.
 */
export function reconstructionPanel(jobId, defaultMaskRatio = 0.75) {
  let image = null; // {blob, name}
  let urls = { preview: null, strip: null };
  let busy = false;
  let checkpoints = [];
  let fixedRatio = null; // a method that always masks one ratio (UM-MAE) takes no mask_ratio

  const fileInput = h('input', { type: 'file', id: 'recon-file', accept: 'image/png,image/jpeg,image/*', class: 'visually-hidden' });
  const drop = h('label', { for: 'recon-file', class: 'dropzone', id: 'recon-drop', tabindex: 0 },
    h('strong', {}, 'Drop an image here'), h('span', {}, ' or press to choose a PNG or JPEG'));
  const preview = h('img', { class: 'recon-preview', alt: '', hidden: true });
  const imageName = h('span', { class: 'muted', id: 'recon-image-name' }, 'No image chosen');
  // The photos the server ships (GET /v1/samples), with their subject and licence as tooltips.
  const samples = h('div', { class: 'samples', role: 'group', 'aria-label': 'Sample photos' });
  api.samples().then((doc) => {
    samples.replaceChildren(...(doc.samples || []).map((s) => {
      const b = h('button', { type: 'button', class: 'sample', title: `${s.subject} (${s.width}×${s.height}; ${s.licence})`,
        'aria-label': `Use sample photo ${s.name}`, dataset: { sample: s.name } },
      h('img', { src: s.url, alt: '', loading: 'lazy', width: 56, height: 56 }));
      b.addEventListener('click', () => useSample(s.name, s.url));
      return b;
    }));
  }).catch((err) => fill(samples, h('span', { class: 'muted' }, `No sample photos: ${errorText(err)}`)));
  const ratio = h('input', { type: 'range', id: 'recon-ratio', min: 0.05, max: 0.95, step: 0.05, value: String(defaultMaskRatio) });
  const ratioOut = h('output', { for: 'recon-ratio', id: 'recon-ratio-out' }, Number(defaultMaskRatio).toFixed(2));
  const seed = h('input', { type: 'number', id: 'recon-seed', min: 0, step: 1, value: '0', class: 'short' });
  const ckpt = h('select', { id: 'recon-checkpoint' }, h('option', { value: '' }, 'latest'));
  const go = h('button', { type: 'button', class: 'primary', id: 'recon-run', disabled: true }, 'Reconstruct');
  const status = h('div', { class: 'recon-status', 'aria-live': 'polite' });
  const strip = h('img', { id: 'recon-strip', class: 'recon-strip', alt: 'Reconstruction strip: original, masked, reconstruction, reconstruction with visible patches', hidden: true });
  const captions = h('div', { class: 'strip-captions', hidden: true }, PARTS.map((p) => h('span', {}, p)));
  const download = h('a', { class: 'button small', download: `reconstruction-${jobId}.png`, hidden: true }, 'Download PNG');

  const el = h('section', { class: 'card', id: 'reconstruction', 'aria-labelledby': 'recon-title' },
    h('h2', { id: 'recon-title' }, 'Reconstruction'),
    h('div', { class: 'recon-grid' },
      h('div', { class: 'recon-input' },
        fileInput, drop, samples,
        h('div', { class: 'recon-chosen' }, preview, imageName)),
      h('div', { class: 'recon-controls' },
        h('label', { for: 'recon-ratio' }, 'Mask ratio ', ratioOut), ratio,
        h('label', { for: 'recon-seed' }, 'Seed'), seed,
        h('label', { for: 'recon-checkpoint' }, 'Checkpoint'), ckpt,
        h('div', { class: 'form-actions' }, go, download))),
    status,
    h('figure', { class: 'strip' }, strip, captions));

  function setObjectURL(key, blob) {
    if (urls[key]) URL.revokeObjectURL(urls[key]);
    urls[key] = blob ? URL.createObjectURL(blob) : null;
    return urls[key];
  }

  async function choose(blob, name) {
    try {
      image = { blob: await asPNGorJPEG(blob), name };
    } catch (err) {
      fill(status, statusLine('error', `That file is not an image this browser can read (${errorText(err)}).`));
      return;
    }
    preview.src = setObjectURL('preview', image.blob);
    preview.hidden = false;
    imageName.textContent = `${name} · ${bytes(image.blob.size)}`;
    go.disabled = false;
    run();
  }

  async function useSample(name, url) {
    try {
      const res = await fetch(url);
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      choose(await res.blob(), name);
    } catch (err) {
      fill(status, statusLine('error', `Could not load sample ${name}: ${errorText(err)}`));
    }
  }

  async function run() {
    if (!image || busy) return;
    busy = true;
    go.disabled = true;
    fill(status, statusLine('info', 'Reconstructing…'));
    try {
      // JSON carries the strip with the checkpoint step and the masked-patch error.
      const query = { mask_ratio: fixedRatio === null ? ratio.value : undefined, seed: seed.value || 0, step: ckpt.value, format: 'json' };
      const r = await api.reconstruct(jobId, image.blob, query);
      const src = setObjectURL('strip', pngBlob(r.png_base64));
      strip.src = src;
      download.href = src;
      strip.hidden = false;
      captions.hidden = false;
      download.hidden = false;
      const facts = [image.name, `checkpoint at step ${r.step ?? ckpt.value ?? '?'}`, `mask ratio ${num(r.mask_ratio ?? Number(ratio.value), 3)}`,
        `seed ${r.seed ?? (seed.value || 0)}`, r.masked_mse != null ? `MSE on masked pixels ${num(r.masked_mse)}` : null];
      fill(status, statusLine('ok', `${facts.filter(Boolean).join(' · ')}${r.note ? ` — ${r.note}` : ''}`));
    } catch (err) {
      const hint = !checkpoints.length ? ' The job has no checkpoint yet; one is written every checkpoint_every steps and at the end.' : '';
      fill(status, statusLine('error', `Reconstruction failed: ${errorText(err)}${hint}`));
    } finally {
      busy = false;
      go.disabled = !image;
    }
  }

  fileInput.addEventListener('change', () => { if (fileInput.files[0]) choose(fileInput.files[0], fileInput.files[0].name); });
  drop.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); fileInput.click(); } });
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    const file = e.dataTransfer.files[0];
    if (file) choose(file, file.name);
  });
  ratio.addEventListener('input', () => { ratioOut.textContent = Number(ratio.value).toFixed(2); });
  ratio.addEventListener('change', run);
  seed.addEventListener('change', run);
  ckpt.addEventListener('change', run);
  go.addEventListener('click', run);

  return {
    el,
    setCheckpoints(list) {
      checkpoints = list;
      const keep = ckpt.value;
      ckpt.replaceChildren(h('option', { value: '' }, 'latest'),
        ...[...list].sort((a, b) => b.step - a.step).map((c) => h('option', { value: String(c.step) }, `step ${c.step}${c.final ? ' (final)' : ''}`)));
      if (list.some((c) => String(c.step) === keep)) ckpt.value = keep;
    },
    /** The job's method masks `value` whatever is asked: show it, and do not send a ratio. */
    fixRatio(value) {
      fixedRatio = value;
      ratio.value = String(value);
      ratio.disabled = true;
      ratio.title = `This method always masks ${value}`;
      ratioOut.textContent = `${Number(value).toFixed(2)} (fixed by the method)`;
    },
    destroy() { setObjectURL('preview', null); setObjectURL('strip', null); },
  };
}
