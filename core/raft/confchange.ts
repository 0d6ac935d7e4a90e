// Single-server membership changes: the byte encoding carried in a ConfChange
// entry's data, and the pure function that applies a change to a ConfState.

import { assert, assertNever } from '../assert.js';
import { confChangeContextBytesMax } from '../constants.js';
import type { NodeId } from '../ids.js';
import { ConfChangeType } from './types.js';
import type { ConfChange, ConfState } from './types.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });
/** Longest node id a conf change may carry, in UTF-8 bytes. */
export const confChangeNodeIdBytesMax = 255;

/** Layout: [type u8][node id length u8][node id UTF-8 bytes][context bytes, to the end]. */
export function encodeConfChange(cc: ConfChange): Uint8Array {
  const id = encoder.encode(cc.node);
  assert(id.length > 0 && id.length <= confChangeNodeIdBytesMax, 'conf change node id length');
  const context = cc.context ?? new Uint8Array(0);
  assert(context.length <= confChangeContextBytesMax, `conf change context of ${context.length} bytes`);
  const out = new Uint8Array(2 + id.length + context.length);
  out[0] = cc.type;
  out[1] = id.length;
  out.set(id, 2);
  out.set(context, 2 + id.length);
  return out;
}

/** Entries come from our own log: a malformed one is a bug or corruption, so this asserts. */
export function decodeConfChange(data: Uint8Array): ConfChange {
  assert(data.length >= 3, 'conf change entry length');
  const t = data[0];
  assert(t === ConfChangeType.AddLearner || t === ConfChangeType.AddVoter || t === ConfChangeType.Remove, `conf change type ${String(t)}`);
  const idBytes = data[1] as number;
  assert(idBytes > 0 && 2 + idBytes <= data.length, 'conf change node id length');
  const node = decoder.decode(data.subarray(2, 2 + idBytes)) as NodeId;
  const context = data.subarray(2 + idBytes);
  assert(context.length <= confChangeContextBytesMax, 'conf change context length');
  return context.length === 0 ? { type: t, node } : { type: t, node, context };
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
