// The home directory: for the keys this node is home of, who holds which copy. One
// MESI/MOESI entry per key (state, owner, sharer mask, version, lease) in typed arrays
// with a key->slot index, a free list and an LRU. Pure: messages and memory operations
// go out through ready(), answers come back through step()/memoryRead()/memoryWritten().
//
// Decisions:
// - Memory is a backing store reached by OUTPUTS and COMPLETIONS, not a map the wiring
//   syncs afterwards. "A write-through write completes once the home's memory has it"
//   is then true of Redis too: a WriteAck leaves only after memoryWritten(). The entry
//   keeps the value it last read or wrote (it is the only writer of its keys), so reads
//   need memory only when the entry is created. One memory operation per entry at a time.
// - Requests for one key are served one at a time. A busy entry (loading, in a round of
//   invalidations, or writing memory) queues them, bounded per key and over the home;
//   beyond either bound the requester gets Nack busy and resends.
// - Volume leases (Yin et al.): a node serves a line only within three leases: the line's
//   own (long: cacheLineLeaseVolumes leases), this home's volume lease to the node (short:
//   one lease, renewed by one Volume message per home whatever the number of lines), and
//   the node's volume period here (volumeSeq). Each lease is granted as sentMs + lease -
//   drift margin on the node's clock and recorded as nowMs + lease here, so the node's
//   runs out first.
// - A round: Inv to sharers, Fwd to the owner; the request completes when every one
//   acknowledged, or when the holders' volume leases, as they stood when the round began,
//   ran out (the home "reclaims": the silent holders are treated as invalidated; an
//   owner's unsent dirty data under write-back is lost and counted). Why that is enough:
//   a holder serves only within its volume lease; a lease recorded before the round began
//   ends by the reclaim time; every lease granted after it began (Volume is never refused)
//   carries the round's Inv/Fwd in its VolumeGranted, which the node applies before it
//   takes the lease, and it then stops serving the key even where the Fwd let it keep a
//   copy. So once the reclaim time passed, the holder serves the key only if it took a
//   later grant, which revoked it. Inv/Fwd are resent every retryMs.
// - A reclaim ends the holder's volume period (volumeSeq[n]++), and every grant (Data,
//   WriteAck, VolumeGranted) names the period it belongs to: a node cut off past a reclaim
//   that is heard again and renews its volume lease (nothing revoked: the round is over)
//   learns of the new period and serves none of the lines granted in the old one.
// - A line's own lease bounds a TTL (never past it) and how long an unread line stays;
//   lines are renewed in rounds: one RenewBatch per home names many keys and gets one
//   RenewedBatch back (busy keys left out); each key is renewed exactly as by Renew.
// - Round ids are unique per home epoch, so a late Ack of an earlier round never counts.
//   The version grows when memory changes and when exclusivity (E/M) is granted, so a
//   copy granted before an invalidation always has a version <= the Inv's, and one
//   granted after it a larger one: that is how a node tells a stale grant from a fresh one.
// - Retries: a node resends a request with the same reqId. A Write is applied once: the
//   entry keeps, per node, the reqId of the last Write it applied (a u32 per node per
//   entry, 128 bytes an entry at 32 nodes); a resend is answered again, and Nack stale
//   means "not applied, and never will be" (a Write applies only at the owner's version).
//   That memory lives as long as the entry; an entry is not freed within
//   cacheWriteWaitLeasesMax leases of its last write, and a node gives a write up (outcome
//   unknown) after retrying for at most that long (as long as its client waits).
//   The reqId that made the owner owner is kept too (ownerReqId): a resend of it is
//   answered again. A resent GetS/GetM from a node that is no longer a
//   holder is served again: the node ignores a grant it no longer waits for, and the home
//   merely thinks it holds a copy (it answers Inv/Fwd with "nothing here"). A NEW request
//   from a recorded holder means it holds nothing (a node gives dirty data back with PutM
//   before it asks again), so the record is dropped.
// - A node that restarts speaks with a higher incarnation: the home first forgets the old
//   one (holders, waits in rounds, queued requests), counting an owner's lost dirty data.
// - A new home (restart, ring change) grants nothing for one lease after it started: a
//   previous home's volume leases have run out by then, and this home's epoch, in its
//   grants, ends their period at every node. It grants volume leases at once.
// - TTL: expiry is applied when the key is next served. Leases, at nodes and here, never
//   outlast the TTL, so at expiry no holder can still serve the old value.
// - MOESI (write-back only: write-through lines are never dirty): a dirty owner asked to
//   share keeps its data in O and memory is not written; its data is relayed through the
//   home to each reader and kept in the entry (memory is written when the entry is
//   evicted or the data comes back), so losing the O owner loses nothing. Dirty data
//   that reaches the home in any other way is written.
// - Update propagation: the sharers a GetM invalidated become subscribers; the next value
//   the owner writes through (Write) or gives back (PutM) is pushed to them and the
//   writer becomes a sharer. A pushed copy is servable only after the node renewed it
//   (the home cannot anchor a lease in the receiver's clock for an unasked-for message).

import { assert } from '../assert.js';
import {
  cacheEvictScanMax,
  cacheHomeEntriesMaxDefault,
  cacheHomeQueuePerKeyMax,
  cacheHomeQueuedRequestsMax,
  cacheLeaseDriftMarginMs,
  cacheLineLeaseVolumes,
  cacheNodesMax,
  cacheRenewBatchKeysMax,
  cacheVersionMax,
  cacheVolumeRevokesMax,
  cacheWriteWaitLeasesMax,
} from '../constants.js';
import { cacheNodeIndex } from '../ids.js';
import type { CacheNodeIndex } from '../ids.js';
import type { MemoryOp, MemoryRecord } from './backing.js';
import type { Fence, FenceTable } from './fence.js';
import { St, assertCacheConfig } from './messages.js';
import type { CacheConfig, CacheValue, Data, Nack, Push, Revoke, ToHome, ToNode } from './messages.js';

export interface HomeOptions {
  readonly self: CacheNodeIndex;
  /** This home's incarnation; Acks carry it back, so none from an earlier life counts. */
  readonly epoch: number;
  /** Home clock at start: grants wait until startedMs + leaseMs. */
  readonly startedMs: number;
  readonly entriesMax?: number;
  /** Requests queued over all entries (default cacheHomeQueuedRequestsMax); tests that build many homes make it small. */
  readonly queuedRequestsMax?: number;
  /**
   * Deliberately broken builds for checker canaries: every round skips the invalidation of
   * its lowest sharer (other than the requester); or a GetM is granted as soon as the
   * invalidations are sent, not when acknowledged.
   */
  readonly canary?: 'skip-one-invalidation' | 'grant-m-before-acks';
  /** The node's table of newest fencing tokens per lock (shared by its homes of every generation); absent: writes are not fenced. */
  readonly fences?: FenceTable;
}

export interface HomeReady {
  readonly messages: ToNode[];
  readonly memory: MemoryOp[];
}

export interface HomeEntryView {
  readonly key: string;
  readonly state: St;
  readonly owner: number;
  readonly sharers: number;
  readonly version: number;
  readonly value: CacheValue;
  readonly busy: boolean;
  /** MOESI: memory lacks the O owner's data. */
  readonly memoryStale: boolean;
  readonly leaseUntilMs: number;
  readonly expiresAtMs: number;
}

