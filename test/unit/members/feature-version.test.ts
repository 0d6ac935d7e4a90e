// The version gate for rolling upgrades (etcd's cluster version): the negotiation in
// group 0's members table (clusterVersionAfter: the lowest version every member speaks,
// never going down), the cluster id (first one wins), their snapshot round trip and an
// older node's snapshot; and the formats written under each cluster version: group 0's
// one-document layout and partition snapshots with their bodies at version 1, the
// chunked layout and body-less partition snapshots at 2, and a node speaking 1 refusing
// the newer formats rather than misreading them.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { featureVersionBase, featureVersionCurrent } from '../../../core/constants.js';
import { clientId, groupId, logIndex, type NodeId, type SessionId, term } from '../../../core/ids.js';
import type { LockCommand } from '../../../core/locks/index.js';
import { clusterVersionAfter, MembersTable } from '../../../core/members/table.js';
import { defaultPartitionConfig } from '../../../core/queue/partition.js';
import { ConfChangeType, type Entry, EntryType } from '../../../core/raft/types.js';
import { Logger } from '../../../server/node/log.js';
import { FeatureVersionError, featureVersionFrom, type SnapshotFormats, spokenFeatureVersion } from '../../../server/node/version.js';
import { EntryKind, frameEntry, Group0StateMachine } from '../../../server/raft/group0.js';
import type { SnapshotJob } from '../../../server/raft/runner.js';
import { encodeLockCommand, LockService } from '../../../server/services/locks/service.js';
import { encodeQueueEntry } from '../../../server/services/queues/codec.js';
import { PartitionMachine, snapshotRange } from '../../../server/services/queues/partition.js';
import { diskPartitionStorage } from '../../../server/services/queues/storage.js';

const n = (id: string): NodeId => id as NodeId;

t.test('clusterVersionAfter: the lowest version every member speaks, never lower than before', async (t) => {
  const cases: { name: string; current: number; members: number[]; want: number }[] = [
    { name: 'every member old (never said)', current: 1, members: [0, 0, 0], want: 1 },
    { name: 'one member upgraded', current: 1, members: [2, 0, 0], want: 1 },
    { name: 'two of three upgraded', current: 1, members: [2, 2, 1], want: 1 },
    { name: 'every member upgraded', current: 1, members: [2, 2, 2], want: 2 },
    { name: 'a newer member among current ones', current: 1, members: [3, 2, 2], want: 2 },
    { name: 'a member went back down: the version stays', current: 2, members: [2, 1, 2], want: 2 },
    { name: 'a new member that has not said yet: the version stays', current: 2, members: [2, 2, 2, 0], want: 2 },
    { name: 'no members', current: 2, members: [], want: 2 },
    { name: 'a lone member', current: 1, members: [2], want: 2 },
  ];
  for (const c of cases) t.equal(clusterVersionAfter(c.current, c.members), c.want, c.name);
  t.equal(spokenFeatureVersion(0), featureVersionBase, 'a hello without the field is an older node');
  t.equal(spokenFeatureVersion(2), 2);
  t.equal(featureVersionFrom({}), featureVersionCurrent, 'a node speaks the current version unless told');
  t.equal(featureVersionFrom({ DSYNC_FEATURE_VERSION: '1' }), 1, 'the test seam');
  t.throws(() => featureVersionFrom({ DSYNC_FEATURE_VERSION: String(featureVersionCurrent + 1) }), /speaks feature versions 1 to/);
});

t.test('the members table: a rolling upgrade raises the cluster version once every member spoke it', async (t) => {
  const table = new MembersTable({ voters: [n('n1'), n('n2'), n('n3')], learners: [] });
  t.equal(table.clusterVersion, 1, 'a new cluster starts at the base version');
  t.equal(table.setFeatureVersion(n('n1'), 2).kind, 'versioned');
  t.equal(table.setFeatureVersion(n('n1'), 2).kind, 'none', 'saying the same again changes nothing');
  t.equal(table.setFeatureVersion(n('n9'), 2).kind, 'none', 'a non-member is ignored');
  table.setFeatureVersion(n('n2'), 2);
  t.equal(table.clusterVersion, 1, 'two of three upgraded: still 1');
  table.setFeatureVersion(n('n3'), 2);
  t.equal(table.clusterVersion, 2, 'the last one upgraded: 2');
  table.applyConfChange({ type: ConfChangeType.AddLearner, node: n('n4') }, null);
  t.equal(table.clusterVersion, 2, 'a joiner that has not said yet does not lower it');
  table.setFeatureVersion(n('n2'), 1);
  t.equal(table.clusterVersion, 2, 'nor a member saying less (it is refused elsewhere)');
  t.equal(table.get(n('n2'))?.featureVersion, 1, 'what it said is recorded');

  const older = new MembersTable({ voters: [n('a'), n('b')], learners: [] });
  older.setFeatureVersion(n('a'), 2);
  t.equal(older.clusterVersion, 1);
  older.applyConfChange({ type: ConfChangeType.Remove, node: n('b') }, null);
  t.equal(older.clusterVersion, 2, 'removing the last old member raises it');

  t.equal(table.identify(n('n1'), '00112233aabbccdd').kind, 'identified');
  t.equal(table.identify(n('n2'), 'ffffffffffffffff').kind, 'none', 'the first cluster id wins');
  t.equal(table.clusterId, '00112233aabbccdd');
  t.throws(() => table.identify(n('n1'), 'not-hex'), /cluster id/);

  const copy = new MembersTable({ voters: [], learners: [] });
  copy.restore(JSON.parse(JSON.stringify(table.snapshot())) as ReturnType<MembersTable['snapshot']>);
  t.same(copy.snapshot(), table.snapshot(), 'cluster id, version and each member\'s version round-trip');
  const oldSnapshot = { members: [{ id: n('n1'), role: 'voter', address: '', peerAddress: '' }], removed: [] };
  copy.restore(oldSnapshot as unknown as ReturnType<MembersTable['snapshot']>);
  t.same([copy.clusterVersion, copy.clusterId, copy.get(n('n1'))?.featureVersion], [1, '', 0], 'an older node\'s snapshot: version 1, no id');
});

