// The lock service as it ships, under the simulator (VOPR style, one seed replays
// a run): every replica is a SimNode (sim-cluster.ts) running the real GroupHost
// and the real LockService (protobuf entries, its own lease clock on the node's
// virtual MonotonicClock, its own expiry, lock-delay wakes and wait timeouts).
// Clients speak to it as client/locks does: LockRequest frames with an opcode,
// clientId + seq retried on the same seq after a timeout, NOT_LEADER or a reset
// link. Sessions are kept alive (some stop: they expire), locks taken shared or
// exclusive (waiting, tryLock, reentrant, downgrade), held and released, under
// crashes with torn writes, partitions, drops and pauses. Then everything heals
// and every client must get its locks again (liveness).
//
// The one thing added around the service is CheckedLockMachine, a wrapper of its
// group 0 sub-machine that mirrors each replica's table with a shadow LockTable
// fed the same entries (to see each entry's full outcome), and is where canaries
// inject table bugs. Checked while it runs (besides the Raft checker):
// - shadow-divergence: the service's own answer or table differs from the shadow's;
// - replica-divergence: two replicas' outcomes (or tables) differ at one index;
// - the committed history obeys the lock rules (locks-history.ts);
// - grant-not-committed: every grant a client accepted is one the committed history made.

import { assert } from '../../core/assert.js';
import { type ClientId, clientId as toClientId, fencingToken, logIndex, type SessionId, sessionId } from '../../core/ids.js';
import type { ApplyOutcome, LockCommand, LockEvent, LockMode, LockTableSnapshot } from '../../core/locks/index.js';
import { LockTable } from '../../core/locks/index.js';
import { Xoshiro128 } from '../../core/prng.js';
import type { Entry } from '../../core/raft/types.js';
import { type DsyncError, ErrorCode } from '../../protocol/errors.js';
import { Opcode } from '../../protocol/frame.js';
import { schema } from '../../protocol/index.js';
import type { NodeId } from '../../core/ids.js';
import type { EntryKind, PartSnapshotJob, SubMachine } from '../../server/raft/group0.js';
import { JournalService } from '../../server/services/journal/service.js';
import { decodeLockCommand, decodeLockTableChunks, LockService } from '../../server/services/locks/service.js';
import type { Service, ServiceContext } from '../../server/services/service.js';
import { InvariantViolation } from '../checker/raft-invariants.js';
import { failureOf } from './common.js';
import { LockHistoryChecker } from './locks-history.js';
import { runnerProfile, startSimFaults } from './runner-sim.js';
import type { RunnerFaults } from './runner-sim.js';
import { SimCluster, type SimClusterOptions, SimLink, type SimNode, type SimStats } from './sim-cluster.js';

/**
 * Deliberately broken variants (canaries) the checkers must catch, injected in
 * CheckedLockMachine (the real LockService and core/locks untouched):
 * - grant-when-blocked: a blocked tryLock is answered "granted";
 * - barge: a request is granted at once when the holders allow it, ignoring the FIFO queue;
 * - reuse-token: a grant hands out the lock's previous fencing token again.
 */
export type LockVariant = 'correct' | 'grant-when-blocked' | 'barge' | 'reuse-token';
export const lockVariants: readonly LockVariant[] = ['correct', 'grant-when-blocked', 'barge', 'reuse-token'];

export interface LockSimOptions {
  readonly variant?: LockVariant;
  /** Length of the fault phase in virtual ms. */
  readonly faultPhaseMs?: number;
  readonly trace?: boolean;
  readonly faultOverrides?: Partial<RunnerFaults>;
}

export interface LockStats {
  entries: number;
  grants: number;
  clientGrants: number;
  grantsAfterHeal: number;
  queued: number;
  wouldBlock: number;
  deadlocks: number;
  waitTimeouts: number;
  sessionsExpired: number;
  revoked: number;
  duplicates: number;
  retries: number;
  rebuilds: number;
  overlapsChecked: number;
  reentrant: number;
  upgrades: number;
  downgrades: number;
  lockDelayWakes: number;
}

export interface LockSimResult {
  readonly seed: number;
  readonly ok: boolean;
  readonly property: string;
  readonly error: string;
  readonly profile: string;
  readonly stats: SimStats;
  readonly trace: readonly string[];
  readonly lockStats: LockStats;
  readonly events: number;
  readonly virtualMs: number;
}