export class HomeCounters {
  requests = 0;
  grantsS = 0;
  grantsE = 0;
  grantsM = 0;
  writes = 0;
  writeBacks = 0;
  invalidationsSent = 0;
  forwardsSent = 0;
  pushesSent = 0;
  nacks = 0;
  /** Holders treated as invalidated because their lease ran out. */
  leaseReclaims = 0;
  /** Write-back: owners reclaimed or forgotten while their line could hold data memory lacks. */
  writeBackLoss = 0;
  /** The part of writeBackLoss from owners that went silent (lease ran out), not from restarts the wiring reported. */
  writeBackLossReclaimed = 0;
  memoryReads = 0;
  memoryWrites = 0;
  ttlExpirations = 0;
  directoryEvictions = 0;
  staleRequests = 0;
  forgottenNodes = 0;
  renewals = 0;
  renewalsRefused = 0;
  /** RenewBatch messages answered (their keys count in renewals / renewalsRefused). */
  renewBatches = 0;
  /** Volume leases granted (one per node per renewal interval, whatever the number of lines). */
  volumeRenewals = 0;
  /** Revocations (rounds waiting on the node) carried in those grants. */
  volumeRevokes = 0;
  /** Volume renewals not granted: more rounds waited on the node than one grant carries. */
  volumeRefused = 0;
  /** Writes refused because their fencing token was older than the newest seen for the lock. */
  fencedWrites = 0;
}

/** Request kinds; GetMWrite is a GetM that carries a write. */
const RK = { GetS: 1, GetM: 2, Write: 3, PutM: 4, Evict: 5, GetMWrite: 6 } as const;
const PH = { idle: 0, loading: 1, round: 2, writing: 3 } as const;
/** What the forwarded owner did in the current round. */
const FW = { waiting: 0, replied: 1, gone: 2 } as const;

const bit = (n: number): number => (1 << n) >>> 0;

/** Renewal answers being gathered (RenewedBatch's arrays). */
interface RenewAnswers {
  keys: string[];
  ok: boolean[];
  versions: number[];
  leaseUntilMs: number[];
}

function popcount(x: number): number {
  let v = x >>> 0;
  let c = 0;
  while (v !== 0) {
    v &= v - 1;
    c++;
  }
  return c;
}

export class CacheHome {
  readonly counters = new HomeCounters();
  private readonly cfg: CacheConfig;
  private readonly self: CacheNodeIndex;
  private readonly epoch: number;
  private readonly grantsFromMs: number;
  private readonly fences: FenceTable | null;
  private readonly entriesMax: number;
  private readonly canary: HomeOptions['canary'];
  private roundCounter = 0;

  // --- entries ---
  private readonly index = new Map<string, number>();
  private readonly keys: (string | null)[];
  private readonly values: CacheValue[];
  private readonly state: Uint8Array;
  private readonly owner: Int8Array;
  private readonly sharers: Uint32Array;
  private readonly subscribers: Uint32Array;
  private readonly version: Uint32Array;
  private readonly memVersion: Uint32Array;
  private readonly ownerReqId: Uint32Array;
  /** [slot * cacheNodesMax + node]: reqId of the last Write applied from that node. */
  private readonly lastWriteReqId: Uint32Array;
  private readonly lastWriteMs: Float64Array;
  private readonly leaseUntilMs: Float64Array;
  private readonly expiresAtMs: Float64Array;
  private readonly loaded: Uint8Array;
  private readonly memStale: Uint8Array;
  private readonly phase: Uint8Array;
  private readonly cur: Int32Array;
  private readonly qHead: Int32Array;
  private readonly qTail: Int32Array;
  private readonly qLen: Uint16Array;
  private readonly lruPrev: Int32Array;
  private readonly lruNext: Int32Array;
  private lruHead = -1;
  private lruTail = -1;
  private readonly freeSlots: Int32Array;
  private freeCount: number;
  // round in progress
  private readonly round: Uint32Array;
  private readonly pending: Uint32Array;
  private readonly roundInv: Uint32Array;
  private readonly fwd: Int8Array;
  private readonly fwdTo: Uint8Array;
  private readonly fwdState: Uint8Array;
  private readonly fwdKept: Uint8Array;
  private readonly fwdDirty: Uint8Array;
  private readonly fwdData: CacheValue[];
  private readonly roundOwnerState: Uint8Array;
  private readonly roundSentMs: Float64Array;
  /** When the round's silent holders are treated as invalidated: the latest of their volume leases when it began. */
  private readonly roundReclaimAtMs: Float64Array;
  private readonly inRound = new Set<number>();
  // after a memory write
  private readonly deferred: (ToNode[] | null)[];
  private readonly writingVersion: Uint32Array;
  private readonly freeAfter: Uint8Array;

  // --- request pool ---
  private readonly rKind: Uint8Array;
  private readonly rNode: Int8Array;
  private readonly rInc: Uint32Array;
  private readonly rReqId: Uint32Array;
  private readonly rSentMs: Float64Array;
  private readonly rVersion: Uint32Array;
  private readonly rTtlMs: Float64Array;
  private readonly rCancelled: Uint8Array;
  private readonly rNext: Int32Array;
  private readonly rValue: CacheValue[];
  private readonly rFence: (Fence | null)[];
  private readonly rFree: Int32Array;
  private rFreeCount: number;

  /** Latest incarnation heard from each node (0 = none yet). */
  private readonly nodeInc = new Uint32Array(cacheNodesMax);
  /** Each node's volume lease from this home, on this home's clock (0 = none granted). */
  private readonly volumeUntilMs = new Float64Array(cacheNodesMax);
  /** Each node's volume period here: grows when a round reclaims the node (its copies granted before are dead). */
  private readonly volumeSeq = new Uint32Array(cacheNodesMax);
  private readonly lineLeaseMs: number;

  private messages: ToNode[] = [];
  private memory: MemoryOp[] = [];

