// Test helper (not a test): a small deterministic network of N cache nodes, each also the
// home of some keys, driven by a list of actions (client ops, deliver / drop / duplicate
// a message in any order, time passing, node crashes, evictions, flushes). Memory is an
// InMemoryBacking per home whose completions travel through the same network, so they
// arrive late and out of order too. It records the client history for the
// linearizability check and checks the coherence invariants after every action.

import { CacheHome } from '../../../core/cache/home.js';
import { InMemoryBacking } from '../../../core/cache/backing.js';
import type { MemoryOp } from '../../../core/cache/backing.js';
import { St, stateNames } from '../../../core/cache/messages.js';
import type { Ack, CacheConfig, CacheValue, ToHome, ToNode } from '../../../core/cache/messages.js';
import { BUSY, DONE, NodeCache, PENDING, TOO_LARGE } from '../../../core/cache/node.js';
import { cacheNodeIndex } from '../../../core/ids.js';
import type { CacheNodeIndex } from '../../../core/ids.js';
import type { HistoryOp } from '../../checker/cache-linearizability.js';

export type Action =
  | { readonly t: 'get'; readonly node: number; readonly key: number }
  | { readonly t: 'set'; readonly node: number; readonly key: number; readonly del: boolean }
  | { readonly t: 'deliver'; readonly pick: number }
  | { readonly t: 'drop'; readonly pick: number }
  | { readonly t: 'dup'; readonly pick: number }
  | { readonly t: 'tick'; readonly ms: number }
  | { readonly t: 'crash'; readonly node: number }
  | { readonly t: 'evict'; readonly node: number; readonly key: number }
  | { readonly t: 'flush'; readonly node: number };

type Flight =
  | { readonly to: 'home'; readonly msg: ToHome }
  | { readonly to: 'node'; readonly msg: ToNode }
  | { readonly to: 'memory'; readonly home: number; readonly op: MemoryOp };

export interface SimOptions {
  readonly nodes: number;
  readonly keys: number;
  readonly cfg: CacheConfig;
  readonly canary?: 'skip-one-invalidation' | 'grant-m-before-acks' | 'serve-past-volume-lease';
  readonly lineEntriesMax?: number;
  /** Directory entries per home; default simHomeEntriesMax (a home of the default sizes costs more to allocate than a whole run). */
  readonly homeEntriesMax?: number;
  /** Check the coherence invariants after every action (off to prove the history check alone catches a canary). */
  readonly invariants: boolean;
}

const ackId = (m: Ack): string => `${m.from}/${m.incarnation}/${m.key}/${m.epoch}/${m.round}`;

/** Room for every key of a run (a few), so no directory eviction unless a test asks for it with homeEntriesMax. */
const simHomeEntriesMax = 64;
/** Beyond every key's own queue bound (cacheHomeQueuePerKeyMax) for the few keys of a run, so behaviour is as with the default. */
const simHomeQueuedRequestsMax = 1_024;

const enc = new TextEncoder();
const dec = new TextDecoder();
const str = (v: CacheValue): string | null => (v === null ? null : dec.decode(v));

interface Open {
  readonly key: string;
  readonly kind: 'get' | 'set';
  readonly value: string | null;
  readonly invoke: number;
  readonly node: number;
}

export class Sim {
  nowMs = 1_000;
  events = 0;
  readonly nodes: NodeCache[] = [];
  readonly incarnations: number[] = [];
  readonly homes: CacheHome[] = [];
  readonly backings: InMemoryBacking[] = [];
  readonly flights: Flight[] = [];
  readonly history: HistoryOp[] = [];
  readonly open = new Map<number, Open>();
  private opCounter = 0;
  /** Keys whose write-back data may have been lost (a superset of them): not held to linearizability. */
  readonly lossKeys = new Set<string>();
  /** Write-back dirty data that died with crashed nodes. */
  dirtyLostAtCrashes = 0;
  /** Dirty Acks dropped and not (yet) delivered again: the node's copy of its answer is the data's only home. */
  private readonly dirtyAcksDropped = new Map<string, { readonly node: number; readonly key: string; readonly round: number }>();
  private readonly acksDelivered = new Set<string>();
  private writeCounter = 0;
  private readonly homeVersionMax = new Map<string, number>();
  private readonly lineVersion = new Map<string, number>();
  readonly keyNames: string[];

