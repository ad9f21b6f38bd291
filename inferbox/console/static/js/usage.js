// A publication's usage, drawn: requests and tokens per minute over the last hour or per hour over
// the last day, refused calls (401, 429) in a chart of their own, the limits as lines.

import { get, modelPath } from './api.js';
import { fill, h } from './dom.js';
import { problem } from './format.js';
import { barChart } from './chart.js';

export function usageCharts(model, withTokens) {
  let span = '1h';
  const box = h('div', { class: 'charts', 'aria-live': 'polite' }, h('p', { class: 'muted' }, 'Loading usage…'));
  const choose = (w) => {
    span = w;
    for (const b of switcher.querySelectorAll('button')) b.setAttribute('aria-pressed', String(b.value === w));
    load();
  };
  const switcher = h(
    'div',
    { class: 'segmented', role: 'group', 'aria-label': 'Window' },
    h('button', { type: 'button', value: '1h', 'aria-pressed': 'true', onclick: () => choose('1h') }, 'Last hour'),
    h('button', { type: 'button', value: '24h', 'aria-pressed': 'false', onclick: () => choose('24h') }, 'Last day'),
  );

  async function load() {
    let data;
    try {
      data = await get(modelPath(model.namespace, model.name, `/publish/usage?window=${span}`));
    } catch (err) {
      fill(box, h('p', { class: err.status === 404 ? 'muted' : 'form-error' }, err.status === 404 ? 'Usage history is not available on this control plane.' : problem(err)));
      return;
    }
    const perMinute = data.bucketSeconds === 60;
    const unit = perMinute ? 'minute' : 'hour';
    const limits = data.limits || {};
    fill(
      box,
      barChart({
        id: 'chart-requests',
        title: `Requests per ${unit}`,
        buckets: data.buckets,
        bucketSeconds: data.bucketSeconds,
        series: [{ key: 'requests', name: 'admitted', kind: 'ok' }],
        limits: [perMinute ? { value: limits.requestsPerMinute, name: 'requestsPerMinute' } : { value: limits.requestsPerHour, name: 'requestsPerHour' }],
      }),
      barChart({
        id: 'chart-refused',
        title: `Refused calls per ${unit}`,
        buckets: data.buckets,
        bucketSeconds: data.bucketSeconds,
        series: [
          { key: 'rateLimited', name: 'refused by a quota (429)', kind: 'warn' },
          { key: 'unauthorized', name: 'refused credentials (401)', kind: 'bad' },
        ],
      }),
      withTokens && barChart({
        id: 'chart-tokens',
        title: `Tokens per ${unit}`,
        buckets: data.buckets,
        bucketSeconds: data.bucketSeconds,
        series: [{ key: 'tokens', name: 'tokens', kind: 'info' }],
        limits: perMinute ? [] : [{ value: limits.tokensPerHour, name: 'tokensPerHour' }],
      }),
    );
  }

  const timer = setInterval(load, 10000);
  load();
  const el = h(
    'section',
    { class: 'usage', 'aria-labelledby': 'usage-title' },
    h('div', { class: 'heading' }, h('h3', { id: 'usage-title' }, 'Usage'), h('div', { class: 'toolbar' }, switcher, h('button', { type: 'button', onclick: load }, 'Refresh'))),
    box,
  );
  el.cleanup = () => clearInterval(timer);
  return el;
}
