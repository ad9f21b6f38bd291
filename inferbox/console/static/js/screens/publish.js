// A model's publication: the publish form (every config field, with its defaults), the new key shown
// once, the publication's settings, usage charts and examples, rotate and unpublish.

import { del, get, modelPath, post, put } from '../api.js';
import { confirmDialog, copyButton, field, fill, h, showFieldError, toast } from '../dom.js';
import { num, problem, when } from '../format.js';
import { usageCharts } from '../usage.js';

const LIMIT_DEFAULTS = { requestsPerMinute: 100, requestsPerHour: 5000, tokensPerHour: 100000, burstLimit: 10 };
const LIMIT_HINTS = {
  requestsPerMinute: 'per minute',
  requestsPerHour: 'per hour',
  tokensPerHour: 'for openai models: total tokens per hour',
  burstLimit: 'per second',
};

function examples(documentation) {
  const sdk = (documentation && documentation.sdkExamples) || {};
  const names = { curl: 'curl', python: 'Python', javascript: 'JavaScript' };
  return h(
    'div',
    { class: 'examples' },
    Object.entries(names)
      .filter(([key]) => sdk[key])
      .map(([key, label]) =>
        h('div', { class: 'example', dataset: { example: key } }, h('div', { class: 'example-head' }, h('h4', {}, label), copyButton(() => sdk[key], `Copy ${label}`)), h('pre', { class: 'mono' }, sdk[key])),
      ),
    documentation && documentation.localTest ? h('p', { class: 'muted' }, documentation.localTest) : null,
  );
}

/** A publication whose examples carry `key` in place of the placeholder (or masked key) they hold. */
function withKey(pub, key) {
  let text = JSON.stringify(pub.documentation || {}).replaceAll('<your-api-key>', key);
  if (pub.apiKey) text = text.replaceAll(JSON.stringify(pub.apiKey).slice(1, -1), key);
  return { ...pub, apiKey: key, documentation: JSON.parse(text) };
}

/** The answer of publish or rotate: the key, once, with a copy button and a plain warning. */
function keyOnce(pub, verb, onDone) {
  return h(
    'section',
    { class: 'key-once', role: 'alert', 'aria-labelledby': 'key-title' },
    h('h3', { id: 'key-title' }, verb === 'rotated' ? 'Your new API key' : 'Your API key'),
    h('p', { class: 'warning' }, 'Copy this key now. It will not be shown again: inferbox keeps only a hash of it.'),
    h('div', { class: 'key-row' }, h('code', { class: 'mono key', dataset: { testid: 'api-key' } }, pub.apiKey), copyButton(() => pub.apiKey, 'Copy key')),
    h('p', {}, 'The examples below carry this key and run as copied.'),
    examples(pub.documentation),
    h('button', { type: 'button', class: 'primary', onclick: onDone }, 'I have saved the key'),
  );
}

