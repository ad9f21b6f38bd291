// Who is signed in. The token lives in session storage only (never in a URL, never in local storage):
// it goes away with the tab, and signing out removes it at once.

const KEY = 'inferbox.token';
const listeners = new Set();
let user = null;
let expiryTimer = null;

export const session = {
  token() {
    return sessionStorage.getItem(KEY);
  },
  user() {
    return user;
  },
  isAdmin() {
    return Boolean(user && user.isAdmin);
  },
  /** Keep a verified token and the caller it names (GET /api/tenant's answer). */
  start(token, who) {
    sessionStorage.setItem(KEY, token);
    user = who;
    clearTimeout(expiryTimer);
    if (who.expiresAt) {
      const left = Date.parse(who.expiresAt) - Date.now();
      // setTimeout's longest wait is about 24.8 days; longer tokens are caught by the next 401.
      if (left < 2 ** 31 - 1) expiryTimer = setTimeout(() => this.expire('Your session expired'), Math.max(0, left));
    }
    emit({ type: 'start' });
  },
  resume(who) {
    user = who;
    emit({ type: 'start' });
  },
  end(message = null) {
    sessionStorage.removeItem(KEY);
    user = null;
    clearTimeout(expiryTimer);
    emit({ type: 'end', message });
  },
  /** The token was refused or ran out: back to sign-in, saying why. */
  expire(reason) {
    if (!this.token()) return;
    this.end(`${reason || 'Your session ended'}. Sign in again.`);
  },
  onChange(fn) {
    listeners.add(fn);
    return () => listeners.delete(fn);
  },
};

function emit(change) {
  for (const fn of listeners) fn(change);
}
