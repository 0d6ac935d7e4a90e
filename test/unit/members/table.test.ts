// The group 0 membership table (core/members/table.ts) and its sub-machine
// (server/services/members/service.ts), table-driven: each case applies a script
// of conf changes and announcements and checks the roles, addresses, removed ids
// and reported changes; the roles always equal what core/raft's applyConfChange
// makes of the same changes (what Raft's ConfState holds); snapshot/restore
// round-trips every state reached, and a restored table goes on identically.

import t from 'tap';
import { type MembersChange, type MemberAddresses, MembersTable } from '../../../core/members/table.js';
import { nodeId, type NodeId, logIndex, term } from '../../../core/ids.js';
import { applyConfChange, encodeConfChange } from '../../../core/raft/confchange.js';
import { type ConfChange, ConfChangeType, type ConfState, type Entry, EntryType } from '../../../core/raft/types.js';
import { schema } from '../../../protocol/index.js';
import { EntryKind, frameEntry, Group0StateMachine } from '../../../server/raft/group0.js';
import { MembersMachine } from '../../../server/services/members/service.js';

const n = (s: string): NodeId => nodeId(s);
type Step =
  | { readonly cc: ConfChange; readonly addresses?: MemberAddresses; readonly expect: MembersChange['kind'] }
  | { readonly announce: NodeId; readonly addresses: MemberAddresses; readonly expect: MembersChange['kind'] };

interface Case {
  readonly name: string;
  readonly bootstrap: ConfState;
  readonly steps: readonly Step[];
  readonly voters: readonly string[];
  readonly learners: readonly string[];
  readonly removed: readonly string[];
  /** id -> "address|peerAddress" for members whose addresses are checked. */
  readonly addresses?: Readonly<Record<string, string>>;
}

const a4 = { address: '10.0.0.4:7401', peerAddress: '10.0.0.4:7401' };
const boot3: ConfState = { voters: [n('n1'), n('n2'), n('n3')], learners: [] };