  constructor(readonly opts: SimOptions) {
    this.keyNames = Array.from({ length: opts.keys }, (_, i) => `k${i}`);
    for (let n = 0; n < opts.nodes; n++) {
      this.incarnations.push(1);
      this.nodes.push(this.newNode(n));
      const home = new CacheHome(opts.cfg, {
        self: cacheNodeIndex(n), epoch: 1, startedMs: this.nowMs - opts.cfg.leaseMs,
        entriesMax: opts.homeEntriesMax ?? simHomeEntriesMax, queuedRequestsMax: simHomeQueuedRequestsMax,
        ...(opts.canary === 'skip-one-invalidation' || opts.canary === 'grant-m-before-acks' ? { canary: opts.canary } : {}),
      });
      this.homes.push(home);
      this.backings.push(new InMemoryBacking());
    }
  }

  homeOf = (key: string): CacheNodeIndex => cacheNodeIndex(Number(key.slice(1)) % this.opts.nodes);

  private newNode(n: number): NodeCache {
    return new NodeCache(this.opts.cfg, {
      self: cacheNodeIndex(n), incarnation: this.incarnations[n] as number, homeOf: this.homeOf, homes: this.opts.nodes,
      ...(this.opts.lineEntriesMax !== undefined ? { entriesMax: this.opts.lineEntriesMax } : {}),
      ...(this.opts.canary === 'serve-past-volume-lease' ? { canary: this.opts.canary } : {}),
    });
  }

  apply(a: Action): void {
    const nodeLost = this.nodes.map((node) => node.counters.dirtyLost);
    const homeLost = this.homes.map((home) => home.counters.writeBackLossReclaimed);
    const picked = (a.t === 'deliver' || a.t === 'dup') && this.flights.length > 0 ? this.flights[a.pick % this.flights.length] : undefined;
    switch (a.t) {
      case 'get': {
        const node = a.node % this.opts.nodes;
        const key = this.keyNames[a.key % this.opts.keys] as string;
        const opId = ++this.opCounter;
        const invoke = ++this.events;
        const r = (this.nodes[node] as NodeCache).get(opId, key, this.nowMs);
        if (r === PENDING) this.open.set(opId, { key, kind: 'get', value: null, invoke, node });
        else if (r !== TOO_LARGE && r !== BUSY) this.history.push({ key, kind: 'get', value: str(r), invoke, complete: ++this.events });
        break;
      }
      case 'set': {
        const node = a.node % this.opts.nodes;
        const key = this.keyNames[a.key % this.opts.keys] as string;
        const opId = ++this.opCounter;
        const value = a.del ? null : `w${++this.writeCounter}`;
        const invoke = ++this.events;
        const r = (this.nodes[node] as NodeCache).set(opId, key, value === null ? null : enc.encode(value), this.nowMs);
        if (r === PENDING) this.open.set(opId, { key, kind: 'set', value, invoke, node });
        else if (r === DONE) this.history.push({ key, kind: 'set', value, invoke, complete: ++this.events });
        break;
      }
      case 'deliver':
      case 'dup':
      case 'drop': {
        if (this.flights.length === 0) break;
        const i = a.pick % this.flights.length;
        const f = this.flights[i] as Flight;
        if (a.t === 'drop') {
          if (f.to !== 'memory') this.flights.splice(i, 1);
          if (f.to === 'home' && f.msg.kind === 'Ack' && f.msg.dirty && !this.acksDelivered.has(ackId(f.msg))) {
            this.dirtyAcksDropped.set(ackId(f.msg), { node: f.msg.from, key: f.msg.key, round: f.msg.round });
          }
          break;
        }
        if (f.to === 'home' && f.msg.kind === 'Ack' && f.msg.dirty) {
          this.dirtyAcksDropped.delete(ackId(f.msg));
          this.acksDelivered.add(ackId(f.msg));
        }
        if (a.t === 'deliver' || f.to === 'memory') this.flights.splice(i, 1);
        this.deliver(f);
        break;
      }
      case 'tick':
        this.nowMs += a.ms;
        for (const node of this.nodes) node.tick(this.nowMs);
        for (const home of this.homes) home.tick(this.nowMs);
        break;
      case 'crash': {
        const n = a.node % this.opts.nodes;
        const held = (this.nodes[n] as NodeCache).dirtyHeld;
        this.dirtyLostAtCrashes += held;
        // Its dirty lines and PutMs in flight: keys the home records it as owner of (or reclaimed, counted then).
        if (held > 0) for (const k of this.keyNames) if ((this.homes[this.homeOf(k)] as CacheHome).entry(k)?.owner === n) this.lossKeys.add(k);
        // Dirty data a Fwd took away from the node's line lives on only in its answer: an Ack still in flight
        // (the home drops it once the new incarnation spoke) or a dropped one the node would have resent from
        // its copy of the answer, which dies with it. Counted once per round either way.
        const answers = new Set<string>();
        for (const f of this.flights) {
          if (f.to !== 'home' || f.msg.from !== n || f.msg.kind !== 'Ack' || !f.msg.dirty) continue;
          answers.add(`${f.msg.key}/${f.msg.round}`);
          this.lossKeys.add(f.msg.key);
        }
        for (const [id, a] of this.dirtyAcksDropped) {
          if (a.node !== n) continue;
          answers.add(`${a.key}/${a.round}`);
          this.lossKeys.add(a.key);
          this.dirtyAcksDropped.delete(id);
        }
        this.dirtyLostAtCrashes += answers.size;
        this.lostOld += (this.nodes[n] as NodeCache).counters.dirtyLost;
        // Its pending ops never complete; messages to and from it stay in flight (and go stale).
        for (const [id, o] of this.open) if (o.node === n) this.closeNever(id, o);
        this.incarnations[n] = (this.incarnations[n] as number) + 1;
        this.nodes[n] = this.newNode(n);
        for (const k of this.keyNames) this.lineVersion.delete(`${n}/${k}`);
        break;
      }
      case 'evict':
        (this.nodes[a.node % this.opts.nodes] as NodeCache).evict(this.keyNames[a.key % this.opts.keys] as string, this.nowMs);
        break;
      case 'flush':
        (this.nodes[a.node % this.opts.nodes] as NodeCache).flush(++this.opCounter, this.nowMs);
        break;
    }
    this.collect();
    // Which keys a loss counted by this action concerns: the key of the message a node
    // handled, every key of a home (it counts reclaims of several entries at once).
    for (let n = 0; n < this.nodes.length; n++) {
      if (a.t === 'crash' || (this.nodes[n] as NodeCache).counters.dirtyLost === nodeLost[n]) continue;
      if (picked !== undefined && picked.to === 'node') {
        if (picked.msg.kind === 'RenewedBatch') for (const k of picked.msg.keys) this.lossKeys.add(k);
        else if (picked.msg.kind === 'VolumeGranted') for (const r of picked.msg.revoke) this.lossKeys.add(r.key);
        else this.lossKeys.add(picked.msg.key);
      }
      else for (const k of this.keyNames) this.lossKeys.add(k);
    }
    for (let h = 0; h < this.homes.length; h++) {
      if ((this.homes[h] as CacheHome).counters.writeBackLossReclaimed === homeLost[h]) continue;
      for (const k of this.keyNames) if (this.homeOf(k) === h) this.lossKeys.add(k);
    }
    if (this.opts.invariants) this.checkInvariants();
  }

