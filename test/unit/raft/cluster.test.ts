// End-to-end behaviour of three replicas shuttled by the local helper network:
// election, replication and commit, applied order, failover and restart from
// what each replica persisted through the Ready contract.

import t from 'tap';
import { Raft } from '../../../core/raft/raft.js';
import { Role } from '../../../core/raft/types.js';
import { A, B, C, Net, config, text, untext } from './helpers.js';

t.test('three replicas elect one leader and replicate proposals in order', (t) => {
  const net = new Net([A, B, C]);
  net.elect(A);
  t.equal(net.node(A).status().role, Role.Leader);
  t.equal(net.node(B).status().leader, A);
  t.equal(net.node(C).status().leader, A);
  for (let i = 0; i < 100; i++) {
    const out = net.node(A).propose(text(`p${i}`));
    t.ok(out.ok);
  }
  net.settle();
  for (const id of [A, B, C]) {
    const data = net.applied(id).filter((e) => e.data.length > 0).map((e) => untext(e.data));
    t.same(data, Array.from({ length: 100 }, (_, i) => `p${i}`), `${id} applied all in order`);
    t.equal(net.node(id).status().commit, 101);
  }
  t.end();
});

t.test('failover: a new leader keeps every committed entry', (t) => {
  const net = new Net([A, B, C]);
  net.elect(A);
  net.node(A).propose(text('x'));
  net.settle();
  net.isolate(A);
  net.elect(B);
  net.node(B).propose(text('y'));
  net.settle();
  t.same(net.applied(C).map((e) => untext(e.data)).filter((s) => s !== ''), ['x', 'y']);
  net.heal();
  net.tickAll(3);
  t.equal(net.node(A).status().role, Role.Follower, 'old leader steps down on hearing the new term');
  t.same(net.applied(A).map((e) => untext(e.data)).filter((s) => s !== ''), ['x', 'y']);
  t.end();
});

t.test('restart from persisted state keeps term, vote, log and commit', (t) => {
  const net = new Net([A, B, C]);
  net.elect(A);
  for (let i = 0; i < 5; i++) net.node(A).propose(text(`p${i}`));
  net.settle();
  const before = net.node(B).status();
  const persisted = net.storage.get(B)!.persisted();
  const b2 = new Raft(config(B), persisted);
  const after = b2.status();
  t.equal(after.term, before.term);
  t.equal(after.lastIndex, before.lastIndex);
  t.equal(after.commit, before.commit);
  t.equal(after.applied, 0, 'applied restarts from the snapshot (none here)');
  const rd = b2.ready();
  t.equal(rd.committedEntries.length, before.commit, 'committed entries are handed out again for re-apply');
  t.equal(rd.entries.length, 0, 'nothing new to persist');
  t.equal(rd.hardState, null);
  b2.advance();
  t.end();
});
