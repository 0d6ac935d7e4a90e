// The cache service: every node runs core/cache's node part (lines for its clients) and
// the home part for the keys it is home of; a key's home is its owner on core/ring over
// the cache ring's members, which group 0 decides (CacheRingMachine). The cores' outputs
// travel as CachePeer pushes over the peer links (to this node itself: handed over in the
// same turn); ticks drive resends, leases and TTLs; the home's memory is a
// CacheBackingStore (in-process or Redis).
//
// Decisions:
// - Homes are decided by group 0, not by each node's reachability (core/cache/ring.ts has
//   the argument in full). The group 0 leader proposes a new ring generation when a voter
//   was not heard from for nodeDownMs (it leaves), when one out of the ring is heard again
//   (it comes back), and when voters join or are removed. Every node builds the same ring
//   for a generation, so one key has one home per generation. Batches carry the
//   generation; one from another generation is dropped.
// - A node serves only while it is confirmed (ServingLease): a ReadIndex barrier on group
//   0 started at t0 came back with this generation still applied, and now < t0 +
//   confirmLeaseMs (the cache lease less twice the drift margin). Unconfirmed, it answers
//   clients UNAVAILABLE without looking at its lines, drops peer batches (grants nothing
//   as a home, takes no grants) and sends nothing. A new generation's homes grant nothing
//   for one cache lease after they applied it (core/cache), by when every node's
//   confirmation of the previous generation has run out: no stale read across a partition
//   or a ring change. A node cut off from group 0's majority stops within confirmLeaseMs.
// - A ring change rebuilds both cores (new incarnation and epoch; client operations
//   waiting fail with UNAVAILABLE, retry). In-process memory keeps the keys this node is
//   still home of and drops the ones that moved away (a key that moves back later must not
//   find an old value; after a snapshot that may have skipped generations it drops all):
//   keys that stayed keep their values, keys that moved read as misses (or from Redis).
//   Lines are dropped for every key, moved or not: a directory entry names holders by
//   their index in the generation's member list, so entries cannot outlive it; an
//   unmoved key costs one refetch from the same home's memory.
// - Overload (too many operations or transactions waiting at this node, or memory
//   operations in flight at the home) is TOO_MANY_REQUESTS with a retry hint, never a crash.

import xxhash from 'xxhash-wasm';
import { assert } from '../../../core/assert.js';
import { CacheHome, DONE, FenceTable, NodeCache, PENDING, TOO_LARGE } from '../../../core/cache/index.js';
import { writeWaitMsFor } from '../../../core/cache/node.js';
import type { CacheCompletion, CacheConfig, CacheValue, Fence, MemoryOp, ToHome, ToNode } from '../../../core/cache/index.js';
import { stateCount, stateNames } from '../../../core/cache/messages.js';
import { type CacheRingState, confirmLeaseMsFor, desiredCacheMembers, type RingTiming, sameMembers, ServingLease } from '../../../core/cache/ring.js';
import { cacheHomeOfMemoKeysMax, cacheKeyBytesMax, cacheMemoryOpsInFlightMax, cacheNodeDownMsDefault, cacheTtlMsMax, cacheValueBytesMax } from '../../../core/constants.js';
import { type CacheNodeIndex, cacheNodeIndex, type NodeId } from '../../../core/ids.js';
import { Ring } from '../../../core/ring/ring.js';
import { DsyncError, ErrorCode, ProtocolError } from '../../../protocol/errors.js';
import { Opcode } from '../../../protocol/frame.js';
import { schema } from '../../../protocol/index.js';
import { decodePayload } from '../../node/node.js';
import { EntryKind, frameEntry, type SubMachine } from '../../raft/group0.js';
import type { Cancel } from '../../runtime.js';
import type { RequestContext, Service, ServiceContext } from '../service.js';
import { BackingFencedError, type CacheBackingStore } from './backing.js';
import { decodeToHome, decodeToNode, encodeToHome, encodeToNode } from './codec.js';
import { CacheRingMachine, encodeCacheRingCommand, type RingChangeHow } from './ring-machine.js';

export interface CacheServiceOptions {
  readonly cfg: CacheConfig;
  readonly backing: CacheBackingStore;
  readonly lineEntriesMax?: number;
  readonly lineBytesMax?: number;
  readonly homeEntriesMax?: number;
  /** Boot incarnation base: larger than any earlier boot's (the wiring uses wall-clock seconds). */
  readonly incarnationBase: number;
  /** When the group 0 leader takes a silent node out of the ring and puts it back (default: CACHE_NODE_DOWN_MS's). */
  readonly ringTiming?: RingTiming;
  /** A deliberate bug for the fault runner's canary (server/node/canary.ts); never set otherwise. */
  readonly canary?: 'skip-one-invalidation';
}

export const ringTimingDefault: RingTiming = { nodeDownMs: cacheNodeDownMsDefault, nodeUpMs: Math.floor(cacheNodeDownMsDefault / 2) };

interface Waiting {
  readonly ctx: RequestContext;
  readonly kind: 'get' | 'set' | 'flush';
  /** When it started waiting (this node's clock): one stuck behind an unreachable backing store is answered after a lease. */
  readonly sinceMs: number;
  /** A set or delete: when its client stops waiting (this node's clock); it waits that long through a lapse of this node's confirmation. */
  readonly untilMs: number;
}

