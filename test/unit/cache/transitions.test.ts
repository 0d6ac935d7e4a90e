// Table-driven test of the MESI/MOESI transitions: for every directory state a home can
// be in (I, S with two sharers, E, M, and O under MOESI) and every request (a read or a
// write from a third node, with or without a carried value, and a read or write from the
// holder itself), the messages the home sends and the entry it is left with; then how
// rounds complete (acks, dirty data, lease reclaim) and the node's side of the same
// transitions. Rows are golden: a change to the protocol shows as a changed row.

import t from 'tap';
import { cacheConfigDefault, St } from '../../../core/cache/messages.js';
import type { CacheConfig } from '../../../core/cache/messages.js';
import { HomeRig, NodeRig } from './rig.js';

const configs: Record<string, CacheConfig> = {
  MESI: cacheConfigDefault,
  'MESI-wb': { ...cacheConfigDefault, writePolicy: 'write-back' },
  MOESI: { ...cacheConfigDefault, protocol: 'MOESI', writePolicy: 'write-back' },
};

/** How each directory state is reached (node 3 is the home; nodes 0-2 ask). */
const setups: Record<string, (r: HomeRig) => void> = {
  I: () => undefined,
  S2: (r) => {
    r.getS(0);
    r.getS(1);
    r.ack(0, { kept: true });
  },
  E0: (r) => void r.getS(0),
  M0: (r) => void r.getM(0),
  O0: (r) => {
    r.getM(0);
    r.getS(1);
    r.ack(0, { kept: true, dirty: 'd' });
  },
};

const requests: Record<string, (r: HomeRig) => string> = {
  getS2: (r) => r.getS(2),
  getM2: (r) => r.getM(2),
  getM2w: (r) => r.getM(2, 'x'),
  getS0: (r) => r.getS(0),
  getM0: (r) => r.getM(0),
};

