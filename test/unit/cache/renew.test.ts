// Volume leases and line renewal, with NodeCaches and a CacheHome wired together by hand
// (one clock, messages delivered at once, memory answered at once): a line read
// continuously stays a hit with no request to its home, renewed by one Volume per home
// per interval (however many lines); lines not read lapse after their own (long) lease;
// one renewal round sends one RenewBatch per home covering all its lines; a silent node's
// line is reclaimed by its home after the node's volume lease, by when the silent node
// stopped serving it; after such a reclaim, none of the node's old lines from that home is
// served again, even once its volume lease is renewed; a volume grant carries the rounds
// still waiting on the node, and with more of them than one grant carries, none is granted:
// the lease lapses and the rounds end by it; a refused renewal drops the line.

import t from 'tap';
import { InMemoryBacking } from '../../../core/cache/backing.js';
import { CacheHome } from '../../../core/cache/home.js';
import { cacheConfigDefault, St } from '../../../core/cache/messages.js';
import type { CacheConfig, CacheValue, RenewBatch, ToHome, ToNode } from '../../../core/cache/messages.js';
import { NodeCache, PENDING } from '../../../core/cache/node.js';
import type { CacheCompletion } from '../../../core/cache/node.js';
import { cacheLineLeaseVolumes, cacheRenewIdleLeases, cacheVolumeRevokesMax } from '../../../core/constants.js';
import { cacheNodeIndex } from '../../../core/ids.js';
import { str, val } from './rig.js';

const cfg: CacheConfig = cacheConfigDefault;
const HOME = cacheNodeIndex(2);
/** The node's tick period in the service (retryMs / 2). */
const tickMs = cfg.retryMs / 2;

/** Two nodes (0, 1) and one home (2) for every key; node n can be made silent (its messages, both ways, are dropped). */
class Pair {
  nowMs = 100_000;
  readonly backing = new InMemoryBacking();
  readonly home = new CacheHome(cfg, { self: HOME, epoch: 7, startedMs: this.nowMs - 10 * cfg.leaseMs });
  readonly nodes: NodeCache[];
  readonly silent = new Set<number>();
  /** Messages from the home that are lost on the way (the home sent them). */
  lose: (m: ToNode) => boolean = () => false;

  constructor(canary?: 'serve-past-volume-lease') {
    this.nodes = [0, 1].map((i) => new NodeCache(cfg, { self: cacheNodeIndex(i), incarnation: 1, homeOf: () => HOME, ...(canary === undefined ? {} : { canary }) }));
  }
  /** Messages the nodes sent to the home, by kind (silent nodes' included: they are sent, then lost). */
  readonly sent = new Map<string, number>();
  readonly batches: RenewBatch[] = [];
  readonly done = new Map<number, CacheCompletion>();
  private opId = 0;

  /** A get at node n: the value on a hit, else 'pending' (delivered at once: see done). */
  get(n: number, key: string): string {
    const id = ++this.opId;
    const r = (this.nodes[n] as NodeCache).get(id, key, this.nowMs);
    this.deliver();
    if (r === PENDING) {
      const c = this.done.get(id);
      return c === undefined ? 'pending' : `miss=${c.ok ? str(c.value) : c.error}`;
    }
    return typeof r === 'symbol' ? String(r.description) : `hit=${str(r)}`;
  }

  /** A write-through set at node n, its client waiting two leases; its op id (see done). */
  set(n: number, key: string, value: string): number {
    const id = ++this.opId;
    (this.nodes[n] as NodeCache).set(id, key, val(value), this.nowMs, 0, null, 2 * cfg.leaseMs);
    this.deliver();
    return id;
  }

  count(kind: ToHome['kind']): number {
    return this.sent.get(kind) ?? 0;
  }

  tick(ms: number): void {
    this.nowMs += ms;
    for (const node of this.nodes) node.tick(this.nowMs);
    this.home.tick(this.nowMs);
    this.deliver();
  }