function lockEntry(index: number, cmd: LockCommand): Entry {
  return { index: logIndex(index), term: term(1), type: EntryType.Normal, data: frameEntry(EntryKind.Lock, encodeLockCommand(cmd)) };
}

function finish(job: SnapshotJob): Uint8Array {
  for (;;) {
    const data = job.step();
    if (data !== null) return data;
  }
}

t.test('group 0: the chunked layout only at cluster version 2; a node speaking 1 refuses it', async (t) => {
  let clusterVersion = 1;
  const group0 = (formats: SnapshotFormats): { sm: Group0StateMachine; locks: LockService } => {
    const sm = new Group0StateMachine(formats);
    const locks = new LockService();
    sm.register(EntryKind.Lock, 'locks', locks);
    return { sm, locks };
  };
  const leader = group0({ formatVersion: () => clusterVersion, readsUpTo: featureVersionCurrent });
  const c = clientId('fv');
  leader.sm.apply(lockEntry(1, { kind: 'openSession', ttlMs: 5_000, lockDelayMs: 0, clientId: c, seq: 1, nowMs: 1 }));
  for (let i = 0; i < 50; i++) {
    leader.sm.apply(lockEntry(i + 2, { kind: 'acquire', session: 1 as unknown as SessionId, lock: `k${i}`, mode: 'exclusive', wait: false,
      requestId: `r${i}`, clientId: c, seq: i + 2, nowMs: 1 }));
  }
  const old = finish(leader.sm.beginSnapshot());
  t.equal(old[0], '{'.charCodeAt(0), 'cluster version 1: the one-document layout');
  t.equal((JSON.parse(new TextDecoder().decode(old)) as { locks: { version: number } }).locks.version, 3, 'lock table version 3');
  const oldNode = group0({ formatVersion: () => 1, readsUpTo: 1 });
  oldNode.sm.restore(old);
  t.equal(JSON.stringify(oldNode.locks.snapshot()), JSON.stringify(leader.locks.snapshot()),
    'a node speaking version 1 installs it');

  clusterVersion = 2;
  const chunked = finish(leader.sm.beginSnapshot());
  t.equal(chunked[0], 1, 'cluster version 2: the chunked layout');
  t.throws(() => group0({ formatVersion: () => 1, readsUpTo: 1 }).sm.restore(chunked), FeatureVersionError,
    'a node speaking version 1 refuses it instead of misreading it');
  const newNode = group0({ formatVersion: () => 2, readsUpTo: 2 });
  newNode.sm.restore(chunked);
  t.equal(JSON.stringify(newNode.locks.snapshot()), JSON.stringify(leader.locks.snapshot()), 'a node speaking 2 installs it');
});

t.test('queue partitions: bodies stay in the snapshot until cluster version 2', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'dsync-fv-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const log = new Logger('test', 'error');
  const fatal: string[] = [];
  let clusterVersion = 1;
  const formats: SnapshotFormats = { formatVersion: () => clusterVersion, readsUpTo: featureVersionCurrent };
  const enc = new TextEncoder();
  const leader = new PartitionMachine('t', 0, defaultPartitionConfig, diskPartitionStorage(join(dir, 'a'), log, (m) => fatal.push(m))(groupId(300)),
    { applied: () => {}, leaderChanged: () => {} }, {}, formats);
  for (let i = 0; i < 10; i++) {
    leader.apply({ term: term(1), index: logIndex(i + 1), type: EntryType.Normal,
      data: encodeQueueEntry([{ cmd: { kind: 'append', nowMs: i, messages: [{ key: enc.encode(`k${i}`), value: enc.encode(`v${i}`), headers: [] }] } }]) });
  }
  const withBodies = leader.snapshot();
  t.same(snapshotRange(withBodies), { firstOffset: 0, nextOffset: 10, bodiesInStore: false }, 'cluster version 1: bodies inside, even on a disk store');
  const oldFormats: SnapshotFormats = { formatVersion: () => 1, readsUpTo: 1 };
  const oldNode = (): PartitionMachine => new PartitionMachine('t', 0, defaultPartitionConfig,
    diskPartitionStorage(join(dir, 'b'), log, (m) => fatal.push(m))(groupId(300)), { applied: () => {}, leaderChanged: () => {} }, {}, oldFormats);
  const installed = oldNode();
  installed.restore(withBodies);
  t.equal(new TextDecoder().decode(installed.read(9).value), 'v9', 'a node speaking 1 with none of the bodies installs it');
  installed.close(true);

  clusterVersion = 2;
  const bodiless = leader.snapshot();
  t.equal(snapshotRange(bodiless).bodiesInStore, true, 'cluster version 2: bodies left in the store (streamed catch-up)');
  t.throws(() => oldNode().restore(bodiless), FeatureVersionError, 'a node speaking 1 refuses it');
  await new Promise((r) => setTimeout(r, 100));
  leader.close(true);
  await new Promise((r) => setTimeout(r, 100));
  t.same(fatal, [], 'no store failed');
});
