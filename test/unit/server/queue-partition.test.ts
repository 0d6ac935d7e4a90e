// Checks the queue service's log formats and partition state machine on one replica
// without a network: every queue command and both topic commands survive an encode /
// decode round trip field for field; an entry batching several commands answers one
// outcome per command in order; fencing tokens (older refused as FENCED, not applied);
// and snapshots: restore at start-up from the segment store this node kept (opened at
// the snapshot's checkpoint, its unsynced tail past it cut), restore into a fresh data
// dir from the bodies the snapshot carries, and restore over a running partition.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { consumerGroup, consumerId, deliveryId, logIndex, offset, producerId, term } from '../../../core/ids.js';
import type { QueueCommand } from '../../../core/queue/commands.js';
import { defaultPartitionConfig } from '../../../core/queue/partition.js';
import { type Entry, EntryType } from '../../../core/raft/types.js';
import { Logger } from '../../../server/node/log.js';
import type { NodeId } from '../../../core/ids.js';
import type { TopicCommand } from '../../../core/queue/topics.js';
import { decodeQueueEntry, decodeTopicCommand, encodeQueueEntry, encodeTopicCommand, type EntryCommand } from '../../../server/services/queues/codec.js';
import { type CommandOutcome, PartitionMachine, type PartitionListener } from '../../../server/services/queues/partition.js';
import { diskPartitionStorage, memoryPartitionStorage, type PartitionStorageFactory } from '../../../server/services/queues/storage.js';
import { groupId } from '../../../core/ids.js';

const enc = new TextEncoder();
const dec = new TextDecoder();
const g = consumerGroup('g');
const c = consumerId('c');
const msg = (v: string): { key: Uint8Array; value: Uint8Array; headers: { name: string; value: Uint8Array }[] } =>
  ({ key: enc.encode(`k-${v}`), value: enc.encode(v), headers: [{ name: 'h', value: enc.encode(`hv-${v}`) }] });

t.test('codec: every queue command round-trips', async (t) => {
  const commands: EntryCommand[] = [
    { cmd: { kind: 'append', nowMs: 1.5, messages: [msg('a'), { ...msg('b'), onlyGroup: g }] } },
    { cmd: { kind: 'append', nowMs: 2, producer: producerId('p'), firstSeq: 7, messages: [msg('c')] }, fencing: { lock: 'L', token: 42 } },
    { cmd: { kind: 'fetch', nowMs: 3, group: g, consumer: c, seq: 1, max: 10 } },
    { cmd: { kind: 'fetch', nowMs: 3, group: g, consumer: c, seq: 2, max: 10, ackDeadlineMs: 5000 } },
    { cmd: { kind: 'ack', nowMs: 4, group: g, consumer: c, seq: 3, items: [{ delivery: deliveryId(1), attempt: 1 }, { delivery: deliveryId(2), attempt: 3 }] }, fencing: { lock: 'L', token: 43 } },
    { cmd: { kind: 'nack', nowMs: 5, group: g, consumer: c, seq: 4, delivery: deliveryId(9), attempt: 2 } },
    { cmd: { kind: 'nack', nowMs: 5, group: g, consumer: c, seq: 5, delivery: deliveryId(9), attempt: 2, delayMs: 0 } },
    { cmd: { kind: 'extend', nowMs: 6, group: g, consumer: c, seq: 6, delivery: deliveryId(9), attempt: 2 } },
    { cmd: { kind: 'expireDeadlines', nowMs: 7 } },
    { cmd: { kind: 'consumerGone', nowMs: 8, consumer: c } },
    { cmd: { kind: 'replay', nowMs: 9, group: g, from: { offset: offset(3) } } },
    { cmd: { kind: 'replay', nowMs: 9, group: g, from: { timestampMs: 12345.5 } } },
    { cmd: { kind: 'deleteGroup', nowMs: 10, group: g } },
    { cmd: { kind: 'enforceRetention', nowMs: 11 } },
  ];
  const back = decodeQueueEntry(encodeQueueEntry(commands));
  t.equal(back.length, commands.length);
  commands.forEach((want, i) => t.same(back[i], want, `${want.cmd.kind} #${i}`));

  const create = { kind: 'create' as const, spec: { name: 't', partitions: 8, replicas: 2, maxDeliveries: 0, ackDeadlineMs: 2000,
    retention: { maxAgeMs: 60_000, maxBytes: 1 << 20, dropUnacked: true } } };
  t.same(decodeTopicCommand(encodeTopicCommand(create)), create, 'topic create with every setting (maxDeliveries 0 kept)');
  const bare = { kind: 'create' as const, spec: { name: 'bare' } };
  t.same(decodeTopicCommand(encodeTopicCommand(bare)), bare, 'topic create with defaults');
  t.same(decodeTopicCommand(encodeTopicCommand({ kind: 'delete', name: 'x' })), { kind: 'delete', name: 'x' }, 'topic delete');
  const move = { kind: 'move', name: 'x', partition: 3, epoch: 2 ** 40, replicas: ['n4', 'n1', 'n2'] as NodeId[] } as TopicCommand;
  t.same(decodeTopicCommand(encodeTopicCommand(move)), move, 'partition move (a 64-bit epoch, the replica order kept)');
  const settle = { kind: 'settle', name: 'x', partition: 0, epoch: 0 } as TopicCommand;
  t.same(decodeTopicCommand(encodeTopicCommand(settle)), settle, 'partition settle (epoch 0)');
});