  private closeNever(id: number, o: Open): void {
    this.open.delete(id);
    if (o.kind === 'set') this.history.push({ key: o.key, kind: 'set', value: o.value, invoke: o.invoke, complete: Infinity });
  }

  private deliver(f: Flight): void {
    if (f.to === 'home') (this.homes[f.msg.to] as CacheHome).step(f.msg, this.nowMs);
    else if (f.to === 'node') (this.nodes[f.msg.to] as NodeCache).step(f.msg, this.nowMs);
    else {
      const home = this.homes[f.home] as CacheHome;
      const backing = this.backings[f.home] as InMemoryBacking;
      if (f.op.kind === 'read') home.memoryRead(f.op.key, backing.read(f.op.key), this.nowMs);
      else {
        backing.write(f.op.key, f.op.record);
        home.memoryWritten(f.op.key, this.nowMs);
      }
    }
  }

  /** Moves every output into the network and every completion into the history. */
  private collect(): void {
    for (let again = true; again; ) {
      again = false;
      for (let n = 0; n < this.nodes.length; n++) {
        const r = (this.nodes[n] as NodeCache).ready();
        for (const msg of r.messages) this.flights.push({ to: 'home', msg });
        for (const c of r.completions) {
          const o = this.open.get(c.opId);
          if (o === undefined) continue; // a flush
          if (!c.ok) {
            this.closeNever(c.opId, o);
            continue;
          }
          this.open.delete(c.opId);
          this.history.push({ key: o.key, kind: o.kind, value: o.kind === 'get' ? str(c.value) : o.value, invoke: o.invoke, complete: ++this.events });
        }
      }
      for (let h = 0; h < this.homes.length; h++) {
        const r = (this.homes[h] as CacheHome).ready();
        for (const msg of r.messages) this.flights.push({ to: 'node', msg });
        for (const op of r.memory) this.flights.push({ to: 'memory', home: h, op });
        if (r.messages.length + r.memory.length > 0) again = true;
      }
    }
  }