/** Election timeouts are 300-600 ms on the real runner; a healed cluster gets 30 of them. */
const leaderAfterHealMs = 30 * 600;
const convergeMsMax = 30_000;
/** Grants each client must get after healing. */
const grantsAfterHealMin = 2;
/** Replica tables are compared with the shadow every this many lock entries. */
const stateCompareEvery = 8;
/** A request unanswered this long is sent again (same seq) to another node. */
const requestTimeoutMs = 2_000;
/** A parked acquire with no wait limit is re-sent (same seq) after this long. */
const parkedRetryMs = 8_000;

function pick<T>(prng: Xoshiro128, items: readonly T[]): T {
  const item = items[prng.int(0, items.length - 1)];
  assert(item !== undefined, 'pick from a non-empty list');
  return item;
}

// ------------------------------------------------------------------ replicas

const noTokens: ReadonlyMap<string, number> = new Map();

/** The LockService's group 0 part, watched: a shadow table per replica, canaries, and the checks. */
class CheckedLockMachine implements SubMachine {
  private shadow = new LockTable();
  private applied = 0;

  constructor(
    private readonly sim: LockSim,
    private readonly node: SimNode,
    readonly inner: SubMachine,
  ) {}

  apply(entry: Entry, body: Uint8Array): unknown {
    const cmd = decodeLockCommand(body);
    // What only the canaries read (the table before this entry): the correct build skips building it on every apply.
    const before = cmd.kind === 'acquire' && this.sim.variant === 'barge' ? this.shadow.lockInfo(cmd.lock) : null;
    const lastTokens = this.sim.variant === 'reuse-token' ? new Map(this.shadow.listLocks().map((l) => [l.name, l.lastToken] as const)) : noTokens;
    const real = this.inner.apply(entry, body);
    const outcome = canaryOutcome(this.sim.variant, this.shadow.apply(cmd, logIndex(entry.index)), cmd, entry.index, before, lastTokens);
    const raft = this.node.group0.raft;
    this.sim.cluster.checker.onCommitted(this.node.id, entry, raft.status().term);
    this.applied++;
    if (this.sim.variant === 'correct') {
      if (JSON.stringify(real) !== JSON.stringify(outcome.result)) {
        this.sim.fail('shadow-divergence', `${this.node.id} LockService answered ${JSON.stringify(real)} at ${entry.index}, the table ${JSON.stringify(outcome.result)}`);
      }
      if (this.applied % stateCompareEvery === 0) this.compareTables(entry.index);
    }
    this.sim.onApplied(this.node, entry, cmd, outcome);
    return outcome.result;
  }

  snapshot(): unknown {
    return this.inner.snapshot();
  }

  restore(state: unknown): void {
    this.inner.restore(state);
    this.shadow = LockTable.fromSnapshot(JSON.parse(JSON.stringify(state)) as LockTableSnapshot);
    this.sim.stats.rebuilds++;
    this.compareTables(this.shadow.appliedIndex);
  }

  /** The service's snapshot in slices, written while entries apply (what nodes compact with). */
  beginSnapshot(): PartSnapshotJob {
    assert(this.inner.beginSnapshot !== undefined, 'the lock service writes its snapshot in slices');
    return this.inner.beginSnapshot();
  }

  /** Restores the service from slices, and the shadow from the same bytes decoded on their own: they must agree. */
  restoreChunks(chunks: readonly Uint8Array[]): void {
    assert(this.inner.restoreChunks !== undefined, 'the lock service restores from slices');
    this.inner.restoreChunks(chunks);
    this.shadow = decodeLockTableChunks(chunks);
    this.sim.stats.rebuilds++;
    this.compareTables(this.shadow.appliedIndex);
  }

  onLeaderChange(isLeader: boolean, leader: NodeId | ''): void {
    this.inner.onLeaderChange?.(isLeader, leader);
  }

  /** The service's table, as its snapshot shows it (what converged() compares). */
  locksState(): string {
    return JSON.stringify((this.inner.snapshot() as LockTableSnapshot).locks);
  }

  private compareTables(index: number): void {
    const real = JSON.stringify(this.inner.snapshot());
    const shadow = JSON.stringify(this.shadow.toSnapshot());
    if (real !== shadow) this.sim.fail('shadow-divergence', `${this.node.id} table after ${index} differs from the shadow:\n  ${real}\n  ${shadow}`);
  }
}

