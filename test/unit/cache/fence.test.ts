// Fenced cache writes (core/cache/fence.ts and its use by the home and the node): the table
// admits a token not older than the newest of its lock and forgets the least recently
// fenced lock beyond its bound; a home refuses a write (GetM carrying a write, or Write)
// with an older token by Nack fenced and changes nothing, admits equal and newer ones, and
// checks a resend of a refused write again; a node turns Nack fenced into a FENCED
// completion, and under write-back a fenced set is written through (never only locally).

import t from 'tap';
import { FenceTable } from '../../../core/cache/fence.js';
import { cacheConfigDefault } from '../../../core/cache/messages.js';
import type { CacheConfig } from '../../../core/cache/messages.js';
import { St } from '../../../core/cache/messages.js';
import { HomeRig, NodeRig } from './rig.js';

const mesi: CacheConfig = { ...cacheConfigDefault };
const writeBack: CacheConfig = { ...cacheConfigDefault, writePolicy: 'write-back' };

t.test('fence table: newest per lock, equal passes, bounded', async (t) => {
  const f = new FenceTable(2);
  t.ok(f.admit({ lock: 'a', token: 5 }));
  t.ok(f.admit({ lock: 'a', token: 5 }), 'the same token again (one holder, many writes)');
  t.notOk(f.admit({ lock: 'a', token: 4 }), 'an older token is refused');
  t.equal(f.newestOf('a'), 5);
  t.ok(f.admit({ lock: 'a', token: 9 }));
  t.ok(f.admit({ lock: 'b', token: 1 }), 'another lock has its own tokens');
  t.notOk(f.admit({ lock: 'a', token: 6 }));
  t.ok(f.admit({ lock: 'c', token: 1 }), 'a third lock forgets the least recently fenced (b)');
  t.equal(f.newestOf('a'), 0, 'a refused admit does not refresh: a (last admitted before b) goes');
  t.equal(f.newestOf('b'), 1);
  t.equal(f.forgotten, 1);
  t.equal(f.refused, 2);
  t.equal(f.size, 2);
});

t.test('home: an older token is refused and changes nothing; equal and newer apply', async (t) => {
  const fences = new FenceTable();
  const r = new HomeRig(mesi, { fences });
  t.match(r.getM(0, 'v1', 0, { lock: 'L', token: 10 }), /Data>0 M/, 'token 10 writes');
  t.match(r.state(), /=v1/);
  const v = r.home.entry('k')?.version ?? 0;
  t.equal(r.write(0, 'v2', 0, v, { lock: 'L', token: 10 }), 'WriteAck>0 M v' + String(r.home.entry('k')?.version ?? 0), 'the same token writes again');
  t.match(r.state(), /=v2/);
  t.equal(r.getM(1, 'stale', 0, { lock: 'L', token: 9 }), 'Nack>1 fenced', 'token 9 after 10: refused');
  t.match(r.state(), /=v2/, 'the value did not change');
  t.equal(r.dup(1), 'Nack>1 fenced', 'a resend of the refused write is checked again');
  t.match(r.getM(1, 'v3', 0, { lock: 'L', token: 11 }), /Fwd>0 I/, 'a newer token is served: the owner is asked to give up');
  t.match(r.ack(0), /Data>1 M/, 'and the write is granted');
  t.match(r.state(), /=v3/);
  t.equal(fences.newestOf('L'), 11);
  t.match(r.getM(2, 'v4'), /Fwd>1 I/, 'an unfenced write is not checked');
  t.match(r.ack(1), /Data>2 M/);
  t.match(r.state(), /=v4/);
  t.equal(r.home.counters.fencedWrites, 2);
});

t.test('node: Nack fenced completes the set as FENCED; write-back writes a fenced set through', async (t) => {
  const n = new NodeRig(mesi);
  t.match(n.set('x', 0, 'k', { lock: 'L', token: 3 }), /pending GetM/);
  t.equal(n.nack('fenced', 4), 'done#1!FENCED', 'the set fails FENCED');
  t.equal(n.node.transactions, 0, 'nothing left in flight');
  t.equal(n.node.counters.fencedWrites, 1);

  const wb = new NodeRig(writeBack);
  wb.set('a');
  t.match(wb.data(St.M, 2, null), /done#1/, 'write-back: an unfenced set takes M and writes locally');
  t.match(wb.state(), /M v2 =a dirty/);
  t.match(wb.set('b', 0, 'k', { lock: 'L', token: 7 }), /pending Write#\d+ v2 =b/, 'a fenced set in M still goes to the home');
  t.match(wb.writeAck(St.M, 3), /done#2/);
  t.match(wb.state(), /M v3 =b$/, 'written through: not dirty');
});