/** One ring generation (group 0's number): who is in it, this node's two cores for it, and its right to serve. */
interface Generation {
  readonly id: number;
  readonly lease: ServingLease;
  readonly members: readonly NodeId[];
  readonly self: number;
  readonly ring: Ring;
  readonly node: NodeCache;
  readonly home: CacheHome;
  readonly waiting: Map<number, Waiting>;
}

/** Counters the service keeps over every generation (the cores' are summed in at each change). */
export class CacheMetrics {
  readonly totals = new Map<string, number>();
  add(name: string, n = 1): void {
    this.totals.set(name, (this.totals.get(name) ?? 0) + n);
  }
}

/** A set's and a flush's answers carry nothing: encoded once (replies are written, never changed). */
const emptyCacheReply = schema.CacheReply.encode({}).finish();
const emptyFlushReply = schema.CacheFlushReply.encode({}).finish();

export class CacheService implements Service {
  readonly name = 'cache';
  readonly opcodes = { min: 300, max: 399 };
  private ctx: ServiceContext | null = null;
  private hash: ((b: Uint8Array) => number) | null = null;
  private gen: Generation | null = null;
  private generations = 0;
  /** Group 0's part: the ring's generation and members. */
  readonly ring = new CacheRingMachine();
  readonly group0: { readonly kind: EntryKind; readonly machine: SubMachine } = { kind: EntryKind.CacheRing, machine: this.ring };
  /** The last generation this node's memory followed change by change (a snapshot or a gap breaks the chain). */
  private memoryFollowedGeneration = 0;
  private memoryChainBroken = false;
  /** Group 0 leader: since when (this node's clock), and whether a ring proposal is in flight. */
  private ledSinceMs: number | null = null;
  private ringProposalInFlight = false;
  private readonly ringTiming: RingTiming;
  /** Newest fencing token per lock seen by this node's homes, kept across ring generations. */
  private readonly fences = new FenceTable();
  private readonly confirmLeaseMs: number;
  private opCounter = 0;
  private memoryInFlight = 0;
  /** Since when the backing store fails every operation (null: its last operation succeeded), and how. */
  private memoryFailingSinceMs: number | null = null;
  private memoryLastError = '';
  private stopTick: Cancel | null = null;
  private stopped = false;
  readonly metrics = new CacheMetrics();
  /**
   * Messages for peers, sent once per turn (one CachePeerBatch per peer however many
   * requests the turn served: a pipelined client's batch of misses costs one frame each way,
   * not one per request), for the generation that produced them.
   */
  private outbox = new Map<NodeId, { toHome: ReturnType<typeof encodeToHome>[]; toNode: ReturnType<typeof encodeToNode>[] }>();
  private outboxGeneration: Generation | null = null;
  private outboxFlushScheduled = false;
  /** Batches handed to the peer links and the messages in them (plain fields: counted on every flush). */
  private peerBatchesSent = 0;
  private peerMessagesSent = 0;
  private readonly flushOutboxBound = (): void => this.flushOutbox();

  constructor(private readonly opts: CacheServiceOptions) {
    this.ringTiming = opts.ringTiming ?? ringTimingDefault;
    this.confirmLeaseMs = confirmLeaseMsFor(opts.cfg.leaseMs);
    this.ring.onChange = (state, how) => this.onRing(state, how);
  }

