// The admin's screens: system overview, tenants (create, delete, mint a token), the audit log,
// the service's logs, the resources view, and a kubectl console with history.

import { api, del, get, post } from '../api.js';
import { confirmDialog, copyButton, field, fill, h, showFieldError, toast } from '../dom.js';
import { age, problem, when } from '../format.js';
import { session } from '../session.js';

function table(headers, rows, empty = 'Nothing here yet.') {
  if (!rows.length) return h('p', { class: 'empty' }, empty);
  return h('div', { class: 'table-wrap' }, h('table', {}, h('thead', {}, h('tr', {}, headers.map((t) => h('th', {}, t)))), h('tbody', {}, rows.map((cells) => h('tr', {}, cells.map((c) => h('td', {}, c)))))));
}

function failed(err) {
  return h('p', { class: 'form-error', role: 'alert' }, problem(err));
}

// -- overview -------------------------------------------------------------------------------------

export function overview(root) {
  const body = h('div', { class: 'stack' }, h('p', { class: 'muted' }, 'Loading…'));
  root.append(h('section', {}, h('h1', {}, 'System overview'), body));
  get('/api/admin/system')
    .then((s) => {
      const ready = s.deployments.filter((d) => d.ready >= d.replicas && d.replicas > 0).length;
      fill(
        body,
        h('div', { class: 'stats' }, [
          h('div', { class: 'stat' }, h('strong', {}, String(s.nodes.length)), ' nodes'),
          h('div', { class: 'stat' }, h('strong', {}, String(s.namespaces.length)), ' tenants'),
          h('div', { class: 'stat' }, h('strong', {}, `${ready}/${s.deployments.length}`), ' deployments ready'),
          h('div', { class: 'stat' }, h('strong', {}, String(s.deployments.reduce((n, d) => n + d.ready, 0))), ' replicas serving'),
        ]),
        h('h2', {}, 'Nodes'),
        table(['Name', 'Status', 'Version', 'CPU (capacity / allocatable)', 'Memory (capacity / allocatable)'], s.nodes.map((n) => [n.name, n.status, n.version, `${n.capacity.cpu} / ${n.allocatable.cpu}`, `${n.capacity.memory} / ${n.allocatable.memory}`])),
        h('h2', {}, 'Namespaces'),
        table(['Name', 'Status', 'Age'], s.namespaces.map((n) => [n.name, n.status, age(n.created)]), 'No tenants yet.'),
        h('h2', {}, 'Deployments'),
        table(['Name', 'Namespace', 'Ready', 'Wanted', 'Available'], s.deployments.map((d) => [h('a', { href: `#/models/${encodeURIComponent(d.namespace)}/${encodeURIComponent(d.name.replace(/-predictor$/, ''))}` }, d.name), d.namespace, String(d.ready), String(d.replicas), String(d.available)]), 'No models deployed.'),
      );
    })
    .catch((err) => fill(body, failed(err)));
}

// -- tenants --------------------------------------------------------------------------------------

function signInAs(token) {
  return async () => {
    try {
      const answer = await fetch('/api/tenant', { headers: { Authorization: `Bearer ${token}` }, cache: 'no-store' });
      const who = await answer.json();
      if (!answer.ok) throw Object.assign(new Error(), { status: answer.status, error: who.error, details: who.details });
      session.start(token, who);
      location.hash = '#/models';
    } catch (err) {
      toast(problem(err), 'error');
    }
  };
}

