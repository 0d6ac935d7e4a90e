// Single-server membership changes: the byte encoding carried in a ConfChange
// entry's data, and the pure function that applies a change to a ConfState.

import { assert, assertNever } from '../assert.js';
import type { NodeId } from '../ids.js';
import { ConfChangeType } from './types.js';
import type { ConfChange, ConfState } from './types.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });
/** Longest node id a conf change may carry, in UTF-8 bytes. */
export const confChangeNodeIdBytesMax = 255;

/** Layout: [type u8][node id UTF-8 bytes]. */
export function encodeConfChange(cc: ConfChange): Uint8Array {
  const id = encoder.encode(cc.node);
  assert(id.length > 0 && id.length <= confChangeNodeIdBytesMax, 'conf change node id length');
  const out = new Uint8Array(1 + id.length);
  out[0] = cc.type;
  out.set(id, 1);
  return out;
}

export function decodeConfChange(data: Uint8Array): ConfChange {
  assert(data.length >= 2 && data.length <= 1 + confChangeNodeIdBytesMax, 'conf change entry length');
  const t = data[0];
  assert(t === ConfChangeType.AddLearner || t === ConfChangeType.AddVoter || t === ConfChangeType.Remove, `conf change type ${String(t)}`);
  const node = decoder.decode(data.subarray(1)) as NodeId;
  return { type: t, node };
}

/**
 * The configuration after `cc`. AddLearner on a voter demotes it; AddVoter on
 * a learner promotes it; Remove drops it from either set. A change that would
 * remove or demote the last voter is refused (returns `conf` unchanged) — it
 * would wedge the group.
 */
export function applyConfChange(conf: ConfState, cc: ConfChange): ConfState {
  const voters = conf.voters.filter((v) => v !== cc.node);
  const learners = conf.learners.filter((v) => v !== cc.node);
  switch (cc.type) {
    case ConfChangeType.AddLearner:
      learners.push(cc.node);
      break;
    case ConfChangeType.AddVoter:
      voters.push(cc.node);
      break;
    case ConfChangeType.Remove:
      break;
    default:
      assertNever(cc.type, 'conf change type');
  }
  if (voters.length === 0 && conf.voters.length > 0) return conf;
  voters.sort();
  learners.sort();
  assert(!voters.some((v) => learners.includes(v)), 'a node is both voter and learner');
  return { voters, learners };
}
