// The lock manager on the simulated Raft cluster (VOPR style, one seed replays a
// run): every replica applies the committed lock commands (JSON entries) to its
// own core/locks LockTable; the leader stamps nowMs on its own clock, runs the
// LeaseClock (expireSessions / wakeDelayed proposals) and times out waits, as
// server/locks.ts does. Clients open sessions, keep them alive (some stop: their
// sessions expire), acquire shared/exclusive locks from a small set (waiting,
// tryLock, nested, reentrant, downgrade), hold, release, and retry with the same
// clientId+seq after a timeout or a leader change - under the cluster's crashes,
// partitions, message loss and clock faults. Then everything heals and every
// client must get its locks again (liveness).
//
// Checked while it runs (besides the Raft checker on every step):
// - every replica's lock outcome (and table state) at each position of the
//   applied log is identical (replica-divergence), including tables rebuilt
//   after a crash or a snapshot and restored from a JSON LockTable snapshot;
// - an applied entry is the committed one at its index (applied-uncommitted);
// - the committed history obeys the lock rules (locks-history.ts);
// - every grant a client accepted is a grant of the committed history at the
//   index of its token (grant-not-committed): no grant made by a minority.

import { assert } from '../../core/assert.js';
import { clientId as toClientId, fencingToken, logIndex } from '../../core/ids.js';
import type { ClientId, SessionId } from '../../core/ids.js';
import { LeaseClock, LockTable } from '../../core/locks/index.js';
import type { ApplyOutcome, LockCommand, LockEvent, LockMode, LockResult, LockTableSnapshot } from '../../core/locks/index.js';
import { Xoshiro128 } from '../../core/prng.js';
import { EntryType, Role } from '../../core/raft/types.js';
import type { ConfChange, Message, ProposeOutcome, RaftNode, RaftStatus, Ready } from '../../core/raft/types.js';
import { InvariantViolation } from '../checker/raft-invariants.js';
import { Cluster } from './cluster.js';
import { failureOf, seedOutcome } from './common.js';
import type { SeedOutcome } from './common.js';
import type { ClusterOptions, RaftFactory, StateMachine } from './cluster.js';
import { LockHistoryChecker } from './locks-history.js';
import { realRaft } from './raft-factory.js';
import { healAll, profileFor, startFaults } from './swarm.js';
import type { FaultProfile, FaultState } from './swarm.js';

/**
 * Deliberately broken variants (canaries) the checkers must catch:
 * - apply-uncommitted: a leader applies its own entries when it appends them,
 *   before they commit, and answers clients from that;
 * - grant-when-blocked: a table wrapper that answers a blocked tryLock "granted";
 * - barge: a table wrapper that grants a request at once when the holders allow
 *   it, ignoring the FIFO queue;
 * - reuse-token: a table wrapper that hands out the lock's previous token again.
 */
export type LockVariant = 'correct' | 'apply-uncommitted' | 'grant-when-blocked' | 'barge' | 'reuse-token';
export const lockVariants: readonly LockVariant[] = ['correct', 'apply-uncommitted', 'grant-when-blocked', 'barge', 'reuse-token'];

