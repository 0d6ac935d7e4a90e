// LRU order and bounds of a node's lines (core/cache/lines.ts) and how the node uses
// them: most recently used first, touch moves a line to the front, totals of entries and
// bytes follow every insert/remove/value change; a node at its entry or byte bound evicts
// the least recently used line (a dirty one is given back with PutM first); and a node
// with too many keys waiting at their homes refuses more with BUSY instead of growing.

import t from 'tap';
import { cacheNodeTransactionsMax } from '../../../core/constants.js';
import { CacheLines } from '../../../core/cache/lines.js';
import { St, cacheConfigDefault } from '../../../core/cache/messages.js';
import { BUSY, NodeCache, PENDING } from '../../../core/cache/node.js';
import { cacheNodeIndex } from '../../../core/ids.js';
import { NodeRig, val } from './rig.js';

t.test('LRU order, touch, and totals', async (t) => {
  const lines = new CacheLines(4, 1_000);
  const a = lines.insert('a', St.S, 1, 10, val('x'), false, 0);
  lines.insert('b', St.S, 1, 10, val('yy'), false, 0);
  lines.insert('c', St.E, 1, 10, null, false, 0);
  t.same([...lines.keysByRecency()], ['c', 'b', 'a'], 'most recently inserted first');
  t.equal(lines.key(lines.lru()), 'a', 'the least recently used is the oldest');
  lines.touch(a, 1);
  t.same([...lines.keysByRecency()], ['a', 'c', 'b'], 'touch moves a line to the front');
  t.equal(lines.count, 3);
  t.equal(lines.bytes, CacheLines.bytesOf('a', val('x')) + CacheLines.bytesOf('b', val('yy')) + CacheLines.bytesOf('c', null));
  lines.setValue(a, val('xxxxx'));
  t.equal(lines.bytes, CacheLines.bytesOf('a', val('xxxxx')) + CacheLines.bytesOf('b', val('yy')) + CacheLines.bytesOf('c', null), 'a value change moves the byte total');
  lines.remove(lines.find('c'));
  t.same([...lines.keysByRecency()], ['a', 'b']);
  t.equal(lines.find('c'), -1);
  t.ok(lines.fits(2, 0) && !lines.fits(3, 0), 'entry bound');
  t.ok(lines.fits(0, 1_000 - lines.bytes) && !lines.fits(0, 1_001 - lines.bytes), 'byte bound');
  t.equal(lines.transitions[St.I * 5 + St.S], 2, 'I->S counted per insert');
  t.equal(lines.transitions[St.E * 5 + St.I], 1, 'E->I counted per remove');
});

t.test('a node at its entry bound evicts the least recently used line', async (t) => {
  const n = new NodeRig(cacheConfigDefault, 1, { entriesMax: 2 });
  for (const key of ['a', 'b']) {
    n.get(key);
    n.data(St.S, 2, key, { key });
  }
  n.get('a'); // a is now the most recently used
  n.get('c');
  n.data(St.S, 2, 'c', { key: 'c' });
  t.same([...n.node.lines.keysByRecency()], ['c', 'a'], 'b, the least recently used, made room');
  t.equal(n.node.counters.evictions, 1);
});

t.test('a node at its byte bound evicts, and a dirty victim goes home with PutM', async (t) => {
  const wb = { ...cacheConfigDefault, writePolicy: 'write-back' as const };
  const n = new NodeRig(wb, 1, { bytesMax: CacheLines.bytesOf('a', val('1234')) + CacheLines.bytesOf('b', val('1234')) });
  n.get('a');
  n.data(St.E, 2, '1234', { key: 'a' });
  n.set('5678', 0, 'a'); // dirty in M
  n.get('b');
  t.match(n.data(St.S, 2, '1234', { key: 'b' }), /done#\d+=1234/);
  n.get('c');
  t.match(n.data(St.S, 2, '1234', { key: 'c' }), /PutM#\d+ v2 =5678/, 'the dirty LRU line is written back as it is evicted');
  t.ok(n.node.lines.bytes <= n.node.lines.bytesMax, 'the byte bound holds');
});

t.test('too many keys waiting at their homes: BUSY, not growth', async (t) => {
  const node = new NodeCache(cacheConfigDefault, { self: cacheNodeIndex(0), incarnation: 1, homeOf: () => cacheNodeIndex(1) });
  let pending = 0;
  for (let i = 0; i < cacheNodeTransactionsMax; i++) if (node.get(i, `k${i}`, 0) === PENDING) pending++;
  t.equal(pending, cacheNodeTransactionsMax, 'one request in flight per key, up to the bound');
  t.equal(node.get(-1, 'one-more', 0), BUSY, 'the next key is refused');
  t.equal(node.counters.refused, 1);
  t.equal(node.get(-2, 'k0', 0), PENDING, 'a key with a request in flight still queues behind it');
  t.equal(node.transactions, cacheNodeTransactionsMax);
});
