// A model's status as a badge, the same on every screen.

import { h } from './dom.js';

const KIND = { Ready: 'ok', Pending: 'wait', Loading: 'wait', FailedToLoad: 'bad', Unknown: 'wait' };

export function phaseOf(model) {
  return (model.statusDetails && model.statusDetails.phase) || model.status || 'Unknown';
}

export function badge(phase) {
  return h('span', { class: `badge ${KIND[phase] || 'wait'}`, dataset: { phase } }, phase);
}

/** Merge a model.statusChanged event's data into a model view. */
export function applyStatus(model, data) {
  const details = { ...(model.statusDetails || {}), ...data };
  return { ...model, status: data.phase || model.status, ready: data.ready, statusDetails: details };
}

export function failure(model) {
  const d = model.statusDetails || {};
  return d.error || (d.ready ? '' : d.message || d.reason || '');
}