export interface LockSimOptions {
  readonly variant?: LockVariant;
  /** Length of the fault phase in virtual ms. */
  readonly faultPhaseMs?: number;
  readonly trace?: boolean;
  /** Check at apply time that the entry is the committed one (canaries turn it off to show the end-to-end checks). */
  readonly checkCommittedAtApply?: boolean;
  readonly clusterOverrides?: Partial<ClusterOptions>;
  readonly faultOverrides?: Partial<FaultProfile>;
  readonly raftFactory?: RaftFactory;
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

export interface LockSimResult extends SeedOutcome {
  readonly lockStats: LockStats;
  readonly virtualMs: number;
}

/** How often a leader checks its lease clock (server/locks.ts uses the same). */
const leaseCheckIntervalMs = 50;
/** A leader re-proposes an expiry or wake no sooner than this (re-proposing is harmless). */
const reproposeMsMin = 150;
/** Replicas' clocks differ from the virtual clock by up to this much. */
const clockOffsetMsMax = 300;
/** After healing: a stable leader within this, then every client done within convergeMsMax. */
const leaderAfterHealElections = 30;
const convergeMsMax = 30_000;
/** Grants each client must get after healing. */
const grantsAfterHealMin = 2;
/** Table state (toSnapshot) is compared across replicas at every this-many applied entries. */
const stateCompareEvery = 8;
/** A refused request with no leader known is retried after up to this long. */
const refusedBackoffMsMax = 50;

type ClientBody =
  | Omit<Extract<LockCommand, { kind: 'openSession' }>, 'nowMs'>
  | Omit<Extract<LockCommand, { kind: 'keepAlive' }>, 'nowMs'>
  | Omit<Extract<LockCommand, { kind: 'closeSession' }>, 'nowMs'>
  | Omit<Extract<LockCommand, { kind: 'acquire' }>, 'nowMs'>
  | Omit<Extract<LockCommand, { kind: 'release' }>, 'nowMs'>
  | Omit<Extract<LockCommand, { kind: 'downgrade' }>, 'nowMs'>
  | Omit<Extract<LockCommand, { kind: 'forceRelease' }>, 'nowMs'>;

const mailKey = (client: string, seq: number): string => `${client}#${seq}`;

// ------------------------------------------------------------------ replicas

/** One replica's lock service: its table (applied from its StateMachine's entries) and leader-side state. */
interface Replica {
  table: LockTable;
  /** The cluster StateMachine object this replica follows; a new one (crash, snapshot) means rebuild. */
  readonly sm: StateMachine;
  /** Entries of sm consumed. */
  cursor: number;
  readonly lease: LeaseClock;
  isLeader: boolean;
  leaderTerm: number;
  /** What this replica answers clients: clientId#seq -> latest result (replies and pushed grants/failures). */
  readonly mailbox: Map<string, LockResult>;
  /** Requests this replica accepted as leader: clientId#seq -> waitMs. */
  readonly parked: Map<string, number>;
  readonly timersArmed: Set<string>;
  lastExpiryProposalMs: number;
  readonly wakeProposedMs: Map<string, number>;
}

interface Reference {
  readonly index: number;
  readonly digest: string;
  readonly node: string;
  state: string | null;
}

/** A RaftNode that tells the harness when a Ready is taken and after each advance (entries applied). */
class HookedRaft implements RaftNode {
  constructor(
    private readonly inner: RaftNode,
    private readonly onReady: (rd: Ready) => void,
    private readonly onAdvance: () => void,
  ) {}
  tick(): void {
    this.inner.tick();
  }
  step(msg: Message): void {
    this.inner.step(msg);
  }
  propose(data: Uint8Array): ProposeOutcome {
    return this.inner.propose(data);
  }
  proposeConfChange(change: ConfChange): ProposeOutcome {
    return this.inner.proposeConfChange(change);
  }
  readIndex(context: Uint8Array): boolean {
    return this.inner.readIndex(context);
  }
  transferLeadership(to: Parameters<RaftNode['transferLeadership']>[0]): void {
    this.inner.transferLeadership(to);
  }
  hasReady(): boolean {
    return this.inner.hasReady();
  }
  ready(): Ready {
    const rd = this.inner.ready();
    this.onReady(rd);
    return rd;
  }
  advance(): void {
    this.inner.advance();
    this.onAdvance();
  }
  compact(index: Parameters<RaftNode['compact']>[0], data: Uint8Array): void {
    this.inner.compact(index, data);
  }
  status(): RaftStatus {
    return this.inner.status();
  }
}

function decodeCommand(payload: string): LockCommand {
  const parsed: unknown = JSON.parse(payload);
  assert(typeof parsed === 'object' && parsed !== null && typeof (parsed as { kind?: unknown }).kind === 'string', 'lock entry shape');
  return parsed as LockCommand;
}

function pick<T>(prng: Xoshiro128, items: readonly T[]): T {
  const item = items[prng.int(0, items.length - 1)];
  assert(item !== undefined, 'pick from a non-empty list');
  return item;
}

/** The lock service over the cluster: replicas, leader duties, the checks. */
export class LockSim {
  readonly history = new LockHistoryChecker();
  readonly stats: LockStats = {
    entries: 0,
    grants: 0,
    clientGrants: 0,
    grantsAfterHeal: 0,
    queued: 0,
    wouldBlock: 0,
    deadlocks: 0,
    waitTimeouts: 0,
    sessionsExpired: 0,
    revoked: 0,
    duplicates: 0,
    retries: 0,
    rebuilds: 0,
    overlapsChecked: 0,
    reentrant: 0,
    upgrades: 0,
    downgrades: 0,
    lockDelayWakes: 0,
  };
  cluster!: Cluster;
  private readonly replicas: (Replica | null)[] = [];
  private readonly clockOffsetMs: number[] = [];
  /** The committed history by position in the applied payload sequence. */
  private readonly reference: Reference[] = [];
  private readonly referenceByIndex = new Map<number, Reference>();
  /** Speculative (uncommitted) applies waiting for the committed entry at their index. */
  private readonly speculative = new Map<number, { digest: string; node: string }>();
  /** Grants clients accepted, checked against the committed history. */
  private readonly clientGrants: { client: string; session: SessionId; lock: string; token: number }[] = [];

  constructor(
    readonly variant: LockVariant,
    private readonly checkCommittedAtApply: boolean,
  ) {}