// protocol, state, request -> messages sent, entry after
const table: [string, string, string, string, string][] = [
  ['MESI', 'I', 'getS2', 'Data>2 E v2 =-', 'E o2 s{} v2 =-'],
  ['MESI', 'I', 'getM2', 'Data>2 M v2 =-', 'M o2 s{} v2 =-'],
  ['MESI', 'I', 'getM2w', 'Data>2 M v3 =x', 'M o2 s{} v3 =x'],
  ['MESI', 'I', 'getS0', 'Data>0 E v2 =-', 'E o0 s{} v2 =-'],
  ['MESI', 'I', 'getM0', 'Data>0 M v2 =-', 'M o0 s{} v2 =-'],
  ['MESI', 'S2', 'getS2', 'Data>2 S v2 =-', 'S o-1 s{0,1,2} v2 =-'],
  ['MESI', 'S2', 'getM2', 'Inv>0 v2 Inv>1 v2', 'S o-1 s{0,1} v2 =- busy'],
  ['MESI', 'S2', 'getM2w', 'Inv>0 v2 Inv>1 v2', 'S o-1 s{0,1} v2 =- busy'],
  ['MESI', 'S2', 'getS0', 'Data>0 S v2 =-', 'S o-1 s{0,1} v2 =-'],
  ['MESI', 'S2', 'getM0', 'Inv>1 v2', 'S o-1 s{0,1} v2 =- busy'],
  ['MESI', 'E0', 'getS2', 'Fwd>0 S v2', 'E o0 s{} v2 =- busy'],
  ['MESI', 'E0', 'getM2', 'Fwd>0 I v2', 'E o0 s{} v2 =- busy'],
  ['MESI', 'E0', 'getM2w', 'Fwd>0 I v2', 'E o0 s{} v2 =- busy'],
  ['MESI', 'E0', 'getS0', 'Data>0 E v3 =-', 'E o0 s{} v3 =-'],
  ['MESI', 'E0', 'getM0', 'Data>0 M v3 =-', 'M o0 s{} v3 =-'],
  ['MESI', 'M0', 'getS2', 'Fwd>0 S v2', 'M o0 s{} v2 =- busy'],
  ['MESI', 'M0', 'getM2', 'Fwd>0 I v2', 'M o0 s{} v2 =- busy'],
  ['MESI', 'M0', 'getM2w', 'Fwd>0 I v2', 'M o0 s{} v2 =- busy'],
  ['MESI', 'M0', 'getS0', 'Data>0 E v3 =-', 'E o0 s{} v3 =-'],
  ['MESI', 'M0', 'getM0', 'Data>0 M v3 =-', 'M o0 s{} v3 =-'],
  ['MESI-wb', 'I', 'getS2', 'Data>2 E v2 =-', 'E o2 s{} v2 =-'],
  ['MESI-wb', 'I', 'getM2', 'Data>2 M v2 =-', 'M o2 s{} v2 =-'],
  ['MESI-wb', 'I', 'getM2w', 'Data>2 M v3 =x', 'M o2 s{} v3 =x'],
  ['MESI-wb', 'I', 'getS0', 'Data>0 E v2 =-', 'E o0 s{} v2 =-'],
  ['MESI-wb', 'I', 'getM0', 'Data>0 M v2 =-', 'M o0 s{} v2 =-'],
  ['MESI-wb', 'S2', 'getS2', 'Data>2 S v2 =-', 'S o-1 s{0,1,2} v2 =-'],
  ['MESI-wb', 'S2', 'getM2', 'Inv>0 v2 Inv>1 v2', 'S o-1 s{0,1} v2 =- busy'],
  ['MESI-wb', 'S2', 'getM2w', 'Inv>0 v2 Inv>1 v2', 'S o-1 s{0,1} v2 =- busy'],
  ['MESI-wb', 'S2', 'getS0', 'Data>0 S v2 =-', 'S o-1 s{0,1} v2 =-'],
  ['MESI-wb', 'S2', 'getM0', 'Inv>1 v2', 'S o-1 s{0,1} v2 =- busy'],
  ['MESI-wb', 'E0', 'getS2', 'Fwd>0 S v2', 'E o0 s{} v2 =- busy'],
  ['MESI-wb', 'E0', 'getM2', 'Fwd>0 I v2', 'E o0 s{} v2 =- busy'],
  ['MESI-wb', 'E0', 'getM2w', 'Fwd>0 I v2', 'E o0 s{} v2 =- busy'],
  ['MESI-wb', 'E0', 'getS0', 'Data>0 E v3 =-', 'E o0 s{} v3 =-'],
  ['MESI-wb', 'E0', 'getM0', 'Data>0 M v3 =-', 'M o0 s{} v3 =-'],
  ['MESI-wb', 'M0', 'getS2', 'Fwd>0 S v2', 'M o0 s{} v2 =- busy'],
  ['MESI-wb', 'M0', 'getM2', 'Fwd>0 I v2', 'M o0 s{} v2 =- busy'],
  ['MESI-wb', 'M0', 'getM2w', 'Fwd>0 I v2', 'M o0 s{} v2 =- busy'],
  ['MESI-wb', 'M0', 'getS0', 'Data>0 E v3 =-', 'E o0 s{} v3 =-'],
  ['MESI-wb', 'M0', 'getM0', 'Data>0 M v3 =-', 'M o0 s{} v3 =-'],
  ['MOESI', 'I', 'getS2', 'Data>2 E v2 =-', 'E o2 s{} v2 =-'],
  ['MOESI', 'I', 'getM2', 'Data>2 M v2 =-', 'M o2 s{} v2 =-'],
  ['MOESI', 'I', 'getM2w', 'Data>2 M v3 =x', 'M o2 s{} v3 =x'],
  ['MOESI', 'I', 'getS0', 'Data>0 E v2 =-', 'E o0 s{} v2 =-'],
  ['MOESI', 'I', 'getM0', 'Data>0 M v2 =-', 'M o0 s{} v2 =-'],
  ['MOESI', 'S2', 'getS2', 'Data>2 S v2 =-', 'S o-1 s{0,1,2} v2 =-'],
  ['MOESI', 'S2', 'getM2', 'Inv>0 v2 Inv>1 v2', 'S o-1 s{0,1} v2 =- busy'],
  ['MOESI', 'S2', 'getM2w', 'Inv>0 v2 Inv>1 v2', 'S o-1 s{0,1} v2 =- busy'],
  ['MOESI', 'S2', 'getS0', 'Data>0 S v2 =-', 'S o-1 s{0,1} v2 =-'],
  ['MOESI', 'S2', 'getM0', 'Inv>1 v2', 'S o-1 s{0,1} v2 =- busy'],
  ['MOESI', 'E0', 'getS2', 'Fwd>0 S v2', 'E o0 s{} v2 =- busy'],
  ['MOESI', 'E0', 'getM2', 'Fwd>0 I v2', 'E o0 s{} v2 =- busy'],
  ['MOESI', 'E0', 'getM2w', 'Fwd>0 I v2', 'E o0 s{} v2 =- busy'],
  ['MOESI', 'E0', 'getS0', 'Data>0 E v3 =-', 'E o0 s{} v3 =-'],
  ['MOESI', 'E0', 'getM0', 'Data>0 M v3 =-', 'M o0 s{} v3 =-'],
  ['MOESI', 'M0', 'getS2', 'Fwd>0 S v2', 'M o0 s{} v2 =- busy'],
  ['MOESI', 'M0', 'getM2', 'Fwd>0 I v2', 'M o0 s{} v2 =- busy'],
  ['MOESI', 'M0', 'getM2w', 'Fwd>0 I v2', 'M o0 s{} v2 =- busy'],
  ['MOESI', 'M0', 'getS0', 'Data>0 E v3 =-', 'E o0 s{} v3 =-'],
  ['MOESI', 'M0', 'getM0', 'Data>0 M v3 =-', 'M o0 s{} v3 =-'],
  ['MOESI', 'O0', 'getS2', 'Fwd>0 S v2', 'O o0 s{1} v2 =d busy mem-stale'],
  ['MOESI', 'O0', 'getM2', 'Fwd>0 I v2 Inv>1 v2', 'O o0 s{1} v2 =d busy mem-stale'],
  ['MOESI', 'O0', 'getM2w', 'Fwd>0 I v2 Inv>1 v2', 'O o0 s{1} v2 =d busy mem-stale'],
  ['MOESI', 'O0', 'getS0', 'Data>0 S v2 =d', 'S o-1 s{0,1} v2 =d'],
  ['MOESI', 'O0', 'getM0', 'Inv>1 v2', 'S o-1 s{1} v2 =d busy'],
];