const cases: readonly Case[] = [
  { name: 'bootstrap only', bootstrap: boot3, steps: [], voters: ['n1', 'n2', 'n3'], learners: [], removed: [] },
  { name: 'join: learner with addresses, then promoted', bootstrap: boot3, steps: [
    { cc: { type: ConfChangeType.AddLearner, node: n('n4') }, addresses: a4, expect: 'added' },
    { cc: { type: ConfChangeType.AddVoter, node: n('n4') }, expect: 'promoted' },
  ], voters: ['n1', 'n2', 'n3', 'n4'], learners: [], removed: [], addresses: { n4: '10.0.0.4:7401|10.0.0.4:7401' } },
  { name: 'a repeated add changes nothing', bootstrap: boot3, steps: [
    { cc: { type: ConfChangeType.AddLearner, node: n('n4') }, addresses: a4, expect: 'added' },
    { cc: { type: ConfChangeType.AddLearner, node: n('n4') }, expect: 'none' },
  ], voters: ['n1', 'n2', 'n3'], learners: ['n4'], removed: [], addresses: { n4: '10.0.0.4:7401|10.0.0.4:7401' } },
  { name: 'remove a voter: remembered as removed', bootstrap: boot3, steps: [
    { cc: { type: ConfChangeType.Remove, node: n('n2') }, expect: 'removed' },
  ], voters: ['n1', 'n3'], learners: [], removed: ['n2'] },
  { name: 'remove a non-member: nothing', bootstrap: boot3, steps: [
    { cc: { type: ConfChangeType.Remove, node: n('n9') }, expect: 'none' },
  ], voters: ['n1', 'n2', 'n3'], learners: [], removed: [] },
  { name: 'the last voter is never removed (as in Raft)', bootstrap: { voters: [n('n1')], learners: [] }, steps: [
    { cc: { type: ConfChangeType.Remove, node: n('n1') }, expect: 'none' },
  ], voters: ['n1'], learners: [], removed: [] },
  { name: 'demote a voter to learner', bootstrap: boot3, steps: [
    { cc: { type: ConfChangeType.AddLearner, node: n('n3') }, expect: 'demoted' },
  ], voters: ['n1', 'n2'], learners: ['n3'], removed: [] },
  { name: 'announce fills a bootstrap member; a non-member is ignored', bootstrap: boot3, steps: [
    { announce: n('n2'), addresses: { address: 'h2:7402', peerAddress: 'p2:7402' }, expect: 'addressed' },
    { announce: n('n2'), addresses: { address: 'h2:7402', peerAddress: 'p2:7402' }, expect: 'none' },
    { announce: n('n9'), addresses: { address: 'h9:1', peerAddress: 'h9:1' }, expect: 'none' },
  ], voters: ['n1', 'n2', 'n3'], learners: [], removed: [], addresses: { n2: 'h2:7402|p2:7402', n1: '|' } },
  { name: 're-adding a removed id clears its tombstone', bootstrap: boot3, steps: [
    { cc: { type: ConfChangeType.Remove, node: n('n3') }, expect: 'removed' },
    { cc: { type: ConfChangeType.AddLearner, node: n('n3') }, addresses: { address: 'x:1', peerAddress: 'x:1' }, expect: 'added' },
  ], voters: ['n1', 'n2'], learners: ['n3'], removed: [], addresses: { n3: 'x:1|x:1' } },
  { name: 'a joiner replaying history from its join configuration converges', bootstrap: { voters: [n('n1'), n('n2')], learners: [n('n4')] }, steps: [
    // The history before n4 joined: n3 removed, then n4 added; replayed on the join configuration.
    { cc: { type: ConfChangeType.Remove, node: n('n3') }, expect: 'none' },
    { cc: { type: ConfChangeType.AddLearner, node: n('n4') }, addresses: a4, expect: 'none' },
    { cc: { type: ConfChangeType.AddVoter, node: n('n4') }, expect: 'promoted' },
  ], voters: ['n1', 'n2', 'n4'], learners: [], removed: [], addresses: { n4: '10.0.0.4:7401|10.0.0.4:7401' } },
];

function run(c: Case): { table: MembersTable; snapshots: string[] } {
  const table = new MembersTable(c.bootstrap);
  let raftConf = c.bootstrap;
  const snapshots = [JSON.stringify(table.snapshot())];
  for (const step of c.steps) {
    let change: MembersChange;
    if ('cc' in step) {
      change = table.applyConfChange(step.cc, step.addresses ?? null);
      raftConf = applyConfChange(raftConf, step.cc);
    } else {
      change = table.announce(step.announce, step.addresses);
    }
    if (change.kind !== step.expect) throw new Error(`${c.name}: expected ${step.expect}, got ${change.kind}`);
    // The invariant: roles here are Raft's ConfState after the same changes.
    if (JSON.stringify(table.conf()) !== JSON.stringify({ voters: [...raftConf.voters].sort(), learners: [...raftConf.learners].sort() })) {
      throw new Error(`${c.name}: roles ${JSON.stringify(table.conf())} differ from Raft's ${JSON.stringify(raftConf)}`);
    }
    snapshots.push(JSON.stringify(table.snapshot()));
  }
  return { table, snapshots };
}

for (const c of cases) {
  t.test(c.name, (t) => {
    const { table, snapshots } = run(c);
    t.same(table.conf().voters, c.voters, 'voters');
    t.same(table.conf().learners, c.learners, 'learners');
    t.same(c.removed.filter((id) => table.isRemoved(n(id))), c.removed, 'removed ids remembered');
    t.same(table.snapshot().removed, c.removed, 'and nothing else');
    for (const [id, want] of Object.entries(c.addresses ?? {})) {
      const m = table.get(n(id));
      t.equal(`${m?.address ?? '?'}|${m?.peerAddress ?? '?'}`, want, `${id}'s addresses`);
    }
    // Every state reached restores exactly, into a table that started elsewhere.
    for (const s of snapshots) {
      const other = new MembersTable({ voters: [n('zz')], learners: [] });
      other.restore(JSON.parse(s) as ReturnType<MembersTable['snapshot']>);
      t.equal(JSON.stringify(other.snapshot()), s, 'snapshot round-trips');
    }
    t.end();
  });
}

