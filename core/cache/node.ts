// One node's side of the coherent cache: the lines it holds (lines.ts) and, per key, at
// most one request in flight to the key's home, with the client operations that arrived
// meanwhile queued behind it in order. Pure: client ops and home messages in, messages
// and completions out through ready(); time is the nowMs argument.
//
// Decisions:
// - A hit touches typed arrays only (no allocation, no message): a line serves while nowMs
//   is before its own lease and its home's volume lease to this node, and while the node
//   is still in the volume period the line was granted in (home.ts argues why). Leases
//   are computed by the home on this node's clock from the request's send time.
// - Volume leases: on tick, each home this node asks (every home of the ring, given as
//   `homes`, and any it sent a request to) gets one Volume when its lease is past half.
//   A VolumeGranted's revocations (rounds still waiting on this node) are applied first,
//   as their Inv/Fwd would be, and the revoked copies stop being served; a grant naming a
//   newer period (or home epoch) starts it, and every line of the older one is dead. A
//   grant of an older period installs nothing servable. A Data that arrives before the
//   first volume lease installs a line that becomes servable once the lease comes.
// - Lines in use are renewed in rounds (tick, every line lease/8): each clean line read
//   within cacheRenewIdleLeases leases whose own lease is past half goes into one
//   RenewBatch per home; a line not read that long lapses. A line not servable is dropped
//   (a dirty one is first given back with PutM, the only way dirty data leaves a node);
//   dirty lines are renewed one by one on tick, read or not.
// - One transaction per key keeps the home's reasoning simple: a node asks again only
//   when it holds nothing dirty, so a new request from a recorded holder means "nothing here".
// - A grant is stale when an Inv/Fwd for the same key arrived while it was in flight with
//   a version >= the grant's (the home granted, then took it back): the node asks again.
//   The same check decides whether a WriteAck may install the written value as a line.
// - Writes: E->M is silent. Write-back writes locally in M (dirty). Write-through, and any
//   set with a TTL, sends Write from E/M and completes on WriteAck (memory has it). Nack
//   stale means not applied: the node starts over (GetM). A write unanswered for as long
//   as its client waits (1..cacheWriteWaitLeasesMax leases) is given up with an unknown
//   outcome (the home remembers applied writes that long).
//   A MOESI O line (dirty, shared) is given back with PutM before a write asks for M, so
//   the O->M upgrade is PutM then GetM and the home never grants M to a dirty holder.
// - Bounds: lines by count and bytes (LRU, skipping lines with a transaction in flight),
//   transactions and queued ops by count; beyond them an op is refused with BUSY.

import { assert } from '../assert.js';
import {
  cacheKeyBytesMax,
  cacheLineBytesMaxDefault,
  cacheLineLeaseVolumes,
  cacheNodesMax,
  cacheLineEntriesMaxDefault,
  cacheNodeOpsPendingMax,
  cacheNodeTransactionsMax,
  cacheRenewBatchKeysMax,
  cacheRenewIdleLeases,
  cacheRenewRoundKeyBytesMax,
  cacheRenewRoundKeysMax,
  cacheRenewRoundsPerLease,
  cacheTtlMsMax,
  cacheValueBytesMax,
  cacheWriteWaitLeasesMax,
} from '../constants.js';
import type { CacheNodeIndex } from '../ids.js';
import { utf8Bytes } from '../locks/table.js';
import type { Fence } from './fence.js';
import { CacheLines } from './lines.js';
import { St, assertCacheConfig, keyBytes, valueBytes } from './messages.js';
import type { CacheConfig, CacheValue, Data, Fwd, Inv, Nack, Push, PutAck, RenewedBatch, ToHome, ToNode, VolumeGranted, WriteAck } from './messages.js';

/** The op waits for its home; its completion comes out of ready(). */
export const PENDING: unique symbol = Symbol('cache.pending');
/** A set (or flush) completed at once. */
export const DONE: unique symbol = Symbol('cache.done');
/** Key or value over its size limit. */
export const TOO_LARGE: unique symbol = Symbol('cache.too-large');
/** Too many ops or transactions waiting at this node: retry later. */
export const BUSY: unique symbol = Symbol('cache.busy');
export type Refusal = typeof TOO_LARGE | typeof BUSY;

export type CacheCompletion =
  | { readonly opId: number; readonly ok: true; readonly value: CacheValue }
  /** A write that was resent for a whole lease without an answer: it may or may not have happened. */
  | { readonly opId: number; readonly ok: false; readonly error: 'UNKNOWN_OUTCOME' }
  /** A fenced write whose token is older than the newest its home saw for the lock: not applied. */
  | { readonly opId: number; readonly ok: false; readonly error: 'FENCED'; readonly newestToken: number };

export interface NodeReady {
  readonly messages: ToHome[];
  readonly completions: CacheCompletion[];
}

export interface NodeOptions {
  readonly self: CacheNodeIndex;
  /** Boot incarnation, > 0 and larger after every restart (homes forget older ones). */
  readonly incarnation: number;
  /** The key's home (the ring owner); injected so core/cache does not depend on the ring. */
  readonly homeOf: (key: string) => CacheNodeIndex;
  readonly entriesMax?: number;
  readonly bytesMax?: number;
  /** Homes in the ring (indices 0..homes-1): their volume leases are asked for from the first tick, before any line is. */
  readonly homes?: number;
  /**
   * Deliberately broken build for checker canaries: clean lines are served though their
   * home's volume lease ran out, or from a volume period that ended (a reclaim).
   */
  readonly canary?: 'serve-past-volume-lease';
}

/** How long a write asking to wait waitMs is kept trying: at least one lease, at most cacheWriteWaitLeasesMax. */
export function writeWaitMsFor(cfg: CacheConfig, waitMs: number): number {
  return Math.min(cacheWriteWaitLeasesMax * cfg.leaseMs, Math.max(cfg.leaseMs, waitMs));
}

