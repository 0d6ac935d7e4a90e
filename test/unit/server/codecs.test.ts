// Checks the two codecs server/ adds on top of the protobuf schemas: lock
// commands as they travel in group 0's Raft log, and Raft messages as they
// travel between peers. Every command kind and message shape must come back
// identical, so every replica applies exactly what the leader proposed.

import t from 'tap';
import { clientId, logIndex, sessionId, term } from '../../../core/ids.js';
import type { LockCommand } from '../../../core/locks/index.js';
import { EntryType, type Message, MessageType } from '../../../core/raft/types.js';
import { schema } from '../../../protocol/index.js';
import { decodeLockCommand, encodeLockCommand } from '../../../server/services/locks/service.js';
import { fromWire, toWire } from '../../../server/raft/codec.js';
import { groupId, nodeId } from '../../../core/ids.js';

const client = { clientId: clientId('c-1/0'), seq: 7, nowMs: 1_700_000_000_123 };
const s = sessionId(42);
const commands: LockCommand[] = [
  { kind: 'openSession', ...client, ttlMs: 5000, lockDelayMs: 250 },
  { kind: 'keepAlive', ...client, session: s },
  { kind: 'closeSession', ...client, session: s },
  { kind: 'expireSessions', nowMs: 5, sessions: [{ session: s, renewedIndex: logIndex(9) }, { session: sessionId(43), renewedIndex: logIndex(11) }] },
  { kind: 'acquire', ...client, session: s, lock: 'orders/ü', mode: 'exclusive', requestId: 'r1', wait: true, waitMs: 1_500 },
  { kind: 'acquire', ...client, session: s, lock: 'x', mode: 'shared', requestId: 'r2', wait: false, waitMs: 0 },
  { kind: 'release', ...client, session: s, lock: 'x' },
  { kind: 'downgrade', ...client, session: s, lock: 'x' },
  { kind: 'cancelWait', nowMs: 9, session: s, lock: 'x', requestId: 'r2', reason: 'timeout' },
  { kind: 'cancelWait', nowMs: 9, session: s, lock: 'x', requestId: 'r2', reason: 'cancelled', clientId: clientId('c-2/1'), seq: 3 },
  { kind: 'forceRelease', ...client, lock: 'x' },
  { kind: 'wakeDelayed', nowMs: 77, lock: 'x' },
];

t.test('every lock command kind round-trips through the log encoding', async (t) => {
  for (const cmd of commands) {
    t.strictSame(decodeLockCommand(encodeLockCommand(cmd)), cmd, cmd.kind);
  }
});

t.test('an entry of an unknown kind is refused loudly, not misapplied', async (t) => {
  const bogus = schema.LockCommandEntry.encode({ kind: 99 }).finish();
  t.throws(() => decodeLockCommand(bogus), /unknown kind 99/);
});

t.test('raft messages round-trip through the peer wire format', async (t) => {
  const base: Message = {
    type: MessageType.App, from: nodeId('n1'), to: nodeId('n2'), term: term(5), logTerm: term(4), index: logIndex(100),
    entries: [{ term: term(5), index: logIndex(101), type: EntryType.Normal, data: new Uint8Array([1, 2, 3]) },
      { term: term(5), index: logIndex(102), type: EntryType.ConfChange, data: new Uint8Array([0, 110]) }],
    commit: logIndex(99), reject: false, rejectHint: logIndex(0), rejectHintTerm: term(0), snapshot: null, context: new Uint8Array(0),
  };
  const withSnapshot: Message = {
    ...base, type: MessageType.Snap, entries: [], reject: true, rejectHint: logIndex(7), rejectHintTerm: term(3), context: new Uint8Array([9]),
    snapshot: { meta: { index: logIndex(90), term: term(4), conf: { voters: [nodeId('n1'), nodeId('n2')], learners: [nodeId('n4')] } }, data: new Uint8Array([5, 6]) },
  };
  for (const m of [base, withSnapshot]) {
    const bytes = schema.RaftBatch.encode({ messages: [toWire(groupId(3), m)] }).finish();
    const decoded = schema.RaftBatch.decode(bytes).messages[0];
    t.ok(decoded !== undefined);
    if (decoded === undefined) continue;
    const back = fromWire(decoded);
    t.equal(back.group, 3);
    t.same(back.message, m, `message type ${m.type}`);
  }
});