  constructor(cfg: CacheConfig, opts: HomeOptions) {
    assertCacheConfig(cfg);
    assert(opts.self >= 0 && opts.self < cacheNodesMax, 'home index within cacheNodesMax');
    const n = opts.entriesMax ?? cacheHomeEntriesMaxDefault;
    assert(Number.isInteger(n) && n > 0 && n <= cacheHomeEntriesMaxDefault * 64, 'home entriesMax');
    this.cfg = cfg;
    this.self = opts.self;
    this.epoch = opts.epoch;
    this.grantsFromMs = opts.startedMs + cfg.leaseMs;
    this.lineLeaseMs = cfg.leaseMs * cacheLineLeaseVolumes;
    this.fences = opts.fences ?? null;
    this.entriesMax = n;
    this.canary = opts.canary;
    this.keys = new Array<string | null>(n).fill(null);
    this.values = new Array<CacheValue>(n).fill(null);
    this.fwdData = new Array<CacheValue>(n).fill(null);
    this.deferred = new Array<ToNode[] | null>(n).fill(null);
    this.state = new Uint8Array(n);
    this.owner = new Int8Array(n).fill(-1);
    this.sharers = new Uint32Array(n);
    this.subscribers = new Uint32Array(n);
    this.version = new Uint32Array(n);
    this.memVersion = new Uint32Array(n);
    this.ownerReqId = new Uint32Array(n);
    this.lastWriteReqId = new Uint32Array(n * cacheNodesMax);
    this.lastWriteMs = new Float64Array(n);
    this.leaseUntilMs = new Float64Array(n);
    this.expiresAtMs = new Float64Array(n);
    this.loaded = new Uint8Array(n);
    this.memStale = new Uint8Array(n);
    this.phase = new Uint8Array(n);
    this.cur = new Int32Array(n).fill(-1);
    this.qHead = new Int32Array(n).fill(-1);
    this.qTail = new Int32Array(n).fill(-1);
    this.qLen = new Uint16Array(n);
    this.lruPrev = new Int32Array(n).fill(-1);
    this.lruNext = new Int32Array(n).fill(-1);
    this.round = new Uint32Array(n);
    this.pending = new Uint32Array(n);
    this.roundInv = new Uint32Array(n);
    this.fwd = new Int8Array(n).fill(-1);
    this.fwdTo = new Uint8Array(n);
    this.fwdState = new Uint8Array(n);
    this.fwdKept = new Uint8Array(n);
    this.fwdDirty = new Uint8Array(n);
    this.roundOwnerState = new Uint8Array(n);
    this.roundSentMs = new Float64Array(n);
    this.roundReclaimAtMs = new Float64Array(n);
    this.writingVersion = new Uint32Array(n);
    this.freeAfter = new Uint8Array(n);
    this.freeSlots = new Int32Array(n);
    for (let i = 0; i < n; i++) this.freeSlots[i] = n - 1 - i;
    this.freeCount = n;
    const q = opts.queuedRequestsMax ?? cacheHomeQueuedRequestsMax;
    assert(Number.isInteger(q) && q >= cacheHomeQueuePerKeyMax && q <= cacheHomeQueuedRequestsMax, 'home queuedRequestsMax');
    this.rKind = new Uint8Array(q);
    this.rNode = new Int8Array(q);
    this.rInc = new Uint32Array(q);
    this.rReqId = new Uint32Array(q);
    this.rSentMs = new Float64Array(q);
    this.rVersion = new Uint32Array(q);
    this.rTtlMs = new Float64Array(q);
    this.rCancelled = new Uint8Array(q);
    this.rNext = new Int32Array(q);
    this.rValue = new Array<CacheValue>(q).fill(null);
    this.rFence = new Array<Fence | null>(q).fill(null);
    this.rFree = new Int32Array(q);
    this.rFreeCount = q;
    for (let i = 0; i < q; i++) this.rFree[i] = q - 1 - i;
  }

  /** Messages to send and memory operations to perform since the last call. */
  ready(): HomeReady {
    const out = { messages: this.messages, memory: this.memory };
    this.messages = [];
    this.memory = [];
    return out;
  }

  get size(): number {
    return this.index.size;
  }

  /** Whether ready() has anything. */
  get hasOutput(): boolean {
    return this.messages.length + this.memory.length > 0;
  }

  // ------------------------------------------------------------------ inputs

  step(msg: ToHome, nowMs: number): void {
    assert(msg.to === this.self, 'message delivered to the wrong home');
    if (!this.admit(msg.from, msg.incarnation, nowMs)) return;
    switch (msg.kind) {
      case 'Ack':
        this.onAck(msg.key, msg.from, msg.epoch, msg.round, msg.kept, msg.dirty, msg.value, nowMs);
        return;
      case 'Renew':
        this.onRenew(msg.key, msg.from, msg.sentMs, nowMs);
        return;
      case 'RenewBatch':
        this.onRenewBatch(msg.keys, msg.versions, msg.from, msg.sentMs, nowMs);
        return;
      case 'Volume':
        this.onVolume(msg.from, msg.sentMs, nowMs);
        return;
      case 'GetS':
        this.enqueue(RK.GetS, msg.key, msg.from, msg.incarnation, msg.reqId, msg.sentMs, 0, null, 0, nowMs);
        return;
      case 'GetM':
        this.enqueue(msg.write ? RK.GetMWrite : RK.GetM, msg.key, msg.from, msg.incarnation, msg.reqId, msg.sentMs, 0, msg.value, msg.ttlMs, nowMs, msg.write ? msg.fence : null);
        return;
      case 'Write':
        this.enqueue(RK.Write, msg.key, msg.from, msg.incarnation, msg.reqId, msg.sentMs, msg.version, msg.value, msg.ttlMs, nowMs, msg.fence);
        return;
      case 'PutM':
        this.enqueue(RK.PutM, msg.key, msg.from, msg.incarnation, msg.reqId, msg.sentMs, msg.version, msg.value, 0, nowMs);
        return;
      default:
        assertNeverMsg(msg);
    }
  }

  /** Resends unanswered invalidations and reclaims holders whose lease ran out. */
  tick(nowMs: number): void {
    for (const slot of this.inRound) {
      if (this.phase[slot] !== PH.round) continue;
      if (nowMs >= (this.roundReclaimAtMs[slot] as number)) {
        this.reclaim(slot);
        this.afterRound(slot, nowMs);
        this.serve(slot, nowMs);
      } else if (nowMs - (this.roundSentMs[slot] as number) >= this.cfg.retryMs) {
        this.sendRound(slot, nowMs);
      }
    }
  }

  /** Completion of a memory read this home asked for. */
  memoryRead(key: string, record: MemoryRecord | null, nowMs: number): void {
    const slot = this.index.get(key);
    assert(slot !== undefined && this.phase[slot] === PH.loading, 'memory read completion for an entry that is not loading');
    this.values[slot] = record === null ? null : record.value;
    const stored = record === null ? 0 : record.version;
    assert(stored < cacheVersionMax, 'version space exhausted');
    this.memVersion[slot] = stored;
    this.version[slot] = stored + 1;
    this.expiresAtMs[slot] = record === null ? 0 : record.expiresAtMs;
    this.loaded[slot] = 1;
    this.phase[slot] = PH.idle;
    this.serve(slot, nowMs);
  }

  /** Completion of a memory write this home asked for. */
  memoryWritten(key: string, nowMs: number): void {
    const slot = this.index.get(key);
    assert(slot !== undefined && this.phase[slot] === PH.writing, 'memory write completion for an entry that is not writing');
    this.memVersion[slot] = this.writingVersion[slot] as number;
    this.phase[slot] = PH.idle;
    const msgs = this.deferred[slot] ?? null;
    this.deferred[slot] = null;
    if (msgs !== null) {
      for (const m of msgs) this.messages.push(m);
      this.finishRequest(slot);
    }
    this.serve(slot, nowMs);
  }

  /** The wiring learned that a node restarted or left: forget every copy and wait it had. */
  forgetNode(node: CacheNodeIndex, nowMs: number): void {
    this.counters.forgottenNodes++;
    const b = bit(node);
    const finish: number[] = [];
    for (const slot of this.index.values()) {
      if (this.owner[slot] === node) {
        if (this.possiblyDirty(slot)) this.counters.writeBackLoss++;
        this.owner[slot] = -1;
        this.memStale[slot] = 0;
      }
      this.sharers[slot] = ((this.sharers[slot] as number) & ~b) >>> 0;
      this.subscribers[slot] = ((this.subscribers[slot] as number) & ~b) >>> 0;
      this.lastWriteReqId[slot * cacheNodesMax + node] = 0;
      this.settleState(slot);
      if (this.phase[slot] === PH.round && ((this.pending[slot] as number) & b) !== 0) {
        this.pending[slot] = ((this.pending[slot] as number) & ~b) >>> 0;
        if (this.fwd[slot] === node) this.fwdState[slot] = FW.gone;
        if (this.pending[slot] === 0) finish.push(slot);
      }
      const c = this.cur[slot] as number;
      if (c >= 0 && this.rNode[c] === node && this.rKind[c] !== RK.Evict) this.rCancelled[c] = 1;
      this.purgeQueued(slot, node);
    }
    for (const slot of finish) {
      this.inRound.delete(slot);
      this.phase[slot] = PH.idle;
      this.afterRound(slot, nowMs);
      this.serve(slot, nowMs);
    }
  }