/** The LockService with its group 0 part replaced by the watched one (start/stop/handlers are the service's own). */
class CheckedLockService implements Service {
  readonly name: string;
  readonly opcodes: { readonly min: number; readonly max: number };
  readonly group0: { readonly kind: EntryKind; readonly machine: SubMachine };
  readonly machine: CheckedLockMachine;

  constructor(sim: LockSim, node: SimNode, private readonly inner: LockService) {
    this.name = inner.name;
    this.opcodes = inner.opcodes;
    this.machine = new CheckedLockMachine(sim, node, inner.group0.machine);
    this.group0 = { kind: inner.group0.kind, machine: this.machine };
  }

  start(ctx: ServiceContext): void {
    this.inner.start(ctx);
  }

  stop(): void {
    this.inner.stop();
  }
}

/** The table's outcome, or a broken version of it (canaries). */
function canaryOutcome(v: LockVariant, out: ApplyOutcome, cmd: LockCommand, index: number,
  before: ReturnType<LockTable['lockInfo']>, lastTokens: ReadonlyMap<string, number>): ApplyOutcome {
  if (v === 'correct' || out.duplicate) return out;
  const fake = (lock: string, mode: LockMode): ApplyOutcome => ({ ...out, result: { kind: 'granted', lock, token: fencingToken(index), mode, count: 1 } });
  switch (v) {
    case 'grant-when-blocked':
      if (cmd.kind === 'acquire' && out.result.kind === 'error' && out.result.code === 'WOULD_BLOCK') return fake(cmd.lock, cmd.mode);
      return out;
    case 'barge': {
      if (cmd.kind !== 'acquire' || out.result.kind !== 'queued' || before === null || before.delay !== null) return out;
      const free = before.holders.every((h) => h.session === cmd.session || (h.mode === 'shared' && cmd.mode === 'shared'));
      return free && !before.holders.some((h) => h.session === cmd.session) ? fake(cmd.lock, cmd.mode) : out;
    }
    case 'reuse-token': {
      const old = (lock: string, token: number): number => {
        const last = lastTokens.get(lock) ?? 0;
        return token === index && last > 0 ? last : token;
      };
      const result = out.result.kind === 'granted' ? { ...out.result, token: fencingToken(old(out.result.lock, out.result.token)) } : out.result;
      const events = out.events.map((e): LockEvent => (e.kind === 'granted' ? { ...e, token: fencingToken(old(e.lock, e.token)) } : e));
      return { ...out, result, events };
    }
  }
}

interface Reference {
  readonly digest: string;
  readonly node: string;
}

/** The checks over every replica, the committed history and the clients. */
export class LockSim {
  readonly history = new LockHistoryChecker();
  readonly stats: LockStats = {
    entries: 0, grants: 0, clientGrants: 0, grantsAfterHeal: 0, queued: 0, wouldBlock: 0, deadlocks: 0, waitTimeouts: 0,
    sessionsExpired: 0, revoked: 0, duplicates: 0, retries: 0, rebuilds: 0, overlapsChecked: 0, reentrant: 0, upgrades: 0,
    downgrades: 0, lockDelayWakes: 0,
  };
  cluster!: SimCluster;
  /** Each node's current watched lock machine (a new one per incarnation). */
  readonly machines = new Map<number, CheckedLockMachine>();
  private readonly reference = new Map<number, Reference>();
  private historyIndex = 0;
  private readonly clientGrants: { client: string; session: SessionId; lock: string; token: number }[] = [];

  constructor(readonly variant: LockVariant) {}

  fail(property: string, detail: string): never {
    throw new InvariantViolation(property, detail);
  }

  /** The services a node runs, as server/main.ts lists them, with the lock service watched. */
  services(node: SimNode): Service[] {
    const locks = new CheckedLockService(this, node, new LockService());
    this.machines.set(node.idx, locks.machine);
    if (node.incarnation > 1) this.stats.rebuilds++;
    return [new JournalService(), locks];
  }

  onApplied(node: SimNode, entry: Entry, cmd: LockCommand, out: ApplyOutcome): void {
    const digest = JSON.stringify([entry.term, cmd, out]);
    const ref = this.reference.get(entry.index);
    if (ref !== undefined) {
      if (ref.digest !== digest) this.fail('replica-divergence', `${node.id} applied at index ${entry.index}:\n    ${digest}\n  but ${ref.node} applied:\n    ${ref.digest}`);
      return;
    }
    if (entry.index <= this.historyIndex) {
      this.fail('replica-divergence', `${node.id} applies index ${entry.index} that no replica applied before, below the history's ${this.historyIndex}`);
    }
    this.reference.set(entry.index, { digest, node: node.id });
    this.historyIndex = entry.index;
    this.onCommittedHistory(entry.index, cmd, out);
  }