  deliver(): void {
    for (let rounds = 0; rounds < 1000; rounds++) {
      let moved = 0;
      this.nodes.forEach((node, n) => {
        const r = node.ready();
        for (const c of r.completions) this.done.set(c.opId, c);
        for (const m of r.messages) {
          moved++;
          this.sent.set(m.kind, (this.sent.get(m.kind) ?? 0) + 1);
          if (m.kind === 'RenewBatch') this.batches.push(m);
          if (!this.silent.has(n)) this.home.step(m, this.nowMs);
        }
      });
      const h = this.home.ready();
      for (const m of h.messages) {
        moved++;
        if (!this.silent.has(m.to) && !this.lose(m)) (this.nodes[m.to] as NodeCache).step(m, this.nowMs);
      }
      for (const op of h.memory) {
        moved++;
        if (op.kind === 'read') this.home.memoryRead(op.key, this.backing.read(op.key), this.nowMs);
        else {
          this.backing.write(op.key, op.record);
          this.home.memoryWritten(op.key, this.nowMs);
        }
      }
      if (moved === 0) return;
    }
    throw new Error('the cores kept answering each other');
  }
}

/** Seeds memory so a get finds a value. */
function seed(p: Pair, keys: readonly string[], value: CacheValue = val('v')): void {
  for (const k of keys) p.backing.write(k, { value, version: 1, expiresAtMs: 0 });
}


/** A NodeCache driven by hand, holding a volume lease from `home` until far ahead; Data/WriteAck in period (7, 0). */
function handNode(homeOf: (k: string) => ReturnType<typeof cacheNodeIndex>, homes: readonly number[], nowMs: number): NodeCache {
  const node = new NodeCache(cfg, { self: cacheNodeIndex(0), incarnation: 1, homeOf });
  for (const h of homes) {
    node.step({ kind: 'VolumeGranted', from: cacheNodeIndex(h), to: cacheNodeIndex(0), incarnation: 1, epoch: 7, seq: 0, leaseUntilMs: nowMs + 1_000 * cfg.leaseMs, revoke: [] }, nowMs);
  }
  return node;
}

const lineLeaseMs = cacheLineLeaseVolumes * cfg.leaseMs;

t.test('a line read continuously stays a hit with no request for it: one Volume per interval renews the node\'s lease from its home', async (t) => {
  const p = new Pair();
  seed(p, ['a', 'b', 'c']);
  t.equal(p.get(0, 'a'), 'miss=v', 'the first read is a miss');
  p.get(0, 'b');
  p.get(0, 'c');
  t.equal(p.count('GetS'), 3);
  const leases = 6;
  let hits = 0;
  let reads = 0;
  for (let ms = 0; ms < leases * cfg.leaseMs; ms += tickMs) {
    p.tick(tickMs);
    for (const k of ['a', 'b', 'c']) {
      reads++;
      if (p.get(0, k) === 'hit=v') hits++;
    }
  }
  t.equal(hits, reads, `every read over ${leases} leases is a hit`);
  t.equal(p.count('GetS'), 3, 'no further request for the lines');
  t.equal(p.count('Renew') + p.count('RenewBatch'), 0, 'no line renewal: a line\'s own lease is long');
  const volumes = p.count('Volume');
  t.ok(volumes >= leases && volumes <= 3 * leases, `the volume lease renewed a few times a lease, for three lines together (${volumes} in ${leases} leases)`);
  t.equal(p.home.counters.volumeRenewals, volumes, 'the home granted each');
  t.equal((p.nodes[0] as NodeCache).counters.leaseExpiries, 0, 'no line lapsed');
});

t.test('a line not read lapses after its own lease; a read after that is a miss', async (t) => {
  const p = new Pair();
  seed(p, ['a']);
  t.equal(p.get(0, 'a'), 'miss=v');
  const node = p.nodes[0] as NodeCache;
  let lastServedMs = p.nowMs;
  const untilMs = p.nowMs + cacheRenewIdleLeases * cfg.leaseMs + lineLeaseMs + 3 * cfg.leaseMs;
  while (p.nowMs < untilMs) {
    p.tick(4 * tickMs);
    if (node.line('a', p.nowMs) !== null) lastServedMs = p.nowMs;
  }
  const servedForMs = lastServedMs - 100_000;
  t.ok(servedForMs >= lineLeaseMs - cfg.leaseMs, `served through its own lease (${servedForMs} ms)`);
  t.ok(servedForMs <= cacheRenewIdleLeases * cfg.leaseMs + lineLeaseMs, 'then it lapses: renewed only while read within the idle window');
  t.equal(p.get(0, 'a'), 'miss=v', 'a read after the lapse asks the home again');
  t.equal(p.count('GetS'), 2);
});

