// Reading a streamed answer (server-sent events) from fetch: EventSource cannot POST a body or send
// the bearer token, so the body's ReadableStream is read and cut into events here, as they arrive.

import { ApiError } from './api.js';
import { session } from './session.js';

/** The `data:` payloads of one event block ("data: a\ndata: b" is "a\nb"); null for a comment. */
function dataOf(block) {
  const lines = block.split(/\r?\n/).filter((line) => line.startsWith('data:'));
  if (!lines.length) return null;
  return lines.map((line) => line.slice(5).replace(/^ /, '')).join('\n');
}

/**
 * POST `body` as JSON to `path` and call `onData(payload)` with each event's data as it arrives
 * (the text, not parsed). Resolves when the stream ends; a 4xx/5xx before the stream throws ApiError
 * (the spec's shape), as api() does. `signal` (an AbortSignal) stops reading.
 */
export async function postStream(path, body, onData, signal) {
  const headers = { Accept: 'text/event-stream', 'Content-Type': 'application/json' };
  const token = session.token();
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, {
      method: 'POST',
      headers,
      body: JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
      signal,
    });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, 'Offline', 'The control plane did not answer: check the connection and try again');
  }
  if (!response.ok) {
    const text = await response.text();
    let data = null;
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
    const err = new ApiError(response.status, (data && data.error) || `HTTP ${response.status}`, (data && data.details) || '');
    if (response.status === 401 && token) session.expire(err.details || err.error);
    throw err;
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let pending = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    pending += value;
    // An event ends at a blank line; a partial one waits for the rest.
    const blocks = pending.split(/\r?\n\r?\n/);
    pending = blocks.pop();
    for (const block of blocks) {
      const data = dataOf(block);
      if (data !== null) onData(data);
    }
  }
  const last = dataOf(pending);
  if (last !== null) onData(last);
}