  /** The committed history, once, in order: the model checks it. */
  private onCommittedHistory(index: number, cmd: LockCommand, out: ApplyOutcome): void {
    this.stats.entries++;
    const before = this.history.grantsCount;
    this.history.onEntry(index, cmd, out);
    this.stats.grants += this.history.grantsCount - before;
    this.stats.overlapsChecked = this.history.overlapsChecked;
    if (out.duplicate) this.stats.duplicates++;
    const r = out.result;
    if (r.kind === 'queued') this.stats.queued++;
    if (r.kind === 'error' && r.code === 'WOULD_BLOCK') this.stats.wouldBlock++;
    if (r.kind === 'error' && r.code === 'DEADLOCK') this.stats.deadlocks++;
    if (cmd.kind === 'expireSessions' && r.kind === 'expired') this.stats.sessionsExpired += r.sessions.length;
    if (!out.duplicate && cmd.kind === 'acquire' && r.kind === 'granted' && r.count > 1) {
      if (r.token === index) this.stats.upgrades++;
      else this.stats.reentrant++;
    }
    if (!out.duplicate && r.kind === 'downgraded') this.stats.downgrades++;
    if (cmd.kind === 'wakeDelayed' && r.kind === 'ok') this.stats.lockDelayWakes++;
    for (const ev of out.events) {
      if (ev.kind === 'granted' && ev.count > 1) this.stats.upgrades++;
      if (ev.kind === 'revoked') this.stats.revoked++;
      if (ev.kind === 'failed' && ev.code === 'TIMEOUT') this.stats.waitTimeouts++;
    }
    if (this.cluster.traceEnabled && (cmd.kind !== 'keepAlive' || r.kind !== 'ok')) {
      this.cluster.note(`apply ${index} ${cmd.kind}${'lock' in cmd ? ` ${cmd.lock}` : ''}${'session' in cmd ? ` s${cmd.session}` : ''} -> ${JSON.stringify(r)}${out.events.length > 0 ? ` events ${JSON.stringify(out.events)}` : ''}`);
    }
  }

  /** A client accepted a grant: it must be in the committed history at the index of its token. */
  clientGrant(client: string, session: SessionId, lock: string, token: number): void {
    this.stats.clientGrants++;
    this.clientGrants.push({ client, session, lock, token });
  }

  /** Checks client-accepted grants the committed history has reached. */
  checkClientGrants(all: boolean): void {
    const reached = this.history.appliedIndex;
    let kept = 0;
    for (const g of this.clientGrants) {
      if (!all && g.token > reached) {
        this.clientGrants[kept++] = g;
        continue;
      }
      const found = (this.history.grantsAt.get(g.token) ?? []).some((h) => h.session === g.session && h.lock === g.lock && h.token === g.token);
      if (!found) {
        this.fail('grant-not-committed', `${g.client} was granted ${g.lock} with token ${g.token} for session ${g.session}, but the committed history made no such grant (committed up to ${reached})`);
      }
    }
    this.clientGrants.length = kept;
  }

  /** Every replica is up, applied the same index and holds the same table. */
  converged(): boolean {
    let state: string | null = null;
    let applied = -1;
    for (const node of this.cluster.nodes) {
      if (!node.up) return false;
      const a = node.group0.applied;
      if (applied >= 0 && a !== applied) return false;
      applied = a;
      const m = this.machines.get(node.idx);
      if (m === undefined) return false;
      const s = m.locksState();
      if (state !== null && s !== state) return false;
      state = s;
    }
    return true;
  }

  /** The model's holders agree with a replica's table. */
  checkModelAgainstTable(): void {
    const m = this.machines.get(0);
    if (m === undefined) return;
    const table = LockTable.fromSnapshot(JSON.parse(JSON.stringify(m.inner.snapshot())) as LockTableSnapshot);
    const view = table
      .listLocks()
      .filter((l) => l.holders.length > 0)
      .map((l) => `${l.name}=${l.holders.map((h) => `${h.session}:${h.mode}x${h.count}@${h.token}`).sort().join(',')}`)
      .sort()
      .join(' ');
    if (view !== this.history.holdersView()) this.fail('model', `table holders "${view}" but the history says "${this.history.holdersView()}"`);
  }
}