  /** A RaftFactory whose nodes call back into this sim (the cluster is attached right after). */
  factory(inner: RaftFactory): RaftFactory {
    return (config, persisted) => {
      const idx = Number(config.id.slice(1)) - 1;
      return new HookedRaft(
        inner(config, persisted),
        (rd) => this.onReady(idx, rd),
        () => this.sync(idx),
      );
    };
  }

  attach(cluster: Cluster, prng: Xoshiro128): void {
    this.cluster = cluster;
    for (let i = 0; i < cluster.nodes.length; i++) {
      this.replicas.push(null);
      this.clockOffsetMs.push(prng.int(-clockOffsetMsMax, clockOffsetMsMax));
      const loop = (): void => {
        this.leaderDuties(i);
        cluster.schedule(leaseCheckIntervalMs, loop);
      };
      cluster.schedule(prng.int(1, leaseCheckIntervalMs), loop);
    }
  }

  fail(property: string, detail: string): never {
    throw new InvariantViolation(property, detail);
  }

  /** Node idx's wall clock: the virtual clock plus a fixed offset (leaders disagree about time). */
  clock(idx: number): number {
    return this.cluster.nowMs + (this.clockOffsetMs[idx] ?? 0);
  }

  // ---------------------------------------------------------------- apply

  /** Brings replica idx up to its StateMachine (rebuilding it if the node restarted or took a snapshot). */
  replica(idx: number): Replica | null {
    const node = this.cluster.node(idx);
    if (node.raft === null) {
      this.replicas[idx] = null;
      return null;
    }
    let r = this.replicas[idx] ?? null;
    if (r === null || r.sm !== node.sm) {
      r = {
        table: new LockTable(),
        sm: node.sm,
        cursor: 0,
        lease: new LeaseClock(),
        isLeader: false,
        leaderTerm: -1,
        mailbox: new Map(),
        parked: new Map(),
        timersArmed: new Set(),
        lastExpiryProposalMs: -Infinity,
        wakeProposedMs: new Map(),
      };
      this.replicas[idx] = r;
      if (node.sm.entries.length > 0) {
        this.stats.rebuilds++;
        this.consume(idx, r);
        // A rebuilt table also goes through a JSON LockTable snapshot round trip.
        const snap = JSON.stringify(r.table.toSnapshot());
        r.table = LockTable.fromSnapshot(JSON.parse(snap) as LockTableSnapshot);
        const again = JSON.stringify(r.table.toSnapshot());
        if (again !== snap) this.fail('snapshot-roundtrip', `${node.id}: LockTable snapshot at ${r.table.appliedIndex} does not round-trip`);
        return r;
      }
    }
    this.consume(idx, r);
    return r;
  }

  private sync(idx: number): void {
    const r = this.replica(idx);
    if (r !== null) this.syncLeadership(idx, r);
  }

  private consume(idx: number, r: Replica): void {
    const entries = r.sm.entries;
    while (r.cursor < entries.length) {
      const item = entries[r.cursor];
      assert(item !== undefined, 'entry in range');
      const position = r.cursor;
      r.cursor++;
      const [index, term, payload] = item;
      if (index <= r.table.appliedIndex) {
        // Only a speculating (broken) replica has applied ahead of its log.
        assert(this.variant === 'apply-uncommitted', `replica ${idx} re-applies index ${index}`);
        continue;
      }
      this.applyEntry(idx, r, index, term, payload, position);
    }
  }

  /** The apply-uncommitted canary: a leader applies entries as it appends them. */
  private onReady(idx: number, rd: Ready): void {
    if (this.variant !== 'apply-uncommitted') return;
    const node = this.cluster.node(idx);
    if (node.raft === null || node.raft.status().role !== Role.Leader) return;
    const r = this.replica(idx);
    if (r === null) return;
    for (const e of rd.entries) {
      if (e.type !== EntryType.Normal || e.data.length === 0 || e.index <= r.table.appliedIndex) continue;
      this.applyEntry(idx, r, e.index, e.term, new TextDecoder().decode(e.data), -1);
    }
  }