  /** Test and console view of one key's entry. */
  entry(key: string): HomeEntryView | null {
    const slot = this.index.get(key);
    if (slot === undefined) return null;
    return {
      key,
      state: this.state[slot] as St,
      owner: this.owner[slot] as number,
      sharers: this.sharers[slot] as number,
      version: this.version[slot] as number,
      value: this.values[slot] as CacheValue,
      busy: this.phase[slot] !== PH.idle || this.cur[slot] !== -1,
      memoryStale: this.memStale[slot] === 1,
      leaseUntilMs: this.leaseUntilMs[slot] as number,
      expiresAtMs: this.expiresAtMs[slot] as number,
    };
  }

  /** Owners of entries whose line may hold data memory lacks (write-back E/M), one per entry: what is lost if they go. */
  possiblyDirtyOwners(): number[] {
    const out: number[] = [];
    for (const slot of this.index.values()) {
      const o = this.owner[slot] as number;
      if (o >= 0 && this.possiblyDirty(slot)) out.push(o);
    }
    return out;
  }

  keysHeld(): IterableIterator<string> {
    return this.index.keys();
  }

  // ------------------------------------------------------------------ admission

  private admit(from: CacheNodeIndex, incarnation: number, nowMs: number): boolean {
    assert(from >= 0 && from < cacheNodesMax && incarnation > 0, 'sender index and incarnation');
    const known = this.nodeInc[from] as number;
    if (incarnation < known) return false;
    if (incarnation > known) {
      if (known !== 0) this.forgetNode(from, nowMs);
      this.nodeInc[from] = incarnation;
      this.volumeUntilMs[from] = 0; // a new life holds no line from here
    }
    return true;
  }

  private enqueue(
    kind: number, key: string, node: CacheNodeIndex, inc: number, reqId: number, sentMs: number,
    version: number, value: CacheValue, ttlMs: number, nowMs: number, fence: Fence | null = null,
  ): void {
    this.counters.requests++;
    if (nowMs < this.grantsFromMs) {
      this.nack(node, key, reqId, 'busy', this.grantsFromMs - nowMs);
      return;
    }
    const slot = this.slotFor(key, nowMs);
    if (slot < 0 || (this.qLen[slot] as number) >= cacheHomeQueuePerKeyMax || this.rFreeCount === 0) {
      this.nack(node, key, reqId, 'busy', this.cfg.retryMs);
      return;
    }
    const r = this.allocRequest(kind, node, inc, reqId, sentMs, version, value, ttlMs);
    this.rFence[r] = fence;
    this.pushQueue(slot, r);
    this.serve(slot, nowMs);
  }

  // ------------------------------------------------------------------ serving

  /** Serves queued requests of one entry until it is busy or its queue is empty. */
  private serve(slot: number, nowMs: number): void {
    while (this.phase[slot] === PH.idle) {
      if (this.cur[slot] === -1) {
        const r = this.popQueue(slot);
        if (r < 0) {
          if (this.freeAfter[slot] === 1) this.freeSlot(slot);
          return;
        }
        this.cur[slot] = r;
        this.freeAfter[slot] = 0;
      }
      if (this.loaded[slot] === 0) {
        this.phase[slot] = PH.loading;
        this.counters.memoryReads++;
        this.memory.push({ kind: 'read', key: this.keys[slot] as string });
        return;
      }
      const exp = this.expiresAtMs[slot] as number;
      if (exp > 0 && nowMs >= exp) {
        this.expire(slot, nowMs);
        continue;
      }
      this.start(slot, nowMs);
    }
  }

  private expire(slot: number, nowMs: number): void {
    // Every lease was capped at the TTL, so no holder can serve any more.
    assert(this.leaseUntilMs[slot] as number <= nowMs || this.holders(slot) === 0, 'a lease outlived its TTL');
    this.counters.ttlExpirations++;
    this.owner[slot] = -1;
    this.sharers[slot] = 0;
    this.subscribers[slot] = 0;
    this.memStale[slot] = 0;
    this.state[slot] = St.I;
    this.values[slot] = null;
    this.expiresAtMs[slot] = 0;
    this.bump(slot);
    this.writeMemory(slot, null);
  }

  /** Begins the current request: a round if copies must go, else its effect at once. */
  private start(slot: number, nowMs: number): void {
    const r = this.cur[slot] as number;
    const kind = this.rKind[r] as number;
    if (kind === RK.Evict) {
      this.startRound(slot, this.sharers[slot] as number, this.owner[slot] as number, St.I, nowMs);
      return;
    }
    const h = this.rNode[r] as number;
    const reqId = this.rReqId[r] as number;
    const key = this.keys[slot] as string;
    if (this.rCancelled[r] === 1) {
      this.finishRequest(slot);
      return;
    }
    const isOwner = this.owner[slot] === h;
    if (kind === RK.Write || kind === RK.GetMWrite) {
      const last = this.lastWriteReqId[slot * cacheNodesMax + h] as number;
      if (reqId <= last) {
        this.answerDuplicate(slot, r, reqId < last, nowMs);
        return;
      }
      if (isOwner && reqId < (this.ownerReqId[slot] as number)) {
        // Older than the request that made the node owner: a write it gave up (unknown outcome)
        // before it asked again. Applied now, it would regrant the owner a line it never installs.
        this.answerDuplicate(slot, r, true, nowMs);
        return;
      }
      const fence = this.rFence[r] ?? null;
      if (fence !== null && this.fences !== null && !this.fences.admit(fence)) {
        // An older token than this home saw for the lock: not applied (a resend is checked again).
        this.counters.fencedWrites++;
        this.messages.push({ kind: 'Nack', from: this.self, to: cacheNodeIndex(h), incarnation: this.nodeInc[h] as number, key, reqId,
          reason: 'fenced', retryAfterMs: 0, newestToken: this.fences.newestOf(fence.lock) });
        this.finishRequest(slot);
        return;
      }
    } else if (isOwner && reqId <= (this.ownerReqId[slot] as number)) {
      this.answerDuplicate(slot, r, reqId < (this.ownerReqId[slot] as number), nowMs);
      return;
    }
    switch (kind) {
      case RK.GetS:
      case RK.GetM:
      case RK.GetMWrite: {
        if (isOwner) {
          // A new request from the recorded owner: it holds nothing (dirty data comes back by
          // PutM first; an O owner's data is in the entry already, memVersion lagging).
          this.owner[slot] = -1;
        }
        // A sharer asking again stays recorded until the grant (its copy may still be served).
        this.settleState(slot);
        const o = this.owner[slot] as number;
        // An upgrade leaves the requester's own copy to its grant, unless the request writes: a
        // write the node gave up on (unknown outcome) may arrive after it took a new copy, which
        // the grant it no longer waits for would not replace (a stale S copy beside new memory).
        const inv = kind === RK.GetS ? 0 : kind === RK.GetMWrite ? (this.sharers[slot] as number) : ((this.sharers[slot] as number) & ~bit(h)) >>> 0;
        this.startRound(slot, inv, o, kind === RK.GetS ? St.S : St.I, nowMs);
        return;
      }
      case RK.Write:
        if (!isOwner || this.rVersion[r] !== this.version[slot] || ((this.rTtlMs[r] as number) > 0 && this.sharers[slot] !== 0)) {
          this.counters.staleRequests++;
          this.nack(cacheNodeIndex(h), key, reqId, 'stale', 0);
          this.finishRequest(slot);
          return;
        }
        this.afterRound(slot, nowMs);
        return;
      case RK.PutM:
        if (!isOwner || this.rVersion[r] !== this.version[slot]) {
          this.counters.staleRequests++;
          this.messages.push({ kind: 'PutAck', from: this.self, to: cacheNodeIndex(h), incarnation: this.nodeInc[h] as number, key, reqId, applied: false });
          this.finishRequest(slot);
          return;
        }
        this.afterRound(slot, nowMs);
        return;
      default:
        assert(false, `unknown request kind ${kind}`);
    }
  }