export class NodeCounters {
  hits = 0;
  misses = 0;
  evictions = 0;
  invalidationsReceived = 0;
  forwardsReceived = 0;
  writeBacks = 0;
  writesThrough = 0;
  /** Lines dropped at access because their lease ran out. */
  leaseExpiries = 0;
  staleGrants = 0;
  /** Write-back: dirty lines the home no longer recognised (reclaimed): their writes are lost. */
  dirtyLost = 0;
  writesGivenUp = 0;
  pushesInstalled = 0;
  /** Lines asked to be renewed (one by one, or in a round's RenewBatch). */
  renewalsSent = 0;
  renewBatchesSent = 0;
  /** Volume leases asked for (one message per home, whatever the number of lines). */
  volumeRenewalsSent = 0;
  /** Volume periods that ended (a home reclaimed from this node, or restarted): every line from that home stopped being served. */
  volumePeriodsEnded = 0;
  refused = 0;
  fencedWrites = 0;
}

interface Op {
  readonly opId: number;
  readonly isSet: boolean;
  readonly value: CacheValue;
  readonly ttlMs: number;
  /** A set carrying a lock's fencing token: always written through to the home, which checks it. */
  readonly fence: Fence | null;
  /** A set: how long its transaction may be resent before it is given up (clamped to 1..cacheWriteWaitLeasesMax leases). */
  readonly waitMs: number;
}

interface FlushGroup {
  readonly opId: number;
  remaining: number;
}

type TxnKind = 'GetS' | 'GetM' | 'Write' | 'PutM';

interface Txn {
  readonly key: string;
  readonly kind: TxnKind;
  reqId: number;
  msg: ToHome;
  firstSentMs: number;
  retryAtMs: number;
  /** A write is given up (outcome unknown) at this time if still unanswered. */
  giveUpAtMs: number;
  /** Highest Inv/Fwd version received while this transaction was in flight (-1: none). */
  invFloor: number;
  /** Client ops of this key, in arrival order; a Write's op is ops[0] unless it is a flush. */
  ops: Op[];
  /** Write/PutM/writing GetM: the value sent. */
  readonly value: CacheValue;
  /** A GetM that carries the write of ops[0] (applied by the home when it grants). */
  readonly writes: boolean;
  readonly flush: FlushGroup | null;
}

export class NodeCache {
  readonly counters = new NodeCounters();
  readonly lines: CacheLines;
  private readonly cfg: CacheConfig;
  private readonly self: CacheNodeIndex;
  private readonly incarnation: number;
  private readonly homeOf: (key: string) => CacheNodeIndex;
  private readonly servePastVolume: boolean;
  private readonly lineLeaseMs: number;
  // Per home index: the volume lease this node holds from it (on this node's clock), the
  // home life and period it belongs to, this node's number for that period (lines carry
  // it), and when it was last asked for. volumesWanted: homes this node renews from.
  private readonly volumeUntilMs = new Float64Array(cacheNodesMax);
  private readonly volumeEpoch = new Uint32Array(cacheNodesMax);
  private readonly volumeSeq = new Uint32Array(cacheNodesMax);
  private readonly volumePeriod = new Uint32Array(cacheNodesMax).fill(1);
  private readonly volumeSentMs = new Float64Array(cacheNodesMax).fill(Number.NEGATIVE_INFINITY);
  private volumesWanted = 0;
  private readonly txns = new Map<string, Txn>();
  /** Slots of dirty lines (write-back), for renewal and give-back on tick. */
  private readonly dirtySlots = new Set<number>();
  /**
   * The last answer to a Fwd per key: a resent Fwd (its Ack was lost) gets the same answer,
   * dirty data included, though the line is gone or clean by then. Kept two leases (the home
   * resends only until it reclaims, within a lease of the round's start).
   */
  private readonly fwdAnswers = new Map<string, { readonly epoch: number; readonly round: number; readonly ack: ToHome; readonly atMs: number }>();
  private opsWaiting = 0;
  private reqCounter = 0;
  /** When the next renewal round is due. */
  private renewRoundAtMs = Number.NEGATIVE_INFINITY;
  private messages: ToHome[] = [];
  private completions: CacheCompletion[] = [];

  constructor(cfg: CacheConfig, opts: NodeOptions) {
    assertCacheConfig(cfg);
    assert(Number.isInteger(opts.incarnation) && opts.incarnation > 0, 'node incarnation > 0');
    this.cfg = cfg;
    this.self = opts.self;
    this.incarnation = opts.incarnation;
    this.homeOf = opts.homeOf;
    this.servePastVolume = opts.canary === 'serve-past-volume-lease';
    this.lineLeaseMs = cfg.leaseMs * cacheLineLeaseVolumes;
    const homes = opts.homes ?? 0;
    assert(Number.isInteger(homes) && homes >= 0 && homes <= cacheNodesMax, 'homes within cacheNodesMax');
    for (let h = 0; h < homes; h++) this.volumesWanted = (this.volumesWanted | (1 << h)) >>> 0;
    this.lines = new CacheLines(opts.entriesMax ?? cacheLineEntriesMaxDefault, opts.bytesMax ?? cacheLineBytesMaxDefault);
  }

  ready(): NodeReady {
    const out = { messages: this.messages, completions: this.completions };
    this.messages = [];
    this.completions = [];
    return out;
  }

  /** Whether ready() has anything (lets the wiring skip it after a hit, which sends nothing). */
  get hasOutput(): boolean {
    return this.messages.length + this.completions.length > 0;
  }

  get transactions(): number {
    return this.txns.size;
  }

  /** The volume lease this node holds from home h (its clock; tests and the console). */
  volumeLeaseUntilMs(h: CacheNodeIndex): number {
    return this.volumeUntilMs[h] as number;
  }

  get dirtyCount(): number {
    return this.dirtySlots.size;
  }

  /** Dirty data this node alone has: dirty lines and PutMs not yet acknowledged (lost if it crashes now). */
  get dirtyHeld(): number {
    let n = 0;
    for (const slot of this.dirtySlots) if (this.lines.state(slot) !== St.O) n++; // the home keeps O data
    for (const t of this.txns.values()) if (t.kind === 'PutM') n++;
    return n;
  }