  private applyEntry(idx: number, r: Replica, index: number, term: number, payload: string, position: number): void {
    const nodeName = this.cluster.node(idx).id;
    if (this.checkCommittedAtApply) {
      const committed = this.cluster.checker.committedAt(index);
      const key = `${term}/${EntryType.Normal}/${payload}`;
      if (committed !== key) this.fail('applied-uncommitted', `${nodeName} applies "${key}" at ${index}; committed there: ${committed ?? 'nothing'}`);
    }
    const cmd = decodeCommand(payload);
    const out = this.applyTable(r.table, cmd, index);
    const digest = JSON.stringify([term, payload, out]);
    if (position < 0) {
      const ref = this.referenceByIndex.get(index);
      if (ref !== undefined && ref.digest !== digest) this.divergence(nodeName, index, ref.node, ref.digest, digest);
      if (ref === undefined) this.speculative.set(index, { digest, node: nodeName });
    } else if (position < this.reference.length) {
      const ref = this.reference[position]!;
      if (ref.index !== index || ref.digest !== digest) this.divergence(nodeName, index, ref.node, ref.digest, digest);
      if (position % stateCompareEvery === 0) {
        const state = JSON.stringify(r.table.toSnapshot());
        if (ref.state === null) ref.state = state;
        else if (ref.state !== state) this.fail('replica-divergence', `${nodeName} table state after index ${index} differs from ${ref.node}'s:\n  ${ref.state}\n  ${state}`);
      }
    } else {
      if (position > this.reference.length) {
        this.fail('replica-divergence', `${nodeName} applies index ${index} at position ${position} of the log but skipped committed entries before it (${this.reference.length} known)`);
      }
      const ref: Reference = { index, digest, node: nodeName, state: position % stateCompareEvery === 0 ? JSON.stringify(r.table.toSnapshot()) : null };
      this.reference.push(ref);
      this.referenceByIndex.set(index, ref);
      const spec = this.speculative.get(index);
      if (spec !== undefined && spec.digest !== digest) this.divergence(spec.node, index, nodeName, digest, spec.digest);
      this.speculative.delete(index);
      this.onCommittedHistory(index, cmd, out);
    }
    this.serve(idx, r, index, cmd, out);
  }

  private divergence(node: string, index: number, refNode: string, refDigest: string, digest: string): never {
    this.fail('replica-divergence', `${node} applied at index ${index}:\n    ${digest}\n  but ${refNode} applied:\n    ${refDigest}`);
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
    for (const ev of out.events) if (ev.kind === 'granted' && ev.count > 1) this.stats.upgrades++;
    for (const ev of out.events) {
      if (ev.kind === 'revoked') this.stats.revoked++;
      if (ev.kind === 'failed' && ev.code === 'TIMEOUT') this.stats.waitTimeouts++;
    }
    if (this.cluster.traceEnabled && (cmd.kind !== 'keepAlive' || r.kind !== 'ok')) {
      this.cluster.note(`apply ${index} ${cmd.kind}${'lock' in cmd ? ` ${cmd.lock}` : ''}${'session' in cmd ? ` s${cmd.session}` : ''} -> ${JSON.stringify(r)}${out.events.length > 0 ? ` events ${JSON.stringify(out.events)}` : ''}`);
    }
  }

  /** The table, or a broken wrapper of it (canaries). */
  private applyTable(table: LockTable, cmd: LockCommand, index: number): ApplyOutcome {
    const v = this.variant;
    if (v === 'correct' || v === 'apply-uncommitted') return table.apply(cmd, logIndex(index));
    const before = cmd.kind === 'acquire' ? table.lockInfo(cmd.lock) : null;
    const lastTokens = new Map(table.listLocks().map((l) => [l.name, l.lastToken] as const));
    const out = table.apply(cmd, logIndex(index));
    if (out.duplicate) return out;
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
      default:
        throw new Error(`unhandled variant ${v}`);
    }
  }

  // ---------------------------------------------------------------- serve

  /** What a replica does with an applied outcome: answer/push to clients, feed its lease clock, arm wait timeouts. */
  private serve(idx: number, r: Replica, index: number, cmd: LockCommand, out: ApplyOutcome): void {
    const res = out.result;
    if ('clientId' in cmd && cmd.clientId !== undefined && typeof cmd.seq === 'number') {
      if (!(res.kind === 'error' && res.code === 'STALE_REQUEST')) r.mailbox.set(mailKey(cmd.clientId, cmd.seq), res);
    }
    for (const ev of out.events) {
      if (ev.kind === 'granted') {
        r.mailbox.set(mailKey(ev.clientId, ev.seq), { kind: 'granted', lock: ev.lock, token: ev.token, mode: ev.mode, count: ev.count });
      } else if (ev.kind === 'failed') {
        r.mailbox.set(mailKey(ev.clientId, ev.seq), { kind: 'error', code: ev.code, message: ev.message });
      }
    }
    if (!r.isLeader) return;
    r.lease.observe(cmd, logIndex(index), out, this.clock(idx));
    if (cmd.kind === 'acquire' && res.kind === 'queued') {
      const key = mailKey(cmd.clientId, cmd.seq);
      const waitMs = r.parked.get(key);
      if (waitMs === undefined || waitMs <= 0 || r.timersArmed.has(key)) return;
      r.timersArmed.add(key);
      const term = r.leaderTerm;
      this.cluster.schedule(waitMs, () => {
        if (this.replicas[idx] !== r || !r.isLeader || r.leaderTerm !== term) return;
        if (r.mailbox.get(key)?.kind !== 'queued') return;
        this.serverPropose(idx, { kind: 'cancelWait', nowMs: this.clock(idx), session: cmd.session, lock: cmd.lock, requestId: cmd.requestId, reason: 'timeout' });
      });
    }
  }