  /** A resend of the owner's last request (answered again) or an older one (dropped). */
  private answerDuplicate(slot: number, r: number, older: boolean, nowMs: number): void {
    const kind = this.rKind[r] as number;
    const h = cacheNodeIndex(this.rNode[r] as number);
    const st = this.state[slot] as St;
    if (!older && (kind === RK.GetS || kind === RK.GetM) && (st === St.E || st === St.M)) {
      this.messages.push(this.grant(slot, r, st, this.values[slot] as CacheValue, nowMs));
    } else if (!older && (kind === RK.Write || kind === RK.GetMWrite)) {
      // Applied before: say where the writer stands now.
      const now: St = this.owner[slot] === h ? (st === St.O ? St.O : St.M) : ((this.sharers[slot] as number) & bit(h)) !== 0 ? St.S : St.I;
      this.messages.push({
        kind: 'WriteAck', from: this.self, to: h, incarnation: this.nodeInc[h] as number, key: this.keys[slot] as string,
        reqId: this.rReqId[r] as number, version: this.version[slot] as number, state: now,
        leaseUntilMs: now === St.I ? 0 : this.leaseFor(slot, r, nowMs), ttl: (this.expiresAtMs[slot] as number) > 0, epoch: this.epoch, seq: this.volumeSeq[h] as number,
      });
    } else if (kind === RK.PutM) {
      this.messages.push({ kind: 'PutAck', from: this.self, to: h, incarnation: this.nodeInc[h] as number, key: this.keys[slot] as string, reqId: this.rReqId[r] as number, applied: false });
    }
    this.counters.staleRequests++;
    this.finishRequest(slot);
  }

  private startRound(slot: number, invMask: number, fwdNode: number, fwdTo: St, nowMs: number): void {
    let inv = invMask >>> 0;
    if (this.canary === 'skip-one-invalidation' && inv !== 0) {
      // The lowest sharer other than the requester (whose own copy its grant replaces) is skipped.
      const others = (inv & ~bit(this.rNode[this.cur[slot] as number] as number)) >>> 0;
      const pool = others !== 0 ? others : inv;
      inv = (inv & ~(pool & -pool)) >>> 0;
    }
    const pending = (inv | (fwdNode >= 0 ? bit(fwdNode) : 0)) >>> 0;
    this.fwd[slot] = fwdNode;
    this.fwdTo[slot] = fwdTo;
    this.fwdState[slot] = FW.waiting;
    this.fwdKept[slot] = 0;
    this.fwdDirty[slot] = 0;
    this.fwdData[slot] = null;
    this.roundInv[slot] = invMask >>> 0;
    this.roundOwnerState[slot] = this.state[slot] as number;
    if (pending === 0) {
      this.afterRound(slot, nowMs);
      return;
    }
    this.round[slot] = ++this.roundCounter;
    this.pending[slot] = pending;
    const kind = this.rKind[this.cur[slot] as number];
    if (this.canary === 'grant-m-before-acks' && fwdNode < 0 && (kind === RK.GetM || kind === RK.GetMWrite)) {
      // Broken on purpose: the sharers are told, but the writer gets M before they stopped serving.
      this.sendRound(slot, nowMs);
      this.pending[slot] = 0;
      this.afterRound(slot, nowMs);
      return;
    }
    this.phase[slot] = PH.round;
    this.inRound.add(slot);
    // A holder serves only under its volume lease. Renewals granted from now on carry this
    // round's Inv/Fwd, so the volume leases as they stand now bound how long it can serve.
    let volumes = 0;
    for (let n = 0; n < cacheNodesMax; n++) {
      if ((pending & bit(n)) !== 0 && (this.volumeUntilMs[n] as number) > volumes) volumes = this.volumeUntilMs[n] as number;
    }
    this.roundReclaimAtMs[slot] = volumes;
    if (nowMs >= (this.roundReclaimAtMs[slot] as number)) {
      // Every holder's lease has run out already: nobody can serve, nothing to ask.
      this.reclaim(slot);
      this.afterRound(slot, nowMs);
      return;
    }
    this.sendRound(slot, nowMs);
  }

  private sendRound(slot: number, nowMs: number): void {
    this.roundSentMs[slot] = nowMs;
    const key = this.keys[slot] as string;
    const pending = this.pending[slot] as number;
    const f = this.fwd[slot] as number;
    for (let n = 0; n < cacheNodesMax; n++) {
      if ((pending & bit(n)) === 0) continue;
      const to = cacheNodeIndex(n);
      const base = { from: this.self, to, incarnation: this.nodeInc[n] as number, key, epoch: this.epoch, round: this.round[slot] as number, version: this.version[slot] as number };
      if (n === f) {
        this.counters.forwardsSent++;
        this.messages.push({ kind: 'Fwd', ...base, toState: this.fwdTo[slot] as St });
      } else {
        this.counters.invalidationsSent++;
        this.messages.push({ kind: 'Inv', ...base });
      }
    }
  }

  private onAck(key: string, from: CacheNodeIndex, epoch: number, round: number, kept: boolean, dirty: boolean, value: CacheValue, nowMs: number): void {
    if (epoch !== this.epoch) return;
    const slot = this.index.get(key);
    if (slot === undefined || this.phase[slot] !== PH.round || this.round[slot] !== round) return;
    const b = bit(from);
    if (((this.pending[slot] as number) & b) === 0) return;
    this.pending[slot] = ((this.pending[slot] as number) & ~b) >>> 0;
    if (this.fwd[slot] === from) {
      this.fwdState[slot] = FW.replied;
      this.fwdKept[slot] = kept ? 1 : 0;
      this.fwdDirty[slot] = dirty ? 1 : 0;
      this.fwdData[slot] = value;
    }
    if (this.pending[slot] === 0) {
      this.inRound.delete(slot);
      this.phase[slot] = PH.idle;
      this.afterRound(slot, nowMs);
      this.serve(slot, nowMs);
    }
  }

  /**
   * The volume leases of the holders still pending ran out: they are treated as invalidated,
   * and each one's volume period ends, so no copy it was granted before can be served again
   * (it may have missed this round's Inv and renew its volume lease later).
   */
  private reclaim(slot: number): void {
    const pending = this.pending[slot] as number;
    this.counters.leaseReclaims += popcount(pending);
    for (let n = 0; n < cacheNodesMax; n++) if ((pending & bit(n)) !== 0) this.volumeSeq[n] = (this.volumeSeq[n] as number) + 1;
    const f = this.fwd[slot] as number;
    if (f >= 0 && (pending & bit(f)) !== 0) {
      this.fwdState[slot] = FW.gone;
      if (this.possiblyDirtyState(this.roundOwnerState[slot] as St)) {
        this.counters.writeBackLoss++;
        this.counters.writeBackLossReclaimed++;
      }
    }
    this.pending[slot] = 0;
    this.inRound.delete(slot);
    this.phase[slot] = PH.idle;
  }

  private possiblyDirtyState(st: St): boolean {
    // Not O: an O line is never written locally, and the home keeps the data it relayed.
    return this.cfg.writePolicy === 'write-back' && (st === St.E || st === St.M);
  }