t.test('home: state x request -> messages and entry', async (t) => {
  for (const [cfg, setup, req, out, after] of table) {
    const r = new HomeRig(configs[cfg] as CacheConfig);
    (setups[setup] as (r: HomeRig) => void)(r);
    const got = (requests[req] as (r: HomeRig) => string)(r);
    t.equal(`${got} | ${r.state()}`, `${out} | ${after}`, `${cfg} ${setup} + ${req}`);
  }
  // Every state is covered for every request under every protocol it exists in.
  t.equal(table.length, 3 * 4 * 5 + 5);
});

t.test('home: rounds complete on acks, dirty data, and lease reclaim', async (t) => {
  let r = new HomeRig(configs['MESI'] as CacheConfig);
  setups['S2']?.(r);
  t.equal(r.getM(2, 'x'), 'Inv>0 v2 Inv>1 v2', 'a write from a third node invalidates both sharers');
  t.equal(r.ack(0), '', 'no grant before every copy acknowledged');
  t.equal(r.ack(1), 'Data>2 M v4 =x', 'M granted after the last ack, the carried value written');
  t.equal(r.state(), 'M o2 s{} v4 =x');
  t.equal(r.backing.read('k')?.version, 4, 'memory has the write before the grant left (write-through)');

  r = new HomeRig(configs['MESI-wb'] as CacheConfig);
  r.getM(0);
  t.equal(r.getS(2), 'Fwd>0 S v2');
  t.equal(r.ack(0, { kept: true, dirty: 'd' }), 'Data>2 S v3 =d', 'MESI: a dirty owner asked to share writes back and downgrades');
  t.equal(r.state(), 'S o-1 s{0,2} v3 =d');
  t.equal(r.backing.writes, 1);

  r = new HomeRig(configs['MOESI'] as CacheConfig);
  r.getM(0);
  t.equal(r.getS(2), 'Fwd>0 S v2');
  t.equal(r.ack(0, { kept: true, dirty: 'd' }), 'Data>2 S v2 =d', 'MOESI: the dirty owner keeps its data in O, relayed to the reader');
  t.equal(r.state(), 'O o0 s{2} v2 =d mem-stale');
  t.equal(r.backing.writes, 0, 'memory is not written on an O downgrade');

  r = new HomeRig(configs['MESI-wb'] as CacheConfig);
  r.getM(0);
  t.equal(r.getM(2), 'Fwd>0 I v2');
  t.equal(r.ack(0, { dirty: 'd' }), 'Data>2 M v4 =d', 'ownership moves with the dirty data written back first');
  t.equal(r.backing.writes, 1);

  r = new HomeRig(configs['MESI'] as CacheConfig);
  r.getS(0);
  t.equal(r.getS(2), 'Fwd>0 S v2');
  t.match(r.tick(2_500), /Data>2 E v3/, 'a silent owner is reclaimed when the lease ran out; the reader gets E');
  t.equal(r.home.counters.leaseReclaims, 1);

  r = new HomeRig(configs['MESI'] as CacheConfig);
  r.getM(0);
  t.equal(r.write(0, 'y'), 'WriteAck>0 M v3', 'the owner writes through and stays M');
  r = new HomeRig(configs['MESI-wb'] as CacheConfig);
  r.getM(0);
  t.equal(r.putM(0, 'z'), 'PutAck>0', 'an evicted dirty line is written back');
  t.equal(r.state(), 'I o-1 s{} v3 =z');
  r = new HomeRig(configs['MESI'] as CacheConfig);
  setups['S2']?.(r);
  t.equal(r.write(1, 'q'), 'Nack>1 stale', 'a Write from a node that is not the owner is refused');
});