  /**
   * The line `key` is served from (state, version, value) for tests and the console; null
   * if none: no line, lease run out, or a transaction of the key in flight (ops then wait).
   */
  line(key: string, nowMs: number): { state: St; version: number; value: CacheValue; dirty: boolean; leaseUntilMs: number } | null {
    const slot = this.lines.find(key);
    if (slot < 0 || !this.live(slot, nowMs) || this.txns.has(key)) return null;
    return { state: this.lines.state(slot), version: this.lines.version(slot), value: this.lines.value(slot), dirty: this.lines.dirty(slot), leaseUntilMs: this.lines.leaseUntilMs(slot) };
  }

  // ------------------------------------------------------------------ client ops

  /** A hit returns the value at once; otherwise PENDING and a completion later. */
  get(opId: number, key: string, nowMs: number): CacheValue | typeof PENDING | Refusal {
    // A UTF-16 unit is at most 3 UTF-8 bytes: a short key is surely within the limit without counting.
    if (key.length * 3 > cacheKeyBytesMax && utf8Bytes(key) > cacheKeyBytesMax) return this.refuse(TOO_LARGE);
    const txn = this.txns.get(key);
    if (txn === undefined) {
      const slot = this.validSlot(key, nowMs);
      if (slot >= 0) {
        this.counters.hits++;
        this.lines.touch(slot, nowMs);
        return this.lines.value(slot);
      }
    }
    return this.submit(key, { opId, isSet: false, value: null, ttlMs: 0, fence: null, waitMs: 0 }, txn, nowMs);
  }

  /**
   * Sets (value) or deletes (null) `key`; ttlMs > 0 makes it expire; a fence makes the home
   * check a lock's token; waitMs is how long the caller waits for the answer (one lease if
   * not said; kept within 1..cacheWriteWaitLeasesMax leases).
   */
  set(opId: number, key: string, value: CacheValue, nowMs: number, ttlMs = 0, fence: Fence | null = null, waitMs = 0): typeof DONE | typeof PENDING | Refusal {
    if (utf8Bytes(key) > cacheKeyBytesMax || valueBytes(value) > cacheValueBytesMax) return this.refuse(TOO_LARGE);
    assert(Number.isFinite(ttlMs) && ttlMs >= 0 && ttlMs <= cacheTtlMsMax, 'ttlMs within 0..cacheTtlMsMax');
    const txn = this.txns.get(key);
    if (txn === undefined && this.cfg.writePolicy === 'write-back' && ttlMs === 0 && fence === null) {
      const slot = this.validSlot(key, nowMs);
      if (slot >= 0 && this.localWrite(slot, value, nowMs)) {
        this.shrink(nowMs);
        return DONE;
      }
    }
    const wait = writeWaitMsFor(this.cfg, waitMs);
    const r = this.submit(key, { opId, isSet: true, value, ttlMs, fence, waitMs: wait }, txn, nowMs);
    return r === PENDING || r === TOO_LARGE || r === BUSY ? r : DONE;
  }

  delete(opId: number, key: string, nowMs: number, fence: Fence | null = null, waitMs = 0): typeof DONE | typeof PENDING | Refusal {
    return this.set(opId, key, null, nowMs, 0, fence, waitMs);
  }

  /** Write-back: sends every dirty line to memory (lines stay, clean). DONE if none was dirty. */
  flush(opId: number, nowMs: number): typeof DONE | typeof PENDING {
    const group: FlushGroup = { opId, remaining: 0 };
    for (const slot of [...this.dirtySlots]) {
      const key = this.lines.key(slot);
      if (this.txns.has(key) || this.txns.size >= cacheNodeTransactionsMax) continue;
      group.remaining++;
      this.startWrite(key, slot, this.lines.value(slot), 0, null, [], group, nowMs);
    }
    return group.remaining === 0 ? DONE : PENDING;
  }

  /** Drops the line of `key` (as LRU would): a dirty line goes back to its home first. */
  evict(key: string, nowMs: number): boolean {
    const slot = this.lines.find(key);
    if (slot < 0 || this.txns.has(key)) return false;
    return this.evictSlot(slot, nowMs);
  }

  // ------------------------------------------------------------------ home messages

  step(msg: ToNode, nowMs: number): void {
    assert(msg.to === this.self, 'message delivered to the wrong node');
    if (msg.incarnation !== this.incarnation) return; // meant for an earlier life of this node
    switch (msg.kind) {
      case 'Data':
        this.onData(msg, nowMs);
        return;
      case 'WriteAck':
        this.onWriteAck(msg, nowMs);
        return;
      case 'PutAck':
        this.onPutAck(msg, nowMs);
        return;
      case 'Nack':
        this.onNack(msg, nowMs);
        return;
      case 'Inv':
        this.onInv(msg);
        return;
      case 'Fwd':
        this.onFwd(msg, nowMs);
        return;
      case 'Push':
        this.onPush(msg, nowMs);
        return;
      case 'Renewed':
        this.onRenewed(msg.key, msg.ok, msg.version, msg.leaseUntilMs, nowMs);
        return;
      case 'RenewedBatch':
        this.onRenewedBatch(msg, nowMs);
        return;
      case 'VolumeGranted':
        this.onVolumeGranted(msg, nowMs);
        return;
      default:
        assertNeverMsg(msg);
    }
  }

  /** Resends unanswered requests, renews lines in use (a round) and dirty lines, gives back dirty lines whose lease ran out. */
  tick(nowMs: number): void {
    this.renewVolumes(nowMs);
    this.renewRound(nowMs);
    for (const txn of [...this.txns.values()]) {
      if ((txn.kind === 'Write' || txn.writes) && nowMs >= txn.giveUpAtMs) {
        this.giveUpWrite(txn, nowMs);
      } else if (nowMs >= txn.retryAtMs) {
        txn.retryAtMs = nowMs + this.cfg.retryMs;
        this.messages.push(txn.msg);
      }
    }
    for (const [key, a] of this.fwdAnswers) if (nowMs - a.atMs >= 2 * this.cfg.leaseMs) this.fwdAnswers.delete(key);
    for (const slot of [...this.dirtySlots]) {
      const key = this.lines.key(slot);
      if (this.txns.has(key)) continue;
      if (!this.live(slot, nowMs)) {
        if (this.txns.size < cacheNodeTransactionsMax) this.startPutM(key, slot, [], nowMs);
      } else {
        this.maybeRenew(slot, nowMs);
      }
    }
  }