  start(ctx: ServiceContext): void {
    this.ctx = ctx;
    const tickMs = Math.max(1, Math.floor(this.opts.cfg.retryMs / 2));
    void xxhash().then((h) => {
      if (this.stopped) return;
      this.hash = (b) => h.h32Raw(b, 0);
      this.syncRing();
      this.stopTick = ctx.scheduler.every(tickMs, () => this.tick());
    });
    ctx.handle(Opcode.CacheGet, (rc, payload) => this.onGet(rc, payload), 'read');
    ctx.handle(Opcode.CacheSet, (rc, payload) => this.onSet(rc, payload, false));
    ctx.handle(Opcode.CacheDelete, (rc, payload) => this.onSet(rc, payload, true));
    ctx.handle(Opcode.CacheFlush, (rc) => this.onFlush(rc));
    ctx.handle(Opcode.CacheStats, (rc) => rc.conn.reply(rc.requestId, rc.opcode, schema.CacheStatsReply.encode(this.statsReply()).finish()), 'read');
    ctx.peers.handle(Opcode.CachePeer, (from, payload) => this.onPeer(from, payload));
    this.registerMetrics(ctx);
    ctx.node.consoleCommands.register({
      name: 'cache', usage: 'cache stats | cache key K', help: 'cache counters on this node; one key\'s line here and its entry at its home (if here)',
      run: (args) => this.consoleRun(args),
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopTick?.();
    // Write-back: dirty lines go home (best effort: a flush that the homes answer in this turn).
    if (this.gen !== null) {
      this.gen.node.flush(++this.opCounter, this.now());
      this.pump();
      this.flushOutbox();
    }
    await this.opts.backing.close();
  }

  // ------------------------------------------------------------------ client requests

  private now(): number {
    return (this.ctx as ServiceContext).clock.nowMs();
  }

  private current(nowMs: number): Generation {
    const g = this.gen;
    if (g === null) throw new DsyncError(ErrorCode.UNAVAILABLE, 'the cache is starting or this node is not in the cache ring; retry shortly', { retryAfterMs: 100 });
    if (!g.lease.serving(nowMs)) {
      this.metrics.add('refusedUnconfirmed');
      throw new DsyncError(ErrorCode.UNAVAILABLE, 'this node cannot confirm its cache ring with group 0 (no quorum reached lately); retry, or use another node', { retryAfterMs: 200 });
    }
    if (this.memoryInFlight >= cacheMemoryOpsInFlightMax) {
      this.metrics.add('refusedMemoryBusy');
      throw new DsyncError(ErrorCode.TOO_MANY_REQUESTS, `the cache's backing store has ${this.memoryInFlight} operations in flight; retry shortly`, { retryAfterMs: 50 });
    }
    return g;
  }

  /** The hot path: a hit is answered from this node's line (no message, no pump); a miss waits for its home. */
  private onGet(rc: RequestContext, payload: Uint8Array): void {
    const key = checkKey(decodeGetKey(payload));
    const nowMs = this.now();
    const g = this.current(nowMs);
    const opId = ++this.opCounter;
    const r = g.node.get(opId, key, nowMs);
    if (r === PENDING) g.waiting.set(opId, { ctx: rc, kind: 'get', sinceMs: nowMs, untilMs: nowMs });
    else if (typeof r === 'symbol') throw refusal(r === TOO_LARGE);
    else rc.conn.reply(rc.requestId, rc.opcode, encodeValue(r));
    if (g.node.hasOutput) this.pump();
  }

  private onSet(rc: RequestContext, payload: Uint8Array, del: boolean): void {
    const req = decodePayload(decodeCacheRequest, payload, del ? 'CacheDelete' : 'CacheSet');
    const key = checkKey(req.key);
    const value: CacheValue = del || req.hasValue !== true ? null : (req.value ?? new Uint8Array(0));
    if (value !== null && value.byteLength > cacheValueBytesMax) {
      throw new DsyncError(ErrorCode.BAD_REQUEST, `cache value of ${value.byteLength} bytes exceeds the ${cacheValueBytesMax}-byte limit`);
    }
    const ttlMs = Number(req.ttlMs ?? 0);
    if (!Number.isInteger(ttlMs) || ttlMs < 0 || ttlMs > cacheTtlMsMax) throw new DsyncError(ErrorCode.BAD_REQUEST, `cache ttl must be 0..${cacheTtlMsMax} ms`);
    const fence = fenceOf(req.fencingToken, req.lock, key);
    const nowMs = this.now();
    const g = this.current(nowMs);
    const opId = ++this.opCounter;
    const waitMs = Number(req.waitMs ?? 0);
    const r = g.node.set(opId, key, value, nowMs, ttlMs, fence, waitMs);
    if (r === PENDING) g.waiting.set(opId, { ctx: rc, kind: 'set', sinceMs: nowMs, untilMs: nowMs + writeWaitMsFor(this.opts.cfg, waitMs) });
    else if (r === DONE) rc.conn.reply(rc.requestId, rc.opcode, emptyCacheReply);
    else throw refusal(r === TOO_LARGE);
    this.pump();
  }

  private onFlush(rc: RequestContext): void {
    const nowMs = this.now();
    const g = this.current(nowMs);
    const opId = ++this.opCounter;
    const r = g.node.flush(opId, nowMs);
    if (r === PENDING) g.waiting.set(opId, { ctx: rc, kind: 'flush', sinceMs: nowMs, untilMs: nowMs });
    else rc.conn.reply(rc.requestId, rc.opcode, emptyFlushReply);
    this.pump();
  }

  private complete(g: Generation, c: CacheCompletion): void {
    const w = g.waiting.get(c.opId);
    if (w === undefined) return; // a shutdown flush
    g.waiting.delete(c.opId);
    const { ctx } = w;
    if (ctx.conn.closed) return;
    if (!c.ok) {
      if (c.error === 'FENCED') {
        ctx.conn.replyError(ctx.requestId, ctx.opcode, new DsyncError(ErrorCode.FENCED,
          `the key's home has seen fencing token ${c.newestToken} for this lock, newer than the write's: not applied`));
        return;
      }
      const problem = this.backingProblem();
      ctx.conn.replyError(ctx.requestId, ctx.opcode, new DsyncError(ErrorCode.TIMEOUT,
        `the key's home did not answer the write within a lease: it may or may not have been applied${problem === null ? '' : ` (${problem})`}`));
      return;
    }
    if (w.kind === 'get') ctx.conn.reply(ctx.requestId, ctx.opcode, encodeValue(c.value));
    else if (w.kind === 'set') ctx.conn.reply(ctx.requestId, ctx.opcode, emptyCacheReply);
    else ctx.conn.reply(ctx.requestId, ctx.opcode, emptyFlushReply);
  }

  // ------------------------------------------------------------------ peers

  private onPeer(from: NodeId, payload: Uint8Array): ProtocolError | null {
    let batch: ReturnType<typeof schema.CachePeerBatch.decode>;
    try {
      batch = schema.CachePeerBatch.decode(payload);
    } catch (err) {
      return new ProtocolError(ErrorCode.BAD_PAYLOAD, `undecodable cache peer batch: ${(err as Error).message}`, false);
    }
    const g = this.gen;
    if (g === null || batch.ring !== g.id) {
      this.metrics.add('peerBatchesOtherRing');
      return null;
    }
    const nowMs = this.now();
    if (!g.lease.serving(nowMs)) {
      this.metrics.add('peerBatchesUnconfirmed');
      return null;
    }
    const fromIdx = g.members.indexOf(from);
    try {
      const toHome = batch.toHome.map((w) => decodeToHome(w, g.members.length));
      const toNode = batch.toNode.map((w) => decodeToNode(w, g.members.length));
      for (const m of [...toHome, ...toNode]) {
        if (m.from !== fromIdx || m.to !== g.self) return new ProtocolError(ErrorCode.BAD_PAYLOAD, `cache message from ${from} names node ${m.from} -> ${m.to}`, false);
      }
      for (const m of toHome) g.home.step(m, nowMs);
      for (const m of toNode) g.node.step(m, nowMs);
    } catch (err) {
      if (err instanceof ProtocolError) return err;
      throw err;
    }
    this.pump();
    return null;
  }

  /** Moves every output of both cores where it goes, until neither has any; peers' messages leave at the end of the turn. */
  private pump(): void {
    const g = this.gen;
    if (g === null) return;
    const nowMs = this.now();
    // Unconfirmed: outputs wait in the cores (their senders resend anyway); nothing leaves.
    if (!g.lease.serving(nowMs)) return;
    for (let rounds = 0; g.node.hasOutput || g.home.hasOutput; rounds++) {
      assert(rounds < 100_000, 'cache cores keep answering each other without end');
      const n = g.node.ready();
      const h = g.home.ready();
      if (n.messages.length + n.completions.length + h.messages.length + h.memory.length === 0) break;
      for (const m of n.messages) {
        if (m.to === g.self) g.home.step(m, nowMs);
        else this.queue(g, m.to, encodeToHome(m), true);
      }
      for (const c of n.completions) this.complete(g, c);
      for (const m of h.messages) {
        if (m.to === g.self) g.node.step(m, nowMs);
        else this.queue(g, m.to, encodeToNode(m), false);
      }
      for (const op of h.memory) this.memory(g, op);
    }
    if (this.outbox.size > 0 && !this.outboxFlushScheduled) {
      this.outboxFlushScheduled = true;
      (this.ctx as ServiceContext).scheduler.defer(this.flushOutboxBound);
    }
  }

  /** One batch per peer. A generation replaced since the messages were made drops them (they name the old ring's nodes; senders resend). */
  private flushOutbox(): void {
    this.outboxFlushScheduled = false;
    const g = this.outboxGeneration;
    if (g !== null && g === this.gen) {
      for (const [peer, b] of this.outbox) {
        // At once: this runs after the turn that made the messages (they are its batch), and a
        // FrameWriter flush scheduled from here would run one more loop turn later, per hop.
        const ok = (this.ctx as ServiceContext).peers.send(peer, Opcode.CachePeer, schema.CachePeerBatch.encode({ ring: g.id, toHome: b.toHome, toNode: b.toNode }).finish(), true);
        if (!ok) this.metrics.add('peerBatchesDropped');
        this.peerBatchesSent++;
        this.peerMessagesSent += b.toHome.length + b.toNode.length;
      }
    }
    this.outbox.clear();
  }

  private queue(g: Generation, to: number, w: ReturnType<typeof encodeToHome>, toHome: boolean): void {
    if (this.outboxGeneration !== g) {
      this.outbox.clear();
      this.outboxGeneration = g;
    }
    const peer = g.members[to] as NodeId;
    let b = this.outbox.get(peer);
    if (b === undefined) {
      b = { toHome: [], toNode: [] };
      this.outbox.set(peer, b);
    }
    (toHome ? b.toHome : b.toNode).push(w);
  }

  /** Performs one memory operation; a store that answers later completes it then (if the generation is still current). */
  private memory(g: Generation, op: MemoryOp): void {
    const backing = this.opts.backing;
    if (op.kind === 'read') {
      const r = backing.read(op.key, g.id);
      if (!(r instanceof Promise)) {
        g.home.memoryRead(op.key, r, this.now());
        return;
      }
      this.memoryInFlight++;
      r.then((rec) => {
        this.memoryInFlight--;
        this.memoryFailingSinceMs = null;
        if (this.gen !== g || this.stopped) return;
        g.home.memoryRead(op.key, rec, this.now());
        this.pump();
      }, (err: unknown) => this.memoryFailed(g, op, err));
      return;
    }
    this.metrics.add('memoryWrites');
    const w = backing.write(op.key, op.record, g.id);
    if (!(w instanceof Promise)) {
      g.home.memoryWritten(op.key, this.now());
      return;
    }
    this.memoryInFlight++;
    w.then(() => {
      this.memoryInFlight--;
      this.memoryFailingSinceMs = null;
      if (this.gen !== g || this.stopped) return;
      g.home.memoryWritten(op.key, this.now());
      this.pump();
    }, (err: unknown) => this.memoryFailed(g, op, err));
  }

  /** The store failed (Redis down): retried after a retry period while the generation lasts; the entry waits. */
  private memoryFailed(g: Generation, op: MemoryOp, err: unknown): void {
    this.memoryInFlight--;
    if (err instanceof BackingFencedError) {
      // A newer generation's home has used the store: this one's operation must never land
      // (not retried). Its entry stays busy until the generation is replaced, which group 0
      // has already decided; clients waiting on it get TIMEOUT (the write did not happen).
      const name = op.kind === 'write' ? 'memoryWritesFenced' : 'memoryReadsFenced';
      this.metrics.add(name);
      if ((this.metrics.totals.get(name) ?? 0) % 100 === 1) {
        // Also what a home of a cluster meets once another cluster took the store over (backing.ts).
        (this.ctx as ServiceContext).log.warn(err.retiredCluster === '' ? 'the cache backing store refused this ring generation: a newer one has used it'
          : 'the cache backing store refused this cluster: another cluster has taken the store over', { backing: this.opts.backing.describe,
          generation: g.id, newer: err.newerGeneration, retiredCluster: err.retiredCluster, key: op.key });
      }
      return;
    }
    this.metrics.add('memoryErrors');
    this.memoryFailingSinceMs ??= this.now();
    this.memoryLastError = err instanceof Error ? err.message : String(err);
    if (this.gen !== g || this.stopped) return;
    const ctx = this.ctx as ServiceContext;
    if ((this.metrics.totals.get('memoryErrors') ?? 0) % 100 === 1) {
      ctx.log.warn('cache backing store failed; retrying', { backing: this.opts.backing.describe, key: op.key, err: err instanceof Error ? err.message : String(err) });
    }
    ctx.scheduler.after(this.opts.cfg.retryMs, () => {
      if (this.gen !== g || this.stopped) return;
      this.memory(g, op);
      this.pump();
    });
  }

  // ------------------------------------------------------------------ time and ring

  private tick(): void {
    if (this.stopped) return;
    this.proposeRing();
    this.syncRing();
    const g = this.gen;
    if (g === null) return;
    const nowMs = this.now();
    this.confirm(g, nowMs);
    if (!g.lease.serving(nowMs)) {
      // Gets (and flushes) are told at once, to try another node. A set or delete keeps
      // waiting for as long as its client does: its request may be at its home already, so
      // answering now could only say "outcome unknown", while a confirmation back within
      // that time (a slow barrier on a loaded group 0) lets it finish with a real answer.
      this.failWaiting(g, 'this node cannot confirm its cache ring with group 0 (no quorum reached lately)', this.confirmLeaseMs / 4,
        (w) => w.kind !== 'set' || nowMs >= w.untilMs);
      return;
    }
    g.node.tick(nowMs);
    g.home.tick(nowMs);
    this.pump();
    this.failStuckOnMemory(g, nowMs);
  }

  /**
   * The backing store (Redis) has failed every operation for a lease: operations that have
   * waited that long are answered UNAVAILABLE naming it, instead of timing out with no reason.
   * Lines cached here are still served; the store's operations keep being retried.
   */
  private failStuckOnMemory(g: Generation, nowMs: number): void {
    const problem = this.backingProblem();
    const waitMs = this.opts.cfg.leaseMs / 2;
    if (problem === null) return;
    for (const [opId, w] of g.waiting) {
      if (nowMs - w.sinceMs < waitMs) continue;
      g.waiting.delete(opId);
      this.metrics.add('refusedBackingDown');
      abandon(w, `${problem}; keys cached here are still served`, this.opts.cfg.leaseMs);
    }
  }

  /** Why the backing store cannot be used now (this node's connection to it, or its recent failures), or null. */
  private backingProblem(): string | null {
    const p = this.opts.backing.problem();
    if (p !== null) return `the cache's backing store ${this.opts.backing.describe} is unreachable: ${p}`;
    const since = this.memoryFailingSinceMs;
    if (since !== null && this.now() - since >= this.opts.cfg.leaseMs) {
      return `the cache's backing store ${this.opts.backing.describe} has failed every operation for ${Math.round(this.now() - since)} ms (${this.memoryLastError})`;
    }
    return null;
  }

  /** Renews this generation's right to serve: a ReadIndex barrier on group 0 (core/cache/ring.ts). */
  private confirm(g: Generation, nowMs: number): void {
    const t0 = g.lease.begin(nowMs);
    if (t0 === null) return;
    const group0 = (this.ctx as ServiceContext).groups.group0;
    group0.readBarrier().then(() => {
      // Applied now: everything committed before t0, so the generation applied at the barrier is this one only if it still is.
      g.lease.done(t0, this.gen === g ? this.ring.state.generation : -1, this.now());
      if (this.gen === g && g.lease.serving(this.now())) this.pump();
    }, () => {
      g.lease.failed(t0);
      this.metrics.add('confirmFailures');
    });
  }

  /** Group 0 leader only: proposes the ring it wants (desiredCacheMembers) when it differs from the applied one. */
  private proposeRing(): void {
    const ctx = this.ctx;
    if (ctx === null) return;
    const group0 = ctx.groups.group0;
    const nowMs = this.now();
    if (!group0.isLeader) {
      this.ledSinceMs = null;
      return;
    }
    this.ledSinceMs ??= nowMs;
    if (this.ringProposalInFlight) return;
    const state = this.ring.state;
    const voters = ctx.node.members().filter((m) => m.voter).map((m) => m.id);
    const want = desiredCacheMembers(ctx.node.nodeId, voters, state.members, (p) => ctx.groups.sinceHeardMs(p), nowMs - this.ledSinceMs, this.ringTiming);
    if (sameMembers(want, state.members)) return;
    this.ringProposalInFlight = true;
    ctx.log.info('proposing a cache ring', { basedOn: state.generation, members: want.join(','), was: state.members.join(',') });
    group0.propose(frameEntry(EntryKind.CacheRing, encodeCacheRingCommand({ basedOn: state.generation, members: want }))).then(() => {
      this.ringProposalInFlight = false;
    }, (err: unknown) => {
      this.ringProposalInFlight = false;
      ctx.log.debug('cache ring proposal failed', { err: err instanceof Error ? err.message : String(err) });
    });
  }

  /** Group 0 applied a ring change (in log order, synchronously). */
  private onRing(state: CacheRingState, how: RingChangeHow): void {
    if (how === 'snapshot' || state.generation !== this.memoryFollowedGeneration + 1) this.memoryChainBroken = true;
    this.memoryFollowedGeneration = state.generation;
    this.syncRing();
  }

  /** Builds the generation group 0 has applied, if this node does not run it yet. */
  private syncRing(): void {
    const ctx = this.ctx;
    if (ctx === null || this.hash === null || this.stopped) return;
    const state = this.ring.state;
    if (this.gen !== null && this.gen.id === state.generation) return;
    if (this.gen === null && this.builtGeneration === state.generation) return;
    this.newGeneration(state.generation, state.members);
  }

  private builtGeneration = 0;

  private newGeneration(id: number, members: readonly NodeId[]): void {
    const ctx = this.ctx as ServiceContext;
    const old = this.gen;
    this.builtGeneration = id;
    if (old !== null) {
      this.retire(old);
      this.metrics.add('ringChanges');
      // Write-back: owners that left the ring took whatever they had not written back.
      for (const o of old.home.possiblyDirtyOwners()) {
        if (!members.includes(old.members[o] as NodeId)) this.metrics.add('home.writeBackLossAtRingChange');
      }
    }
    const hash = this.hash as (b: Uint8Array) => number;
    const ring = new Ring(hash);
    for (const m of members) ring.add(m);
    // In-process memory keeps only this node's keys: a key that comes back later must not find an old value.
    if (this.memoryChainBroken) {
      this.opts.backing.keepOnly(() => false);
      this.memoryChainBroken = false;
    } else {
      this.opts.backing.keepOnly((key) => members.length > 0 && ring.owner(key) === ctx.node.nodeId);
    }
    const selfIdx = members.indexOf(ctx.node.nodeId);
    if (selfIdx < 0) {
      this.gen = null;
      ctx.log.info('cache ring without this node', { members: members.join(','), generation: id });
      return;
    }
    const incarnation = this.opts.incarnationBase + ++this.generations;
    const nowMs = this.now();
    const self = cacheNodeIndex(selfIdx);
    // A renewal round asks for the home of every line it renews: hashing each key again was
    // a few percent of a read-heavy node's CPU.
    const homes = new Map<string, CacheNodeIndex>();
    const homeOf = (key: string): CacheNodeIndex => {
      let h = homes.get(key);
      if (h === undefined) {
        if (homes.size >= cacheHomeOfMemoKeysMax) homes.clear();
        h = cacheNodeIndex(members.indexOf(ring.owner(key)));
        homes.set(key, h);
      }
      return h;
    };
    const node = new NodeCache(this.opts.cfg, {
      self, incarnation, homeOf, homes: members.length,
      ...(this.opts.lineEntriesMax === undefined ? {} : { entriesMax: this.opts.lineEntriesMax }),
      ...(this.opts.lineBytesMax === undefined ? {} : { bytesMax: this.opts.lineBytesMax }),
    });
    const home = new CacheHome(this.opts.cfg, { self, epoch: incarnation, startedMs: nowMs, fences: this.fences,
      ...(this.opts.homeEntriesMax === undefined ? {} : { entriesMax: this.opts.homeEntriesMax }),
      ...(this.opts.canary === undefined ? {} : { canary: this.opts.canary }) });
    const lease = new ServingLease(id, this.confirmLeaseMs);
    this.gen = { id, lease, members, self: selfIdx, ring, node, home, waiting: new Map() };
    ctx.log.info('cache ring', { members: members.join(','), generation: id });
    this.confirm(this.gen, nowMs);
  }

  /** Answers every operation waiting in `g` (see abandon()); their completions are ignored later. */
  private failWaiting(g: Generation, why: string, retryAfterMs: number, which: (w: Waiting) => boolean = () => true): void {
    for (const [opId, w] of g.waiting) {
      if (!which(w)) continue;
      g.waiting.delete(opId);
      abandon(w, why, retryAfterMs);
    }
  }

  /** Ends a generation: its waiting operations fail (retry), its counters go into the totals. */
  private retire(g: Generation): void {
    this.failWaiting(g, 'the cache ring changed while this request waited', this.opts.cfg.leaseMs);
    this.metrics.add('dirtyLinesDroppedAtRingChange', g.node.dirtyHeld);
    for (const [k, v] of Object.entries(this.coreCounters(g))) this.metrics.add(k, v);
  }

  // ------------------------------------------------------------------ metrics and console

  private coreCounters(g: Generation): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(g.node.counters)) out[`node.${k}`] = v as number;
    for (const [k, v] of Object.entries(g.home.counters)) out[`home.${k}`] = v as number;
    const t = g.node.lines.transitions;
    for (let from = 0; from < stateCount; from++) {
      for (let to = 0; to < stateCount; to++) {
        const n = t[from * stateCount + to] as number;
        if (n > 0) out[`transition.${stateNames[from]}->${stateNames[to]}`] = n;
      }
    }
    return out;
  }

