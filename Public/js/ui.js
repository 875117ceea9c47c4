// Modal confirmation, transient notices and job actions shared by the jobs table and job page.

import { api } from './api.js';
import { h, errorText, shortId } from './dom.js';

/** Resolves true when the user confirms. Uses the page's <dialog id="confirm-dialog">. */
export function confirmAction(message, actionLabel, danger = false) {
  const dialog = document.getElementById('confirm-dialog');
  document.getElementById('confirm-message').textContent = message;
  const ok = document.getElementById('confirm-ok');
  ok.textContent = actionLabel;
  ok.classList.toggle('danger', danger);
  dialog.returnValue = '';
  dialog.showModal();
  document.getElementById('confirm-cancel').focus();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
  });
}

/** A short message in the corner; errors stay until dismissed. */
export function notify(text, kind = 'info') {
  const area = document.getElementById('notices');
  const close = h('button', { type: 'button', class: 'link', 'aria-label': 'Dismiss' }, '×');
  const note = h('div', { class: `notice notice-${kind}`, role: kind === 'error' ? 'alert' : 'status' }, h('span', {}, text), close);
  close.addEventListener('click', () => note.remove());
  area.append(note);
  if (kind !== 'error') setTimeout(() => note.remove(), 4000);
}

// What each lifecycle action means to the user. Which ones a job offers is the server's word:
// every job resource lists its `actions`.
export const ACTIONS = {
  pause: { label: 'Pause', ask: 'Pause job %? It stops after the current step and can be resumed from its last checkpoint.' },
  resume: { label: 'Resume', ask: 'Resume job %? It is queued again and continues from its last checkpoint.' },
  cancel: { label: 'Cancel', ask: 'Cancel job %? Training stops for good; checkpoints already written stay.', danger: true },
  delete: { label: 'Delete', ask: 'Delete job %? Its metrics and checkpoints are removed. This cannot be undone.', danger: true },
};

/** Asks, performs the action and returns the updated job (null after delete, undefined when declined or failed). */
export async function runAction(job, action) {
  const a = ACTIONS[action];
  if (!(await confirmAction(a.ask.replace('%', shortId(job.id)), a.label, a.danger))) return undefined;
  try {
    const result = action === 'delete' ? await api.deleteJob(job.id) : await api.act(job.id, action);
    notify(`${a.label}: job ${shortId(job.id)} ${action === 'delete' ? 'deleted' : `is ${result.state}`}`);
    return result;
  } catch (err) {
    notify(`${a.label} failed: ${errorText(err)}`, 'error');
    return undefined;
  }
}

/** The action buttons of a job; `update(job)` shows those the job resource lists. */
export function actionButtons(onDone) {
  let current = null;
  const buttons = Object.entries(ACTIONS).map(([action, a]) => {
    const b = h('button', { type: 'button', class: `small${a.danger ? ' danger-outline' : ''}`, dataset: { action } }, a.label);
    b.addEventListener('click', async () => {
      const result = await runAction(current, action);
      if (result !== undefined) onDone(action, result);
    });
    return b;
  });
  const el = h('div', { class: 'actions' }, buttons);
  return {
    el,
    update(job) {
      current = job;
      for (const b of buttons) {
        b.hidden = !(job.actions || []).includes(b.dataset.action);
        b.setAttribute('aria-label', `${ACTIONS[b.dataset.action].label} job ${shortId(job.id)}`);
      }
    },
  };
}