t.test('node: line state x event -> messages, completions and line', async (t) => {
  const wt = new NodeRig(configs['MESI'] as CacheConfig);
  t.equal(wt.get(), 'cache.pending GetS#1', 'a miss asks the home');
  t.equal(wt.data(St.E, 5, 'a'), 'done#1=a');
  t.equal(wt.state(), 'E v5 =a');
  t.equal(wt.get(), 'hit=a', 'a hit is answered at once');
  t.equal(wt.set('b'), 'cache.pending Write#2 v5 =b', 'write-through from E sends the value to memory');

  const wb = new NodeRig(configs['MESI-wb'] as CacheConfig);
  wb.get();
  wb.data(St.E, 5, 'a');
  t.equal(wb.set('b'), 'cache.done', 'write-back: E->M is silent');
  t.equal(wb.state(), 'M v5 =b dirty');
  t.equal(wb.fwd(St.S, 5), 'Ack kept dirty=b', 'MESI: Fwd to S gives the dirty data back');
  t.equal(wb.state(), 'S v5 =b');

  const mo = new NodeRig(configs['MOESI'] as CacheConfig);
  mo.get();
  mo.data(St.E, 5, 'a');
  mo.set('b');
  t.equal(mo.fwd(St.S, 5), 'Ack kept dirty=b');
  t.equal(mo.state(), 'O v5 =b dirty', 'MOESI: the owner keeps the dirty data in O');
  t.equal(mo.set('c'), 'cache.pending PutM#2 v5 =b', 'O->M gives the data back (PutM) before asking for M');

  const s = new NodeRig(configs['MESI'] as CacheConfig);
  s.get();
  s.data(St.S, 5, 'a');
  t.equal(s.inv(5), 'Ack', 'an invalidation drops the copy and is acknowledged');
  t.equal(s.state(), 'I');
  t.equal(s.get(), 'cache.pending GetS#2');

  const late = new NodeRig(configs['MESI'] as CacheConfig);
  late.get();
  t.equal(late.inv(7), 'Ack');
  t.equal(late.data(St.S, 6, 'old', { reqId: 1 }), 'GetS#2', 'a grant older than an invalidation seen meanwhile is stale: not served, asked again');
  t.equal(late.state(), 'I/pending', 'and the node asks again');

  const lease = new NodeRig(configs['MESI'] as CacheConfig);
  lease.get();
  lease.data(St.S, 5, 'a');
  lease.tick(2_000);
  t.equal(lease.state(), 'I', 'a line is not served once its lease ran out');
  t.equal(lease.get(), 'cache.pending GetS#2');
});