  /** The counters below as Prometheus series (read at scrape time): events, transitions by state pair, gauges. */
  private registerMetrics(ctx: ServiceContext): void {
    const m = ctx.node.metrics;
    const gauges: Record<string, [string, string]> = {
      lines: ['dsync_cache_lines', 'Lines this node caches'],
      lineBytes: ['dsync_cache_line_bytes', 'Key and value bytes of the lines this node caches'],
      homeEntries: ['dsync_cache_home_entries', 'Directory entries of the keys this node is home of'],
      hitRatio: ['dsync_cache_hit_ratio', 'Hits / (hits + misses) of reads served here since start'],
    };
    for (const [key, [name, help]] of Object.entries(gauges)) m.gauge(name, help, [], () => [[{}, this.counters().get(key) ?? 0]]);
    m.counterFrom('dsync_cache_transitions_total', 'MESI/MOESI transitions of this node\'s lines, by state pair', ['from', 'to'], () => {
      const out: [{ from: string; to: string }, number][] = [];
      for (const [k, v] of this.counters()) {
        const t = /^transition\.(\w+)->(\w+)$/.exec(k);
        if (t !== null) out.push([{ from: t[1] ?? '', to: t[2] ?? '' }, v]);
      }
      return out;
    });
    m.counterFrom('dsync_cache_events_total', 'Cache events (hits, misses, invalidations, write-backs, evictions, lease reclaims, ...), by where and what',
      ['event'], () => [...this.counters()].filter(([k]) => /^(node|home)\./.test(k)).map(([k, v]) => [{ event: k }, v]));
  }