// ------------------------------------------------------------------ clients

type LockFields = Omit<Parameters<typeof schema.LockRequest.create>[0] & object, 'clientId' | 'seq'>;
type LockReply = ReturnType<typeof schema.LockReply.decode>;
/** A final answer: the reply, or an error the lock service gave (never NOT_LEADER/UNAVAILABLE: those are retried). */
type Answer = { readonly ok: true; readonly reply: LockReply } | { readonly ok: false; readonly code: string; readonly message: string };

/** Errors a lane retries (same seq); every other error is the request's answer. */
const retriedCodes = new Set<string>([ErrorCode.NOT_LEADER, ErrorCode.UNAVAILABLE, ErrorCode.TIMEOUT]);

/** One request lane (clientId + seq, one request in flight) over a link, retried with the same seq until answered. */
class Lane {
  private seq = 0;
  private hint: number;
  private link: SimLink | null = null;
  private frameId = 0;
  private pending: {
    readonly opcode: number;
    readonly payload: Uint8Array;
    readonly what: string;
    readonly timeoutMs: number;
    readonly onAnswer: (a: Answer) => void;
    frameId: number;
    sentAtMs: number;
    attempt: number;
  } | null = null;

  constructor(
    private readonly sim: LockSim,
    readonly clientId: ClientId,
    private readonly prng: Xoshiro128,
  ) {
    this.hint = prng.int(0, sim.cluster.nodes.length - 1);
  }

  get busy(): boolean {
    return this.pending !== null;
  }

  describe(): string {
    const p = this.pending;
    return p === null ? 'idle' : `${p.what}#${this.seq} -> n${this.hint + 1} attempt ${p.attempt}`;
  }

  send(opcode: number, fields: LockFields, timeoutMs: number, onAnswer: (a: Answer) => void): void {
    assert(this.pending === null, 'one request per lane');
    this.seq++;
    const payload = schema.LockRequest.encode({ ...fields, clientId: this.clientId, seq: this.seq }).finish();
    this.pending = { opcode, payload, what: `${opcodeNameOf(opcode)}${fields.lock === undefined ? '' : ` ${fields.lock}`}`, timeoutMs, onAnswer, frameId: 0, sentAtMs: 0, attempt: 0 };
    this.transmit();
  }

  private connect(): SimLink {
    const c = this.sim.cluster;
    const node = c.node(this.hint);
    if (this.link !== null && !this.link.closed && this.link.node === node) return this.link;
    this.link?.close();
    const link: SimLink = new SimLink(c, node, {
      onReply: (id, _op, payload) => this.onReply(id, payload),
      onError: (id, _op, err) => this.onError(id, err),
      onPush: () => {},
      onClosed: () => {
        if (this.link === link && this.pending !== null) this.retry(-1);
      },
    }, 5);
    this.link = link;
    return link;
  }

  private transmit(): void {
    const p = this.pending;
    assert(p !== null, 'transmit a pending request');
    p.frameId = ++this.frameId;
    p.sentAtMs = this.sim.cluster.nowMs;
    if (++p.attempt > 1) this.sim.stats.retries++;
    this.connect().request(p.opcode, p.frameId, p.payload);
  }

  /** Sends the same request (same seq) again: to `hint`, else to another node. */
  private retry(hint: number): void {
    const n = this.sim.cluster.nodes.length;
    this.hint = hint >= 0 ? hint : (this.hint + this.prng.int(1, n - 1)) % n;
    this.transmit();
  }

  step(): void {
    const p = this.pending;
    if (p === null) return;
    if (this.sim.cluster.nowMs - p.sentAtMs >= p.timeoutMs) this.retry(-1);
  }

  private onReply(frameId: number, payload: Uint8Array): void {
    const p = this.pending;
    if (p === null || p.frameId !== frameId) return;
    this.pending = null;
    p.onAnswer({ ok: true, reply: schema.LockReply.decode(payload) });
  }

