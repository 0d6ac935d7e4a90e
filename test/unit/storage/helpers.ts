// Shared fixtures for the WAL tests: temp dirs removed at teardown, builders for
// entries and hard states with recognisable payloads, a record lister for segment
// files, and a Raft restart built the way the server's group runner builds it.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { appendEntriesCountMax, electionTimeoutTicksMin, heartbeatIntervalTicks, inflightAppendsMax } from '../../../core/constants.js';
import type { GroupId, NodeId } from '../../../core/ids.js';
import { groupId, logIndex, nodeId, term } from '../../../core/ids.js';
import { Xoshiro128 } from '../../../core/prng.js';
import { Raft } from '../../../core/raft/raft.js';
import type { ConfState, Entry, HardState } from '../../../core/raft/types.js';
import { EntryType } from '../../../core/raft/types.js';
import { checkRecordAt, RecordType } from '../../../server/storage/format.js';
import type { RecoveredGroup } from '../../../server/storage/recovery.js';
import { toPersistedState } from '../../../server/storage/wal.js';

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

export interface RecordSpan {
  readonly offset: number;
  readonly end: number;
  readonly type: 'hardState' | 'entries';
  readonly group: GroupId;
  readonly seq: number;
}

/** The valid records of a segment file from its start, up to the first invalid one. */
export function recordsIn(buf: Uint8Array): RecordSpan[] {
  const out: RecordSpan[] = [];
  let off = 0;
  // Bounded by the buffer length: each step consumes a whole record or stops.
  while (off < buf.length) {
    const c = checkRecordAt(buf, off);
    if (!c.ok) break;
    const type = c.header.type === RecordType.HardState ? 'hardState' : 'entries';
    out.push({ offset: off, end: off + c.totalBytes, type, group: c.header.group, seq: c.header.seq });
    off += c.totalBytes;
  }
  return out;
}

export const bootstrapConf: ConfState = { voters: [nodeId('n1'), nodeId('n2'), nodeId('n3')], learners: [] };

/** Restarts a replica from a recovered group the way the server's group runner does (same config); throws what Raft throws. */
export function restartRaft(rec: RecoveredGroup | undefined): Raft {
  return new Raft({
    id: nodeId('n1'),
    electionTicks: electionTimeoutTicksMin,
    heartbeatTicks: heartbeatIntervalTicks,
    prng: new Xoshiro128(1),
    preVote: true,
    checkQuorum: true,
    maxEntriesPerMsg: appendEntriesCountMax,
    maxInflightMsgs: inflightAppendsMax,
  }, toPersistedState(rec, bootstrapConf));
}