  // ------------------------------------------------------------------ running ops

  private refuse(r: Refusal): Refusal {
    this.counters.refused++;
    return r;
  }

  private submit(key: string, op: Op, txn: Txn | undefined, nowMs: number): typeof PENDING | Refusal {
    if (this.opsWaiting >= cacheNodeOpsPendingMax) return this.refuse(BUSY);
    if (txn !== undefined) {
      txn.ops.push(op);
      this.opsWaiting++;
      return PENDING;
    }
    if (this.txns.size >= cacheNodeTransactionsMax) return this.refuse(BUSY);
    this.opsWaiting++;
    this.run(key, [op], nowMs, true);
    return PENDING;
  }

  /** The slot of a servable line of key, or -1 (an expired clean line is dropped on the way). */
  private validSlot(key: string, nowMs: number): number {
    const slot = this.lines.find(key);
    if (slot < 0) return -1;
    if (this.live(slot, nowMs)) return slot;
    if (!this.lines.dirty(slot)) {
      this.counters.leaseExpiries++;
      this.removeLine(slot);
    }
    return -1;
  }

  /** Write-back write in E/M without a TTL on the line: true if done. */
  private localWrite(slot: number, value: CacheValue, nowMs: number): boolean {
    const st = this.lines.state(slot);
    if ((st !== St.E && st !== St.M) || this.lines.hasTtl(slot)) return false;
    this.lines.setState(slot, St.M);
    this.lines.setValue(slot, value);
    this.lines.setDirty(slot, true);
    this.dirtySlots.add(slot);
    this.lines.touch(slot, nowMs);
    return true;
  }

  /**
   * Runs `ops` of `key` in order (no transaction of key is in flight): completes what the
   * line allows, then starts one transaction that carries the rest. `missCounted`: the
   * first op is a get already counted (as the miss that brought the line here) or new.
   */
  private run(key: string, ops: Op[], nowMs: number, fresh: boolean): void {
    assert(!this.txns.has(key), 'run with a transaction in flight');
    let i = 0;
    for (; i < ops.length; i++) {
      const op = ops[i] as Op;
      const countIt = fresh || i > 0;
      let slot = this.lines.find(key);
      if (slot >= 0 && !this.live(slot, nowMs)) {
        if (this.lines.dirty(slot)) {
          this.startPutM(key, slot, ops.slice(i), nowMs);
          return;
        }
        this.counters.leaseExpiries++;
        this.removeLine(slot);
        slot = -1;
      }
      if (!op.isSet) {
        if (slot >= 0) {
          if (countIt) this.counters.hits++;
          this.lines.touch(slot, nowMs);
          this.complete(op, this.lines.value(slot));
          continue;
        }
        if (countIt) this.counters.misses++;
        this.startTxn('GetS', key, ops.slice(i), nowMs);
        return;
      }
      const st = slot >= 0 ? this.lines.state(slot) : St.I;
      if (st === St.O) {
        // MOESI: a dirty shared owner gives its data back before it asks for M (it asks only holding nothing dirty).
        this.startPutM(key, slot, ops.slice(i), nowMs);
        return;
      }
      const local = this.cfg.writePolicy === 'write-back' && op.ttlMs === 0 && op.fence === null;
      if (st === St.E || st === St.M) {
        if (local && this.localWrite(slot, op.value, nowMs)) {
          this.shrink(nowMs);
          this.complete(op, op.value);
          continue;
        }
        this.startWrite(key, slot, op.value, op.ttlMs, op.fence, ops.slice(i), null, nowMs);
        return;
      }
      if (local) this.startTxn('GetM', key, ops.slice(i), nowMs);
      else this.startWritingGetM(key, op, ops.slice(i), nowMs);
      return;
    }
  }

  private complete(op: Op, value: CacheValue): void {
    this.opsWaiting--;
    assert(this.opsWaiting >= 0, 'ops waiting never negative');
    this.completions.push({ opId: op.opId, ok: true, value });
  }

  private newTxn(kind: TxnKind, key: string, ops: Op[], value: CacheValue, flush: FlushGroup | null, msg: (reqId: number) => ToHome, nowMs: number, writes = false): Txn {
    const reqId = ++this.reqCounter;
    // A write carrying a client's op waits as that op allows; a flush's or a give-back's, one lease.
    const writing = kind === 'Write' || writes;
    const op = flush === null ? ops[0] : undefined;
    const waitMs = writing && op !== undefined && op.isSet ? op.waitMs : this.cfg.leaseMs;
    const txn: Txn = { key, kind, reqId, msg: msg(reqId), firstSentMs: nowMs, retryAtMs: nowMs + this.cfg.retryMs, giveUpAtMs: nowMs + waitMs, invFloor: -1, ops, value, flush, writes };
    this.txns.set(key, txn);
    this.messages.push(txn.msg);
    const h = txn.msg.to;
    if ((this.volumesWanted & (1 << h)) === 0 || nowMs >= (this.volumeUntilMs[h] as number)) {
      this.volumesWanted = (this.volumesWanted | (1 << h)) >>> 0;
      this.maybeRenewVolume(h, nowMs);
    }
    return txn;
  }

  private base(key: string, reqId: number, nowMs: number): { from: CacheNodeIndex; incarnation: number; to: CacheNodeIndex; key: string; reqId: number; sentMs: number } {
    return { from: this.self, incarnation: this.incarnation, to: this.homeOf(key), key, reqId, sentMs: nowMs };
  }

