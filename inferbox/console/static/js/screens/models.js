// The models list: live status from /ws, filter by phase, search by name.

import { get } from '../api.js';
import { fill, h } from '../dom.js';
import { age, problem } from '../format.js';
import { live } from '../live.js';
import { session } from '../session.js';
import { applyStatus, badge, failure, phaseOf } from '../status.js';

const PHASES = ['All', 'Ready', 'Pending', 'Loading', 'FailedToLoad'];

export function render(root) {
  let rows = null;
  const search = h('input', { type: 'search', name: 'q', placeholder: 'Search by name', 'aria-label': 'Search models by name' });
  const phase = h('select', { name: 'phase', 'aria-label': 'Filter by phase' }, PHASES.map((p) => h('option', { value: p }, p)));
  const body = h('div', { class: 'table-wrap' }, h('p', { class: 'muted' }, 'Loading models…'));
  const admin = session.isAdmin();

  function draw() {
    if (rows === null) return;
    const q = search.value.trim().toLowerCase();
    const shown = rows.filter(
      (m) => (phase.value === 'All' || phaseOf(m) === phase.value) && (!q || m.name.toLowerCase().includes(q) || m.namespace.includes(q)),
    );
    if (!rows.length) {
      fill(body, h('div', { class: 'empty' }, h('p', {}, 'No models yet.'), h('a', { class: 'button primary', href: '#/deploy' }, 'Deploy a model')));
      return;
    }
    if (!shown.length) {
      fill(body, h('p', { class: 'empty' }, 'No model matches the filter.'));
      return;
    }
    fill(
      body,
      h(
        'table',
        { class: 'models' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Name'), admin ? h('th', {}, 'Tenant') : null, h('th', {}, 'Framework'), h('th', {}, 'Status'), h('th', {}, 'Replicas'), h('th', {}, 'Age'), h('th', {}, 'Message'))),
        h(
          'tbody',
          {},
          shown.map((m) => {
            const replicas = (m.statusDetails && m.statusDetails.replicas) || {};
            return h(
              'tr',
              { dataset: { model: m.name, namespace: m.namespace } },
              h('td', {}, h('a', { href: `#/models/${encodeURIComponent(m.namespace)}/${encodeURIComponent(m.name)}` }, m.name)),
              admin ? h('td', {}, m.namespace) : null,
              h('td', {}, (m.predictor && m.predictor.framework) || ''),
              h('td', {}, badge(phaseOf(m))),
              h('td', { class: 'replicas' }, `${replicas.ready ?? 0}/${replicas.desired ?? 0}`),
              h('td', {}, h('time', { datetime: m.createdAt || '' }, age(m.createdAt))),
              h('td', { class: 'message' }, failure(m)),
            );
          }),
        ),
      ),
    );
  }

  async function load() {
    try {
      rows = (await get('/api/models')).models;
      draw();
    } catch (err) {
      fill(body, h('p', { class: 'form-error', role: 'alert' }, `Could not load the models. ${problem(err)}`));
    }
  }

  search.addEventListener('input', draw);
  phase.addEventListener('change', draw);
  root.append(
    h(
      'section',
      {},
      h('div', { class: 'heading' }, h('h1', {}, 'Models'), h('a', { class: 'button primary', href: '#/deploy' }, 'Deploy a model')),
      h('div', { class: 'toolbar' }, search, phase),
      body,
    ),
  );
  load();
  const stop = live.listen((event) => {
    if (event.type === 'live.connected' || event.type === 'model.created' || event.type === 'model.deleted') {
      load();
    } else if (event.type === 'model.statusChanged' && rows) {
      rows = rows.map((m) => (m.name === event.name && m.namespace === event.namespace ? applyStatus(m, event.data) : m));
      draw();
    }
  });
  const ticker = setInterval(draw, 30000); // ages move on
  return () => {
    stop();
    clearInterval(ticker);
  };
}
