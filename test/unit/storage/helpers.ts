// Shared fixtures for the WAL tests: temp dirs removed at teardown, and builders
// for entries and hard states with recognisable payloads.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { GroupId, NodeId } from '../../../core/ids.js';
import { groupId, logIndex, nodeId, term } from '../../../core/ids.js';
import type { Entry, HardState } from '../../../core/raft/types.js';
import { EntryType } from '../../../core/raft/types.js';

interface Teardown {
  teardown(fn: () => void | Promise<void>): void;
}

export function tempDir(t: Teardown): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsync-wal-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export const g0: GroupId = groupId(0);
export const g1: GroupId = groupId(1);
export const g7: GroupId = groupId(7);

/** Payload `g<group>/t<term>/i<index>` padded to `pad` bytes, so mixed-up entries show. */
export function payload(group: number, t: number, index: number, pad = 0): Uint8Array {
  const s = `g${group}/t${t}/i${index}`;
  const out = new Uint8Array(Math.max(pad, s.length));
  out.set(new TextEncoder().encode(s));
  return out;
}

export function entries(group: number, t: number, from: number, to: number, pad = 0): Entry[] {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++) {
    out.push({ term: term(t), index: logIndex(i), type: EntryType.Normal, data: payload(group, t, i, pad) });
  }
  return out;
}

export function hs(t: number, commit: number, vote = ''): HardState {
  const v: NodeId | '' = vote === '' ? '' : nodeId(vote);
  return { term: term(t), commit: logIndex(commit), vote: v };
}

/** A comparable summary of a log: [index, term, payload-as-text]. */
export function summary(log: readonly Entry[]): [number, number, string][] {
  return log.map((e) => [e.index, e.term, new TextDecoder().decode(e.data).replace(/\0+$/, '')]);
}