  private startTxn(kind: 'GetS' | 'GetM', key: string, ops: Op[], nowMs: number): void {
    if (kind === 'GetS') this.newTxn(kind, key, ops, null, null, (reqId) => ({ kind, ...this.base(key, reqId, nowMs) }), nowMs);
    else this.newTxn(kind, key, ops, null, null, (reqId) => ({ kind, ...this.base(key, reqId, nowMs), write: false, value: null, ttlMs: 0, fence: null }), nowMs);
  }

  /** GetM carrying the write of `op` (= ops[0]): write-through, or a set with a TTL. */
  private startWritingGetM(key: string, op: Op, ops: Op[], nowMs: number): void {
    this.counters.writesThrough++;
    const { value, ttlMs, fence } = op;
    this.newTxn('GetM', key, ops, value, null, (reqId) => ({ kind: 'GetM', ...this.base(key, reqId, nowMs), write: true, value, ttlMs, fence }), nowMs, true);
  }

  private startWrite(key: string, slot: number, value: CacheValue, ttlMs: number, fence: Fence | null, ops: Op[], flush: FlushGroup | null, nowMs: number): void {
    this.counters.writesThrough++;
    const version = this.lines.version(slot);
    this.newTxn('Write', key, ops, value, flush, (reqId) => ({ kind: 'Write', ...this.base(key, reqId, nowMs), version, value, ttlMs, fence }), nowMs);
  }

  /** Gives a dirty line back; the line leaves now, the data stays in the transaction until PutAck. */
  private startPutM(key: string, slot: number, ops: Op[], nowMs: number): void {
    this.counters.writeBacks++;
    const version = this.lines.version(slot);
    const value = this.lines.value(slot);
    this.removeLine(slot);
    this.newTxn('PutM', key, ops, value, null, (reqId) => ({ kind: 'PutM', ...this.base(key, reqId, nowMs), version, value }), nowMs);
  }

  /** Same transaction kind, new reqId (a new request: the old answer is stale). */
  private restart(txn: Txn, nowMs: number): void {
    this.txns.delete(txn.key);
    this.run(txn.key, txn.ops, nowMs, false);
  }

  private finish(txn: Txn, nowMs: number, firstDone: boolean): void {
    this.txns.delete(txn.key);
    const rest = firstDone ? txn.ops.slice(1) : txn.ops;
    if (rest.length > 0) this.run(txn.key, rest, nowMs, true);
  }

  private giveUpWrite(txn: Txn, nowMs: number): void {
    this.counters.writesGivenUp++;
    // A clean line may be behind the home now; a dirty one (a flush) keeps its data and goes back by PutM.
    const slot = this.lines.find(txn.key);
    if (slot >= 0 && !this.lines.dirty(slot)) this.removeLine(slot);
    this.settleFlush(txn);
    const op = txn.flush === null ? txn.ops[0] : undefined;
    if (op !== undefined) {
      this.opsWaiting--;
      this.completions.push({ opId: op.opId, ok: false, error: 'UNKNOWN_OUTCOME' });
    }
    this.finish(txn, nowMs, op !== undefined);
  }

  private settleFlush(txn: Txn): void {
    const g = txn.flush;
    if (g === null) return;
    g.remaining--;
    if (g.remaining === 0) this.completions.push({ opId: g.opId, ok: true, value: null });
  }

  // ------------------------------------------------------------------ handlers

  private onData(msg: Data, nowMs: number): void {
    const txn = this.txns.get(msg.key);
    if (txn === undefined || txn.reqId !== msg.reqId || (txn.kind !== 'GetS' && txn.kind !== 'GetM')) return;
    if (msg.version <= txn.invFloor || msg.leaseUntilMs <= nowMs) {
      // Taken back (or expired) while in flight: ask again; a carried write happened, though.
      this.counters.staleGrants++;
      if (txn.writes) {
        const slot = this.lines.find(msg.key);
        if (slot >= 0) this.removeLine(slot);
        this.complete(txn.ops[0] as Op, txn.value);
        this.finish(txn, nowMs, true);
        return;
      }
      this.restart(txn, nowMs);
      return;
    }
    assert(txn.kind === 'GetS' ? msg.state === St.S || msg.state === St.E : msg.state === St.M || (txn.writes && msg.state === St.S), 'grant state fits the request');
    let slot = this.lines.find(msg.key);
    if (slot >= 0) {
      assert(!this.lines.dirty(slot), 'a node asks only when it holds nothing dirty');
      this.lines.setState(slot, msg.state);
      this.lines.setValue(slot, msg.value);
      this.lines.touch(slot, nowMs);
    } else if (this.makeRoom(CacheLines.bytesOf(msg.key, msg.value), nowMs)) {
      slot = this.lines.insert(msg.key, msg.state, msg.version, msg.leaseUntilMs, msg.value, msg.ttl, nowMs);
    }
    if (slot >= 0) {
      this.lines.setVersion(slot, msg.version);
      this.lines.setLease(slot, msg.leaseUntilMs);
      this.lines.setTtl(slot, msg.ttl);
      this.lines.setVolume(slot, msg.from, this.periodOf(msg.from, msg.epoch, msg.seq));
      if (txn.writes) {
        this.complete(txn.ops[0] as Op, txn.value);
        this.finish(txn, nowMs, true);
        return;
      }
      if (this.live(slot, nowMs)) {
        this.txns.delete(txn.key);
        this.run(txn.key, txn.ops, nowMs, false);
        return;
      }
      // Not servable (yet): no volume lease from the home yet (it becomes servable once one
      // comes), or granted in a volume period that has ended. The waiting reads take the
      // value, which was the home's when it granted, within their operations.
    }
    if (txn.writes) {
      this.complete(txn.ops[0] as Op, txn.value);
      this.finish(txn, nowMs, true);
      return;
    }
    // No (servable) line: the reads waiting now can still take the value; the rest asks again.
    this.txns.delete(txn.key);
    let i = 0;
    if (txn.kind === 'GetS') {
      while (i < txn.ops.length && !(txn.ops[i] as Op).isSet) this.complete(txn.ops[i++] as Op, msg.value);
    }
    // A set next: its write rides on the GetM (applied at the grant), which needs no line;
    // asking for a line again would loop for as long as the other lines are busy.
    const next = txn.ops[i];
    assert(next === undefined || next.isSet, "only a set is left after the reads");
    if (next !== undefined) this.startWritingGetM(txn.key, next, txn.ops.slice(i), nowMs);
  }