export function tenants(root) {
  const list = h('div', {}, h('p', { class: 'muted' }, 'Loading tenants…'));
  const minted = h('div', { 'aria-live': 'polite' });
  const name = h('input', { name: 'name', required: true, maxlength: 63, spellcheck: 'false', autocomplete: 'off', placeholder: 'tenant-a' });
  const form = h(
    'form',
    {
      class: 'toolbar',
      onsubmit: async (event) => {
        event.preventDefault();
        try {
          await post('/api/admin/tenants', { name: name.value.trim() });
          toast(`Created ${name.value.trim()}`);
          name.value = '';
          showFieldError(form, '');
          load();
        } catch (err) {
          if (!(err.status === 400 && showFieldError(form, err.details))) toast(problem(err), 'error');
        }
      },
    },
    field('New tenant', name),
    h('button', { type: 'submit', class: 'primary' }, 'Create tenant'),
  );

  async function mint(tenant) {
    const ttl = h('input', { type: 'number', name: 'ttlSeconds', min: 60, max: 2592000, step: 1, value: '3600' });
    const ok = await confirmDialog({ title: `Mint a token for ${tenant}`, body: 'The token acts as a user of this tenant until it expires. It is shown once.', confirm: 'Mint token', danger: false, extra: field('Valid for (seconds, 60 to 2,592,000)', ttl) });
    if (!ok) return;
    try {
      const answer = await post(`/api/admin/tenants/${encodeURIComponent(tenant)}/token`, { ttlSeconds: Number(ttl.value) });
      fill(
        minted,
        h(
          'section',
          { class: 'key-once', role: 'alert' },
          h('h3', {}, `Token for ${answer.tenant}`),
          h('p', { class: 'warning' }, `Copy it now: it is not shown again. It expires ${when(answer.expiresAt)}.`),
          h('div', { class: 'key-row' }, h('code', { class: 'mono key token', dataset: { testid: 'minted-token' } }, answer.token), copyButton(() => answer.token, 'Copy token')),
          h('div', { class: 'actions' }, h('button', { type: 'button', class: 'primary', onclick: signInAs(answer.token) }, `Sign in as ${answer.tenant}`), h('button', { type: 'button', onclick: () => fill(minted) }, 'Done')),
        ),
      );
    } catch (err) {
      toast(problem(err), 'error');
    }
  }

  async function remove(tenant) {
    const force = h('input', { type: 'checkbox', name: 'force' });
    const ok = await confirmDialog({ title: `Delete ${tenant}?`, body: 'The tenant and its users’ access go away. A tenant with models is refused unless you also delete its models.', confirm: 'Delete tenant', extra: h('label', { class: 'check' }, force, ' Also delete its models') });
    if (!ok) return;
    try {
      await del(`/api/admin/tenants/${encodeURIComponent(tenant)}${force.checked ? '?force=true' : ''}`);
      toast(`Deleted ${tenant}`);
      load();
    } catch (err) {
      toast(problem(err), 'error');
    }
  }

  async function load() {
    try {
      const answer = await get('/api/admin/tenants');
      fill(list, table(['Name', 'Status', 'Created', ''], answer.tenants.map((t) => [t.name, t.status, when(t.created), h('div', { class: 'actions' }, h('button', { type: 'button', class: 'small', onclick: () => mint(t.name) }, 'Mint token'), h('button', { type: 'button', class: 'small danger', onclick: () => remove(t.name) }, 'Delete'))]), 'No tenants yet: create one above.'));
    } catch (err) {
      fill(list, failed(err));
    }
  }
  root.append(h('section', {}, h('h1', {}, 'Tenants'), form, minted, list));
  load();
}

// -- audit ----------------------------------------------------------------------------------------

export function audit(root) {
  const tenant = h('input', { name: 'tenant', placeholder: 'any tenant', maxlength: 63 });
  const action = h('input', { name: 'action', placeholder: 'any action (model.create)', maxlength: 64 });
  const since = h('input', { name: 'since', placeholder: '15m, 2h, 7d or a time', maxlength: 64 });
  const limit = h('input', { name: 'limit', type: 'number', min: 1, max: 1000, value: '100' });
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const form = h(
    'form',
    {
      class: 'filters',
      onsubmit: (event) => {
        event.preventDefault();
        load();
      },
    },
    field('Tenant', tenant),
    field('Action', action),
    field('Since', since),
    field('Entries', limit),
    h('button', { type: 'submit', class: 'primary' }, 'Filter'),
  );
  async function load() {
    const q = new URLSearchParams({ limit: limit.value || '100' });
    for (const [k, input] of [['tenant', tenant], ['action', action], ['since', since]]) if (input.value.trim()) q.set(k, input.value.trim());
    try {
      const answer = await get(`/api/admin/audit?${q}`);
      showFieldError(form, '');
      fill(body, table(['Time', 'Actor', 'Tenant', 'Action', 'Target', 'Outcome', 'Address', 'Details'], answer.entries.map((e) => [when(e.timestamp), e.actor, e.tenant || '', e.action, e.target || '', h('span', { class: `outcome ${e.outcome}` }, e.outcome), e.sourceIp || '', h('code', { class: 'mono small' }, JSON.stringify(e.details))]), 'No entries match.'));
    } catch (err) {
      if (!(err.status === 400 && showFieldError(form, err.details))) fill(body, failed(err));
    }
  }
  root.append(h('section', {}, h('h1', {}, 'Audit log'), form, body));
  load();
}

// -- service logs ---------------------------------------------------------------------------------

