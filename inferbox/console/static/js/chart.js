// Bar charts as SVG, drawn from time buckets: one or more stacked series, and limits as dashed lines
// (a limit far above the data is named in the legend instead of flattening every bar).

import { h, svg } from './dom.js';

const W = 640;
const H = 180;
const PAD = { left: 44, right: 12, top: 12, bottom: 26 };

function label(iso, bucketSeconds) {
  const d = new Date(iso);
  return bucketSeconds >= 3600 ? `${String(d.getHours()).padStart(2, '0')}:00` : d.toTimeString().slice(0, 5);
}

/**
 * buckets: [{start, ...counts}]; series: [{key, name, kind}] stacked in order; limits: [{value, name}].
 * Returns a <figure> with the SVG, a legend with totals, and the numbers as a table for screen readers.
 */
export function barChart({ title, buckets, bucketSeconds, series, limits = [], id }) {
  const totals = Object.fromEntries(series.map((s) => [s.key, buckets.reduce((n, b) => n + (b[s.key] || 0), 0)]));
  const peak = Math.max(1, ...buckets.map((b) => series.reduce((n, s) => n + (b[s.key] || 0), 0)));
  // A limit is drawn when it fits within a few times the tallest bar; else it only appears in the legend.
  const drawn = limits.filter((l) => l.value && l.value <= peak * 4);
  const top = Math.max(peak, ...drawn.map((l) => l.value)) * 1.1;
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const step = plotW / Math.max(1, buckets.length);
  const y = (v) => PAD.top + plotH - (v / top) * plotH;

  const bars = [];
  buckets.forEach((b, i) => {
    let base = 0;
    for (const s of series) {
      const v = b[s.key] || 0;
      if (v > 0) {
        bars.push(
          svg('rect', { class: `bar ${s.kind}`, x: (PAD.left + i * step + step * 0.1).toFixed(1), y: y(base + v).toFixed(1), width: (step * 0.8).toFixed(1), height: (y(base) - y(base + v)).toFixed(1), dataset: { series: s.key, value: String(v) } },
            svg('title', {}, `${label(b.start, bucketSeconds)}: ${v} ${s.name}`)),
        );
      }
      base += v;
    }
  });
  const ticks = [0, Math.floor(buckets.length / 2), buckets.length - 1].filter((i, k, all) => i >= 0 && all.indexOf(i) === k);
  const chart = svg(
    'svg',
    { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `${title}: ${series.map((s) => `${totals[s.key]} ${s.name}`).join(', ')}`, class: 'chart', id, dataset: Object.fromEntries(series.map((s) => [s.key, String(totals[s.key])])) },
    svg('line', { class: 'axis', x1: PAD.left, y1: PAD.top + plotH, x2: W - PAD.right, y2: PAD.top + plotH }),
    svg('text', { class: 'tick', x: PAD.left - 6, y: PAD.top + 4, 'text-anchor': 'end' }, String(Math.round(top))),
    svg('text', { class: 'tick', x: PAD.left - 6, y: PAD.top + plotH, 'text-anchor': 'end' }, '0'),
    ticks.map((i) => svg('text', { class: 'tick', x: (PAD.left + i * step + step / 2).toFixed(1), y: H - 8, 'text-anchor': 'middle' }, label(buckets[i].start, bucketSeconds))),
    bars,
    drawn.map((l) => [
      svg('line', { class: 'limit', x1: PAD.left, x2: W - PAD.right, y1: y(l.value).toFixed(1), y2: y(l.value).toFixed(1) }),
      svg('text', { class: 'limit-label', x: W - PAD.right - 2, y: (y(l.value) - 4).toFixed(1), 'text-anchor': 'end' }, `${l.name} ${l.value.toLocaleString()}`),
    ]),
  );
  const legend = h(
    'ul',
    { class: 'legend' },
    series.map((s) => h('li', { dataset: { series: s.key } }, h('span', { class: `swatch ${s.kind}`, 'aria-hidden': 'true' }), `${s.name}: ${totals[s.key].toLocaleString()}`)),
    limits.filter((l) => l.value).map((l) => h('li', { class: 'limit-note' }, h('span', { class: 'swatch limit', 'aria-hidden': 'true' }), `${l.name}: ${l.value.toLocaleString()}${drawn.includes(l) ? '' : ' (above the chart)'}`)),
  );
  const table = h(
    'details',
    { class: 'numbers' },
    h('summary', {}, 'Numbers'),
    h('div', { class: 'table-wrap' }, h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'From'), series.map((s) => h('th', {}, s.name)))), h('tbody', {}, buckets.filter((b) => series.some((s) => b[s.key])).map((b) => h('tr', {}, h('td', {}, label(b.start, bucketSeconds)), series.map((s) => h('td', {}, String(b[s.key] || 0)))))))),
  );
  return h('figure', { class: 'chart-box' }, h('figcaption', {}, title), chart, legend, table);
}
