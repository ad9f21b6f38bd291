// Every publication the caller can see: masked keys, limits, status and usage.

import { get } from '../api.js';
import { fill, h } from '../dom.js';
import { num, problem, when } from '../format.js';
import { live } from '../live.js';
import { session } from '../session.js';

export function render(root) {
  const body = h('div', { class: 'table-wrap' }, h('p', { class: 'muted' }, 'Loading publications…'));
  async function load() {
    let items;
    try {
      items = (await get('/api/published-models')).publishedModels;
    } catch (err) {
      fill(body, h('p', { class: 'form-error', role: 'alert' }, problem(err)));
      return;
    }
    if (!items.length) {
      fill(body, h('div', { class: 'empty' }, h('p', {}, 'Nothing is published yet. Open a model and use its Publishing tab.'), h('a', { class: 'button', href: '#/models' }, 'Models')));
      return;
    }
    fill(
      body,
      h(
        'table',
        {},
        h('thead', {}, h('tr', {}, h('th', {}, 'Model'), session.isAdmin() ? h('th', {}, 'Tenant') : null, h('th', {}, 'URL'), h('th', {}, 'Key'), h('th', {}, 'Limits'), h('th', {}, 'Status'), h('th', {}, 'Requests'), h('th', {}, 'Last call'))),
        h(
          'tbody',
          {},
          items.map((p) =>
            h(
              'tr',
              { dataset: { model: p.modelName } },
              h('td', {}, h('a', { href: `#/models/${encodeURIComponent(p.namespace)}/${encodeURIComponent(p.modelName)}/publish` }, p.modelName)),
              session.isAdmin() ? h('td', {}, p.namespace) : null,
              h('td', { class: 'mono' }, p.externalUrl),
              h('td', { class: 'mono' }, p.apiKey || '–'),
              h('td', {}, `${num(p.rateLimiting.requestsPerMinute)}/min · ${num(p.rateLimiting.requestsPerHour)}/h · burst ${num(p.rateLimiting.burstLimit)}`),
              h('td', {}, p.status),
              h('td', {}, `${num(p.usage.totalRequests)} (${num(p.usage.requestsToday)} today)`),
              h('td', {}, when(p.usage.lastAccessTime)),
            ),
          ),
        ),
      ),
    );
  }
  root.append(h('section', {}, h('div', { class: 'heading' }, h('h1', {}, 'Publications'), h('button', { type: 'button', onclick: load }, 'Refresh')), body));
  load();
  return live.listen((event) => {
    if (event.type && event.type.startsWith('publication.')) load();
  });
}