  private onError(frameId: number, err: DsyncError): void {
    const p = this.pending;
    if (p === null || p.frameId !== frameId) return;
    if (err.code === ErrorCode.INTERNAL) this.sim.fail('client-protocol', `${this.clientId}: INTERNAL answer to ${p.what}: ${err.message}`);
    if (!retriedCodes.has(err.code)) {
      this.pending = null;
      p.onAnswer({ ok: false, code: err.code, message: err.message });
      return;
    }
    const c = this.sim.cluster;
    const leader = err.code === ErrorCode.NOT_LEADER ? c.nodes.findIndex((nd) => nd.id === err.leaderId) : -1;
    if (leader >= 0 && leader !== this.hint) {
      this.retry(leader);
      return;
    }
    // Nobody known to lead: back off a little, then try another node.
    p.sentAtMs = c.nowMs - p.timeoutMs + this.prng.int(20, 200);
  }
}

function opcodeNameOf(opcode: number): string {
  return Object.entries(Opcode).find(([, v]) => v === opcode)?.[0] ?? String(opcode);
}

interface ClientHold {
  session: SessionId;
  mode: LockMode;
  count: number;
  untilMs: number;
}

/** A lock client: one session kept alive on its own lane, lock requests on another (client/locks lanes). */
class LockClient {
  private readonly main: Lane;
  private readonly ka: Lane;
  private session: SessionId | null = null;
  private kaDueMs = 0;
  private nextActMs = 0;
  private readonly holds = new Map<string, ClientHold>();
  liveness = false;
  grantsAfterHeal = 0;

  constructor(
    private readonly sim: LockSim,
    readonly name: string,
    private readonly prng: Xoshiro128,
    private readonly locks: readonly string[],
    private readonly ttlMs: number,
    private readonly lockDelayMs: number,
    public keepsAlive: boolean,
  ) {
    this.main = new Lane(sim, toClientId(`${name}/0`), prng);
    this.ka = new Lane(sim, toClientId(`${name}/1`), prng);
  }

  get done(): boolean {
    return this.grantsAfterHeal >= grantsAfterHealMin && this.holds.size === 0 && !this.main.busy;
  }

  describe(): string {
    return `${this.name}: session ${this.session ?? '-'} holds [${[...this.holds.keys()].join(',')}] grantsAfterHeal ${this.grantsAfterHeal} main ${this.main.describe()} ka ${this.ka.describe()}`;
  }

  private now(): number {
    return this.sim.cluster.nowMs;
  }

  private lost(session: SessionId): void {
    if (this.session !== session) return;
    this.sim.cluster.note(`${this.name} lost session ${session}`);
    this.session = null;
    this.holds.clear();
  }

  private unexpected(what: string, a: Answer): never {
    this.sim.fail('client-protocol', `${this.name}: unexpected answer to ${what}: ${JSON.stringify(a.ok ? a.reply : a)}`);
  }

  step(): void {
    this.main.step();
    this.ka.step();
    const session = this.session;
    if (session !== null && this.keepsAlive && !this.ka.busy && this.now() >= this.kaDueMs) {
      this.ka.send(Opcode.SessionKeepAlive, { session }, requestTimeoutMs, (a) => {
        if (a.ok) this.kaDueMs = this.now() + Math.floor(this.ttlMs / 3);
        else if (a.code === ErrorCode.SESSION_EXPIRED) this.lost(session);
        else this.unexpected('keepAlive', a);
      });
    }
    if (!this.main.busy && this.now() >= this.nextActMs) this.act();
  }

  private backoff(msMax: number): void {
    this.nextActMs = this.now() + this.prng.int(1, msMax);
  }

