// Building the page without markup strings: every value becomes a text node or a property, never
// HTML, so nothing a user typed (a model's name, a description, a log line) can turn into elements.

const SVG_NS = 'http://www.w3.org/2000/svg';

function setProps(el, props) {
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.setAttribute('class', value);
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'value' || key === 'checked' || key === 'selected') el[key] = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
}

function appendAll(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/** An HTML element: h('button', {class: 'primary', onclick}, 'Deploy'). Strings are text. */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  setProps(el, props);
  appendAll(el, children);
  return el;
}

/** An SVG element, the same way. */
export function svg(tag, props = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setProps(el, props);
  appendAll(el, children);
  return el;
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  appendAll(el, children);
  return el;
}

/** A short message in the corner that goes away by itself. */
export function toast(text, kind = 'info') {
  const box = document.getElementById('toasts');
  const item = h('div', { class: `toast ${kind}` }, text);
  box.append(item);
  setTimeout(() => item.remove(), 6000);
}

/** Copy text to the clipboard, saying so; falls back to selecting it where the clipboard is refused. */
export async function copy(text, label = 'Copied') {
  try {
    await navigator.clipboard.writeText(text);
    toast(label);
  } catch {
    toast('Copy was refused by the browser: select the text and copy it', 'error');
  }
}

/** A copy button for a value. */
export function copyButton(getText, label = 'Copy') {
  return h('button', { type: 'button', class: 'small', onclick: () => copy(getText()) }, label);
}

/** A modal confirmation (a <dialog>, not window.confirm): resolves true when confirmed. */
export function confirmDialog({ title, body, confirm = 'Confirm', danger = true, extra = null }) {
  return new Promise((resolve) => {
    const ok = h('button', { type: 'submit', class: danger ? 'danger' : 'primary', value: 'ok' }, confirm);
    const dialog = h(
      'dialog',
      { class: 'confirm', 'aria-labelledby': 'confirm-title' },
      h(
        'form',
        { method: 'dialog' },
        h('h2', { id: 'confirm-title' }, title),
        h('p', {}, body),
        extra,
        h('div', { class: 'actions' }, h('button', { type: 'submit', value: 'cancel' }, 'Cancel'), ok),
      ),
    );
    dialog.addEventListener('close', () => {
      resolve(dialog.returnValue === 'ok');
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
    ok.focus();
  });
}

/** A labelled form field; `input` is the control. Errors for it are shown under it. */
export function field(label, input, hint = null) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  const error = h('p', { class: 'field-error', id: `${id}-error`, hidden: true });
  input.setAttribute('aria-describedby', `${id}-error`);
  return h(
    'div',
    { class: 'field', dataset: { field: input.name || '' } },
    h('label', { for: id }, label),
    input,
    hint ? h('p', { class: 'hint' }, hint) : null,
    error,
  );
}

/** Show the API's complaint at the field it names ("Field 'name' must ..."), or return false. */
export function showFieldError(form, details) {
  for (const el of form.querySelectorAll('.field-error')) {
    el.hidden = true;
    el.textContent = '';
  }
  for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
  const match = /Field '([A-Za-z0-9_.]+)'/.exec(details || '');
  if (!match) return false;
  const name = match[1].split('.').pop();
  const input = form.querySelector(`[name="${CSS.escape(name)}"]`);
  if (!input) return false;
  const error = document.getElementById(`${input.id}-error`);
  error.textContent = details;
  error.hidden = false;
  input.setAttribute('aria-invalid', 'true');
  input.focus();
  return true;
}
