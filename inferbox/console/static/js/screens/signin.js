// Sign-in: the admin's username and password, or a tenant token pasted (an admin mints one on the
// Tenants screen). Either way the token is checked with GET /api/tenant before it is kept.

import { api } from '../api.js';
import { field, h } from '../dom.js';
import { problem } from '../format.js';
import { session } from '../session.js';

async function verify(token) {
  const who = await fetch('/api/tenant', { headers: { Authorization: `Bearer ${token}` }, cache: 'no-store' });
  const data = await who.json().catch(() => ({}));
  if (!who.ok) throw Object.assign(new Error(), { status: who.status, error: data.error || 'Refused', details: data.details });
  return data;
}

export function render(root, { message }) {
  const status = h('p', { class: 'form-error', role: 'alert', hidden: !message }, message || '');
  const say = (text) => {
    status.textContent = text;
    status.hidden = !text;
  };

  const username = h('input', { name: 'username', autocomplete: 'username', required: true, value: 'admin' });
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const adminForm = h(
    'form',
    {
      class: 'card',
      'aria-labelledby': 'admin-signin',
      onsubmit: async (event) => {
        event.preventDefault();
        say('');
        try {
          const answer = await api('POST', '/api/admin/login', { username: username.value, password: password.value }, { auth: false });
          session.start(answer.token, await verify(answer.token));
        } catch (err) {
          say(problem(err));
          password.select();
        }
      },
    },
    h('h2', { id: 'admin-signin' }, 'Platform admin'),
    field('Username', username),
    field('Password', password),
    h('button', { type: 'submit', class: 'primary' }, 'Sign in'),
  );

  const token = h('textarea', { name: 'token', rows: 4, required: true, spellcheck: 'false', autocomplete: 'off' });
  const tokenForm = h(
    'form',
    {
      class: 'card',
      'aria-labelledby': 'token-signin',
      onsubmit: async (event) => {
        event.preventDefault();
        say('');
        const value = token.value.trim().replace(/^Bearer\s+/i, '');
        try {
          session.start(value, await verify(value));
        } catch (err) {
          say(problem(err));
        }
      },
    },
    h('h2', { id: 'token-signin' }, 'Tenant user'),
    field('Token', token, 'Paste a token for your tenant: one an admin minted for it, or from `inferbox token --tenant NAME`.'),
    h('button', { type: 'submit', class: 'primary' }, 'Sign in with token'),
  );

  root.append(
    h(
      'section',
      { class: 'signin' },
      h('h1', {}, 'Sign in to inferbox'),
      status,
      h('div', { class: 'grid two' }, adminForm, tokenForm),
      h('p', { class: 'muted' }, 'Your token is kept in this tab only and is removed when you sign out or close it.'),
    ),
  );
  (message ? password : username).focus();
}