t.test('one round sends one RenewBatch per home, covering every line due', async (t) => {
  const homes = [cacheNodeIndex(1), cacheNodeIndex(2)];
  let nowMs = 100_000;
  const node = handNode((k) => homes[Number(k.slice(1)) % 2] as ReturnType<typeof cacheNodeIndex>, [1, 2], nowMs);
  const keys = Array.from({ length: 100 }, (_, i) => `k${i}`);
  for (const k of keys) {
    node.get(1, k, nowMs);
    const gets = node.ready().messages;
    const m = gets[0];
    t.ok(gets.length === 1 && m !== undefined && m.kind === 'GetS', `${k}: one GetS`);
    if (m === undefined || m.kind !== 'GetS') return;
    node.step({ kind: 'Data', from: m.to, to: cacheNodeIndex(0), incarnation: 1, key: k, reqId: m.reqId, state: St.S, version: 1, value: val('v'), leaseUntilMs: nowMs + lineLeaseMs - 50, ttl: false, epoch: 7, seq: 0 }, nowMs);
    node.ready();
  }
  nowMs += lineLeaseMs / 2 + 10;
  for (const k of keys) node.get(2, k, nowMs); // read within the idle window
  node.tick(nowMs);
  const msgs = node.ready().messages;
  const batches = msgs.filter((m): m is RenewBatch => m.kind === 'RenewBatch');
  t.equal(batches.length, 2, 'one per home');
  t.same(batches.map((b) => b.to).sort(), [1, 2]);
  t.same(batches.flatMap((b) => b.keys).sort(), [...keys].sort(), 'every line, each once');
  for (const b of batches) {
    t.ok(b.keys.every((k) => homes[Number(k.slice(1)) % 2] === b.to), `batch to ${b.to} names its keys only`);
    t.same(b.versions, b.keys.map(() => 1), 'with their versions');
  }
  node.tick(nowMs + tickMs);
  t.equal(node.ready().messages.filter((m) => m.kind === 'RenewBatch').length, 0, 'no second round before the next one is due');
});

t.test('a silent node: its home reclaims the line after the node\'s volume lease, and by then the node stopped serving it', async (t) => {
  const p = new Pair();
  seed(p, ['a'], val('old'));
  t.equal(p.get(0, 'a'), 'miss=old');
  const a = p.nodes[0] as NodeCache;
  // Read and renewed for two leases, then node 0 falls silent (its renewals are lost).
  for (let ms = 0; ms < 2 * cfg.leaseMs; ms += tickMs) {
    p.tick(tickMs);
    p.get(0, 'a');
  }
  t.equal(p.count('GetS'), 1, 'held by volume renewals alone');
  p.silent.add(0);
  const silentFromMs = p.nowMs;
  const servesUntil = a.volumeLeaseUntilMs(HOME);
  t.ok(servesUntil > p.nowMs && a.line('a', p.nowMs) !== null, 'node 0 still serves the line when it falls silent');
  const id = p.set(1, 'a', 'new');
  t.equal(p.done.get(id), undefined, 'the write waits for the silent holder');
  let doneAtMs = -1;
  while (doneAtMs < 0 && p.nowMs < silentFromMs + 3 * cfg.leaseMs) {
    // The silent node keeps reading (its clients still ask it): it must not serve past its volume lease.
    const r = p.get(0, 'a');
    if (r === 'hit=old') t.ok(p.nowMs < servesUntil, 'a silent node serves only within its volume lease');
    p.tick(tickMs);
    if (p.done.has(id)) doneAtMs = p.nowMs;
  }
  t.equal(p.done.get(id)?.ok, true, 'the write succeeded');
  t.ok(doneAtMs >= servesUntil, `the write completes only after the silent holder's volume lease (${doneAtMs - silentFromMs} ms after it fell silent)`);
  t.ok(doneAtMs <= silentFromMs + cfg.leaseMs + 2 * cfg.retryMs, 'and within about a lease');
  t.equal(p.home.counters.leaseReclaims, 1, 'the home reclaimed the silent holder');
  t.equal(a.line('a', p.nowMs), null, 'node 0 serves nothing for the key now');
  t.equal(p.get(1, 'a'), 'hit=new', 'the writer reads its value');
});

