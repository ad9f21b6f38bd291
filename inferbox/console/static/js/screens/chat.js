// The chat box of a text-generation model's test panel: the conversation so far is sent to
// POST /api/models/{name}/chat with `stream: true`, and the answer's tokens are shown as they arrive.
// Every message is a text node (never markup): what the model writes cannot become elements.

import { modelPath } from '../api.js';
import { fill, h } from '../dom.js';
import { num, problem } from '../format.js';
import { postStream } from '../sse.js';

const MAX_TOKENS = 4096; // the route's own limit (api/chat.py)

function bubble(role, text = '') {
  const body = h('p', { class: 'msg-text' }, text);
  const item = h('li', { class: `msg ${role}`, dataset: { role } }, h('span', { class: 'msg-who' }, role === 'user' ? 'You' : 'Model'), body);
  return { item, body };
}

export function chatPanel(model) {
  const messages = []; // the conversation: {role, content}, what the next call sends
  const log = h('ol', { class: 'chat-log', role: 'log', 'aria-live': 'polite', 'aria-label': 'Conversation', dataset: { testid: 'chat-log' } });
  const prompt = h('textarea', { name: 'message', rows: 3, 'aria-label': 'Message', placeholder: 'Write a message (Enter sends, Shift+Enter starts a new line)' });
  const maxTokens = h('input', { type: 'number', name: 'max_tokens', min: 1, max: MAX_TOKENS, value: '64', 'aria-label': 'Most tokens in the answer', class: 'narrow' });
  const send = h('button', { type: 'submit', class: 'primary' }, 'Send');
  const stop = h('button', { type: 'button', disabled: true, title: 'Stop the answer (Escape)' }, 'Stop');
  const clear = h('button', { type: 'button', class: 'ghost' }, 'New conversation');
  const usage = h('p', { class: 'muted', dataset: { testid: 'chat-usage' } });
  const error = h('p', { class: 'form-error', role: 'alert', hidden: true });
  let running = null; // the AbortController of the answer being streamed

  function showError(text) {
    error.textContent = text;
    error.hidden = !text;
  }

  async function ask() {
    const text = prompt.value.trim();
    const limit = Number(maxTokens.value);
    if (!text || running) return;
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_TOKENS) {
      showError(`Most tokens must be a whole number from 1 to ${MAX_TOKENS}`);
      maxTokens.focus();
      return;
    }
    showError('');
    fill(usage);
    const asked = bubble('user', text);
    log.append(asked.item);
    const answer = bubble('assistant');
    answer.item.dataset.state = 'streaming';
    log.append(answer.item);
    prompt.value = '';
    running = new AbortController();
    send.disabled = true;
    stop.disabled = false;
    let reply = '';
    let finish = null;
    let ended = false; // saw `[DONE]`: a stream without it broke off (the replica went away)
    let chunks = 0;
    const started = performance.now();
    let first = null;
    const body = {
      messages: [...messages, { role: 'user', content: text }],
      max_tokens: limit,
      stream: true,
      stream_options: { include_usage: true },
    };
    try {
      await postStream(
        modelPath(model.namespace, model.name, '/chat'),
        body,
        (data) => {
          if (data === '[DONE]') {
            ended = true;
            return;
          }
          let chunk;
          try {
            chunk = JSON.parse(data);
          } catch {
            return;
          }
          const choice = (chunk.choices || [])[0];
          const piece = choice && choice.delta && choice.delta.content;
          if (piece) {
            if (first === null) first = performance.now() - started;
            chunks += 1;
            reply += piece;
            answer.body.append(piece);
            log.scrollTop = log.scrollHeight;
          }
          if (choice && choice.finish_reason) finish = choice.finish_reason;
          if (chunk.usage) {
            const u = chunk.usage;
            fill(usage, `Usage: ${num(u.prompt_tokens)} prompt + ${num(u.completion_tokens)} completion = ${num(u.total_tokens)} tokens`, ` · ${chunks} chunks, first after ${(first ?? 0).toFixed(0)} ms, all in ${(performance.now() - started).toFixed(0)} ms`, finish ? ` · finished: ${finish}` : '');
          }
        },
        running.signal,
      );
      // Kept only once answered: a failed turn is not part of the conversation sent next time.
      messages.push({ role: 'user', content: text }, { role: 'assistant', content: reply });
      answer.item.dataset.state = ended ? 'done' : 'broken';
      if (!reply) answer.body.append('(no text)');
      if (!ended) showError('The answer broke off before its end (the model went away): what came is kept');
    } catch (err) {
      if (err.name === 'AbortError') {
        answer.item.dataset.state = 'stopped';
        answer.body.append(' [stopped]');
        messages.push({ role: 'user', content: text }, { role: 'assistant', content: reply });
      } else {
        answer.item.remove();
        asked.item.remove();
        prompt.value = text; // nothing lost: the message can be sent again
        showError(problem(err));
      }
    } finally {
      running = null;
      send.disabled = false;
      stop.disabled = true;
      prompt.focus();
    }
  }

  prompt.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      ask();
    }
  });
  const panel = h(
    'form',
    {
      class: 'chat stack',
      'aria-label': 'Chat',
      onsubmit: (event) => {
        event.preventDefault();
        ask();
      },
      onkeydown: (event) => {
        if (event.key === 'Escape' && running) running.abort();
      },
    },
    log,
    error,
    prompt,
    h('div', { class: 'toolbar' }, send, stop, clear, h('label', { class: 'check' }, 'Most tokens ', maxTokens)),
    usage,
  );
  stop.addEventListener('click', () => running && running.abort());
  clear.addEventListener('click', () => {
    if (running) running.abort();
    messages.length = 0;
    fill(log);
    fill(usage);
    showError('');
    prompt.focus();
  });
  panel.cleanup = () => running && running.abort();
  return panel;
}