  /** Every counter over all generations, plus gauges of the current one. */
  counters(): Map<string, number> {
    const out = new Map(this.metrics.totals);
    const g = this.gen;
    if (g !== null) {
      for (const [k, v] of Object.entries(this.coreCounters(g))) out.set(k, (out.get(k) ?? 0) + v);
      out.set('lines', g.node.lines.count);
      out.set('lineBytes', g.node.lines.bytes);
      out.set('homeEntries', g.home.size);
      out.set('ringMembers', g.members.length);
      out.set('serving', g.lease.serving(this.now()) ? 1 : 0);
    }
    const hits = out.get('node.hits') ?? 0;
    const misses = out.get('node.misses') ?? 0;
    out.set('hitRatio', hits + misses === 0 ? 0 : hits / (hits + misses));
    out.set('peerBatchesSent', this.peerBatchesSent);
    out.set('peerMessagesSent', this.peerMessagesSent);
    out.set('memoryInFlight', this.memoryInFlight);
    out.set('backingDown', this.memoryFailingSinceMs === null ? 0 : 1);
    out.set('ringGeneration', this.ring.state.generation);
    out.set('fenceLocks', this.fences.size);
    out.set('fenceLocksForgotten', this.fences.forgotten);
    return out;
  }

  private statsReply(): ReturnType<typeof schema.CacheStatsReply.create> {
    const ctx = this.ctx as ServiceContext;
    return schema.CacheStatsReply.create({
      nodeId: ctx.node.nodeId, protocol: this.opts.cfg.protocol, writePolicy: this.opts.cfg.writePolicy, backing: this.opts.backing.describe,
      counters: [...this.counters()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([name, value]) => ({ name, value })),
    });
  }