  private onWriteAck(msg: WriteAck, nowMs: number): void {
    const txn = this.txns.get(msg.key);
    if (txn === undefined || txn.reqId !== msg.reqId || (txn.kind !== 'Write' && !txn.writes)) return;
    const slot = this.lines.find(msg.key);
    if (slot >= 0) {
      if (msg.state === St.I || msg.version <= txn.invFloor || msg.leaseUntilMs <= nowMs) {
        this.removeLine(slot);
      } else {
        this.lines.setValue(slot, txn.value);
        this.lines.setState(slot, msg.state);
        this.lines.setVersion(slot, msg.version);
        this.lines.setLease(slot, msg.leaseUntilMs);
        this.lines.setTtl(slot, msg.ttl);
        this.lines.setVolume(slot, msg.from, this.periodOf(msg.from, msg.epoch, msg.seq));
        if (msg.state !== St.O) {
          this.lines.setDirty(slot, false);
          this.dirtySlots.delete(slot);
        }
        this.lines.touch(slot, nowMs);
        this.shrink(nowMs);
      }
    }
    this.settleFlush(txn);
    const op = txn.flush === null ? txn.ops[0] : undefined;
    if (op !== undefined) this.complete(op, op.value);
    this.finish(txn, nowMs, op !== undefined);
  }

  private onPutAck(msg: PutAck, nowMs: number): void {
    const txn = this.txns.get(msg.key);
    if (txn === undefined || txn.reqId !== msg.reqId || txn.kind !== 'PutM') return;
    if (!msg.applied) this.counters.dirtyLost++;
    this.finish(txn, nowMs, false);
  }

  private onNack(msg: Nack, nowMs: number): void {
    const txn = this.txns.get(msg.key);
    if (txn === undefined || txn.reqId !== msg.reqId) return;
    if (msg.reason === 'busy') {
      txn.retryAtMs = nowMs + Math.max(msg.retryAfterMs, this.cfg.retryMs);
      return;
    }
    if (msg.reason === 'fenced') {
      // Not applied: the set fails; a line this node holds is untouched (the home changed nothing).
      const op = txn.ops[0];
      assert(txn.flush === null && op !== undefined && op.fence !== null && (txn.kind === 'Write' || txn.writes), 'only a fenced write is refused as fenced');
      this.counters.fencedWrites++;
      this.opsWaiting--;
      this.completions.push({ opId: op.opId, ok: false, error: 'FENCED', newestToken: msg.newestToken });
      this.finish(txn, nowMs, true);
      return;
    }
    assert(txn.kind === 'Write', 'only a Write is refused as stale');
    // Not applied: the node is no longer the owner at that version. Start over.
    if (txn.flush !== null) {
      // A flush not applied and its line gone meanwhile (invalidated after a reclaim): the data is lost.
      if (this.lines.find(txn.key) < 0) this.counters.dirtyLost++;
      this.settleFlush(txn);
      this.finish(txn, nowMs, false);
      return;
    }
    // The line is behind its home for good (a write this node gave up was applied later):
    // starting over from it would send the same refused Write forever. Dirty data in it
    // could never be applied either (a PutM is refused the same way).
    const slot = this.lines.find(txn.key);
    if (slot >= 0) {
      if (this.lines.dirty(slot)) this.counters.dirtyLost++;
      this.removeLine(slot);
    }
    this.restart(txn, nowMs);
  }

  private noteTakenBack(key: string, version: number): void {
    const txn = this.txns.get(key);
    if (txn !== undefined && version > txn.invFloor) txn.invFloor = version;
  }

  private onInv(msg: Inv): void {
    this.counters.invalidationsReceived++;
    const slot = this.lines.find(msg.key);
    if (slot >= 0 && this.lines.version(slot) <= msg.version) {
      // An owner is sent Fwd, so a dirty line here is one the home no longer records as
      // owned: its flush (a Write in flight) was applied, or the home reclaimed it (lost).
      if (this.lines.dirty(slot) && this.txns.get(msg.key)?.kind !== 'Write') this.counters.dirtyLost++;
      this.removeLine(slot);
    }
    this.noteTakenBack(msg.key, msg.version);
    this.ack(msg.key, msg.epoch, msg.round, false, false, null);
  }

  private onFwd(msg: Fwd, nowMs: number): void {
    this.counters.forwardsReceived++;
    const prev = this.fwdAnswers.get(msg.key);
    if (prev !== undefined && prev.epoch === msg.epoch && prev.round === msg.round) {
      this.messages.push(prev.ack);
      return;
    }
    // A late copy of an earlier round's Fwd: the home has moved on. Answering it would replace
    // the kept answer, and a resend of the newer round would then get "nothing here" instead
    // of the dirty data that answer carried.
    if (prev !== undefined && prev.epoch === msg.epoch && msg.round < prev.round) return;
    // A line granted after this Fwd's round began (its version is newer): a late copy of an
    // earlier round's Fwd. Acting on it would downgrade a line the home still counts as owned.
    const held = this.lines.find(msg.key);
    if (held >= 0 && this.lines.version(held) > msg.version) return;
    this.noteTakenBack(msg.key, msg.version);
    this.answerFwd(msg);
    const ack = this.messages[this.messages.length - 1];
    assert(ack !== undefined && ack.kind === 'Ack', 'a Fwd is answered');
    this.fwdAnswers.set(msg.key, { epoch: msg.epoch, round: msg.round, ack, atMs: nowMs });
  }