t.test('a restored table goes on exactly like the original', (t) => {
  const original = new MembersTable(boot3);
  original.applyConfChange({ type: ConfChangeType.AddLearner, node: n('n4') }, a4);
  const copy = new MembersTable({ voters: [n('x')], learners: [] });
  copy.restore(JSON.parse(JSON.stringify(original.snapshot())) as ReturnType<MembersTable['snapshot']>);
  for (const cc of [{ type: ConfChangeType.AddVoter, node: n('n4') }, { type: ConfChangeType.Remove, node: n('n1') }] as ConfChange[]) {
    t.same(copy.applyConfChange(cc, null), original.applyConfChange(cc, null), `same change for ${cc.type} ${cc.node}`);
  }
  t.same(copy.snapshot(), original.snapshot(), 'same state');
  t.end();
});

t.test('the removed-id memory is bounded, oldest forgotten first', (t) => {
  const table = new MembersTable({ voters: [n('keep')], learners: [] });
  for (let i = 0; i < 1030; i++) {
    table.applyConfChange({ type: ConfChangeType.AddLearner, node: n(`r${i}`) }, null);
    table.applyConfChange({ type: ConfChangeType.Remove, node: n(`r${i}`) }, null);
  }
  t.equal(table.snapshot().removed.length, 1024, 'at most membersRemovedRememberedMax');
  t.notOk(table.isRemoved(n('r0')), 'the oldest is forgotten');
  t.ok(table.isRemoved(n('r1029')), 'the newest is remembered');
  t.end();
});

function entry(index: number, type: EntryType, data: Uint8Array): Entry {
  return { term: term(1), index: logIndex(index), type, data };
}

t.test('through group 0: ConfChange entries with a context, announcements, JSON snapshot/restore', (t) => {
  const machine = new MembersMachine(boot3);
  const changes: string[] = [];
  machine.onChange = (c) => changes.push(c === null ? 'restored' : `${c.kind} ${c.id}`);
  const sm = new Group0StateMachine();
  sm.register(EntryKind.Members, 'members', machine);
  const context = schema.MemberAddress.encode({ address: '127.0.0.1:9404', peerAddress: '127.0.0.1:9404' }).finish();
  const add: ConfChange = { type: ConfChangeType.AddLearner, node: n('n4'), context };
  const conf = sm.applyConfChange(entry(1, EntryType.ConfChange, encodeConfChange(add)), add) as ConfState;
  t.same(conf, { voters: ['n1', 'n2', 'n3'], learners: ['n4'] }, 'the join answer: the configuration right after the change');
  sm.apply(entry(2, EntryType.Normal, frameEntry(EntryKind.Members, schema.MemberAnnounce.encode({ id: 'n1', address: 'a1:1', peerAddress: 'p1:1' }).finish())));
  t.same(changes, ['added n4', 'addressed n1'], 'the service is told each change in order');
  const snap = sm.snapshot();
  const restored = new MembersMachine({ voters: [n('other')], learners: [] });
  const sm2 = new Group0StateMachine();
  sm2.register(EntryKind.Members, 'members', restored);
  sm2.restore(snap);
  t.same(restored.table.snapshot(), machine.table.snapshot(), 'the group 0 snapshot carries the members');
  t.same(restored.table.get(n('n4')), { id: 'n4', role: 'learner', address: '127.0.0.1:9404', peerAddress: '127.0.0.1:9404', featureVersion: 0 }, "n4's addresses came from the context");
  t.throws(() => sm.apply(entry(3, EntryType.Normal, frameEntry(EntryKind.Members, schema.MemberAnnounce.encode({ id: 'n1', address: 'not an address', peerAddress: '' }).finish()))),
    /malformed member announcement/, 'a malformed announcement stops the replica (every replica alike), never diverges');
  t.end();
});