  private consoleRun(args: readonly string[]): string {
    if (args[0] === 'stats') {
      const c = this.counters();
      return [`protocol=${this.opts.cfg.protocol} writePolicy=${this.opts.cfg.writePolicy} propagation=${this.opts.cfg.propagation} backing=${this.opts.backing.describe}`,
        ...[...c].sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => `${k} ${Number.isInteger(v) ? v : v.toFixed(3)}`)].join('\n');
    }
    if (args[0] === 'key' && args[1] !== undefined) {
      const key = args[1];
      const g = this.gen;
      if (g === null) return 'the cache is not running on this node (starting, or not a reachable voter)';
      const home = g.ring.owner(key);
      const nowMs = this.now();
      const line = g.node.line(key, nowMs);
      const dec = new TextDecoder();
      const lineText = line === null ? 'line: none (I)' : `line: ${stateNames[line.state]} v${line.version}${line.dirty ? ' dirty' : ''} lease ${Math.max(0, Math.round(line.leaseUntilMs - nowMs))} ms value=${line.value === null ? '(absent)' : JSON.stringify(dec.decode(line.value))}`;
      if (home !== (this.ctx as ServiceContext).node.nodeId) return `${lineText}\nhome: ${home} (ask its console for the entry)`;
      const e = g.home.entry(key);
      const owner = e === null || e.owner < 0 ? '-' : g.members[e.owner];
      const sharers = e === null ? '' : g.members.filter((_, i) => (e.sharers & (1 << i)) !== 0).join(',');
      const homeText = e === null ? 'home: here, no entry (I)' : `home: here ${stateNames[e.state]} v${e.version} owner=${owner} sharers=${sharers || '-'}${e.busy ? ' busy' : ''} value=${e.value === null ? '(absent)' : JSON.stringify(dec.decode(e.value))}`;
      return `${lineText}\n${homeText}`;
    }
    return 'usage: cache stats | cache key K';
  }
}