export function logs(root) {
  const level = h('select', { name: 'level', 'aria-label': 'Lowest level' }, ['debug', 'info', 'warning', 'error'].map((l) => h('option', { value: l, selected: l === 'info' }, l)));
  const follow = h('input', { type: 'checkbox', name: 'follow' });
  const out = h('pre', { class: 'output logs', tabindex: '0', 'aria-label': 'Service log lines' }, 'Loading…');
  let timer = null;
  async function load() {
    try {
      const answer = await get(`/api/admin/logs?lines=500&level=${level.value}`);
      const lines = (answer.lines || []).map((l) => (typeof l === 'string' ? l : `${l.timestamp} ${l.level.toUpperCase()} ${l.logger} ${l.message}`));
      fill(out, lines.length ? lines.join('\n') : 'No lines at this level.');
      if (follow.checked) out.scrollTop = out.scrollHeight;
    } catch (err) {
      fill(out, problem(err));
    }
  }
  level.addEventListener('change', load);
  follow.addEventListener('change', () => {
    clearInterval(timer);
    if (follow.checked) timer = setInterval(load, 2000);
  });
  root.append(h('section', { class: 'stack' }, h('h1', {}, 'Service logs'), h('div', { class: 'toolbar' }, level, h('button', { type: 'button', onclick: load }, 'Refresh'), h('label', { class: 'check' }, follow, ' Follow')), out));
  load();
  return () => clearInterval(timer);
}

// -- resources ------------------------------------------------------------------------------------

function generic(value) {
  // The resources route's shape is the runtime's: render any list of flat objects as a table.
  if (Array.isArray(value)) {
    if (!value.length) return h('p', { class: 'empty' }, 'None.');
    if (typeof value[0] !== 'object' || value[0] === null) return h('p', {}, value.join(', '));
    const keys = [...new Set(value.flatMap((v) => Object.keys(v)))];
    return table(keys, value.map((v) => keys.map((k) => (v[k] !== null && typeof v[k] === 'object' ? JSON.stringify(v[k]) : String(v[k] ?? '')))));
  }
  if (value && typeof value === 'object') {
    return h('div', { class: 'stack' }, Object.entries(value).map(([k, v]) => h('div', {}, h('h2', {}, k), generic(v))));
  }
  return h('p', {}, String(value));
}

export function resources(root) {
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  root.append(h('section', {}, h('h1', {}, 'Resources'), body));
  get('/api/admin/resources')
    .then((answer) => fill(body, generic(answer)))
    .catch((err) => fill(body, err.status === 404 || err.status === 501 ? h('p', { class: 'empty' }, 'This control plane has no resources view (GET /api/admin/resources answers 404): it arrives with the Kubernetes runtime.') : failed(err)));
}

// -- kubectl --------------------------------------------------------------------------------------

const history = [];

export function kubectl(root) {
  const input = h('input', { name: 'command', class: 'mono', spellcheck: 'false', autocomplete: 'off', maxlength: 1000, placeholder: 'get pods -A', 'aria-label': 'kubectl command' });
  const out = h('div', { class: 'stack transcript', 'aria-live': 'polite' });
  let cursor = history.length;
  function entry(command, text, refused) {
    return h('div', { class: `run ${refused ? 'refused' : ''}` }, h('p', { class: 'mono prompt' }, `$ kubectl ${command}`), h('pre', { class: 'output' }, text));
  }
  input.addEventListener('keydown', (event) => {
    if (event.key === 'ArrowUp' && cursor > 0) {
      cursor -= 1;
      input.value = history[cursor];
      event.preventDefault();
    } else if (event.key === 'ArrowDown' && cursor < history.length) {
      cursor += 1;
      input.value = history[cursor] || '';
      event.preventDefault();
    }
  });
  const form = h(
    'form',
    {
      class: 'toolbar',
      onsubmit: async (event) => {
        event.preventDefault();
        const command = input.value.trim().replace(/^kubectl\s+/, '');
        if (!command) return;
        history.push(command);
        cursor = history.length;
        input.value = '';
        try {
          const answer = await api('POST', '/api/admin/kubectl', { command });
          out.prepend(entry(command, answer.result || '(no output)', false));
        } catch (err) {
          out.prepend(entry(command, err.status === 400 ? `Refused: ${err.details || err.error}` : problem(err), true));
        }
      },
    },
    h('span', { class: 'mono' }, 'kubectl'),
    input,
    h('button', { type: 'submit', class: 'primary' }, 'Run'),
  );
  root.append(h('section', { class: 'stack' }, h('h1', {}, 'kubectl'), h('p', { class: 'muted' }, 'Read-only commands (get, describe, logs, top, …). Commands that change things are refused, and every command is audited. ↑ and ↓ walk the history.'), form, out));
  input.focus();
}
