// The live connection to /ws: authenticates with a first message (the token stays out of the URL),
// reconnects with exponential back-off and jitter, and says on the page whether it is live.

import { session } from './session.js';

const listeners = new Set();
let socket = null;
let attempt = 0;
let retryTimer = null;
let wanted = false;
let state = 'off';

function show(next, text) {
  state = next;
  const el = document.getElementById('live');
  if (!el) return;
  el.dataset.state = next;
  el.textContent = text;
  el.title = next === 'live' ? 'Status updates arrive as they happen' : text;
}

function connect() {
  if (!wanted || !session.token()) return;
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const ws = new WebSocket(`${scheme}://${location.host}/ws`);
  socket = ws;
  show('connecting', attempt ? 'Reconnecting…' : 'Connecting…');
  ws.addEventListener('open', () => ws.send(JSON.stringify({ token: session.token() })));
  ws.addEventListener('message', (msg) => {
    let data;
    try {
      data = JSON.parse(msg.data);
    } catch {
      return;
    }
    if (data.type === 'welcome') {
      attempt = 0;
      show('live', 'Live');
      for (const fn of listeners) fn({ type: 'live.connected' });
      return;
    }
    if (data.type === 'ping') return;
    for (const fn of listeners) fn(data);
  });
  ws.addEventListener('close', (event) => {
    if (socket !== ws) return;
    socket = null;
    if (!wanted) return;
    if (event.code === 4401) {
      session.expire(event.reason || 'Your session was refused');
      return;
    }
    attempt += 1;
    const delay = Math.min(30000, 500 * 2 ** Math.min(attempt, 6)) * (0.75 + Math.random() / 2);
    show(navigator.onLine === false ? 'offline' : 'retrying', `Offline – retrying in ${Math.round(delay / 1000)}s`);
    retryTimer = setTimeout(connect, delay);
  });
}

export const live = {
  start() {
    wanted = true;
    attempt = 0;
    if (!socket) connect();
  },
  stop() {
    wanted = false;
    clearTimeout(retryTimer);
    if (socket) socket.close(1000, 'signed out');
    socket = null;
    show('off', '');
  },
  /** Hear every event; returns the function that stops listening. */
  listen(fn) {
    listeners.add(fn);
    return () => listeners.delete(fn);
  },
  state() {
    return state;
  },
};

window.addEventListener('online', () => {
  if (wanted && !socket) {
    clearTimeout(retryTimer);
    connect();
  }
});