function checkKey(key: string | null | undefined): string {
  if (key === undefined || key === null || key === '') throw new DsyncError(ErrorCode.BAD_REQUEST, 'cache key must not be empty');
  if (key.length * 3 <= cacheKeyBytesMax) return key; // UTF-8 takes at most 3 bytes per UTF-16 unit: surely within the limit
  const bytes = Buffer.byteLength(key);
  if (bytes > cacheKeyBytesMax) throw new DsyncError(ErrorCode.BAD_REQUEST, `cache key of ${bytes} bytes exceeds the ${cacheKeyBytesMax}-byte limit`);
  return key;
}

/** A set's fence: a positive token and the lock it belongs to (without a lock name, tokens are compared per key). */
function fenceOf(token: number | { toNumber(): number } | null | undefined, lock: string | null | undefined, key: string): Fence | null {
  const t = token === null || token === undefined ? 0 : Number(token);
  const name = lock ?? '';
  if (t === 0) {
    if (name !== '') throw new DsyncError(ErrorCode.BAD_REQUEST, 'a cache write names a lock but carries no fencing token');
    return null;
  }
  if (!Number.isSafeInteger(t) || t < 0) throw new DsyncError(ErrorCode.BAD_REQUEST, `fencing token ${String(token)} is not a positive integer`);
  if (Buffer.byteLength(name) > cacheKeyBytesMax) throw new DsyncError(ErrorCode.BAD_REQUEST, `lock name over ${cacheKeyBytesMax} bytes`);
  return { lock: name === '' ? `key:${key}` : `lock:${name}`, token: t };
}