/** Node 0 reads a and b, falls silent, node 1 writes a (reclaimed from node 0), node 0 is heard again and renews its volume lease; its reads. */
function reclaimedThenBack(canary?: 'serve-past-volume-lease'): { a: string; b: string; p: Pair } {
  const p = new Pair(canary);
  seed(p, ['a', 'b'], val('old'));
  p.get(0, 'a');
  p.get(0, 'b');
  p.tick(tickMs);
  p.silent.add(0);
  const id = p.set(1, 'a', 'new');
  for (let ms = 0; ms < 2 * cfg.leaseMs && !p.done.has(id); ms += tickMs) p.tick(tickMs);
  if (!p.done.has(id)) throw new Error('the write never completed');
  p.silent.delete(0);
  for (let ms = 0; ms < cfg.leaseMs; ms += tickMs) p.tick(tickMs);
  return { a: p.get(0, 'a'), b: p.get(0, 'b'), p };
}

t.test('after its home reclaimed a line from it, a node whose volume lease is renewed again serves none of its old lines from that home', async (t) => {
  const { a, b, p } = reclaimedThenBack();
  const node = p.nodes[0] as NodeCache;
  t.ok(node.volumeLeaseUntilMs(HOME) > p.nowMs, 'node 0 holds a volume lease again');
  t.equal(a, 'miss=new', 'the reclaimed line is not served: the read asks the home');
  t.equal(b, 'miss=old', 'nor is any other line of the ended period (it may have missed any Inv)');
  t.ok(node.counters.volumePeriodsEnded >= 2, 'the period ended (the first grant began one)');
  // The same schedule on a node that ignores volume leases serves the overwritten value.
  t.equal(reclaimedThenBack('serve-past-volume-lease').a, 'hit=old', 'the canary build serves the stale value (so this schedule would catch it)');
});

t.test('a volume grant carries the rounds waiting on the node: a lost Inv does not hold the write for a lease', async (t) => {
  const p = new Pair();
  seed(p, ['a'], val('old'));
  t.equal(p.get(0, 'a'), 'miss=old');
  p.tick(tickMs);
  p.lose = (m) => (m.kind === 'Inv' || m.kind === 'Fwd') && m.to === 0;
  const id = p.set(1, 'a', 'new');
  t.equal(p.done.get(id), undefined, 'the write waits: its Fwd to node 0 (the E owner) was lost');
  const startMs = p.nowMs;
  let volumeRevokes = 0;
  while (!p.done.has(id) && p.nowMs < startMs + 2 * cfg.leaseMs) {
    p.tick(tickMs);
    volumeRevokes = p.home.counters.volumeRevokes;
  }
  t.equal(p.done.get(id)?.ok, true, 'the write completed');
  t.ok(volumeRevokes >= 1, 'a volume grant carried the revocation');
  t.equal(p.home.counters.leaseReclaims, 0, 'node 0 acknowledged it: nothing was reclaimed');
  t.ok(p.nowMs - startMs < cfg.leaseMs, `well within a lease (${p.nowMs - startMs} ms: the next volume renewal)`);
  t.equal(p.get(0, 'a'), 'miss=new');
});

t.test('a renewed batch: ok extends the lease from the batch\'s send time, refused drops the line, an older version is ignored', async (t) => {
  let nowMs = 100_000;
  const node = handNode(() => HOME, [HOME], nowMs);
  for (const [i, k] of ['a', 'b', 'c'].entries()) {
    node.get(i + 1, k, nowMs);
    const m = node.ready().messages[0];
    if (m === undefined || m.kind !== 'GetS') throw new Error('expected a GetS');
    node.step({ kind: 'Data', from: HOME, to: cacheNodeIndex(0), incarnation: 1, key: k, reqId: m.reqId, state: St.S, version: 5, value: val(k), leaseUntilMs: nowMs + lineLeaseMs - 50, ttl: false, epoch: 7, seq: 0 }, nowMs);
    node.ready();
  }
  nowMs += lineLeaseMs / 2 + 10;
  for (const k of ['a', 'b', 'c']) node.get(9, k, nowMs);
  node.tick(nowMs);
  const b = node.ready().messages.find((m) => m.kind === 'RenewBatch');
  if (b === undefined || b.kind !== 'RenewBatch') throw new Error('expected a RenewBatch');
  t.same([...b.keys].sort(), ['a', 'b', 'c']);
  const until = b.sentMs + lineLeaseMs - 50;
  nowMs += 5;
  node.step({ kind: 'RenewedBatch', from: HOME, to: cacheNodeIndex(0), incarnation: 1, keys: ['a', 'b', 'c'], ok: [true, false, true], versions: [6, 5, 4], leaseUntilMs: [until, 0, until] }, nowMs);
  t.equal(node.line('a', nowMs)?.leaseUntilMs, until, 'a: renewed until the lease anchored at the batch');
  t.equal(node.line('a', nowMs)?.version, 6, 'a: at the home\'s version');
  t.equal(node.line('b', nowMs), null, 'b: refused, dropped');
  t.ok((node.line('c', nowMs)?.leaseUntilMs ?? 0) < until, 'c: an answer about an older version changes nothing');
  t.equal(node.counters.renewBatchesSent, 1);
  t.equal(node.counters.renewalsSent, 3);
});

