// Hash router, navigation, the access-token dialog and the unreachable-server banner.

import { api, getToken, setToken, onTokenNeeded, onConnectionChange, downloadWithToken } from './api.js';
import { parseHash } from './dom.js';
import * as jobs from './jobs.js';
import * as newJob from './newjob.js';
import * as jobPage from './job.js';
import * as compare from './compare.js';

const main = document.getElementById('main');
let unmount = null;

function route() {
  const { parts, query } = parseHash(location.hash);
  let view = jobs;
  let params = { query };
  let nav = 'jobs';
  if (parts[0] === 'jobs' && parts[1]) { view = jobPage; params = { id: parts[1], query }; nav = ''; }
  else if (parts[0] === 'new') { view = newJob; nav = 'new'; }
  else if (parts[0] === 'compare') { view = compare; nav = 'compare'; }
  for (const a of document.querySelectorAll('nav a')) {
    if (a.dataset.nav === nav) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  if (unmount) unmount();
  main.replaceChildren();
  unmount = view.mount(main, params) || null;
}

// ---- access token -------------------------------------------------------------------------

const tokenDialog = document.getElementById('token-dialog');
const tokenInput = document.getElementById('token-input');
const tokenBanner = document.getElementById('token-banner');

function openTokenDialog(reason) {
  document.getElementById('token-reason').textContent = reason || 'This server requires a bearer token for changes.';
  document.getElementById('token-forget').hidden = !getToken();
  tokenInput.value = getToken();
  tokenDialog.returnValue = '';
  tokenDialog.showModal();
  tokenInput.focus();
  return new Promise((resolve) => {
    tokenDialog.addEventListener('close', () => {
      const choice = tokenDialog.returnValue;
      if (choice === 'ok' && tokenInput.value.trim()) {
        setToken(tokenInput.value.trim());
        tokenBanner.hidden = true;
        resolve(getToken());
      } else {
        if (choice === 'forget') setToken('');
        resolve(null);
      }
      updateTokenButton();
    }, { once: true });
  });
}

// Enter in the field saves (implicit submission would pick the first button, "Forget").
tokenInput.addEventListener('keydown', (e) => {
  if (e.key === 'Enter') { e.preventDefault(); tokenDialog.close('ok'); }
});

function updateTokenButton() {
  const button = document.getElementById('token-button');
  button.textContent = getToken() ? 'Token ✓' : 'Token';
  button.setAttribute('aria-label', getToken() ? 'Access token set: change or forget it' : 'Set an access token');
}

onTokenNeeded(async (reason) => {
  const said = String(reason || '').trim();
  const sentence = !said ? '' : /[.!?]$/.test(said) ? `${said} ` : `${said}. `;
  const token = await openTokenDialog(`${sentence.charAt(0).toUpperCase()}${sentence.slice(1)}Enter the server's access token to continue.`);
  tokenBanner.hidden = !!token;
  return token;
});

document.getElementById('token-button').addEventListener('click', () => openTokenDialog('Set the bearer token this server asks for.'));
document.getElementById('token-banner-button').addEventListener('click', () => openTokenDialog('Enter the server\'s access token.'));

// Links to guarded files (checkpoints, metrics CSV) cannot carry the token: with one set,
// they are fetched with the Authorization header instead.
document.addEventListener('click', (e) => {
  const a = e.target instanceof Element ? e.target.closest('a[download][href^="/v1/"]') : null;
  if (!a || !getToken()) return;
  e.preventDefault();
  downloadWithToken(a.getAttribute('href'), a.getAttribute('download')).catch(() => {});
});

// ---- connectivity -----------------------------------------------------------------------

const offline = document.getElementById('offline-banner');
let healthTimer = null;

onConnectionChange((ok) => {
  offline.hidden = ok;
  clearInterval(healthTimer);
  if (!ok) healthTimer = setInterval(() => api.health().catch(() => {}), 3000);
});

// ---- start ---------------------------------------------------------------------------------

document.getElementById('skip-link').addEventListener('click', (e) => { e.preventDefault(); main.focus(); });
window.addEventListener('hashchange', route);
updateTokenButton();
route();