  private possiblyDirty(slot: number): boolean {
    return this.possiblyDirtyState(this.state[slot] as St);
  }

  /**
   * The round is over (or was not needed): change the entry, answer the requester,
   * writing memory first when the value changed.
   */
  private afterRound(slot: number, nowMs: number): void {
    const r = this.cur[slot] as number;
    assert(r >= 0 && this.phase[slot] === PH.idle, 'afterRound with a current request on an idle entry');
    const kind = this.rKind[r] as number;
    const h = this.rNode[r] as number;
    const cancelled = this.rCancelled[r] === 1;
    const out: ToNode[] = [];
    let memoryChanged = false;
    // What the forwarded owner sent back.
    const f = this.fwd[slot] as number;
    let relay: CacheValue | undefined;
    if (f >= 0 && kind !== RK.Write && kind !== RK.PutM) {
      if (this.fwdState[slot] === FW.replied) {
        const kept = this.fwdKept[slot] === 1 && this.fwdTo[slot] === St.S;
        if (this.fwdDirty[slot] === 1) {
          if (this.cfg.protocol === 'MOESI' && kept) {
            relay = this.fwdData[slot] as CacheValue;
            this.memStale[slot] = 1;
            // The entry keeps the O data (memory does not): readers are served it, and losing
            // the O owner loses nothing. memVersion lags, so the entry is not freed unwritten.
            this.values[slot] = relay;
            this.memVersion[slot] = (this.version[slot] as number) - 1;
          } else {
            this.setValue(slot, this.fwdData[slot] as CacheValue, 0);
            memoryChanged = true;
          }
        } else {
          assert(this.memStale[slot] === 0, 'an O owner answered without its dirty data');
        }
        if (relay === undefined) {
          this.owner[slot] = -1;
          if (kept) this.sharers[slot] = ((this.sharers[slot] as number) | bit(f)) >>> 0;
        }
      } else {
        // Gone (lease ran out, or forgotten): whatever it had is lost.
        if (this.owner[slot] === f) this.owner[slot] = -1;
        this.memStale[slot] = 0;
      }
      this.fwdData[slot] = null;
    }
    switch (kind) {
      case RK.GetS: {
        if (!cancelled) {
          const others = (((this.sharers[slot] as number) & ~bit(h)) | ((this.owner[slot] as number) >= 0 ? bit(this.owner[slot] as number) : 0)) >>> 0;
          if (others === 0) {
            this.sharers[slot] = 0;
            this.owner[slot] = h;
            this.ownerReqId[slot] = this.rReqId[r] as number;
            this.bump(slot);
            this.state[slot] = St.E;
            this.counters.grantsE++;
            out.push(this.grant(slot, r, St.E, this.values[slot] as CacheValue, nowMs));
          } else {
            this.sharers[slot] = ((this.sharers[slot] as number) | bit(h)) >>> 0;
            this.settleState(slot);
            this.counters.grantsS++;
            out.push(this.grant(slot, r, St.S, relay !== undefined ? relay : (this.values[slot] as CacheValue), nowMs));
          }
        }
        this.settleState(slot);
        break;
      }
      case RK.GetM:
      case RK.GetMWrite: {
        if (this.cfg.propagation === 'update') {
          this.subscribers[slot] = ((this.subscribers[slot] as number) | (this.roundInv[slot] as number)) >>> 0;
        }
        this.sharers[slot] = 0;
        this.owner[slot] = -1;
        if (!cancelled) {
          this.owner[slot] = h;
          this.ownerReqId[slot] = this.rReqId[r] as number;
          this.subscribers[slot] = ((this.subscribers[slot] as number) & ~bit(h)) >>> 0;
          this.bump(slot);
          this.state[slot] = St.M;
          this.counters.grantsM++;
          let st: St = St.M;
          if (kind === RK.GetMWrite) {
            this.counters.writes++;
            const ttlMs = this.rTtlMs[r] as number;
            this.setValue(slot, this.rValue[r] as CacheValue, ttlMs > 0 ? nowMs + ttlMs : 0);
            memoryChanged = true;
            this.lastWriteReqId[slot * cacheNodesMax + h] = this.rReqId[r] as number;
            this.lastWriteMs[slot] = nowMs;
            if (this.pushToSubscribers(slot, h, out)) {
              this.owner[slot] = -1;
              this.sharers[slot] = ((this.sharers[slot] as number) | bit(h)) >>> 0;
              st = St.S;
            }
          }
          out.push(this.grant(slot, r, st, this.values[slot] as CacheValue, nowMs));
        }
        this.settleState(slot);
        break;
      }
      case RK.Write: {
        this.counters.writes++;
        const ttlMs = this.rTtlMs[r] as number;
        this.setValue(slot, this.rValue[r] as CacheValue, ttlMs > 0 ? nowMs + ttlMs : 0);
        memoryChanged = true;
        this.lastWriteReqId[slot * cacheNodesMax + h] = this.rReqId[r] as number;
        this.lastWriteMs[slot] = nowMs;
        let st: St = St.M;
        if (!cancelled && this.sharers[slot] === 0 && this.pushToSubscribers(slot, h, out)) st = St.S;
        if (this.sharers[slot] !== 0) {
          // MOESI flush from O, or update propagation: the writer becomes one sharer among others.
          this.owner[slot] = -1;
          this.sharers[slot] = ((this.sharers[slot] as number) | bit(h)) >>> 0;
          st = St.S;
        }
        this.settleState(slot);
        if (!cancelled) {
          out.push({
            kind: 'WriteAck', from: this.self, to: cacheNodeIndex(h), incarnation: this.nodeInc[h] as number, key: this.keys[slot] as string,
            reqId: this.rReqId[r] as number, version: this.version[slot] as number, state: st,
            leaseUntilMs: this.leaseFor(slot, r, nowMs), ttl: (this.expiresAtMs[slot] as number) > 0, epoch: this.epoch, seq: this.volumeSeq[h] as number,
          });
        }
        break;
      }
      case RK.PutM: {
        this.counters.writeBacks++;
        this.setValue(slot, this.rValue[r] as CacheValue, 0);
        memoryChanged = true;
        this.owner[slot] = -1;
        this.pushToSubscribers(slot, -1, out);
        this.settleState(slot);
        if (!cancelled) {
          out.push({ kind: 'PutAck', from: this.self, to: cacheNodeIndex(h), incarnation: this.nodeInc[h] as number, key: this.keys[slot] as string, reqId: this.rReqId[r] as number, applied: true });
        }
        break;
      }
      case RK.Evict: {
        this.counters.directoryEvictions++;
        this.owner[slot] = -1;
        this.sharers[slot] = 0;
        this.subscribers[slot] = 0;
        this.memStale[slot] = 0;
        this.settleState(slot);
        if (this.version[slot] !== this.memVersion[slot]) memoryChanged = true;
        this.freeAfter[slot] = 1;
        break;
      }
      default:
        assert(false, `unknown request kind ${kind}`);
    }
    this.fwd[slot] = -1;
    if (memoryChanged) {
      this.writeMemory(slot, out);
    } else {
      for (const m of out) this.messages.push(m);
      this.finishRequest(slot);
    }
  }