/** Node 0 reads `keys` keys, then every Inv/Fwd to it is lost while node 1 writes them all; until every write completes. Grants to node 0 are counted from the writes until the home's first reclaim. */
function manyRoundsWaiting(keys: number): { p: Pair; servesUntil: number; servedLate: number; waitMs: number; volumeGrantsToNode0: number } {
  const p = new Pair();
  const names = Array.from({ length: keys }, (_, i) => `k${i}`);
  seed(p, names, val('old'));
  for (const k of names) p.get(0, k);
  p.tick(tickMs);
  const node0 = p.nodes[0] as NodeCache;
  const servesUntil = node0.volumeLeaseUntilMs(HOME);
  p.lose = (m) => (m.kind === 'Inv' || m.kind === 'Fwd') && m.to === 0;
  let volumeGrantsToNode0 = 0;
  const lose = p.lose;
  const ids: number[] = [];
  p.lose = (m) => {
    if (m.kind === 'VolumeGranted' && m.to === 0 && ids.length > 0 && p.home.counters.leaseReclaims === 0) volumeGrantsToNode0++;
    return lose(m);
  };
  for (const k of names) ids.push(p.set(1, k, 'new'));
  const startMs = p.nowMs;
  let servedLate = 0;
  while (!ids.every((id) => p.done.has(id)) && p.nowMs < startMs + 3 * cfg.leaseMs) {
    p.tick(tickMs);
    // Node 0's clients keep reading: nothing old may be served past its volume lease.
    if (p.get(0, 'k0') === 'hit=old' && p.nowMs >= servesUntil) servedLate++;
  }
  if (!ids.every((id) => p.done.get(id)?.ok === true)) throw new Error('some write never completed');
  return { p, servesUntil, servedLate, waitMs: p.nowMs - startMs, volumeGrantsToNode0 };
}

t.test(`${cacheVolumeRevokesMax} rounds waiting on a node ride one volume grant; one more and the home grants nothing, the lease lapses and the rounds end by it`, async (t) => {
  const fits = manyRoundsWaiting(cacheVolumeRevokesMax);
  t.equal(fits.p.home.counters.volumeRefused, 0, `${cacheVolumeRevokesMax} revocations fit one grant`);
  t.ok(fits.volumeGrantsToNode0 >= 1, 'which reached node 0 while the writes waited');
  t.ok(fits.p.home.counters.volumeRevokes >= cacheVolumeRevokesMax, 'the grant carried them all');
  t.equal(fits.p.home.counters.leaseReclaims, 0, 'node 0 applied them: nothing reclaimed');
  t.ok(fits.waitMs < cfg.leaseMs, `the writes ended at the next volume renewal (${fits.waitMs} ms)`);

  const over = manyRoundsWaiting(cacheVolumeRevokesMax + 1);
  t.ok(over.p.home.counters.volumeRefused >= 1, 'with one round more the home refused to renew the volume lease');
  t.equal(over.p.home.counters.volumeRevokes, 0, 'and sent no partial list of revocations');
  t.equal(over.volumeGrantsToNode0, 0, 'no grant reached node 0 while the rounds waited (before the home reclaimed)');
  t.equal(over.p.home.counters.leaseReclaims, cacheVolumeRevokesMax + 1, 'every round ended by reclaiming node 0 after its lease');
  t.ok(over.waitMs >= over.servesUntil - (over.p.nowMs - over.waitMs), 'the writes completed only after node 0\'s volume lease');
  t.equal(over.servedLate, 0, 'node 0 served no old value past its volume lease');
  t.equal((over.p.nodes[0] as NodeCache).line('k1', over.p.nowMs), null, 'node 0 holds none of the reclaimed lines it did not read again');
  t.equal(over.p.get(0, `k${cacheVolumeRevokesMax}`), 'miss=new', 'a read there asks the home and gets the new value');
});
