// A tiny hash router: '#/models/tenant-a/iris' → the screen whose pattern matches, with its params.
// Hash routes keep the server simple (one page at /) and never put a token in a URL.

const routes = [];
let cleanup = null;
let allowed = () => true;

/** Which screens the caller may see (admin screens for the admin only). */
export function guard(fn) {
  allowed = fn;
}

/** Register a screen: pattern like '/models/:namespace/:name'; render(root, params) may return a cleanup. */
export function route(pattern, render, { admin = false } = {}) {
  const names = [];
  const regex = new RegExp(
    `^${pattern.replace(/:([a-zA-Z]+)/g, (_, name) => {
      names.push(name);
      return '([^/]+)';
    })}$`,
  );
  routes.push({ regex, names, render, admin });
}

export function current() {
  return location.hash.replace(/^#/, '') || '/models';
}

export function go(path) {
  if (current() === path) render();
  else location.hash = `#${path}`;
}

/** Draw the screen for the current hash into #view. */
export function render() {
  if (cleanup) {
    try {
      cleanup();
    } catch {
      /* a screen's cleanup must not stop the next screen */
    }
    cleanup = null;
  }
  const view = document.getElementById('view');
  const path = current();
  for (const r of routes) {
    const match = r.regex.exec(path);
    if (!match) continue;
    if (!allowed(r)) {
      location.hash = '#/models'; // an admin screen after signing in as a tenant
      return;
    }
    const params = Object.fromEntries(r.names.map((n, i) => [n, decodeURIComponent(match[i + 1])]));
    view.replaceChildren();
    const result = r.render(view, params);
    cleanup = typeof result === 'function' ? result : null;
    return;
  }
  view.replaceChildren();
  const p = document.createElement('p');
  p.textContent = 'There is no such page here. ';
  const a = document.createElement('a');
  a.href = '#/models';
  a.textContent = 'Go to models';
  p.append(a);
  view.append(p);
}