  private answerFwd(msg: Fwd): void {
    const slot = this.lines.find(msg.key);
    const st = slot >= 0 ? this.lines.state(slot) : St.I;
    if (slot >= 0 && (st === St.E || st === St.M || st === St.O)) {
      const dirty = this.lines.dirty(slot);
      const value = this.lines.value(slot);
      if (this.lines.version(slot) < msg.version || msg.toState === St.I) {
        // Behind the home (an answer to this node is still in flight) or asked to drop it.
        this.removeLine(slot);
        this.ack(msg.key, msg.epoch, msg.round, false, dirty, dirty ? value : null);
        return;
      }
      if (dirty && this.cfg.protocol === 'MOESI') {
        this.lines.setState(slot, St.O);
      } else {
        this.lines.setState(slot, St.S);
        this.lines.setDirty(slot, false);
        this.dirtySlots.delete(slot);
      }
      this.ack(msg.key, msg.epoch, msg.round, true, dirty, dirty ? value : null);
      return;
    }
    if (slot >= 0) this.removeLine(slot);
    const txn = this.txns.get(msg.key);
    if (txn !== undefined && txn.kind === 'PutM') {
      this.ack(msg.key, msg.epoch, msg.round, false, true, txn.value);
      return;
    }
    this.ack(msg.key, msg.epoch, msg.round, false, false, null);
  }

  private onPush(msg: Push, nowMs: number): void {
    if (this.txns.has(msg.key) || this.lines.find(msg.key) >= 0) return;
    if (!this.makeRoom(CacheLines.bytesOf(msg.key, msg.value), nowMs)) return;
    // Not servable until renewed: the lease must be anchored at a time this node sent something.
    const slot = this.lines.insert(msg.key, St.S, msg.version, -Infinity, msg.value, false, nowMs);
    // Its Renewed (the home still records this node as a holder, later than the push) makes it servable in the current period.
    this.lines.setVolume(slot, msg.from, this.volumePeriod[msg.from] as number);
    this.counters.pushesInstalled++;
    this.sendRenew(slot, nowMs);
  }

  private onRenewedBatch(msg: RenewedBatch, nowMs: number): void {
    const n = msg.keys.length;
    assert(msg.ok.length === n && msg.versions.length === n && msg.leaseUntilMs.length === n, 'a renewed batch answers each key whole');
    for (let i = 0; i < n; i++) this.onRenewed(msg.keys[i] as string, msg.ok[i] as boolean, msg.versions[i] as number, msg.leaseUntilMs[i] as number, nowMs);
  }

  private onRenewed(key: string, ok: boolean, version: number, leaseUntilMs: number, nowMs: number): void {
    const slot = this.lines.find(key);
    if (slot < 0 || version < this.lines.version(slot)) return; // an answer about an older copy
    if (!ok) {
      if (this.lines.dirty(slot)) this.counters.dirtyLost++;
      this.removeLine(slot);
      return;
    }
    const valid = nowMs < this.lines.leaseUntilMs(slot);
    if (valid) {
      // A servable line is one the home records, so its copy is current whatever the number says.
      this.lines.setVersion(slot, version);
      if (leaseUntilMs > this.lines.leaseUntilMs(slot)) this.lines.setLease(slot, leaseUntilMs);
    } else if (version === this.lines.version(slot) && !this.lines.dirty(slot)) {
      // A pushed (or lapsed) copy at the very version the home has: servable again.
      this.lines.setLease(slot, leaseUntilMs);
    }
  }

  // ------------------------------------------------------------------ lines

  private ack(key: string, epoch: number, round: number, kept: boolean, dirty: boolean, value: CacheValue): void {
    this.messages.push({ kind: 'Ack', from: this.self, incarnation: this.incarnation, to: this.homeOf(key), key, epoch, round, kept, dirty, value });
  }

  private maybeRenew(slot: number, nowMs: number): void {
    const left = this.lines.leaseUntilMs(slot) - nowMs;
    if (left < this.lineLeaseMs / 2 && nowMs - this.lines.renewSentMs(slot) >= this.cfg.retryMs) this.sendRenew(slot, nowMs);
  }

  /**
   * A renewal round (every lease/cacheRenewRoundsPerLease): walks the lines from the most
   * recently used down to the first not used within cacheRenewIdleLeases leases, and asks
   * each home in one RenewBatch to renew the clean, still valid lines with no transaction
   * whose lease is past half. A line renewed in round k is due again about two rounds
   * after half its lease, so an answer lost once is asked again before the lease ends.
   */
  private renewRound(nowMs: number): void {
    if (nowMs < this.renewRoundAtMs) return;
    const leaseMs = this.lineLeaseMs;
    this.renewRoundAtMs = nowMs + leaseMs / cacheRenewRoundsPerLease;
    const idleSinceMs = nowMs - cacheRenewIdleLeases * this.cfg.leaseMs;
    const batches = new Map<CacheNodeIndex, { keys: string[]; versions: number[] }>();
    let keys = 0;
    let bytes = 0;
    for (let s = this.lines.mru(); s >= 0 && this.lines.usedMs(s) >= idleSinceMs; s = this.lines.older(s)) {
      const untilMs = this.lines.leaseUntilMs(s);
      if (this.lines.dirty(s) || untilMs - nowMs >= leaseMs / 2 || !this.live(s, nowMs) || nowMs - this.lines.renewSentMs(s) < this.cfg.retryMs) continue;
      const key = this.lines.key(s);
      if (this.txns.has(key)) continue;
      if (keys >= cacheRenewRoundKeysMax || bytes + keyBytes(key) > cacheRenewRoundKeyBytesMax) break;
      keys++;
      bytes += keyBytes(key);
      const to = this.homeOf(key);
      let b = batches.get(to);
      if (b === undefined || b.keys.length >= cacheRenewBatchKeysMax) {
        if (b !== undefined) this.sendRenewBatch(to, b.keys, b.versions, nowMs);
        b = { keys: [], versions: [] };
        batches.set(to, b);
      }
      b.keys.push(key);
      b.versions.push(this.lines.version(s));
      this.lines.setRenewSent(s, nowMs);
    }
    for (const [to, b] of batches) this.sendRenewBatch(to, b.keys, b.versions, nowMs);
  }