  /** Update propagation: pushes the new value to subscribers (not `writer`); true if any. */
  private pushToSubscribers(slot: number, writer: number, out: ToNode[]): boolean {
    if (this.cfg.propagation !== 'update') return false;
    const subs = ((this.subscribers[slot] as number) & ~(writer >= 0 ? bit(writer) : 0)) >>> 0;
    this.subscribers[slot] = 0;
    if (subs === 0) return false;
    const key = this.keys[slot] as string;
    for (let n = 0; n < cacheNodesMax; n++) {
      if ((subs & bit(n)) === 0) continue;
      this.counters.pushesSent++;
      const push: Push = { kind: 'Push', from: this.self, to: cacheNodeIndex(n), incarnation: this.nodeInc[n] as number, key, version: this.version[slot] as number, value: this.values[slot] as CacheValue };
      out.push(push);
    }
    this.sharers[slot] = ((this.sharers[slot] as number) | subs) >>> 0;
    return true;
  }

  private grant(slot: number, r: number, st: St, value: CacheValue, nowMs: number): Data {
    const h = this.rNode[r] as number;
    return {
      kind: 'Data', from: this.self, to: cacheNodeIndex(h), incarnation: this.nodeInc[h] as number, key: this.keys[slot] as string,
      reqId: this.rReqId[r] as number, state: st, version: this.version[slot] as number, value,
      leaseUntilMs: this.leaseFor(slot, r, nowMs), ttl: (this.expiresAtMs[slot] as number) > 0, epoch: this.epoch, seq: this.volumeSeq[h] as number,
    };
  }

  /**
   * Grants a lease to the requester of r: on this home's clock until now + leaseMs, in the
   * requester's clock until its sentMs + leaseMs - margin; both capped by the TTL.
   */
  private leaseFor(slot: number, r: number, nowMs: number): number {
    const exp = this.expiresAtMs[slot] as number;
    const lease = this.lineLeaseMs;
    const homeUntil = exp > 0 ? Math.min(nowMs + lease, exp) : nowMs + lease;
    if (homeUntil > (this.leaseUntilMs[slot] as number)) this.leaseUntilMs[slot] = homeUntil;
    const sent = this.rSentMs[r] as number;
    const nodeUntil = sent + (homeUntil - nowMs) - cacheLeaseDriftMarginMs;
    return nodeUntil;
  }

  private onRenew(key: string, from: CacheNodeIndex, sentMs: number, nowMs: number): void {
    const out: RenewAnswers = { keys: [], ok: [], versions: [], leaseUntilMs: [] };
    if (!this.renewOne(key, from, sentMs, nowMs, out)) return; // busy: the node asks again
    this.messages.push({
      kind: 'Renewed', from: this.self, to: from, incarnation: this.nodeInc[from] as number, key,
      ok: out.ok[0] as boolean, version: out.versions[0] as number, leaseUntilMs: out.leaseUntilMs[0] as number,
    });
  }

  /** A node's renewal round: every key is renewed as by Renew; one RenewedBatch answers the keys that are not busy. */
  private onRenewBatch(keys: readonly string[], versions: readonly number[], from: CacheNodeIndex, sentMs: number, nowMs: number): void {
    assert(keys.length === versions.length && keys.length <= cacheRenewBatchKeysMax, 'a renew batch names each key once with its version, within its bound');
    this.counters.renewBatches++;
    const out: RenewAnswers = { keys: [], ok: [], versions: [], leaseUntilMs: [] };
    for (const key of keys) this.renewOne(key, from, sentMs, nowMs, out);
    if (out.keys.length === 0) return;
    this.messages.push({ kind: 'RenewedBatch', from: this.self, to: from, incarnation: this.nodeInc[from] as number, ...out });
  }

  /**
   * Renews `from`'s volume lease: until now + leaseMs here, sentMs + leaseMs - margin at the
   * node. Every round still waiting on the node goes in the answer as a revocation, which
   * the node applies before it takes the lease: a round's reclaim time (the volume leases
   * when it began) is never outlived by a lease granted after it began. With more rounds
   * than one answer carries, nothing is granted: the lease lapses and the rounds end by it.
   */
  private onVolume(from: CacheNodeIndex, sentMs: number, nowMs: number): void {
    const b = bit(from);
    const revoke: Revoke[] = [];
    for (const slot of this.inRound) {
      if (this.phase[slot] !== PH.round || ((this.pending[slot] as number) & b) === 0) continue;
      if (revoke.length >= cacheVolumeRevokesMax) {
        this.counters.volumeRefused++;
        return;
      }
      revoke.push({ key: this.keys[slot] as string, round: this.round[slot] as number, version: this.version[slot] as number,
        fwdTo: this.fwd[slot] === from ? (this.fwdTo[slot] as St) : null });
    }
    this.counters.volumeRenewals++;
    this.counters.volumeRevokes += revoke.length;
    const homeUntil = nowMs + this.cfg.leaseMs;
    if (homeUntil > (this.volumeUntilMs[from] as number)) this.volumeUntilMs[from] = homeUntil;
    this.messages.push({ kind: 'VolumeGranted', from: this.self, to: from, incarnation: this.nodeInc[from] as number, epoch: this.epoch,
      seq: this.volumeSeq[from] as number, leaseUntilMs: sentMs + this.cfg.leaseMs - cacheLeaseDriftMarginMs, revoke });
  }

  /**
   * Renews `from`'s copy of `key` (anchored at its sentMs) and appends the answer to out;
   * false, appending nothing, while the entry is busy (renewals are refused during a round,
   * so a round waits for leases no longer than the one it started with).
   */
  private renewOne(key: string, from: CacheNodeIndex, sentMs: number, nowMs: number, out: RenewAnswers): boolean {
    const slot = this.index.get(key);
    if (slot !== undefined && (this.phase[slot] !== PH.idle || this.cur[slot] !== -1)) return false;
    const b = bit(from);
    const holder = slot !== undefined && nowMs >= this.grantsFromMs && (this.owner[slot] === from || ((this.sharers[slot] as number) & b) !== 0);
    out.keys.push(key);
    if (slot === undefined || !holder) {
      this.counters.renewalsRefused++;
      out.ok.push(false);
      out.versions.push(slot === undefined ? 0 : (this.version[slot] as number));
      out.leaseUntilMs.push(0);
      return true;
    }
    this.counters.renewals++;
    const exp = this.expiresAtMs[slot] as number;
    const homeUntil = exp > 0 ? Math.min(nowMs + this.lineLeaseMs, exp) : nowMs + this.lineLeaseMs;
    if (homeUntil > (this.leaseUntilMs[slot] as number)) this.leaseUntilMs[slot] = homeUntil;
    out.ok.push(true);
    out.versions.push(this.version[slot] as number);
    out.leaseUntilMs.push(sentMs + (homeUntil - nowMs) - cacheLeaseDriftMarginMs);
    return true;
  }

  // ------------------------------------------------------------------ helpers

  private setValue(slot: number, value: CacheValue, expiresAtMs: number): void {
    this.values[slot] = value;
    this.expiresAtMs[slot] = expiresAtMs;
    this.memStale[slot] = 0;
    this.bump(slot);
  }

  private bump(slot: number): void {
    const v = this.version[slot] as number;
    assert(v < cacheVersionMax, 'version space exhausted');
    this.version[slot] = v + 1;
  }

  private writeMemory(slot: number, out: ToNode[] | null): void {
    assert(this.phase[slot] === PH.idle, 'one memory operation per entry at a time');
    this.phase[slot] = PH.writing;
    this.deferred[slot] = out;
    this.writingVersion[slot] = this.version[slot] as number;
    this.counters.memoryWrites++;
    this.memory.push({
      kind: 'write',
      key: this.keys[slot] as string,
      record: { value: this.values[slot] as CacheValue, version: this.version[slot] as number, expiresAtMs: this.expiresAtMs[slot] as number },
    });
  }

  private holders(slot: number): number {
    const o = this.owner[slot] as number;
    return ((this.sharers[slot] as number) | (o >= 0 ? bit(o) : 0)) >>> 0;
  }