function configForm(model, current, onSaved) {
  const editing = Boolean(current);
  const status = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const modelType = h('select', { name: 'modelType' }, [['', 'Detect from the framework'], ['traditional', 'traditional (predict, infer)'], ['openai', 'openai (chat, completions, embeddings)']].map(([v, l]) => h('option', { value: v, selected: editing && current.modelType === v }, l)));
  const externalPath = h('input', { name: 'externalPath', spellcheck: 'false', placeholder: `/models/${model.name}`, value: editing ? current.externalPath : '' });
  const publicHostname = h('input', { name: 'publicHostname', spellcheck: 'false', placeholder: 'none: served on the gateway’s address', value: editing ? current.publicHostname || '' : '' });
  const limits = Object.fromEntries(
    Object.entries(LIMIT_DEFAULTS).map(([key, value]) => [key, h('input', { name: key, type: 'number', min: 1, max: 1000000000, step: 1, value: String(editing ? current.rateLimiting[key] : value) })]),
  );
  const requireApiKey = h('input', { type: 'checkbox', name: 'requireApiKey', checked: editing ? current.authentication.requireApiKey : true });
  const allowedTenants = h('input', { name: 'allowedTenants', spellcheck: 'false', placeholder: 'tenant-b, tenant-c', value: editing ? current.authentication.allowedTenants.join(', ') : '' });
  const metadata = h('textarea', { name: 'metadata', rows: 3, class: 'mono', spellcheck: 'false', value: JSON.stringify(editing ? current.metadata : {}, null, 2) });
  const submit = h('button', { type: 'submit', class: 'primary' }, editing ? 'Save settings' : 'Publish');

  const form = h(
    'form',
    {
      class: 'card form',
      novalidate: true,
      onsubmit: async (event) => {
        event.preventDefault();
        status.hidden = true;
        showFieldError(form, '');
        let meta;
        try {
          meta = JSON.parse(metadata.value || '{}');
        } catch {
          showFieldError(form, "Field 'metadata' must be a JSON object");
          return;
        }
        const config = {
          rateLimiting: Object.fromEntries(Object.entries(limits).map(([k, input]) => [k, Number(input.value)])),
          authentication: {
            requireApiKey: requireApiKey.checked,
            allowedTenants: allowedTenants.value.split(',').map((t) => t.trim()).filter(Boolean),
          },
          metadata: meta,
        };
        if (modelType.value) config.modelType = modelType.value;
        if (externalPath.value.trim()) config.externalPath = externalPath.value.trim();
        config.publicHostname = publicHostname.value.trim() || null;
        if (!editing && config.publicHostname === null) delete config.publicHostname;
        submit.disabled = true;
        try {
          const path = modelPath(model.namespace, model.name, '/publish');
          const answer = editing ? await put(path, { config }) : await post(path, { config });
          onSaved(answer.publishedModel || answer);
        } catch (err) {
          if (!(err.status === 400 && showFieldError(form, err.details))) {
            status.textContent = problem(err);
            status.hidden = false;
          }
        } finally {
          submit.disabled = false;
        }
      },
    },
    status,
    h('div', { class: 'grid two' }, field('Model type', modelType), field('External path', externalPath, 'Where callers reach it on the gateway')),
    field('Public hostname', publicHostname, 'Optional: the gateway routes on this Host header'),
    h('fieldset', {}, h('legend', {}, 'Rate limits'), h('div', { class: 'grid four' }, Object.entries(limits).map(([k, input]) => field(k, input, LIMIT_HINTS[k])))),
    h('fieldset', {}, h('legend', {}, 'Authentication'), h('label', { class: 'check' }, requireApiKey, ' Require an API key'), field('Tenants whose users may call it with their token', allowedTenants, 'Comma-separated')),
    field('Metadata (JSON)', metadata),
    h('div', { class: 'actions' }, submit),
  );
  return form;
}