let nextIndex = 1;
function entry(commands: readonly EntryCommand[]): Entry {
  return { term: term(1), index: logIndex(nextIndex++), type: EntryType.Normal, data: encodeQueueEntry(commands) };
}
const quiet: PartitionListener = { applied: () => {}, leaderChanged: () => {} };
const append = (nowMs: number, ...values: string[]): EntryCommand => ({ cmd: { kind: 'append', nowMs, messages: values.map(msg) } });

function machine(storage: PartitionStorageFactory, listener: PartitionListener = quiet): PartitionMachine {
  return new PartitionMachine('t', 0, defaultPartitionConfig, storage(groupId(256)), listener);
}

t.test('a batched entry answers one outcome per command, in order; fencing refuses older tokens', async (t) => {
  const seen: CommandOutcome[][] = [];
  const m = machine(memoryPartitionStorage, { applied: (_m, _e, _c, o) => seen.push([...o]), leaderChanged: () => {} });
  const out = m.apply(entry([append(100, 'a', 'b'), append(100, 'c'),
    { cmd: { kind: 'fetch', nowMs: 100, group: g, consumer: c, seq: 1, max: 10 } }]));
  t.same(out.map((o) => o.result.kind), ['appended', 'appended', 'delivered']);
  t.ok(out[1]?.result.kind === 'appended' && out[1].result.baseOffset === 2, 'the second append follows the first');
  t.ok(out[2]?.result.kind === 'delivered' && out[2].result.deliveries.length === 3, 'the fetch in the same entry sees all three');
  t.equal(seen.length, 1, 'the listener hears the entry once');

  const fenced = (token: number, v: string): EntryCommand => ({ ...append(101, v), fencing: { lock: 'L', token } });
  const f = m.apply(entry([fenced(5, 'x'), fenced(4, 'y'), fenced(5, 'z'), fenced(6, 'w'), fenced(5, 'v')]));
  t.same(f.map((o) => (o.result.kind === 'error' ? o.result.code : o.result.kind)), ['appended', 'FENCED', 'appended', 'appended', 'FENCED'],
    'older tokens are refused, equal and newer ones go through and raise the newest');
  t.equal(m.partition.logEndOffset, 6, 'a refused append adds nothing');
  t.equal(dec.decode(m.read(5).value), 'w');
});