  private act(): void {
    const session = this.session;
    if (session === null) {
      this.main.send(Opcode.SessionOpen, { ttlMs: this.ttlMs, lockDelayMs: this.lockDelayMs }, requestTimeoutMs, (a) => {
        if (!a.ok) this.unexpected('openSession', a);
        this.session = sessionId(Number(a.reply.session));
        this.kaDueMs = this.now() + Math.floor(this.ttlMs / 3);
        this.sim.cluster.note(`${this.name} opened session ${this.session}`);
      });
      return;
    }
    const now = this.now();
    const first = [...this.holds].find(([, h]) => h.untilMs <= now);
    if (first !== undefined) {
      const [lock, h] = first;
      if (h.mode === 'exclusive' && !this.liveness && this.prng.next() < 0.15) {
        this.main.send(Opcode.LockDowngrade, { session, lock }, requestTimeoutMs, (a) => {
          if (a.ok) {
            h.mode = 'shared';
            h.untilMs = this.now() + this.prng.int(10, 200);
          } else if (a.code === ErrorCode.NOT_FOUND) this.holds.delete(lock);
          else if (a.code === ErrorCode.SESSION_EXPIRED) this.lost(session);
          else this.unexpected('downgrade', a);
        });
        return;
      }
      this.main.send(Opcode.LockRelease, { session, lock }, requestTimeoutMs, (a) => {
        if (a.ok) {
          if (a.reply.count === 0) this.holds.delete(lock);
          else h.count = a.reply.count;
        } else if (a.code === ErrorCode.NOT_FOUND) this.holds.delete(lock); // revoked (forceRelease)
        else if (a.code === ErrorCode.SESSION_EXPIRED) this.lost(session);
        else this.unexpected('release', a);
        this.backoff(60);
      });
      return;
    }
    if (this.liveness && this.grantsAfterHeal >= grantsAfterHealMin) return;
    if (this.holds.size >= 2 || (this.holds.size === 1 && this.prng.next() < 0.6)) {
      this.backoff(30);
      return;
    }
    if (!this.liveness && this.holds.size === 0 && this.prng.next() < 0.03) {
      this.main.send(Opcode.SessionClose, { session }, requestTimeoutMs, (a) => {
        if (a.ok || a.code === ErrorCode.SESSION_EXPIRED) this.lost(session);
        else this.unexpected('closeSession', a);
      });
      return;
    }
    let lock = pick(this.prng, this.locks);
    if (this.holds.has(lock) && this.prng.next() < 0.5) lock = pick(this.prng, this.locks);
    const held = this.holds.get(lock);
    const mode: LockMode = this.prng.next() < 0.6 ? 'exclusive' : 'shared';
    const wait = this.liveness || this.prng.next() < 0.7;
    const waitMs = this.liveness || !wait ? 0 : pick(this.prng, [0, 150, 600]);
    // As client/locks: a wait without a limit is not timed out by the client (it is re-sent now and then).
    const timeoutMs = !wait ? requestTimeoutMs : waitMs > 0 ? waitMs + requestTimeoutMs : parkedRetryMs;
    const requestId = `${this.name}:${this.prng.int(0, 0x7fffffff)}`;
    this.main.send(Opcode.LockAcquire, { session, lock, exclusive: mode === 'exclusive', requestId, wait, waitMs }, timeoutMs, (a) => {
      if (a.ok) {
        const token = Number(a.reply.token);
        const grantedMode: LockMode = a.reply.exclusive ? 'exclusive' : 'shared';
        this.sim.clientGrant(this.name, session, lock, token);
        if (this.session !== session) return;
        if (this.liveness) {
          this.grantsAfterHeal++;
          this.sim.stats.grantsAfterHeal++;
        }
        const h = this.holds.get(lock);
        if (h !== undefined) {
          h.count = a.reply.count;
          h.mode = grantedMode;
        } else this.holds.set(lock, { session, mode: grantedMode, count: a.reply.count, untilMs: this.now() + this.prng.int(5, this.liveness ? 80 : 300) });
        return;
      }
      switch (a.code) {
        case ErrorCode.WOULD_BLOCK:
        case ErrorCode.LOCK_TIMEOUT:
        case ErrorCode.CANCELLED:
        case ErrorCode.DEADLOCK:
          this.backoff(held === undefined ? 80 : 20);
          return;
        case ErrorCode.SESSION_EXPIRED:
          this.lost(session);
          return;
        default:
          this.unexpected(`acquire ${lock} ${mode}`, a);
      }
    });
  }
}

/** An operator who now and then force-releases a lock (revoking its holders). */
class Admin {
  private readonly lane: Lane;
  private nextMs: number;
  active = true;

  constructor(
    private readonly sim: LockSim,
    private readonly prng: Xoshiro128,
    private readonly locks: readonly string[],
  ) {
    this.lane = new Lane(sim, toClientId('admin'), prng);
    this.nextMs = prng.int(200, 1000);
  }

  step(): void {
    this.lane.step();
    if (!this.active || this.lane.busy || this.sim.cluster.nowMs < this.nextMs) return;
    this.nextMs = this.sim.cluster.nowMs + this.prng.int(200, 1000);
    const lock = pick(this.prng, this.locks);
    this.lane.send(Opcode.LockForceRelease, { lock }, requestTimeoutMs, (a) => {
      if (!a.ok && a.code !== ErrorCode.NOT_FOUND) this.sim.fail('client-protocol', `forceRelease answered ${JSON.stringify(a)}`);
    });
  }
}

