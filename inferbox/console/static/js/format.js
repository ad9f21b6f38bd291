// Small formatting helpers shared by the screens.

/** "3m", "2h", "5d": how long ago an RFC 3339 time was, as kubectl writes ages. */
export function age(iso) {
  if (!iso) return '–';
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 60) return `${Math.floor(seconds)}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h`;
  return `${Math.floor(seconds / 86400)}d`;
}

export function when(iso) {
  return iso ? new Date(iso).toLocaleString() : '–';
}

export function num(n) {
  return typeof n === 'number' ? n.toLocaleString() : '–';
}

/** An API error in plain words. */
export function problem(err) {
  if (!err) return 'Something went wrong';
  if (err.status === 0) return err.details;
  return err.details ? `${err.error}: ${err.details}` : err.error || String(err);
}