  /** State from owner and sharers (an owner with sharers is O; an owner keeps E or M otherwise). */
  private settleState(slot: number): void {
    const o = this.owner[slot] as number;
    const s = this.sharers[slot] as number;
    if (o >= 0) {
      assert((s & bit(o)) === 0, 'the owner is not also a sharer');
      if (s !== 0) {
        assert(this.memStale[slot] === 1 || this.state[slot] === St.O, 'only a dirty owner shares');
        this.state[slot] = St.O;
      } else if (this.state[slot] !== St.E && this.state[slot] !== St.M) {
        this.state[slot] = St.M;
      }
    } else {
      this.state[slot] = s !== 0 ? St.S : St.I;
      this.memStale[slot] = 0;
    }
  }

  private nack(to: CacheNodeIndex, key: string, reqId: number, reason: Nack['reason'], retryAfterMs: number): void {
    this.counters.nacks++;
    this.messages.push({ kind: 'Nack', from: this.self, to, incarnation: this.nodeInc[to] as number, key, reqId, reason, retryAfterMs, newestToken: 0 });
  }

  private finishRequest(slot: number): void {
    const r = this.cur[slot] as number;
    assert(r >= 0, 'finish without a current request');
    this.cur[slot] = -1;
    this.rValue[r] = null;
    this.rFence[r] = null;
    this.rFree[this.rFreeCount++] = r;
  }

  private allocRequest(kind: number, node: number, inc: number, reqId: number, sentMs: number, version: number, value: CacheValue, ttlMs: number): number {
    assert(this.rFreeCount > 0, 'request pool exhausted');
    const r = this.rFree[--this.rFreeCount] as number;
    this.rKind[r] = kind;
    this.rNode[r] = node;
    this.rInc[r] = inc;
    this.rReqId[r] = reqId;
    this.rSentMs[r] = sentMs;
    this.rVersion[r] = version;
    this.rTtlMs[r] = ttlMs;
    this.rCancelled[r] = 0;
    this.rValue[r] = value;
    this.rFence[r] = null;
    this.rNext[r] = -1;
    return r;
  }

  private pushQueue(slot: number, r: number): void {
    const tail = this.qTail[slot] as number;
    if (tail < 0) this.qHead[slot] = r;
    else this.rNext[tail] = r;
    this.qTail[slot] = r;
    this.qLen[slot] = (this.qLen[slot] as number) + 1;
  }

  private popQueue(slot: number): number {
    const r = this.qHead[slot] as number;
    if (r < 0) return -1;
    this.qHead[slot] = this.rNext[r] as number;
    if (this.qHead[slot] === -1) this.qTail[slot] = -1;
    this.qLen[slot] = (this.qLen[slot] as number) - 1;
    return r;
  }

  private purgeQueued(slot: number, node: number): void {
    let prev = -1;
    let r = this.qHead[slot] as number;
    while (r >= 0) {
      const next = this.rNext[r] as number;
      if (this.rNode[r] === node) {
        if (prev < 0) this.qHead[slot] = next;
        else this.rNext[prev] = next;
        if (this.qTail[slot] === r) this.qTail[slot] = prev;
        this.qLen[slot] = (this.qLen[slot] as number) - 1;
        this.rValue[r] = null;
        this.rFence[r] = null;
        this.rFree[this.rFreeCount++] = r;
      } else {
        prev = r;
      }
      r = next;
    }
  }

  /** The entry of `key`, created (and made room for) if needed; -1 when the directory is full. */
  private slotFor(key: string, nowMs: number): number {
    const found = this.index.get(key);
    if (found !== undefined) {
      this.touch(found);
      return found;
    }
    if (this.freeCount === 0 && !this.makeRoom(nowMs)) return -1;
    const slot = this.freeSlots[--this.freeCount] as number;
    this.index.set(key, slot);
    this.keys[slot] = key;
    this.values[slot] = null;
    this.state[slot] = St.I;
    this.owner[slot] = -1;
    this.sharers[slot] = 0;
    this.subscribers[slot] = 0;
    this.version[slot] = 0;
    this.memVersion[slot] = 0;
    this.ownerReqId[slot] = 0;
    this.lastWriteReqId.fill(0, slot * cacheNodesMax, (slot + 1) * cacheNodesMax);
    this.lastWriteMs[slot] = -Infinity;
    this.leaseUntilMs[slot] = 0;
    this.expiresAtMs[slot] = 0;
    this.loaded[slot] = 0;
    this.memStale[slot] = 0;
    this.phase[slot] = PH.idle;
    this.cur[slot] = -1;
    this.qHead[slot] = -1;
    this.qTail[slot] = -1;
    this.qLen[slot] = 0;
    this.fwd[slot] = -1;
    this.freeAfter[slot] = 0;
    this.lruLink(slot);
    return slot;
  }

  /**
   * Frees an idle entry nobody holds from the LRU end; failing that, starts evicting an
   * idle one that has holders (they are invalidated first) and reports no room now.
   */
  private makeRoom(nowMs: number): boolean {
    let slot = this.lruTail;
    let candidate = -1;
    for (let i = 0; i < cacheEvictScanMax && slot >= 0; i++) {
      // As long as a node may resend a write after it was applied, the entry must still recognise it.
      const idle = this.phase[slot] === PH.idle && this.cur[slot] === -1 && this.qLen[slot] === 0 &&
        nowMs - (this.lastWriteMs[slot] as number) >= cacheWriteWaitLeasesMax * this.cfg.leaseMs;
      if (idle && this.holders(slot) === 0 && this.version[slot] === this.memVersion[slot]) {
        this.counters.directoryEvictions++;
        this.freeSlot(slot);
        return true;
      }
      if (idle && candidate < 0 && this.freeAfter[slot] === 0) candidate = slot;
      slot = this.lruPrev[slot] as number;
    }
    if (candidate >= 0 && this.rFreeCount > 0) {
      this.cur[candidate] = this.allocRequest(RK.Evict, this.self, 1, 0, nowMs, 0, null, 0);
      this.serve(candidate, nowMs);
    }
    return this.freeCount > 0;
  }

  private freeSlot(slot: number): void {
    assert(this.phase[slot] === PH.idle && this.cur[slot] === -1 && this.qLen[slot] === 0, 'free a busy directory entry');
    this.index.delete(this.keys[slot] as string);
    this.keys[slot] = null;
    this.values[slot] = null;
    this.freeAfter[slot] = 0;
    this.lruUnlink(slot);
    this.freeSlots[this.freeCount++] = slot;
  }

  private touch(slot: number): void {
    if (this.lruHead === slot) return;
    this.lruUnlink(slot);
    this.lruLink(slot);
  }

  private lruLink(slot: number): void {
    this.lruPrev[slot] = -1;
    this.lruNext[slot] = this.lruHead;
    if (this.lruHead >= 0) this.lruPrev[this.lruHead] = slot;
    this.lruHead = slot;
    if (this.lruTail < 0) this.lruTail = slot;
  }

  private lruUnlink(slot: number): void {
    const p = this.lruPrev[slot] as number;
    const n = this.lruNext[slot] as number;
    if (p >= 0) this.lruNext[p] = n;
    else this.lruHead = n;
    if (n >= 0) this.lruPrev[n] = p;
    else this.lruTail = p;
    this.lruPrev[slot] = -1;
    this.lruNext[slot] = -1;
  }
}

function assertNeverMsg(m: never): never {
  throw new Error(`unknown message ${JSON.stringify(m)}`);
}