  private syncLeadership(idx: number, r: Replica): void {
    const raft = this.cluster.node(idx).raft;
    const st = raft?.status();
    const leader = st !== undefined && st.role === Role.Leader;
    if (leader && (!r.isLeader || r.leaderTerm !== st.term)) {
      // Restart every countdown: a failover never expires sessions en masse.
      r.lease.becomeLeader(
        this.clock(idx),
        r.table.listSessions().map((s) => ({ session: s.session, ttlMs: s.ttlMs, renewedIndex: s.renewedIndex })),
        r.table.delayedLocks().map((d) => ({ lock: d.lock, lockDelayMs: d.lockDelayMs })),
      );
      r.isLeader = true;
      r.leaderTerm = st.term;
      r.parked.clear();
      r.timersArmed.clear();
      this.cluster.note(`${this.cluster.node(idx).id} lock service leader of term ${st.term} (${r.lease.trackedCount} leases restarted)`);
    } else if (!leader && r.isLeader) {
      r.isLeader = false;
      r.parked.clear();
      r.timersArmed.clear();
    }
  }

  /** The leader's periodic lease check (server/locks.ts checkLeases). */
  private leaderDuties(idx: number): void {
    const r = this.replica(idx);
    if (r === null) return;
    this.syncLeadership(idx, r);
    if (!r.isLeader) return;
    const now = this.clock(idx);
    const expired = r.lease.expired(now);
    if (expired.length > 0 && now - r.lastExpiryProposalMs >= reproposeMsMin) {
      r.lastExpiryProposalMs = now;
      this.serverPropose(idx, { kind: 'expireSessions', nowMs: now, sessions: expired });
    }
    for (const lock of r.lease.delaysDue(now)) {
      if (now - (r.wakeProposedMs.get(lock) ?? -Infinity) < reproposeMsMin) continue;
      r.wakeProposedMs.set(lock, now);
      this.serverPropose(idx, { kind: 'wakeDelayed', nowMs: now, lock });
    }
  }

  private serverPropose(idx: number, cmd: LockCommand): void {
    const payload = JSON.stringify(cmd);
    this.cluster.schedule(0, () => this.cluster.propose(idx, payload, () => {}));
  }

  // ---------------------------------------------------------------- client API

  /** A client request reaching node idx: a leader stamps and proposes it; otherwise refused with a leader hint (-1 unknown). */
  request(idx: number, body: ClientBody, waitMs: number, refused: (hint: number) => void): void {
    const node = this.cluster.node(idx);
    const r = this.replica(idx);
    if (node.raft === null || r === null) {
      this.cluster.schedule(1, () => refused(-1));
      return;
    }
    this.syncLeadership(idx, r);
    if (!r.isLeader) {
      const hint = this.leaderHint(idx);
      this.cluster.schedule(1, () => refused(hint));
      return;
    }
    const key = mailKey(body.clientId, body.seq);
    r.parked.set(key, waitMs);
    r.timersArmed.delete(key);
    const cmd = { ...body, nowMs: this.clock(idx) } as LockCommand;
    this.cluster.propose(idx, JSON.stringify(cmd), (o) => {
      if (!o.ok) refused(o.leader === '' ? -1 : this.cluster.nodes.findIndex((n) => n.id === o.leader));
    });
  }

  leaderHint(idx: number): number {
    const raft = this.cluster.node(idx).raft;
    const leader = raft?.status().leader ?? '';
    return leader === '' ? -1 : this.cluster.nodes.findIndex((n) => n.id === leader);
  }

  /** The final (or 'queued') answer node idx has for clientId#seq, if it applied it. */
  answer(idx: number, client: string, seq: number): LockResult | undefined {
    return this.replica(idx)?.mailbox.get(mailKey(client, seq));
  }

