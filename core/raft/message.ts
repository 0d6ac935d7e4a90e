// Building the one flat Message struct with defaults for the unused fields, so
// every message has the same shape (one hidden class) and callers name only what matters.

import { assert } from '../assert.js';
import { logIndex, term } from '../ids.js';
import type { LogIndex, NodeId, Term } from '../ids.js';
import type { Entry, Message, MessageType, Snapshot } from './types.js';

export const emptyBytes: Uint8Array = new Uint8Array(0);
export const noEntries: readonly Entry[] = Object.freeze([]) as readonly Entry[];

export interface MessageFields {
  logTerm?: number;
  index?: number;
  entries?: readonly Entry[];
  commit?: number;
  reject?: boolean;
  rejectHint?: number;
  rejectHintTerm?: number;
  snapshot?: Snapshot | null;
  context?: Uint8Array;
}

export function newMessage(type: MessageType, from: NodeId, to: NodeId, t: number, f: MessageFields = {}): Message {
  assert(from !== to, 'a replica never messages itself');
  assert(t >= 0, 'negative term');
  return {
    type,
    from,
    to,
    term: term(t) as Term,
    logTerm: term(f.logTerm ?? 0),
    index: logIndex(f.index ?? 0) as LogIndex,
    entries: f.entries ?? noEntries,
    commit: logIndex(f.commit ?? 0),
    reject: f.reject ?? false,
    rejectHint: logIndex(f.rejectHint ?? 0),
    rejectHintTerm: term(f.rejectHintTerm ?? 0),
    snapshot: f.snapshot ?? null,
    context: f.context ?? emptyBytes,
  };
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** A Map key for a context (latin1 of the bytes). */
export function bytesKey(a: Uint8Array): string {
  let s = '';
  for (let i = 0; i < a.length; i++) s += String.fromCharCode(a[i] as number);
  return s;
}
