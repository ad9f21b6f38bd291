// The console's entry point: the shell (navigation, who is signed in, the live indicator), the
// screens by route, and the switch between sign-in and the signed-in console.

import { api } from './api.js';
import { fill, h } from './dom.js';
import { live } from './live.js';
import { current, guard, render, route } from './router.js';
import * as admin from './screens/admin.js';
import * as deploy from './screens/deploy.js';
import * as detail from './screens/model.js';
import * as models from './screens/models.js';
import * as publications from './screens/publications.js';
import * as signin from './screens/signin.js';
import { session } from './session.js';

const NAV = [
  { path: '/models', label: 'Models' },
  { path: '/deploy', label: 'Deploy' },
  { path: '/publications', label: 'Publications' },
  { path: '/admin', label: 'Overview', admin: true },
  { path: '/admin/tenants', label: 'Tenants', admin: true },
  { path: '/admin/audit', label: 'Audit log', admin: true },
  { path: '/admin/logs', label: 'Service logs', admin: true },
  { path: '/admin/resources', label: 'Resources', admin: true },
  { path: '/admin/kubectl', label: 'kubectl', admin: true },
];

route('/models', models.render);
route('/deploy', deploy.render);
route('/models/:namespace/:name', detail.render);
route('/models/:namespace/:name/:tab', detail.render);
route('/publications', publications.render);
route('/admin', admin.overview, { admin: true });
route('/admin/tenants', admin.tenants, { admin: true });
route('/admin/audit', admin.audit, { admin: true });
route('/admin/logs', admin.logs, { admin: true });
route('/admin/resources', admin.resources, { admin: true });
route('/admin/kubectl', admin.kubectl, { admin: true });
guard((r) => !r.admin || session.isAdmin());

function drawNav() {
  const nav = document.getElementById('nav');
  const here = current();
  const items = NAV.filter((item) => !item.admin || session.isAdmin()).map((item) => {
    const active = here === item.path || (item.path !== '/admin' && here.startsWith(`${item.path}/`));
    return h('a', { href: `#${item.path}`, 'aria-current': active ? 'page' : null }, item.label);
  });
  fill(nav, items);
  const who = session.user();
  fill(document.getElementById('who'), who ? (who.isAdmin ? `${who.user} (admin)` : `${who.user} · ${who.tenant}`) : '');
  document.getElementById('signout').hidden = !who;
}

function showSignIn(message) {
  live.stop();
  fill(document.getElementById('toasts')); // nothing of one session's notices outlives it
  fill(document.getElementById('nav'));
  fill(document.getElementById('who'));
  document.getElementById('signout').hidden = true;
  document.body.dataset.signedIn = 'false';
  const view = document.getElementById('view');
  view.replaceChildren();
  signin.render(view, { message });
}

function showConsole() {
  document.body.dataset.signedIn = 'true';
  live.start();
  drawNav();
  render();
}

session.onChange((change) => {
  if (change.type === 'start') showConsole();
  else showSignIn(change.message);
});

window.addEventListener('hashchange', () => {
  if (!session.user()) return;
  drawNav();
  render();
  document.getElementById('view').focus({ preventScroll: true });
});

document.getElementById('signout').addEventListener('click', () => session.end('You signed out.'));

function offline(isOffline) {
  const banner = document.getElementById('banner');
  banner.hidden = !isOffline;
  banner.textContent = isOffline ? 'You are offline: what you see may be out of date.' : '';
}
window.addEventListener('offline', () => offline(true));
window.addEventListener('online', () => offline(false));

async function boot() {
  if (!session.token()) {
    showSignIn(null);
    return;
  }
  try {
    session.resume(await api('GET', '/api/tenant'));
  } catch (err) {
    if (session.token()) session.end(err.status === 0 ? err.details : null);
  }
}

boot();