function refusal(tooLarge: boolean): DsyncError {
  if (tooLarge) return new DsyncError(ErrorCode.BAD_REQUEST, `cache key or value over its limit (${cacheKeyBytesMax} / ${cacheValueBytesMax} bytes)`);
  return new DsyncError(ErrorCode.TOO_MANY_REQUESTS, 'too many cache operations waiting at this node; retry shortly', { retryAfterMs: 50 });
}

function decodeCacheRequest(b: Uint8Array): ReturnType<typeof schema.CacheRequest.decode> {
  return schema.CacheRequest.decode(b);
}

// ignoreBOM: a key may begin with U+FEFF; the decoder must not drop it (protobufjs keeps it).
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
/** CacheReply { found: false }: every field at its default, so no bytes. */
const absentReply = new Uint8Array(0);
/** CacheReply { found: true, value: empty }. */
const foundEmptyReply = new Uint8Array([0x08, 0x01]);

/**
 * A get's key from its CacheRequest, read straight off the wire when the payload is just
 * field 1 (what clients send for a get): protobufjs' decode builds a message object and a
 * reader per request. Anything else goes through the generated decoder (same result, same
 * errors for malformed input).
 */
export function decodeGetKey(payload: Uint8Array): string {
  // Tag 0x0a (field 1, length-delimited), then a one- or two-byte length, then exactly the key.
  if (payload.length >= 2 && payload[0] === 0x0a) {
    const b1 = payload[1] as number;
    let len = b1;
    let at = 2;
    if (b1 >= 0x80) {
      const b2 = payload[2];
      if (b2 === undefined || b2 >= 0x80) return decodePayload(decodeCacheRequest, payload, 'CacheGet').key;
      len = (b1 & 0x7f) | (b2 << 7);
      at = 3;
    }
    if (at + len === payload.length) {
      try {
        return utf8.decode(payload.subarray(at));
      } catch {
        // not UTF-8: the generated decoder refuses it with its own message
      }
    }
  }
  return decodePayload(decodeCacheRequest, payload, 'CacheGet').key;
}

/**
 * CacheReply for a get, laid out by hand (found = field 1 varint, value = field 2 bytes);
 * the same bytes protobufjs writes for { found: true, value } (test/unit/cache/hit-codec.test.ts).
 */
export function encodeValue(v: CacheValue): Uint8Array {
  if (v === null) return absentReply;
  const n = v.byteLength;
  if (n === 0) return foundEmptyReply; // protobufjs leaves an empty bytes field out
  const lenBytes = n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5;
  // Every byte is written below; Buffer's pooled allocation costs a tenth of a typed array over 64 bytes.
  const out = Buffer.allocUnsafe(2 + 1 + lenBytes + n);
  out[0] = 0x08;
  out[1] = 0x01;
  out[2] = 0x12;
  let at = 3;
  let rest = n;
  while (rest >= 0x80) {
    out[at++] = (rest & 0x7f) | 0x80;
    rest >>>= 7;
  }
  out[at++] = rest;
  out.set(v, at);
  return out;
}


/**
 * Answers an operation given up on after it reached the cores. A get is UNAVAILABLE: it had
 * no effect, so it may simply be asked again. A set, delete or flush is TIMEOUT: its request
 * may have reached the home and been applied, so it must not be repeated blindly (a repeat
 * could apply it a second time after another client's write, which no single point in time
 * explains); the client library retries writes only on refusals made before anything happened.
 */
function abandon(w: { readonly ctx: RequestContext; readonly kind: string }, why: string, retryAfterMs: number): void {
  if (w.ctx.conn.closed) return;
  const error = w.kind === 'get'
    ? new DsyncError(ErrorCode.UNAVAILABLE, `${why}; retry`, { retryAfterMs: Math.ceil(retryAfterMs) })
    : new DsyncError(ErrorCode.TIMEOUT, `${why}: the ${w.kind} may or may not have been applied`, { retryAfterMs: Math.ceil(retryAfterMs) });
  w.ctx.conn.replyError(w.ctx.requestId, w.ctx.opcode, error);
}