  isLeaderNode(idx: number): boolean {
    const r = this.replica(idx);
    if (r === null) return false;
    this.syncLeadership(idx, r);
    return r.isLeader;
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

  /** Every up replica applied the same entries and has the same table. */
  converged(): boolean {
    let state: string | null = null;
    let applied = -1;
    for (let i = 0; i < this.cluster.nodes.length; i++) {
      const r = this.replica(i);
      if (r === null) return false;
      const a = this.cluster.node(i).sm.appliedIndex;
      if (applied >= 0 && a !== applied) return false;
      applied = a;
      const s = JSON.stringify(r.table.toSnapshot().locks);
      if (state !== null && s !== state) return false;
      state = s;
    }
    return true;
  }

  /** The model's holders agree with a replica's table. */
  checkModelAgainstTable(): void {
    const r = this.replica(0);
    if (r === null) return;
    const view = r.table
      .listLocks()
      .filter((l) => l.holders.length > 0)
      .map((l) => `${l.name}=${l.holders.map((h) => `${h.session}:${h.mode}x${h.count}@${h.token}`).sort().join(',')}`)
      .sort()
      .join(' ');
    if (view !== this.history.holdersView()) this.fail('model', `table holders "${view}" but the history says "${this.history.holdersView()}"`);
  }
}

// ------------------------------------------------------------------ clients

/** One request lane (clientId + seq, one request in flight), retried with the same seq until answered. */
class Lane {
  private seq = 0;
  private hint: number;
  private pending: {
    readonly body: ClientBody;
    readonly waitMs: number;
    readonly onAnswer: (r: LockResult) => void;
    target: number;
    sentAtMs: number;
    attempt: number;
    /** The target refused it (not leader): the hint already names where to go next. */
    refused: boolean;
  } | null = null;

  constructor(
    private readonly sim: LockSim,
    readonly clientId: ClientId,
    private readonly prng: Xoshiro128,
    private readonly timeoutMs: number,
  ) {
    this.hint = prng.int(0, sim.cluster.nodes.length - 1);
  }

  get busy(): boolean {
    return this.pending !== null;
  }

  describe(): string {
    const p = this.pending;
    return p === null ? 'idle' : `${p.body.kind}#${p.body.seq} -> n${p.target + 1} attempt ${p.attempt}`;
  }

  send(make: (clientId: ClientId, seq: number) => ClientBody, waitMs: number, onAnswer: (r: LockResult) => void): void {
    assert(this.pending === null, 'one request per lane');
    this.seq++;
    this.pending = { body: make(this.clientId, this.seq), waitMs, onAnswer, target: this.hint, sentAtMs: -Infinity, attempt: 0, refused: false };
    this.transmit();
  }

  private transmit(): void {
    const p = this.pending;
    assert(p !== null, 'transmit a pending request');
    if (this.hint < 0) this.hint = this.prng.int(0, this.sim.cluster.nodes.length - 1);
    p.target = this.hint;
    p.sentAtMs = this.sim.cluster.nowMs;
    p.refused = false;
    const attempt = ++p.attempt;
    if (attempt > 1) this.sim.stats.retries++;
    this.sim.request(p.target, p.body, p.waitMs, (hint) => {
      if (this.pending !== p || p.attempt !== attempt) return;
      this.hint = hint >= 0 && hint !== p.target ? hint : this.prng.int(0, this.sim.cluster.nodes.length - 1);
      p.refused = true;
      // Retry soon (same seq): at once when told who leads, after a short backoff when nobody does.
      p.sentAtMs = this.sim.cluster.nowMs - this.timeoutMs + (hint >= 0 ? 0 : this.prng.int(10, refusedBackoffMsMax));
    });
  }

