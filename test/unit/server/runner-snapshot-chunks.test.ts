// Receiving a snapshot in chunks (server/raft/runner.ts, GroupHost.receive with
// RaftBatch.chunks): chunks in order reassemble into the snapshot message, which is
// stepped like any other (the replica restores from it); a gap or another snapshot
// discards the half-built one; a chunk past its message's end, a reassembled message that
// is not the snapshot its chunks named, or one from a sender it does not name is refused
// (the link is closed); a half-built snapshot whose sender went quiet is dropped.

import t from 'tap';
import { raftSnapshotAssemblyIdleMsMax } from '../../../core/constants.js';
import { groupId, logIndex, nodeId, term } from '../../../core/ids.js';
import { type Message, MessageType } from '../../../core/raft/types.js';
import { schema } from '../../../protocol/index.js';
import { toWire } from '../../../server/raft/codec.js';
import type { StateMachine } from '../../../server/raft/runner.js';
import { testHost } from './runner-env.js';

const group = groupId(7);
const leader = nodeId('n1');
const self = nodeId('n2');

function snapMessage(data: Uint8Array, opts: { from?: string; index?: number } = {}): Uint8Array {
  const m: Message = {
    type: MessageType.Snap, from: nodeId(opts.from ?? 'n1'), to: self, term: term(2), logTerm: term(0), index: logIndex(0), entries: [],
    commit: logIndex(0), reject: false, rejectHint: logIndex(0), rejectHintTerm: term(0), context: new Uint8Array(0),
    snapshot: { meta: { index: logIndex(opts.index ?? 40), term: term(2), conf: { voters: [leader, self], learners: [] } }, data },
  };
  return schema.RaftMessage.encode(toWire(group, m)).finish();
}

function chunks(bytes: Uint8Array, size: number, index = 40): { group: number; index: number; term: number; total: number; offset: number; data: Uint8Array }[] {
  const out = [];
  for (let o = 0; o < bytes.length; o += size) out.push({ group, index, term: 2, total: bytes.length, offset: o, data: bytes.subarray(o, o + size) });
  return out;
}

function setup(): { h: ReturnType<typeof testHost>; restored: Uint8Array[]; now: { ms: number } } {
  const now = { ms: 0 };
  const h = testHost({ id: 'n2', clock: { nowMs: () => now.ms } });
  const restored: Uint8Array[] = [];
  const sm: StateMachine = { apply: () => undefined, snapshot: () => new Uint8Array(0), restore: (d) => { restored.push(d); } };
  h.host.ensure(group, sm, { voters: [leader, self], learners: [] });
  return { h, restored, now };
}

const deliver = (h: ReturnType<typeof testHost>, cs: ReturnType<typeof chunks>, from = 'n1') =>
  h.host.receive(nodeId(from), schema.RaftBatch.encode({ chunks: cs }).finish());

const settle = async (h: ReturnType<typeof testHost>): Promise<void> => {
  for (let k = 0; k < 10; k++) {
    h.scheduler.drain();
    await Promise.resolve();
    await Promise.resolve();
  }
};

const data = Uint8Array.from({ length: 5_000 }, (_, i) => i & 0xff);

t.test('chunks in order: the snapshot is reassembled, stepped, and the replica restores from it', async (t) => {
  const { h, restored } = setup();
  const parts = chunks(snapMessage(data), 1_000);
  t.ok(parts.length > 4, `${parts.length} chunks`);
  for (const c of parts) t.equal(deliver(h, [c]), null);
  await settle(h);
  t.equal(h.host.snapshotTransfers.received, 1);
  t.equal(restored.length, 1, 'the state machine restored once');
  t.same(restored[0], data, 'from the bytes the leader sent');
  t.equal(h.host.groups.get(group)?.applied, 40, 'applied up to the snapshot');
});

t.test('a gap discards the half-built snapshot; a new transfer from offset 0 still completes', async (t) => {
  const { h, restored } = setup();
  const parts = chunks(snapMessage(data), 1_000);
  t.equal(deliver(h, [parts[0]!, parts[2]!]), null, 'a gap is not an error (a reconnect loses chunks)');
  for (const c of parts.slice(3)) deliver(h, [c]);
  await settle(h);
  t.equal(restored.length, 0, 'nothing restored from a transfer with a hole');
  t.equal(h.host.snapshotTransfers.discarded, 1);
  for (const c of parts) deliver(h, [c]);
  await settle(h);
  t.equal(restored.length, 1, 'the resent snapshot goes through');
});

t.test('another snapshot starting replaces the half-built one', async (t) => {
  const { h, restored } = setup();
  const old = chunks(snapMessage(data, { index: 30 }), 1_000, 30);
  deliver(h, old.slice(0, 2));
  const newer = chunks(snapMessage(data, { index: 40 }), 1_000, 40);
  for (const c of newer) deliver(h, [c]);
  deliver(h, old.slice(2));
  await settle(h);
  t.equal(restored.length, 1);
  t.equal(h.host.groups.get(group)?.applied, 40, 'the newer one');
  t.equal(h.host.snapshotTransfers.discarded, 1);
});

t.test('malformed transfers are refused (the link is closed)', async (t) => {
  const { h } = setup();
  const bytes = snapMessage(data);
  const past = deliver(h, [{ group, index: 40, term: 2, total: 100, offset: 90, data: new Uint8Array(20) }]);
  t.match(past?.message, /chunk \[90, 110\) of a 100-byte message/);
  t.match(deliver(h, [{ group, index: 40, term: 2, total: 2 ** 40, offset: 0, data: new Uint8Array(1) }])?.message, /bytes \(limit/);
  t.match(deliver(h, [{ group, index: 40, term: 2, total: 10, offset: 0, data: new Uint8Array(0) }])?.message, /chunk \[0, 0\)/);
  // The chunks name snapshot 41; the message inside is snapshot 40.
  const lying = chunks(bytes, 1_000, 41);
  let err = null;
  for (const c of lying) err = deliver(h, [c]) ?? err;
  t.match(err?.message, /not the snapshot its chunks named/);
  // A message that names another sender than the link it came on.
  let forged = null;
  for (const c of chunks(snapMessage(data, { from: 'n3' }), 1_000)) forged = deliver(h, [c]) ?? forged;
  t.match(forged?.message, /names "n3" as its sender/);
  t.not(deliver(h, chunks(new Uint8Array([0xff, 0xff, 0xff]), 10)), null, 'bytes that are no snapshot message are refused once whole');
});

t.test('a half-built snapshot whose sender went quiet is dropped after raftSnapshotAssemblyIdleMsMax', async (t) => {
  const { h, now } = setup();
  const parts = chunks(snapMessage(data), 1_000);
  deliver(h, parts.slice(0, 2));
  now.ms += raftSnapshotAssemblyIdleMsMax - 1;
  h.scheduler.tick();
  t.equal(h.host.snapshotTransfers.discarded, 0, 'not yet');
  now.ms += 1;
  h.scheduler.tick();
  t.equal(h.host.snapshotTransfers.discarded, 1, 'dropped');
  for (const c of parts.slice(2)) deliver(h, [c]);
  await settle(h);
  t.equal(h.host.snapshotTransfers.received, 0, 'its remaining chunks build nothing');
});