export function publishing(model) {
  const root = h('div', { class: 'stack publishing' }, h('p', { class: 'muted' }, 'Loading the publication…'));
  let cleanups = [];
  const clean = () => {
    for (const fn of cleanups) fn();
    cleanups = [];
  };

  function drawForm() {
    clean();
    fill(
      root,
      h('p', {}, `${model.name} is not published. Publish it to give outside callers a URL on the gateway, an API key and rate limits.`),
      configForm(model, null, (pub) => drawKey(pub, 'published')),
    );
  }

  function drawKey(pub, verb) {
    clean();
    fill(root, keyOnce(pub, verb, () => load()));
    root.querySelector('.key-once button.primary').focus();
  }

  async function rotate() {
    const grace = h('input', { type: 'number', name: 'gracePeriodSeconds', min: 0, max: 604800, step: 1, value: '0' });
    const ok = await confirmDialog({
      title: 'Rotate the API key?',
      body: 'A new key is made and shown once. The current key stops working after the grace period.',
      confirm: 'Rotate key',
      extra: field('Grace period (seconds, up to 7 days)', grace),
    });
    if (!ok) return;
    try {
      const path = modelPath(model.namespace, model.name, `/publish/rotate-key?gracePeriodSeconds=${encodeURIComponent(grace.value || '0')}`);
      const answer = await post(path);
      drawKey(withKey(await get(modelPath(model.namespace, model.name, '/publish')), answer.newApiKey), 'rotated');
    } catch (err) {
      toast(problem(err), 'error');
    }
  }

  async function unpublish() {
    const ok = await confirmDialog({ title: `Unpublish ${model.name}?`, body: 'Its URL stops answering and its keys stop working at once.', confirm: 'Unpublish' });
    if (!ok) return;
    try {
      await del(modelPath(model.namespace, model.name, '/publish'));
      toast(`Unpublished ${model.name}`);
      drawForm();
    } catch (err) {
      toast(problem(err), 'error');
    }
  }

  function drawPublished(pub) {
    clean();
    const limits = pub.rateLimiting;
    const usage = pub.usage || {};
    const charts = usageCharts(model, pub.modelType === 'openai');
    cleanups.push(charts.cleanup);
    fill(
      root,
      h(
        'dl',
        { class: 'facts' },
        h('dt', {}, 'URL'), h('dd', { class: 'mono' }, pub.externalUrl, ' ', copyButton(() => pub.externalUrl, 'Copy URL')),
        h('dt', {}, 'API key'), h('dd', { class: 'mono', dataset: { testid: 'masked-key' } }, pub.apiKey || '–'),
        h('dt', {}, 'Status'), h('dd', {}, pub.status),
        h('dt', {}, 'Type'), h('dd', {}, pub.modelType),
        h('dt', {}, 'Limits'), h('dd', {}, `${num(limits.requestsPerMinute)}/min, ${num(limits.requestsPerHour)}/h, burst ${num(limits.burstLimit)}/s, ${num(limits.tokensPerHour)} tokens/h`),
        h('dt', {}, 'Access'), h('dd', {}, pub.authentication.requireApiKey ? 'API key required' : 'Public (no key)', pub.authentication.allowedTenants.length ? `; tokens of ${pub.authentication.allowedTenants.join(', ')}` : ''),
        h('dt', {}, 'Usage'), h('dd', {}, `${num(usage.totalRequests)} requests (${num(usage.requestsToday)} today), ${num(usage.tokensUsed)} tokens, last ${when(usage.lastAccessTime)}`),
        h('dt', {}, 'Published'), h('dd', {}, when(pub.createdAt)),
        Object.entries(pub.metadata || {}).map(([k, v]) => [h('dt', {}, k), h('dd', { dataset: { metadata: k } }, typeof v === 'string' ? v : JSON.stringify(v))]),
      ),
      h('div', { class: 'actions' }, h('button', { type: 'button', onclick: () => drawEdit(pub) }, 'Edit settings'), h('button', { type: 'button', onclick: rotate }, 'Rotate key'), h('button', { type: 'button', class: 'danger', onclick: unpublish }, 'Unpublish')),
      charts,
      h('h3', {}, 'Examples'),
      h('p', { class: 'muted' }, 'Replace <your-api-key> with the key shown when the model was published or its key rotated.'),
      // Views after publish hold no usable key: say so in the examples rather than show a masked one.
      examples(withKey(pub, '<your-api-key>').documentation),
    );
  }

  function drawEdit(pub) {
    clean();
    fill(root, h('h3', {}, 'Publication settings'), configForm(model, pub, (saved) => { toast('Saved the publication'); drawPublished(saved); }), h('button', { type: 'button', onclick: () => drawPublished(pub) }, 'Cancel'));
  }

  async function load() {
    try {
      drawPublished(await get(modelPath(model.namespace, model.name, '/publish')));
    } catch (err) {
      if (err.status === 404) drawForm();
      else fill(root, h('p', { class: 'form-error', role: 'alert' }, problem(err)));
    }
  }

  load();
  root.cleanup = clean;
  return root;
}