  /** Dirty data lost (crashes, and owners whose line the home had reclaimed): write-back's loss window. */
  get dirtyLost(): number {
    // An owner's Ack with dirty data can be lost and the owner then reclaimed: only the home sees that.
    const reclaimed = this.homes.reduce((n, home) => n + home.counters.writeBackLossReclaimed, 0);
    return this.dirtyLostAtCrashes + this.nodes.reduce((n, node) => n + node.counters.dirtyLost, 0) + this.lostOld + reclaimed;
  }
  private lostOld = 0;

  /** Heal: no more faults; time passes and everything is delivered until no op is left waiting. */
  settle(roundsMax = 2_000): boolean {
    for (let i = 0; i < roundsMax; i++) {
      if (this.open.size === 0 && this.flights.length === 0) return true;
      // Bounded: messages that keep making messages without time passing are a livelock.
      for (let d = 0; this.flights.length > 0; d++) {
        if (d > 100_000) throw new Error('livelock: messages keep flowing without progress');
        this.apply({ t: 'deliver', pick: 0 });
      }
      if (this.open.size === 0) return true;
      this.apply({ t: 'tick', ms: 10 });
    }
    return this.open.size === 0;
  }

  /**
   * Every node's line of `key`, for a failure message. Built only when a check fails: formatting
   * (and decoding) every line after every action cost this test about a fifth of its CPU.
   */
  private describeLines(key: string): string {
    const out: string[] = [];
    for (let n = 0; n < this.nodes.length; n++) {
      const line = (this.nodes[n] as NodeCache).line(key, this.nowMs);
      if (line !== null) out.push(`${n}:${stateNames[line.state]}v${line.version}=${str(line.value)}`);
    }
    return out.join(' ');
  }

  /** Single writer, directory matches lines, versions monotonic. Throws with a description. */
  checkInvariants(): void {
    for (const key of this.keyNames) {
      const home = this.homes[this.homeOf(key)] as CacheHome;
      const entry = home.entry(key);
      // Version 0: an entry created a moment ago, still loading (after a directory eviction it reloads memory's version).
      if (entry !== null && entry.version > 0) {
        const prev = this.homeVersionMax.get(key) ?? 0;
        if (entry.version < prev) throw new Error(`home version of ${key} went back from ${prev} to ${entry.version}`);
        this.homeVersionMax.set(key, entry.version);
      }
      let exclusive = 0;
      let owned = 0;
      let copies = 0;
      let shared: string | null | undefined;
      let ownedValue: string | null | undefined;
      for (let n = 0; n < this.nodes.length; n++) {
        const line = (this.nodes[n] as NodeCache).line(key, this.nowMs);
        if (line === null) continue;
        copies++;
        const lv = `${n}/${key}`;
        if (line.version < (this.lineVersion.get(lv) ?? 0)) throw new Error(`line version of ${key} at node ${n} went back`);
        this.lineVersion.set(lv, line.version);
        if (line.state === St.E || line.state === St.M) exclusive++;
        if (line.state === St.O) {
          owned++;
          ownedValue = str(line.value);
        }
        if (line.state === St.S) {
          const v = str(line.value);
          if (shared !== undefined && shared !== v) throw new Error(`two S copies of ${key} differ: ${this.describeLines(key)}`);
          shared = v;
        }
        if (entry === null) throw new Error(`node ${n} holds ${key} but its home has no entry`);
        const recorded = entry.owner === n || (entry.sharers & (1 << n)) !== 0;
        if (!recorded) throw new Error(`node ${n} serves ${key} (${this.describeLines(key)}) but the home does not record it: owner ${entry.owner} sharers ${entry.sharers.toString(2)}`);
        if (line.state !== St.S && entry.owner !== n) throw new Error(`node ${n} holds ${key} in ${stateNames[line.state]} but the home's owner is ${entry.owner}`);
      }
      if (exclusive > 1 || (exclusive === 1 && copies > 1)) throw new Error(`single writer broken for ${key}: ${this.describeLines(key)}`);
      if (owned > 1) throw new Error(`two O owners of ${key}: ${this.describeLines(key)}`);
      if (shared !== undefined && ownedValue !== undefined && shared !== ownedValue) throw new Error(`S copies differ from the O owner for ${key}: ${this.describeLines(key)}`);
      if (shared !== undefined && ownedValue === undefined && entry !== null && !entry.busy && !entry.memoryStale && str(entry.value) !== shared) {
        throw new Error(`S copies of ${key} (${String(shared)}) differ from home memory (${String(str(entry.value))})`);
      }
    }
  }
}