  /**
   * Whether the line may be served now: within its own lease, and within the volume lease
   * of its home in the period it was granted in.
   */
  private live(slot: number, nowMs: number): boolean {
    if (nowMs >= this.lines.leaseUntilMs(slot)) return false;
    if (this.servePastVolume && !this.lines.dirty(slot)) return true;
    const h = this.lines.home(slot);
    return this.lines.period(slot) === this.volumePeriod[h] && nowMs < (this.volumeUntilMs[h] as number);
  }

  /**
   * This node's number for the volume period (epoch, seq) of home h, moving to it when it is
   * newer than the current one (every line of the earlier period stops being served); 0
   * (never servable) for an earlier period.
   */
  private periodOf(h: CacheNodeIndex, epoch: number, seq: number): number {
    const e = this.volumeEpoch[h] as number;
    if (epoch < e || (epoch === e && seq < (this.volumeSeq[h] as number))) return 0;
    if (epoch > e || seq > (this.volumeSeq[h] as number)) {
      if (epoch > e) this.volumeUntilMs[h] = 0; // a lease of another life of the home is not this one's
      this.volumeEpoch[h] = epoch;
      this.volumeSeq[h] = seq;
      this.volumePeriod[h] = (this.volumePeriod[h] as number) + 1;
      this.counters.volumePeriodsEnded++;
    }
    return this.volumePeriod[h] as number;
  }

  /** Asks every home this node renews from for its volume lease when it is past half. */
  private renewVolumes(nowMs: number): void {
    let wanted = this.volumesWanted;
    for (let h = 0; wanted !== 0; h++, wanted >>>= 1) if ((wanted & 1) !== 0) this.maybeRenewVolume(h as CacheNodeIndex, nowMs);
  }

  private maybeRenewVolume(h: CacheNodeIndex, nowMs: number): void {
    if ((this.volumeUntilMs[h] as number) - nowMs >= this.cfg.leaseMs / 2 || nowMs - (this.volumeSentMs[h] as number) < this.cfg.retryMs) return;
    this.volumeSentMs[h] = nowMs;
    this.counters.volumeRenewalsSent++;
    this.messages.push({ kind: 'Volume', from: this.self, incarnation: this.incarnation, to: h, sentMs: nowMs });
  }

  /**
   * Applies the rounds the grant revokes (as their Inv/Fwd would), then takes the lease.
   * A revoked key's copy stops being served even where its Fwd let the node keep one (S, or
   * O with its data in the Ack): the home may still reclaim the round if that Ack is lost,
   * and then it records no copy here, while this lease outlasts the round.
   */
  private onVolumeGranted(msg: VolumeGranted, nowMs: number): void {
    const h = msg.from;
    if (msg.epoch < (this.volumeEpoch[h] as number)) return; // from an earlier life of the home
    for (const r of msg.revoke) {
      const round = { from: h, to: this.self, incarnation: msg.incarnation, key: r.key, epoch: msg.epoch, round: r.round, version: r.version };
      if (r.fwdTo === null) this.onInv({ kind: 'Inv', ...round });
      else this.onFwd({ kind: 'Fwd', ...round, toState: r.fwdTo }, nowMs);
      const slot = this.lines.find(r.key);
      // Not served from now on; a dirty (O) copy goes back by PutM on the next tick, as any lapsed dirty line.
      if (slot >= 0 && this.lines.version(slot) <= r.version && this.lines.state(slot) !== St.E && this.lines.state(slot) !== St.M) this.lines.setLease(slot, Number.NEGATIVE_INFINITY);
    }
    this.periodOf(h, msg.epoch, msg.seq);
    if (msg.leaseUntilMs > (this.volumeUntilMs[h] as number)) this.volumeUntilMs[h] = msg.leaseUntilMs;
  }

  private sendRenewBatch(to: CacheNodeIndex, keys: string[], versions: number[], nowMs: number): void {
    assert(keys.length > 0 && keys.length === versions.length && keys.length <= cacheRenewBatchKeysMax, 'a renew batch names 1..max keys with their versions');
    this.counters.renewBatchesSent++;
    this.counters.renewalsSent += keys.length;
    this.messages.push({ kind: 'RenewBatch', from: this.self, incarnation: this.incarnation, to, sentMs: nowMs, keys, versions });
  }

  private sendRenew(slot: number, nowMs: number): void {
    this.counters.renewalsSent++;
    this.lines.setRenewSent(slot, nowMs);
    const key = this.lines.key(slot);
    this.messages.push({ kind: 'Renew', ...this.base(key, 0, nowMs), version: this.lines.version(slot) });
  }

  private removeLine(slot: number): void {
    this.dirtySlots.delete(slot);
    this.lines.remove(slot);
  }

  private evictSlot(slot: number, nowMs: number): boolean {
    const key = this.lines.key(slot);
    if (this.txns.has(key)) return false;
    if (this.lines.dirty(slot)) {
      if (this.txns.size >= cacheNodeTransactionsMax) return false;
      this.counters.evictions++;
      this.startPutM(key, slot, [], nowMs);
      return true;
    }
    this.counters.evictions++;
    this.removeLine(slot);
    return true;
  }

  /** Evicts least recently used lines (skipping ones with a transaction) until `bytes` more fit. */
  private makeRoom(bytes: number, nowMs: number): boolean {
    let s = this.lines.lru();
    while (!this.lines.fits(1, bytes) && s >= 0) {
      const newer = this.lines.newer(s);
      this.evictSlot(s, nowMs);
      s = newer;
    }
    return this.lines.fits(1, bytes);
  }

  /** After a value grew in place: evict others until the bounds hold again. */
  private shrink(nowMs: number): void {
    let s = this.lines.lru();
    while (!this.lines.fits(0, 0) && s >= 0) {
      const newer = this.lines.newer(s);
      this.evictSlot(s, nowMs);
      s = newer;
    }
  }
}

function assertNeverMsg(m: never): never {
  throw new Error(`unknown message ${JSON.stringify(m)}`);
}
