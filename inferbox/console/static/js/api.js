// The API client: JSON over fetch with the bearer token, errors in the spec's shape as ApiError.

import { session } from './session.js';

export class ApiError extends Error {
  constructor(status, error, details) {
    super(details ? `${error}: ${details}` : error);
    this.status = status;
    this.error = error;
    this.details = details;
  }
}

/** Call the API. `body` is sent as JSON; the answer's JSON is returned; a 4xx/5xx throws ApiError. */
export async function api(method, path, body = undefined, { auth = true } = {}) {
  const headers = { Accept: 'application/json' };
  const token = auth ? session.token() : null;
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch {
    throw new ApiError(0, 'Offline', 'The control plane did not answer: check the connection and try again');
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const err = new ApiError(
      response.status,
      (data && data.error) || `HTTP ${response.status}`,
      (data && data.details) || (data ? '' : text.slice(0, 200)),
    );
    if (response.status === 401 && token) session.expire(err.details || err.error);
    throw err;
  }
  return data;
}

export const get = (path) => api('GET', path);
export const post = (path, body) => api('POST', path, body === undefined ? {} : body);
export const put = (path, body) => api('PUT', path, body);
export const del = (path) => api('DELETE', path);

/** `?namespace=` for the admin (who sees every tenant); a tenant always works in its own. */
export function scoped(path, namespace) {
  if (!session.isAdmin() || !namespace) return path;
  const sep = path.includes('?') ? '&' : '?';
  return `${path}${sep}namespace=${encodeURIComponent(namespace)}`;
}

export function modelPath(namespace, name, rest = '') {
  return scoped(`/api/models/${encodeURIComponent(name)}${rest}`, namespace);
}