t.test('snapshots with the segment store', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'dsync-qpart-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const fatal: string[] = [];
  const log = new Logger('test', 'error');
  const reopened: boolean[] = [];
  const real = diskPartitionStorage(dir, log, (m) => fatal.push(m));
  const disk: PartitionStorageFactory = (group) => {
    const s = real(group);
    return { ...s, reopen: (cp) => { const store = s.reopen(cp); reopened.push(store !== null); return store; } };
  };

  const a = machine(disk);
  for (let i = 0; i < 20; i++) a.apply(entry([append(1000 + i, `m${i}`)]));
  a.apply(entry([{ cmd: { kind: 'fetch', nowMs: 2000, group: g, consumer: c, seq: 1, max: 5 } }]));
  const snap = a.snapshot();
  // After the snapshot more is appended (and not synced): a restart must cut it and replay it from the log.
  a.apply(entry([append(3000, 'after-1', 'after-2')]));
  await new Promise((r) => setTimeout(r, 50));
  a.close(false);
  await new Promise((r) => setTimeout(r, 50));

  const b = machine(disk);
  b.restore(snap);
  t.same(reopened, [true], 'the kept segment store was reopened at the snapshot\'s checkpoint');
  t.equal(b.partition.logEndOffset, 20, 'restored from the kept store at the checkpoint (the tail past it is cut)');
  t.equal(dec.decode(b.read(19).value), 'm19', 'bodies read from the reopened segments');
  t.same(b.partition.groupInfo(g)?.inFlight, 5, 'the group state came with the snapshot');
  b.apply(entry([append(3000, 'after-1', 'after-2')]));
  t.equal(dec.decode(b.read(21).value), 'after-2', 're-applied entries append the same messages again');
  b.close(false);

  // A node whose store is gone (a fresh data dir): the snapshot holds no bodies, so it cannot restore from it alone.
  const fresh = diskPartitionStorage(join(dir, 'elsewhere'), log, (m) => fatal.push(m));
  t.throws(() => machine(fresh).restore(snap), /no message store on this node holds its snapshot's range \[0, 20\)/,
    'a disk snapshot without its store is refused, never restored with a hole');

  // Upgrade path: a snapshot an older node took (bodies inside, as memory stores still take them) installs on a disk store.
  const old = machine(memoryPartitionStorage);
  for (let i = 0; i < 20; i++) old.apply(entry([append(1000 + i, `m${i}`)]));
  const oldSnap = old.snapshot();
  t.ok(oldSnap.length > 20 * 10, 'the old-format snapshot carries the bodies');
  const c2 = machine(fresh);
  c2.restore(oldSnap);
  t.equal(c2.partition.logEndOffset, 20, 'rebuilt from the old-format snapshot');
  t.same([0, 7, 19].map((o) => dec.decode(c2.read(o).value)), ['m0', 'm7', 'm19']);
  t.equal(dec.decode(c2.read(7).headers[0]?.value ?? new Uint8Array(0)), 'hv-m7', 'headers too');
  const snap2 = c2.snapshot();
  await new Promise((r) => setTimeout(r, 50));
  c2.close(false);
  await new Promise((r) => setTimeout(r, 50));
  const c3 = machine(fresh);
  c3.restore(snap2);
  t.equal(dec.decode(c3.read(19).value), 'm19', 'its next snapshot is a new-format one over the store it built');

  // A snapshot installed over a running partition replaces its store (memory: bodies inside).
  const running = machine(memoryPartitionStorage);
  running.apply(entry([append(1, 'old')]));
  running.restore(oldSnap);
  t.equal(running.partition.logEndOffset, 20, 'the installed snapshot replaces what was there');
  t.equal(dec.decode(running.read(0).value), 'm0');
  await new Promise((r) => setTimeout(r, 100));
  c3.close(true);
  await new Promise((r) => setTimeout(r, 100));
  t.same(fatal, [], 'no store failed');
});

t.test('a dead-lettered event reaches the listener on apply', async (t) => {
  const events: string[] = [];
  const cfg = { ...defaultPartitionConfig, maxDeliveries: 1 };
  const m = new PartitionMachine('t', 0, cfg, memoryPartitionStorage(groupId(257)), {
    applied: (_m, _e, _c, outcomes) => { for (const o of outcomes) for (const ev of o.events) events.push(`${ev.kind}:${ev.reason}:${dec.decode(m.partition.readMessage(ev.offset).value)}`); },
    leaderChanged: () => {},
  });
  m.apply(entry([append(10, 'poison')]));
  const f = m.apply(entry([{ cmd: { kind: 'fetch', nowMs: 10, group: g, consumer: c, seq: 1, max: 1 } }]));
  const d = f[0]?.result.kind === 'delivered' ? f[0].result.deliveries[0] : undefined;
  if (d === undefined) throw new Error('no delivery');
  const cmd: QueueCommand = { kind: 'nack', nowMs: 11, group: g, consumer: c, seq: 2, delivery: d.delivery, attempt: d.attempt };
  m.apply(entry([{ cmd }]));
  t.same(events, ['deadLettered:nacked:poison'], 'maxDeliveries 1: the first nack dead-letters it');
});
