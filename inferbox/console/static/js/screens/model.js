// One model: its status (live), conditions and replicas, a test panel (with a chat box for a
// text-generation model, screens/chat.js), its recent logs, edit and
// delete, and its publication (screens/publish.js).

import { api, del, get, modelPath } from '../api.js';
import { confirmDialog, fill, h, toast } from '../dom.js';
import { age, problem, when } from '../format.js';
import { live } from '../live.js';
import { go } from '../router.js';
import { applyStatus, badge, failure, phaseOf } from '../status.js';
import { chatPanel } from './chat.js';
import { modelForm } from './deploy.js';
import { publishing } from './publish.js';

const TABS = [
  ['overview', 'Overview'],
  ['test', 'Test'],
  ['logs', 'Logs'],
  ['publish', 'Publishing'],
];

function overview(model) {
  const d = model.statusDetails || {};
  const replicas = d.replicas || {};
  const conditions = d.conditions || [];
  return h(
    'div',
    { class: 'stack' },
    h(
      'dl',
      { class: 'facts' },
      h('dt', {}, 'Status'), h('dd', {}, badge(phaseOf(model))),
      h('dt', {}, 'Replicas'), h('dd', { class: 'replicas' }, `${replicas.ready ?? 0} ready of ${replicas.desired ?? 0} wanted (${replicas.total ?? 0} running, ${d.restarts ?? 0} restarts)`),
      h('dt', {}, 'Framework'), h('dd', {}, model.predictor.framework),
      h('dt', {}, 'Storage'), h('dd', { class: 'mono' }, model.predictor.storageUri),
      h('dt', {}, 'Scaling'), h('dd', {}, `${model.minReplicas}–${model.maxReplicas} replicas, target ${model.scaleTarget} (${model.scaleMetric})`),
      h('dt', {}, 'Endpoint'), h('dd', { class: 'mono' }, model.url || '–'),
      h('dt', {}, 'Created'), h('dd', {}, `${when(model.createdAt)} (${age(model.createdAt)} ago)`),
    ),
    failure(model) ? h('p', { class: 'form-error', role: 'alert' }, failure(model)) : null,
    h('h3', {}, 'Conditions'),
    conditions.length
      ? h(
          'div',
          { class: 'table-wrap' },
          h(
            'table',
            {},
            h('thead', {}, h('tr', {}, h('th', {}, 'Type'), h('th', {}, 'Status'), h('th', {}, 'Reason'), h('th', {}, 'Message'), h('th', {}, 'Since'))),
            h('tbody', {}, conditions.map((c) => h('tr', {}, h('td', {}, c.type), h('td', {}, c.status), h('td', {}, c.reason || ''), h('td', {}, c.message || ''), h('td', {}, age(c.lastTransitionTime))))),
          ),
        )
      : h('p', { class: 'muted' }, 'No conditions reported yet.'),
  );
}

function testPanel(model) {
  const protocol = h('select', { name: 'protocol', 'aria-label': 'Protocol' }, h('option', { value: 'v1' }, 'KServe V1 (instances)'), h('option', { value: 'v2' }, 'Open Inference V2 (inputs)'));
  const body = h('textarea', { name: 'body', rows: 8, spellcheck: 'false', class: 'mono', 'aria-label': 'Request body' });
  const result = h('pre', { class: 'output', 'aria-live': 'polite', dataset: { testid: 'predict-result' } });
  const meta = h('p', { class: 'muted', dataset: { testid: 'predict-latency' } });
  const examples = {
    v1: { instances: [[1.0, 2.0, 3.0, 4.0]] },
    v2: { inputs: [{ name: 'input-0', shape: [1, 4], datatype: 'FP64', data: [1.0, 2.0, 3.0, 4.0] }] },
  };
  const prefill = () => {
    body.value = JSON.stringify(examples[protocol.value], null, 2);
  };
  prefill();
  // A text-generation model chats (a streamed OpenAI chat completion) above the raw request form.
  const chatSlot = h('div', { class: 'stack' });
  let chat = null;
  get(modelPath(model.namespace, model.name, '/example'))
    .then((answer) => {
      if (answer.v1) examples.v1 = answer.v1;
      if (answer.v2) examples.v2 = answer.v2;
      prefill();
      if (answer.task === 'text-generation') {
        chat = chatPanel(model);
        fill(chatSlot, h('h2', {}, 'Chat'), chat, h('h2', {}, 'Raw request'));
      }
    })
    .catch(() => {});
  protocol.addEventListener('change', prefill);
  const send = h('button', { type: 'submit', class: 'primary' }, 'Send');
  const form = h(
    'form',
    {
      class: 'stack',
      onsubmit: async (event) => {
        event.preventDefault();
        let inputData;
        try {
          inputData = JSON.parse(body.value);
        } catch (err) {
          fill(result, `The body is not valid JSON: ${err.message}`);
          result.dataset.state = 'error';
          return;
        }
        send.disabled = true;
        const started = performance.now();
        try {
          const answer = await api('POST', modelPath(model.namespace, model.name, '/predict'), { inputData });
          fill(result, JSON.stringify(answer, null, 2));
          result.dataset.state = 'ok';
        } catch (err) {
          fill(result, problem(err));
          result.dataset.state = 'error';
        } finally {
          fill(meta, `Answered in ${(performance.now() - started).toFixed(1)} ms (through the control plane)`);
          send.disabled = false;
        }
      },
    },
    h('div', { class: 'toolbar' }, protocol, send),
    body,
    meta,
    result,
  );
  const panel = h('div', { class: 'stack' }, chatSlot, form);
  panel.cleanup = () => chat && chat.cleanup();
  return panel;
}

