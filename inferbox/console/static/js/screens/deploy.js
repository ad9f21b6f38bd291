// The deploy form (POST /api/models) and the edit form (PUT /api/models/{name}): every field of the
// model's config, frameworks from /api/frameworks, the API's 400 shown at the field it names.

import { get, modelPath, post, put } from '../api.js';
import { field, fill, h, showFieldError, toast } from '../dom.js';
import { problem } from '../format.js';
import { go } from '../router.js';
import { session } from '../session.js';

// What this console knows when /api/frameworks is not there (an older control plane answers 404).
const KNOWN_FRAMEWORKS = [
  { name: 'sklearn', description: 'scikit-learn (model.joblib or model.pkl)' },
  { name: 'xgboost', description: 'XGBoost (model.bst or model.json)' },
  { name: 'lightgbm', description: 'LightGBM (model.bst)' },
  { name: 'onnx', description: 'ONNX (model.onnx)' },
  { name: 'pytorch', description: 'PyTorch (TorchScript model.pt)' },
  { name: 'huggingface', description: 'Hugging Face transformers' },
];

async function frameworks() {
  try {
    const answer = await get('/api/frameworks');
    return answer.frameworks && answer.frameworks.length ? answer.frameworks : KNOWN_FRAMEWORKS;
  } catch {
    return KNOWN_FRAMEWORKS;
  }
}

function numberInput(name, value, min, max) {
  return h('input', { name, type: 'number', inputmode: 'numeric', min, max, step: 1, value: String(value) });
}

/** The form; `model` set means edit. Calls onDone(name, namespace) after success. */
export function modelForm({ model = null, onDone }) {
  const editing = Boolean(model);
  const status = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const name = h('input', { name: 'name', required: true, maxlength: 63, autocomplete: 'off', spellcheck: 'false', pattern: '[a-z0-9]([-a-z0-9]*[a-z0-9])?', value: model ? model.name : '' });
  const namespace = h('select', { name: 'namespace' });
  const framework = h('select', { name: 'framework', required: true }, h('option', { value: model ? model.predictor.framework : '' }, model ? model.predictor.framework : 'Loading…'));
  const storageUri = h('input', { name: 'storageUri', required: true, spellcheck: 'false', placeholder: 'file:///models/iris or s3://bucket/path', value: model ? model.predictor.storageUri : '' });
  const minReplicas = numberInput('minReplicas', model ? model.minReplicas : 1, 0, 100);
  const maxReplicas = numberInput('maxReplicas', model ? model.maxReplicas : 1, 1, 100);
  const scaleTarget = numberInput('scaleTarget', model ? model.scaleTarget : 10, 1, 1000);
  const scaleMetric = h('select', { name: 'scaleMetric' }, ['concurrency', 'rps', 'cpu', 'memory'].map((m) => h('option', { value: m, selected: model ? model.scaleMetric === m : m === 'concurrency' }, m)));
  const submit = h('button', { type: 'submit', class: 'primary' }, editing ? 'Save changes' : 'Deploy');

  frameworks().then((list) => {
    const chosen = model ? model.predictor.framework : list[0].name;
    fill(framework, list.map((f) => h('option', { value: f.name, selected: f.name === chosen, disabled: f.available === false }, f.description ? `${f.name} – ${f.description}` : f.name)));
  });
  if (session.isAdmin() && !editing) {
    get('/api/admin/tenants')
      .then((answer) => fill(namespace, answer.tenants.map((t) => h('option', { value: t.name }, t.name))))
      .catch(() => {});
  }

  const form = h(
    'form',
    {
      class: 'card form',
      novalidate: true,
      onsubmit: async (event) => {
        event.preventDefault();
        status.hidden = true;
        showFieldError(form, '');
        const config = {
          framework: framework.value,
          storageUri: storageUri.value.trim(),
          minReplicas: Number(minReplicas.value),
          maxReplicas: Number(maxReplicas.value),
          scaleTarget: Number(scaleTarget.value),
          scaleMetric: scaleMetric.value,
        };
        submit.disabled = true;
        try {
          if (editing) {
            await put(modelPath(model.namespace, model.name), config);
            toast(`Saved ${model.name}`);
            onDone(model.name, model.namespace);
          } else {
            const body = { name: name.value.trim(), ...config };
            if (session.isAdmin()) body.namespace = namespace.value;
            const answer = await post('/api/models', body);
            toast(`Deploying ${answer.name}`);
            onDone(answer.name, answer.namespace);
          }
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
    editing ? null : field('Name', name, 'Lowercase letters, digits and "-" (a DNS label).'),
    session.isAdmin() && !editing ? field('Tenant', namespace) : null,
    field('Framework', framework),
    field('Storage URI', storageUri, 'Where the model files are: file://, s3://, gs://, https:// or hf://.'),
    h(
      'div',
      { class: 'grid four' },
      field('Min replicas', minReplicas, '0 scales to zero when idle'),
      field('Max replicas', maxReplicas),
      field('Scale target', scaleTarget, 'per replica'),
      field('Scale metric', scaleMetric),
    ),
    h('div', { class: 'actions' }, submit),
  );
  return form;
}

export function render(root) {
  const form = modelForm({ onDone: (name, namespace) => go(`/models/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`) });
  root.append(h('section', {}, h('h1', {}, 'Deploy a model'), form));
  form.querySelector('input[name="name"]').focus();
}