// ------------------------------------------------------------------ one seed

export async function runLockSeed(seed: number, opts: LockSimOptions = {}): Promise<LockSimResult> {
  const variant = opts.variant ?? 'correct';
  const sim = new LockSim(variant);
  const profiled = runnerProfile(seed, {});
  const faults: RunnerFaults = { ...profiled.faults, ...opts.faultOverrides };
  const clusterOpts: SimClusterOptions = { ...profiled.cluster, services: (node) => sim.services(node) };
  const p = new Xoshiro128((seed * 40503) ^ 0x10c45eed);
  const clientsCount = p.int(2, 5);
  const locks = ['a', 'b', 'c'].slice(0, p.int(1, 3));
  const zombieProb = pick(p, [0, 0.25, 0.5]);
  const lockDelayProb = pick(p, [0, 0.3]);
  const admin = p.next() < 0.3;
  const faultPhaseMs = opts.faultPhaseMs ?? 6_000;
  const n = clusterOpts.network;
  const profile =
    `nodes=${clusterOpts.nodeCount} drop=${n.dropProb} dup=${n.dupProb} delay<=${n.delayMsMax}ms fsync<=${clusterOpts.fsyncMsMax}ms ` +
    `skew=${clusterOpts.clockSkew} compact=${clusterOpts.snapshotEntries ?? 'default'} ` +
    `faults=[${(['crash', 'partition', 'oneWay', 'pause'] as const).filter((k) => faults[k]).join(',')}]/${faults.faultIntervalMs}ms ` +
    `clients=${clientsCount} locks=${locks.join('')} zombies=${zombieProb} lockDelay=${lockDelayProb} admin=${admin} variant=${variant}`;

  const c = new SimCluster(clusterOpts);
  sim.cluster = c;
  c.traceEnabled = opts.trace === true;
  const clients: LockClient[] = [];
  for (let i = 0; i < clientsCount; i++) {
    const ttlMs = p.int(1_000, 2_000);
    const lockDelayMs = p.next() < lockDelayProb ? p.int(50, 400) : 0;
    const client = new LockClient(sim, `c${i}`, new Xoshiro128(p.int(0, 0x7fffffff)), locks, ttlMs, lockDelayMs, p.next() >= zombieProb);
    clients.push(client);
    const intervalMs = p.int(5, 25);
    const loop = (): void => {
      client.step();
      c.world.at(intervalMs, loop);
    };
    c.world.at(p.int(0, intervalMs), loop);
  }
  const operator = admin ? new Admin(sim, new Xoshiro128(p.int(0, 0x7fffffff)), locks) : null;
  if (operator !== null) {
    const loop = (): void => {
      operator.step();
      c.world.at(20, loop);
    };
    c.world.at(20, loop);
  }
  const checkLoop = (): void => {
    sim.checkClientGrants(false);
    c.world.at(100, checkLoop);
  };
  c.world.at(100, checkLoop);
  let faultsOn = true;
  startSimFaults(c, new Xoshiro128(seed ^ 0x7a7a7a7a), faults, () => faultsOn);

  const result = (property: string, error: string): LockSimResult => ({
    seed, ok: property === '', property, error, profile, stats: c.statsNow(), trace: c.trace, lockStats: { ...sim.stats },
    events: c.world.eventsRun, virtualMs: c.nowMs,
  });
  try {
    await c.world.runMs(faultPhaseMs);
    faultsOn = false;
    c.healAll();
    if (operator !== null) operator.active = false;
    for (const cl of clients) {
      cl.keepsAlive = true;
      cl.liveness = true;
    }
    if (!(await c.world.runUntil(() => c.stableLeader() !== null, leaderAfterHealMs))) {
      return result('liveness', `no stable leader within ${leaderAfterHealMs}ms of healing`);
    }
    const done = (): boolean => clients.every((cl) => cl.done) && sim.converged();
    if (!(await c.world.runUntil(done, convergeMsMax))) {
      sim.checkClientGrants(false);
      return result('liveness', `clients not done ${convergeMsMax}ms after healing: ${clients.map((cl) => cl.describe()).join('; ')}`);
    }
    sim.checkClientGrants(true);
    sim.checkModelAgainstTable();
    return result('', '');
  } catch (err) {
    const failure = failureOf(err);
    return result(failure.property, failure.error);
  }
}