function logsPanel(model) {
  const out = h('pre', { class: 'output logs', tabindex: '0', 'aria-label': 'Recent log lines' }, 'Loading…');
  const follow = h('input', { type: 'checkbox', name: 'follow' });
  let timer = null;
  async function load() {
    try {
      const answer = await get(modelPath(model.namespace, model.name, '/logs?lines=300'));
      const lines = answer.logs || answer.lines || [];
      fill(out, lines.length ? lines.join('\n') : 'No output yet.');
      if (follow.checked) out.scrollTop = out.scrollHeight;
    } catch (err) {
      fill(out, problem(err));
    }
  }
  follow.addEventListener('change', () => {
    clearInterval(timer);
    if (follow.checked) timer = setInterval(load, 2000);
  });
  load();
  const panel = h(
    'div',
    { class: 'stack' },
    h('div', { class: 'toolbar' }, h('button', { type: 'button', onclick: load }, 'Refresh'), h('label', { class: 'check' }, follow, ' Follow')),
    out,
  );
  panel.cleanup = () => clearInterval(timer);
  return panel;
}

export function render(root, { namespace, name, tab = 'overview' }) {
  let model = null;
  let panelCleanup = null;
  const base = `/models/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`;
  const title = h('h1', {}, name);
  const state = h('span', { class: 'title-badge' });
  const panel = h('div', { class: 'panel', role: 'tabpanel' }, h('p', { class: 'muted' }, 'Loading…'));
  const tabs = h(
    'div',
    { class: 'tabs', role: 'tablist' },
    TABS.map(([id, label]) => h('a', { href: `#${base}/${id}`, role: 'tab', 'aria-selected': String(id === tab), class: id === tab ? 'active' : '' }, label)),
  );

  async function remove() {
    const ok = await confirmDialog({ title: `Delete ${name}?`, body: 'Its replicas stop and its publication (if any) is removed. This cannot be undone.', confirm: 'Delete model' });
    if (!ok) return;
    try {
      await del(modelPath(namespace, name));
      toast(`Deleted ${name}`);
      go('/models');
    } catch (err) {
      toast(problem(err), 'error');
    }
  }

  function edit() {
    if (panelCleanup) panelCleanup();
    panelCleanup = null;
    fill(panel, h('h2', {}, 'Edit'), modelForm({ model, onDone: () => load() }));
  }

  function drawPanel() {
    if (panelCleanup) panelCleanup();
    panelCleanup = null;
    fill(state, badge(phaseOf(model)));
    if (tab === 'test') {
      const p = testPanel(model);
      panelCleanup = p.cleanup;
      fill(panel, p);
    } else if (tab === 'logs') {
      const p = logsPanel(model);
      panelCleanup = p.cleanup;
      fill(panel, p);
    } else if (tab === 'publish') {
      const p = publishing(model);
      panelCleanup = p.cleanup;
      fill(panel, p);
    } else fill(panel, overview(model));
  }

  async function load() {
    try {
      model = await get(modelPath(namespace, name));
      drawPanel();
    } catch (err) {
      fill(panel, h('p', { class: 'form-error', role: 'alert' }, err.status === 404 ? `There is no model ${name} here.` : problem(err)));
    }
  }

  // Status changed: the badge at once, and the overview from a fresh read (events carry no conditions).
  // The other tabs are left alone: redrawing would throw away a half-typed request body.
  async function refresh() {
    try {
      model = await get(modelPath(namespace, name));
    } catch {
      return;
    }
    fill(state, badge(phaseOf(model)));
    if (tab === 'overview') fill(panel, overview(model));
  }

  root.append(
    h(
      'section',
      {},
      h('p', { class: 'crumbs' }, h('a', { href: '#/models' }, 'Models'), ` / ${namespace} /`),
      h('div', { class: 'heading' }, h('div', { class: 'title' }, title, state), h('div', { class: 'actions' }, h('button', { type: 'button', onclick: () => model && edit() }, 'Edit'), h('button', { type: 'button', class: 'danger', onclick: remove }, 'Delete'))),
      tabs,
      panel,
    ),
  );
  load();
  const stop = live.listen((event) => {
    if (event.type === 'live.connected' && model) refresh();
    if (!model || event.name !== name || event.namespace !== namespace) return;
    if (event.type === 'model.statusChanged') {
      model = applyStatus(model, event.data);
      fill(state, badge(phaseOf(model)));
      if (tab === 'overview') fill(panel, overview(model));
      refresh();
    } else if (event.type === 'model.deleted') {
      fill(panel, h('p', { class: 'form-error', role: 'alert' }, 'This model was deleted.'));
    }
  });
  return () => {
    stop();
    if (panelCleanup) panelCleanup();
  };
}