  step(): void {
    const p = this.pending;
    if (p === null) return;
    const a = this.sim.answer(p.target, this.clientId, p.body.seq);
    if (a !== undefined && a.kind !== 'queued') {
      this.pending = null;
      p.onAnswer(a);
      return;
    }
    if (a !== undefined) {
      // Queued: parked at a live leader, wait for the push; else retry (same seq) at its successor.
      if (this.sim.isLeaderNode(p.target)) {
        p.sentAtMs = this.sim.cluster.nowMs;
        return;
      }
      this.hint = this.sim.leaderHint(p.target);
      this.transmit();
      return;
    }
    if (this.sim.cluster.nowMs - p.sentAtMs < this.timeoutMs) return;
    if (!p.refused) this.hint = this.prng.int(0, this.sim.cluster.nodes.length - 1); // timed out: try elsewhere
    this.transmit();
  }
}

interface ClientHold {
  session: SessionId;
  mode: LockMode;
  count: number;
  untilMs: number;
}

/** A lock client: one session kept alive on its own lane, lock requests on another (client/locks.ts lanes). */
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
    timeoutMs: number,
  ) {
    this.main = new Lane(sim, toClientId(`${name}/0`), prng, timeoutMs);
    this.ka = new Lane(sim, toClientId(`${name}/1`), prng, timeoutMs);
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

  private unexpected(what: string, r: LockResult): never {
    this.sim.fail('client-protocol', `${this.name}: unexpected answer to ${what}: ${JSON.stringify(r)}`);
  }

  step(): void {
    this.main.step();
    this.ka.step();
    const session = this.session;
    if (session !== null && this.keepsAlive && !this.ka.busy && this.now() >= this.kaDueMs) {
      this.ka.send((clientId, seq) => ({ kind: 'keepAlive', clientId, seq, session }), 0, (r) => {
        if (r.kind === 'ok') this.kaDueMs = this.now() + Math.floor(this.ttlMs / 3);
        else if (r.kind === 'error' && r.code === 'SESSION_EXPIRED') this.lost(session);
        else this.unexpected('keepAlive', r);
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
      this.main.send((clientId, seq) => ({ kind: 'openSession', clientId, seq, ttlMs: this.ttlMs, lockDelayMs: this.lockDelayMs }), 0, (r) => {
        if (r.kind === 'sessionOpened') {
          this.session = r.session;
          this.kaDueMs = this.now() + Math.floor(this.ttlMs / 3);
          this.sim.cluster.note(`${this.name} opened session ${r.session}`);
        } else this.unexpected('openSession', r);
      });
      return;
    }
    const now = this.now();
    const due = [...this.holds].filter(([, h]) => h.untilMs <= now);
    const first = due[0];
    if (first !== undefined) {
      const [lock, h] = first;
      if (h.mode === 'exclusive' && !this.liveness && this.prng.next() < 0.15) {
        this.main.send((clientId, seq) => ({ kind: 'downgrade', clientId, seq, session, lock }), 0, (r) => {
          if (r.kind === 'downgraded') {
            h.mode = 'shared';
            h.untilMs = this.now() + this.prng.int(10, 200);
          } else if (r.kind === 'error' && r.code === 'NOT_FOUND') this.holds.delete(lock);
          else if (r.kind === 'error' && r.code === 'SESSION_EXPIRED') this.lost(session);
          else this.unexpected('downgrade', r);
        });
        return;
      }
      this.main.send((clientId, seq) => ({ kind: 'release', clientId, seq, session, lock }), 0, (r) => {
        if (r.kind === 'released') {
          if (r.count === 0) this.holds.delete(lock);
          else h.count = r.count;
        } else if (r.kind === 'error' && r.code === 'NOT_FOUND') this.holds.delete(lock); // revoked (forceRelease)
        else if (r.kind === 'error' && r.code === 'SESSION_EXPIRED') this.lost(session);
        else this.unexpected('release', r);
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
      this.main.send((clientId, seq) => ({ kind: 'closeSession', clientId, seq, session }), 0, (r) => {
        if (r.kind === 'ok' || (r.kind === 'error' && r.code === 'SESSION_EXPIRED')) this.lost(session);
        else this.unexpected('closeSession', r);
      });
      return;
    }
    let lock = pick(this.prng, this.locks);
    if (this.holds.has(lock) && this.prng.next() < 0.5) lock = pick(this.prng, this.locks);
    const held = this.holds.get(lock);
    const mode: LockMode = this.prng.next() < 0.6 ? 'exclusive' : 'shared';
    const wait = this.liveness || this.prng.next() < 0.7;
    const waitMs = this.liveness ? 0 : pick(this.prng, [0, 150, 600]);
    this.main.send((clientId, seq) => ({ kind: 'acquire', clientId, seq, session, lock, mode, requestId: `${clientId}:${seq}`, wait }), waitMs, (r) => {
      if (r.kind === 'granted') {
        this.sim.clientGrant(this.name, session, lock, r.token);
        if (this.session !== session) return;
        if (this.liveness) {
          this.grantsAfterHeal++;
          this.sim.stats.grantsAfterHeal++;
        }
        const h = this.holds.get(lock);
        const untilMs = this.now() + this.prng.int(5, this.liveness ? 80 : 300);
        if (h !== undefined) {
          h.count = r.count;
          h.mode = r.mode;
        } else this.holds.set(lock, { session, mode: r.mode, count: r.count, untilMs });
        return;
      }
      if (r.kind === 'error') {
        switch (r.code) {
          case 'WOULD_BLOCK':
          case 'TIMEOUT':
          case 'CANCELLED':
          case 'DEADLOCK':
            this.backoff(held === undefined ? 80 : 20);
            return;
          case 'SESSION_EXPIRED':
            this.lost(session);
            return;
          default:
            break;
        }
      }
      this.unexpected(`acquire ${lock} ${mode}`, r);
    });
  }
}

/** An operator who now and then force-releases a lock (revoking its holders). */
class Admin {
  private readonly lane: Lane;
  private nextMs: number;
  constructor(
    private readonly sim: LockSim,
    private readonly prng: Xoshiro128,
    private readonly locks: readonly string[],
    timeoutMs: number,
  ) {
    this.lane = new Lane(sim, toClientId('admin'), prng, timeoutMs);
    this.nextMs = prng.int(200, 1000);
  }
  active = true;
  step(): void {
    this.lane.step();
    if (!this.active || this.lane.busy || this.sim.cluster.nowMs < this.nextMs) return;
    this.nextMs = this.sim.cluster.nowMs + this.prng.int(200, 1000);
    const lock = pick(this.prng, this.locks);
    this.lane.send((clientId, seq) => ({ kind: 'forceRelease', clientId, seq, lock }), 0, (r) => {
      if (r.kind !== 'ok' && !(r.kind === 'error' && r.code === 'NOT_FOUND')) this.sim.fail('client-protocol', `forceRelease answered ${JSON.stringify(r)}`);
    });
  }
}

// ------------------------------------------------------------------ one seed

export function runLockSeed(seed: number, opts: LockSimOptions = {}): LockSimResult {
  const variant = opts.variant ?? 'correct';
  const sim = new LockSim(variant, opts.checkCommittedAtApply ?? true);
  const profiled = profileFor(seed, sim.factory(opts.raftFactory ?? realRaft), 'correct');
  const faults: FaultProfile = { ...profiled.faults, ...opts.faultOverrides };
  const clusterOpts: ClusterOptions = { ...profiled.cluster, ...opts.clusterOverrides };
  const p = new Xoshiro128((seed * 40503) ^ 0x10c45eed);
  const clientsCount = p.int(2, 5);
  const locks = ['a', 'b', 'c'].slice(0, p.int(1, 3));
  const zombieProb = pick(p, [0, 0.25, 0.5]);
  const lockDelayProb = pick(p, [0, 0.3]);
  const admin = p.next() < 0.3;
  const faultPhaseMs = opts.faultPhaseMs ?? 3_000;
  const profile =
    `nodes=${clusterOpts.nodeCount} preVote=${clusterOpts.preVote} checkQuorum=${clusterOpts.checkQuorum} drop=${clusterOpts.network.dropProb} ` +
    `dup=${clusterOpts.network.dupProb} delay<=${clusterOpts.network.delayMsMax}ms compact~${clusterOpts.compactEveryApplied} ` +
    `faults=[${(['crash', 'partition', 'oneWay', 'clockJump', 'clockPause'] as const).filter((k) => faults[k]).join(',')}]/${faults.faultIntervalMs}ms ` +
    `clients=${clientsCount} locks=${locks.join('')} zombies=${zombieProb} lockDelay=${lockDelayProb} admin=${admin} variant=${variant}`;

  const c = new Cluster(clusterOpts);
  c.traceEnabled = opts.trace === true;
  sim.attach(c, p);
  const electionMs = clusterOpts.electionTicks * clusterOpts.tickMs;
  const timeoutMs = 4 * electionMs;
  const clients: LockClient[] = [];
  for (let i = 0; i < clientsCount; i++) {
    const ttlMs = p.int(1_000, 2_000);
    const lockDelayMs = p.next() < lockDelayProb ? p.int(50, 400) : 0;
    const client = new LockClient(sim, `c${i}`, new Xoshiro128(p.int(0, 0x7fffffff)), locks, ttlMs, lockDelayMs, p.next() >= zombieProb, timeoutMs);
    clients.push(client);
    const intervalMs = p.int(5, 25);
    const loop = (): void => {
      client.step();
      c.schedule(intervalMs, loop);
    };
    c.schedule(p.int(0, intervalMs), loop);
  }
  const operator = admin ? new Admin(sim, new Xoshiro128(p.int(0, 0x7fffffff)), locks, timeoutMs) : null;
  if (operator !== null) {
    const loop = (): void => {
      operator.step();
      c.schedule(20, loop);
    };
    c.schedule(20, loop);
  }
  const checkLoop = (): void => {
    sim.checkClientGrants(false);
    c.schedule(100, checkLoop);
  };
  c.schedule(100, checkLoop);

  const faultPrng = new Xoshiro128(seed ^ 0x7a7a7a7a);
  const faultState: FaultState = { on: true, keepDown: new Set() };
  startFaults(c, faultPrng, faults, electionMs, faultState);

  const result = (property: string, error: string): LockSimResult => ({
    ...seedOutcome(seed, property, error, profile, c),
    lockStats: sim.stats,
    virtualMs: c.nowMs,
  });
  try {
    c.runMs(faultPhaseMs);
    healAll(c, faultState);
    if (operator !== null) operator.active = false;
    for (const cl of clients) {
      cl.keepsAlive = true;
      cl.liveness = true;
    }
    const leaderMs = leaderAfterHealElections * electionMs;
    if (!c.runUntil(() => c.stableLeader() !== null, leaderMs)) return result('liveness', `no stable leader within ${leaderMs}ms of healing`);
    const done = (): boolean => clients.every((cl) => cl.done) && sim.converged();
    if (!c.runUntil(done, convergeMsMax)) {
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
