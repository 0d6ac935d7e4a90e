// The lock service with the client that ships, under the simulator: every lock user
// is the real Router + LockClient (client/) on virtual time over simulated TCP
// connections (sim-client.ts), against SimNodes running the real GroupHost and
// LockService (watched as in locks-sim.ts: shadow tables, replica agreement and the
// committed-history rules of LockHistoryChecker). Issue 7 items 1, 5 and 6 are
// client bugs that only show with paused leaders, so the nemesis pauses leaders for
// longer than the session TTL (while a fresh client issues its first lock() at the
// paused one), crashes and partitions leaders, cuts clients off from nodes, resets
// their connections. Checked besides the server-side rules:
// - held-after-regrant: for two grants of one lock to different clients (not both
//   shared), the earlier holder released it or saw `lost` fire no later than the
//   commit of the later grant (the first replica's apply of its token's entry);
// - grant-not-committed: a client holds a token the committed history never gave
//   one of its sessions;
// - session-lost-while-healthy: `lost` fired SESSION_EXPIRED although, for half a
//   TTL before, a majority with an unpaused leader was up, connected and reachable
//   by the client; request-failed-while-healthy: a call failed for want of the
//   cluster (TIMEOUT, UNAVAILABLE, ...) while that held for its whole life (item 5);
// - request-hangs: a lock()/tryLock()/release() unsettled `settleBoundMs` after healing;
// - liveness: after healing every client gets locks again and replicas converge.

import { assert } from '../../core/assert.js';
import type { LockCommand, ApplyOutcome } from '../../core/locks/index.js';
import { Xoshiro128 } from '../../core/prng.js';
import { Role, type Entry } from '../../core/raft/types.js';
import { type HeldLock, LockClient, type LockClientOptions, type LockMode } from '../../client/locks/locks.js';
import { type GroupTransport, Router, type RouterOptions } from '../../client/transport/router.js';
import { type ClientClock, sleepOn } from '../../client/transport/time.js';
import { DsyncError, ErrorCode } from '../../protocol/errors.js';
import { InvariantViolation } from '../checker/raft-invariants.js';
import { failureOf } from './common.js';
import { LockSim } from './locks-sim.js';
import { ClientNet, clientClock, simAddress } from './sim-client.js';
import { SimCluster, type SimClusterOptions, type SimNode, type SimStats } from './sim-cluster.js';

/**
 * Deliberately broken clients (canaries) the checks must catch, built by subclassing
 * the shipped classes through their seams (nothing in client/ knows about them):
 * - grant-unchecked: LockClient hands a grant to user code without checking that its
 *   session is still live by the client's count (issue 7, item 1);
 * - timeout-final: Router treats TIMEOUT as final and keeps the stalled leader (item 5).
 */
export type ClientVariant = 'correct' | 'grant-unchecked' | 'timeout-final';
export const clientVariants: readonly ClientVariant[] = ['correct', 'grant-unchecked', 'timeout-final'];

class GrantUncheckedLockClient extends LockClient {
  protected override grantable(): boolean {
    return true;
  }
}

class TimeoutFinalRouter extends Router {
  protected override retryable(err: DsyncError, idempotent: boolean): boolean {
    return err.code !== ErrorCode.TIMEOUT && super.retryable(err, idempotent);
  }
}

export interface ClientSimOptions {
  readonly variant?: ClientVariant;
  /** Virtual ms of nemesis episodes before healing. */
  readonly faultPhaseMs?: number;
  readonly trace?: boolean;
}

export interface ClientSimStats {
  clients: number;
  freshClients: number;
  grants: number;
  grantsAfterHeal: number;
  releases: number;
  lost: number;
  opsFailed: number;
  lockTimeouts: number;
  /** Calls that failed SESSION_EXPIRED (among them grants the client refused because its session was no longer live). */
  sessionExpiredCalls: number;
  leaderPauses: number;
  leaderCrashes: number;
  partitions: number;
  clientCuts: number;
  resets: number;
  overlapsChecked: number;
  healthyMs: number;
}

export interface ClientSimResult {
  readonly seed: number;
  readonly ok: boolean;
  readonly property: string;
  readonly error: string;
  readonly profile: string;
  readonly stats: SimStats;
  readonly clientStats: ClientSimStats;
  readonly trace: readonly string[];
  readonly events: number;
  readonly virtualMs: number;
}

/** Half a TTL of a healthy majority is enough for a correct client to renew through a new leader. */
const healthWindowTtlFraction = 0.5;
/** How often each client's health (reachable healthy majority) is sampled. */
const healthSampleMs = 20;
/** Every call issued or pending at healing settles within this long after it. */
const settleBoundMs = 30_000;
const leaderAfterHealMs = 20_000;
const convergeMsMax = 60_000;
const grantsAfterHealMin = 2;
const freshClientsMax = 2;
/** The session TTL range: long enough that an election (≤ ~1.2 s) plus one stalled attempt fits in half of it. */
const ttlMsMin = 4_000;
const ttlMsMax = 6_000;
const waitMsChoices = [300, 1_500, 4_000, 8_000] as const;

/** Codes a call fails with for want of the cluster (not for a lock reason). */
const unavailableCodes = new Set<string>([ErrorCode.TIMEOUT, ErrorCode.UNAVAILABLE, ErrorCode.CONNECTION_CLOSED, ErrorCode.NOT_LEADER,
  ErrorCode.TOO_MANY_REQUESTS]);
/** Codes a call may legitimately fail with under faults; anything else fails the run. */
const expectedCodes = new Set<string>([...unavailableCodes, ErrorCode.SESSION_EXPIRED, ErrorCode.LOCK_TIMEOUT, ErrorCode.DEADLOCK,
  ErrorCode.CANCELLED]);

function pick<T>(prng: Xoshiro128, items: readonly T[]): T {
  const item = items[prng.int(0, items.length - 1)];
  assert(item !== undefined, 'pick from a non-empty list');
  return item;
}

function fail(property: string, detail: string): never {
  throw new InvariantViolation(property, detail);
}

/** A hold in user code: from the answer's arrival until release() was called or `lost` fired. */
interface Hold {
  readonly user: LockUser;
  readonly lock: string;
  readonly mode: LockMode;
  readonly token: number;
  readonly receivedAtMs: number;
  endedAtMs: number | null;
  ended: 'released' | 'lost' | null;
}

interface Call {
  readonly user: LockUser;
  readonly what: string;
  readonly startMs: number;
}

/** LockSim that also remembers when each index was first applied (its commit, as far as anyone can tell) and who opened each session. */
class TimedLockSim extends LockSim {
  readonly appliedAtMs = new Map<number, number>();
  readonly sessionOwner = new Map<number, string>();
  /** When the committed history ended each session (closed or expired): from then on the server may grant its locks to others. */
  readonly sessionEndedAtMs = new Map<number, number>();

  override onApplied(node: SimNode, entry: Entry, cmd: LockCommand, out: ApplyOutcome): void {
    super.onApplied(node, entry, cmd, out);
    if (this.appliedAtMs.has(entry.index)) return;
    this.appliedAtMs.set(entry.index, this.cluster.nowMs);
    if (cmd.kind === 'openSession' && out.result.kind === 'sessionOpened') {
      // Lane ids are `${laneBase}/${lane}`; the lane base names the user.
      this.sessionOwner.set(out.result.session, cmd.clientId.split('/')[0] ?? '');
    }
    if (!out.duplicate && cmd.kind === 'closeSession' && out.result.kind === 'ok') this.sessionEndedAtMs.set(cmd.session, this.cluster.nowMs);
    if (cmd.kind === 'expireSessions' && out.result.kind === 'expired') {
      for (const session of out.result.sessions) this.sessionEndedAtMs.set(session, this.cluster.nowMs);
    }
  }
}

/** One application process using the shipped client: Router + LockClient on its own virtual clock. */
class LockUser {
  readonly router: Router;
  readonly locks: LockClient;
  readonly clock: ClientClock;
  readonly laneBase: string;
  healthySinceMs: number | null = null;
  grantsAfterHeal = 0;
  liveness = false;
  stopped = false;
  private readonly heldNow = new Set<Hold>();

  constructor(
    private readonly run: ClientRun,
    readonly idx: number,
    readonly name: string,
    seeds: readonly string[],
    readonly ttlMs: number,
    private readonly prng: Xoshiro128,
  ) {
    this.clock = clientClock(run.cluster.world);
    this.laneBase = `${name}-lanes`;
    const ropts: RouterOptions = { seeds, name, clock: this.clock, connect: run.net.factory(idx, this.clock) };
    this.router = run.variant === 'timeout-final' ? new TimeoutFinalRouter(ropts) : new Router(ropts);
    const transport: GroupTransport = this.router;
    const lopts: LockClientOptions = { name, sessionTtlMs: ttlMs, clock: this.clock, laneBase: this.laneBase };
    this.locks = run.variant === 'grant-unchecked' ? new GrantUncheckedLockClient(transport, lopts) : new LockClient(transport, lopts);
  }

  get done(): boolean {
    return this.grantsAfterHeal >= grantsAfterHealMin;
  }

  /** Runs the user's loop; every rejection is handled (an unexpected one fails the run through the world). */
  start(firstIsLock: boolean): void {
    this.loop(firstIsLock).catch((err: unknown) => this.run.cluster.world.fail(err));
  }

  private async loop(firstIsLock: boolean): Promise<void> {
    let first = firstIsLock;
    while (!this.stopped) {
      const held = await this.acquireOne(first);
      first = false;
      if (held !== null) {
        // Now and then a second lock while holding the first (reentrant when it is the same name).
        const inner = !this.liveness && this.prng.next() < 0.25 ? await this.acquireOne(false) : null;
        if (inner !== null) await this.holdAndRelease(inner);
        await this.holdAndRelease(held);
      }
      await sleepOn(this.clock, this.prng.int(10, 200));
    }
  }

  private async acquireOne(mustWait: boolean): Promise<{ held: HeldLock; hold: Hold } | null> {
    const p = this.prng;
    const lock = pick(p, this.run.lockNames);
    const mode: LockMode = p.next() < 0.7 ? 'exclusive' : 'shared';
    const r = mustWait ? 1 : p.next();
    let what: string;
    let attempt: () => Promise<HeldLock | null>;
    if (r < 0.2) {
      what = `tryLock ${lock} ${mode}`;
      attempt = () => this.locks.tryLock(lock, { mode });
    } else if (r < 0.3 && !this.liveness) {
      const abortMs = p.int(200, 3_000);
      what = `lock ${lock} ${mode} abort@${abortMs}ms`;
      attempt = async () => {
        const ac = new AbortController();
        const cancel = this.clock.after(abortMs, () => ac.abort());
        try {
          return await this.locks.lock(lock, { mode, signal: ac.signal });
        } finally {
          cancel();
        }
      };
    } else {
      const waitMs = pick(p, waitMsChoices);
      what = `lock ${lock} ${mode} wait ${waitMs}ms`;
      attempt = () => this.locks.lock(lock, { mode, waitMs });
    }
    const call = this.run.callStarted(this, what);
    let held: HeldLock | null;
    try {
      held = await attempt();
    } catch (err) {
      this.run.callFailed(call, err);
      return null;
    }
    this.run.callSettled(call);
    if (held === null) return null;
    const hold = this.run.onGrant(this, held);
    // Watched from the grant on (an outer hold waits while an inner one is taken and released).
    void held.lost.then((err) => this.run.onLost(hold, err));
    return { held, hold };
  }

  private async holdAndRelease(h: { held: HeldLock; hold: Hold }): Promise<void> {
    const { held, hold } = h;
    this.heldNow.add(hold);
    const holdMs = this.prng.int(20, this.liveness ? 150 : 1_200);
    await Promise.race([sleepOn(this.clock, holdMs), held.lost]);
    this.heldNow.delete(hold);
    if (held.isLost) return;
    this.run.endHold(hold, 'released');
    const call = this.run.callStarted(this, `release ${held.name}`);
    try {
      await held.release();
      this.run.callSettled(call);
    } catch (err) {
      this.run.callFailed(call, err);
    }
  }

  describe(): string {
    return `${this.name}: grantsAfterHeal ${this.grantsAfterHeal} holding [${[...this.heldNow].map((h) => `${h.lock}@${h.token}`).join(',')}] ` +
      `leader '${this.router.leaderOf(0)}'`;
  }
}

/** One seed's run: cluster, client network, users, nemesis and the checks. */
class ClientRun {
  readonly sim: TimedLockSim;
  readonly cluster: SimCluster;
  readonly net: ClientNet;
  readonly users: LockUser[] = [];
  readonly lockNames: readonly string[];
  readonly stats: ClientSimStats = {
    clients: 0, freshClients: 0, grants: 0, grantsAfterHeal: 0, releases: 0, lost: 0, opsFailed: 0, lockTimeouts: 0, sessionExpiredCalls: 0, leaderPauses: 0,
    leaderCrashes: 0, partitions: 0, clientCuts: 0, resets: 0, overlapsChecked: 0, healthyMs: 0,
  };
  private readonly holds = new Map<string, Hold[]>();
  private readonly calls = new Set<Call>();
  private healedAtMs: number | null = null;
  readonly ttlMs: number;

  constructor(readonly seed: number, readonly variant: ClientVariant, readonly prng: Xoshiro128, clusterOpts: Omit<SimClusterOptions, 'services'>) {
    this.sim = new TimedLockSim('correct');
    this.cluster = new SimCluster({ ...clusterOpts, services: (node) => this.sim.services(node) });
    this.sim.cluster = this.cluster;
    this.net = new ClientNet(this.cluster, new Xoshiro128(prng.int(0, 0x7fffffff)), { delayMsMin: 1, delayMsMax: pick(prng, [2, 5, 15]), refuseMs: 2 });
    this.lockNames = ['a', 'b', 'c'].slice(0, prng.int(1, 2));
    this.ttlMs = prng.int(ttlMsMin, ttlMsMax);
  }

  get nowMs(): number {
    return this.cluster.nowMs;
  }

  /** Faults are over: from now on every call must settle within settleBoundMs. */
  healed(): void {
    this.healedAtMs = this.nowMs;
  }

  get callsPending(): number {
    return this.calls.size;
  }

  addUser(seeds: readonly string[], fresh: boolean): LockUser {
    const idx = this.users.length;
    const u = new LockUser(this, idx, `u${idx}`, seeds, this.ttlMs, new Xoshiro128(this.prng.int(0, 0x7fffffff)));
    this.users.push(u);
    this.stats.clients++;
    if (fresh) this.stats.freshClients++;
    this.cluster.note(`${u.name} starts${fresh ? ' (fresh, first lock() now)' : ''}, seeds ${seeds.join(',')}`);
    u.start(fresh);
    return u;
  }

  // ---- calls ----

  callStarted(user: LockUser, what: string): Call {
    const call: Call = { user, what, startMs: this.nowMs };
    this.calls.add(call);
    return call;
  }

  callSettled(call: Call): void {
    this.calls.delete(call);
  }

  callFailed(call: Call, err: unknown): void {
    this.calls.delete(call);
    if (!(err instanceof DsyncError)) throw err;
    this.stats.opsFailed++;
    if (err.code === ErrorCode.LOCK_TIMEOUT) this.stats.lockTimeouts++;
    this.cluster.note(`${call.user.name} ${call.what} failed: ${err.code} ${err.message}`);
    if (!expectedCodes.has(err.code)) fail('client-error', `${call.user.name} ${call.what} failed with ${err.code}: ${err.message}`);
    const since = call.user.healthySinceMs;
    if (unavailableCodes.has(err.code) && since !== null && since <= call.startMs) {
      fail('request-failed-while-healthy', `${call.user.name} ${call.what} (from ${Math.round(call.startMs)}ms) failed with ${err.code} at ` +
        `${Math.round(this.nowMs)}ms although a healthy majority with a leader was reachable since ${Math.round(since)}ms: ${err.message}`);
    }
    if (err.code === ErrorCode.SESSION_EXPIRED) {
      this.stats.sessionExpiredCalls++;
      this.sessionLoss(call.user, `${call.what}: ${err.message}`);
    }
  }

  private sessionLoss(user: LockUser, why: string): void {
    const since = user.healthySinceMs;
    const windowMs = user.ttlMs * healthWindowTtlFraction;
    if (since !== null && since <= this.nowMs - windowMs) {
      fail('session-lost-while-healthy', `${user.name} lost its session at ${Math.round(this.nowMs)}ms although a healthy majority with a leader ` +
        `was reachable since ${Math.round(since)}ms (TTL ${user.ttlMs}ms): ${why}`);
    }
  }

  // ---- holds ----

  onGrant(user: LockUser, held: HeldLock): Hold {
    this.stats.grants++;
    if (this.healedAtMs !== null) {
      user.grantsAfterHeal++;
      this.stats.grantsAfterHeal++;
    }
    const hold: Hold = { user, lock: held.name, mode: held.mode, token: held.token, receivedAtMs: this.nowMs, endedAtMs: null, ended: null };
    if (held.isLost) this.endHold(hold, 'lost');
    this.cluster.note(`${user.name} holds ${held.name} ${held.mode} token ${held.token}`);
    let list = this.holds.get(hold.lock);
    if (list === undefined) {
      list = [];
      this.holds.set(hold.lock, list);
    }
    list.push(hold);
    this.checkHolds(hold.lock);
    return hold;
  }

  onLost(hold: Hold, err: DsyncError): void {
    this.stats.lost++;
    this.cluster.note(`${hold.user.name} lost ${hold.lock} token ${hold.token}: ${err.code}`);
    this.endHold(hold, 'lost');
    if (err.code === ErrorCode.SESSION_EXPIRED) this.sessionLoss(hold.user, `lost ${hold.lock}: ${err.message}`);
  }

  endHold(hold: Hold, how: 'released' | 'lost'): void {
    if (hold.ended !== null) return;
    hold.ended = how;
    hold.endedAtMs = this.nowMs;
    if (how === 'released') this.stats.releases++;
  }

  /**
   * Two clients' holds of one lock, not both shared: the one with the lower token
   * ended (release called or `lost` fired) no later than the later grant's commit.
   */
  checkHolds(lock: string): void {
    const list = this.holds.get(lock) ?? [];
    for (const later of list) {
      const committedAtMs = this.sim.appliedAtMs.get(later.token);
      if (committedAtMs === undefined) fail('grant-not-committed', `${later.user.name} holds ${lock} with token ${later.token}, an index nothing applied`);
      for (const earlier of list) {
        if (earlier.user === later.user || earlier.token >= later.token || (earlier.mode === 'shared' && later.mode === 'shared')) continue;
        this.stats.overlapsChecked++;
        const endMs = earlier.endedAtMs ?? Infinity;
        if (endMs > committedAtMs && this.nowMs >= committedAtMs) {
          fail('held-after-regrant', `${earlier.user.name} held ${lock} (${earlier.mode}, token ${earlier.token}, received at ${Math.round(earlier.receivedAtMs)}ms) ` +
            `${earlier.ended === null ? 'still' : `until ${Math.round(endMs)}ms (${earlier.ended})`}, but ${later.user.name} was granted it ` +
            `(${later.mode}, token ${later.token}) by an entry committed at ${Math.round(committedAtMs)}ms`);
        }
      }
    }
  }

  /**
   * Every token a client holds is a grant the committed history made to one of that
   * client's sessions, and a hold still in user code belongs to a session the history
   * has not ended: once it has, the server may grant the lock to anyone (held-after-session-end).
   */
  checkGrantsCommitted(): void {
    const reached = this.sim.history.appliedIndex;
    for (const [lock, list] of this.holds) {
      for (const h of list) {
        if (h.token > reached) continue;
        const grants = this.sim.history.grantsAt.get(h.token) ?? [];
        const grant = grants.find((g) => g.lock === lock && g.token === h.token && this.sim.sessionOwner.get(g.session) === h.user.laneBase);
        if (grant === undefined) {
          fail('grant-not-committed', `${h.user.name} holds ${lock} with token ${h.token}, but the committed history made no such grant to its sessions`);
        }
        const endedAtMs = this.sim.sessionEndedAtMs.get(grant.session);
        if (endedAtMs !== undefined && (h.endedAtMs ?? Infinity) > endedAtMs) {
          fail('held-after-session-end', `${h.user.name} held ${lock} (token ${h.token}, received at ${Math.round(h.receivedAtMs)}ms) ` +
            `${h.ended === null ? 'still' : `until ${Math.round(h.endedAtMs ?? 0)}ms`}, but the history ended its session ${grant.session} at ${Math.round(endedAtMs)}ms`);
        }
      }
    }
  }

  /** Calls still pending `settleBoundMs` after healing (or after they started, if later). */
  checkSettled(): void {
    const healed = this.healedAtMs;
    if (healed === null) return;
    for (const c of this.calls) {
      if (this.nowMs - Math.max(healed, c.startMs) > settleBoundMs) {
        fail('request-hangs', `${c.user.name} ${c.what} (from ${Math.round(c.startMs)}ms) unsettled ${settleBoundMs}ms after healing at ${Math.round(healed)}ms`);
      }
    }
  }

  // ---- health: a majority with an unpaused leader, connected to it, and the client reaches the leader ----

  sampleHealth(): void {
    const c = this.cluster;
    const now = this.nowMs;
    let maxTerm = -1;
    for (const n of c.nodes) if (n.up) maxTerm = Math.max(maxTerm, n.group0.raft.status().term);
    const running = (n: SimNode): boolean => n.up && n.pausedUntilMs <= now;
    const leader = c.nodes.find((n) => running(n) && n.group0.raft.status().role === Role.Leader && n.group0.raft.status().term === maxTerm);
    let majority = false;
    if (leader !== undefined) {
      const reach = c.nodes.filter((n) => running(n) && (n === leader || (!c.net.blocked[leader.idx]![n.idx] && !c.net.blocked[n.idx]![leader.idx])));
      majority = reach.length > c.nodes.length / 2;
    }
    for (const u of this.users) {
      const healthy = majority && leader !== undefined && !this.net.isBlocked(u.idx, leader.idx);
      if (!healthy) u.healthySinceMs = null;
      else {
        u.healthySinceMs ??= now;
        this.stats.healthyMs += healthSampleMs;
      }
    }
  }

  // ---- nemesis ----

  /** One fault episode; returns how long until the next may start. */
  episode(p: Xoshiro128): number {
    const c = this.cluster;
    const n = c.nodes.length;
    const leader = c.leader();
    const ttl = this.ttlMs;
    const kind = pick(p, ['pause-leader', 'pause-leader', 'pause-and-cut', 'isolate-client', 'isolate-client', 'crash-leader', 'partition', 'cut-client',
      'majority-down', 'reset'] as const);
    c.note(`--- nemesis: ${kind}`);
    switch (kind) {
      case 'pause-leader': {
        // Longer than the TTL: a client that sticks to the paused leader loses its session (item 5).
        const target = leader ?? c.node(p.int(0, n - 1));
        const ms = p.int(Math.round(1.2 * ttl), Math.round(2.5 * ttl));
        c.pause(target.idx, ms);
        this.stats.leaderPauses++;
        if (this.stats.freshClients < freshClientsMax && p.next() < 0.7) {
          // A client that starts now and asks the paused leader first (item 1's first lock()).
          const others = c.nodes.filter((x) => x !== target).map(simAddress);
          c.world.at(p.int(10, 300), () => { this.addUser([simAddress(target), ...others], true); });
        }
        return ms + p.int(500, 2_000);
      }
      case 'pause-and-cut': {
        // A client cut off from everyone while the leader is paused: its session ends client-side,
        // and the new leader restarted the lease, so a grant may still reach it (item 1's window).
        const target = leader ?? c.node(p.int(0, n - 1));
        const user = pick(p, this.users);
        const pauseMs = p.int(Math.round(1.0 * ttl), Math.round(1.5 * ttl));
        const cutMs = p.int(Math.round(0.9 * ttl), Math.round(1.4 * ttl));
        c.pause(target.idx, pauseMs);
        this.stats.leaderPauses++;
        const all = c.nodes.map((x) => x.idx);
        this.net.setBlocked(user.idx, all, true);
        this.stats.clientCuts++;
        c.world.at(cutMs, () => this.net.setBlocked(user.idx, all, false));
        return Math.max(pauseMs, cutMs) + p.int(500, 2_000);
      }
      case 'isolate-client': {
        // A client cut off from every node for about a TTL: a grant answer made while its session
        // was still live on the server reaches it only after it counted the session lost (item 1).
        // A user with a lock() in flight, when there is one: its grant may be the late answer.
        const waiting = this.users.filter((u) => [...this.calls].some((call) => call.user === u && call.what.startsWith('lock ')));
        const user = pick(p, waiting.length > 0 ? waiting : this.users);
        const all = c.nodes.map((x) => x.idx);
        this.net.setBlocked(user.idx, all, true);
        this.stats.clientCuts++;
        const ms = p.int(ttl, Math.round(1.25 * ttl));
        c.world.at(ms, () => this.net.setBlocked(user.idx, all, false));
        return ms + p.int(200, 1_500);
      }
      case 'crash-leader': {
        const target = leader ?? c.node(p.int(0, n - 1));
        c.crash(target.idx);
        this.stats.leaderCrashes++;
        const downMs = p.int(200, 3_000);
        c.world.at(downMs, () => c.restart(target.idx));
        return downMs + p.int(500, 2_000);
      }
      case 'partition': {
        // The leader (or another node) alone on one side; clients keep their links.
        const target = leader !== null && p.next() < 0.7 ? leader : c.node(p.int(0, n - 1));
        c.isolate(target.idx);
        this.stats.partitions++;
        const ms = p.int(Math.round(0.5 * ttl), Math.round(2 * ttl));
        c.world.at(ms, () => c.heal());
        return ms + p.int(500, 2_000);
      }
      case 'cut-client': {
        // A client loses its paths to the leader, or to a minority of nodes.
        const user = pick(p, this.users);
        const cut = leader !== null && p.next() < 0.5 ? [leader.idx]
          : c.nodes.filter(() => p.next() < 0.4).map((x) => x.idx).slice(0, Math.floor((n - 1) / 2));
        if (cut.length === 0) return 100;
        this.net.setBlocked(user.idx, cut, true);
        this.stats.clientCuts++;
        const ms = p.int(Math.round(0.3 * ttl), Math.round(2 * ttl));
        c.world.at(ms, () => this.net.setBlocked(user.idx, cut, false));
        return ms + p.int(200, 1_000);
      }
      case 'majority-down': {
        // No quorum for a while: sessions may be lost; nobody may hold what another holds.
        const victims = c.nodes.map((x) => x.idx).slice(0, Math.floor(n / 2) + 1);
        const ms = p.int(Math.round(0.5 * ttl), Math.round(1.5 * ttl));
        for (const v of victims) c.pause(v, ms);
        return ms + p.int(1_000, 3_000);
      }
      case 'reset': {
        const user = pick(p, this.users);
        this.net.reset(user.idx);
        this.stats.resets++;
        return p.int(200, 1_000);
      }
    }
  }
}

export async function runClientLockSeed(seed: number, opts: ClientSimOptions = {}): Promise<ClientSimResult> {
  const variant = opts.variant ?? 'correct';
  const p = new Xoshiro128((seed * 2246822519) ^ 0x0c11e47);
  const nodeCount = pick(p, [3, 3, 5]);
  const clusterOpts: Omit<SimClusterOptions, 'services'> = {
    seed,
    nodeCount,
    network: { delayMsMin: 1, delayMsMax: pick(p, [3, 10]), longDelayProb: pick(p, [0, 0.02]), longDelayMsMax: 100,
      dropProb: pick(p, [0, 0.01]), dupProb: pick(p, [0, 0.02]) },
    fsyncMsMax: pick(p, [0, 3, 10]),
    diskVariant: 'correct',
    // Client and nodes count the lease at the same rate: the lease promise assumes bounded drift, not tested here.
    clockSkew: 0,
    snapshotEntries: p.next() < 0.5 ? undefined : 40,
    checkAckDurability: true,
  };
  const run = new ClientRun(seed, variant, new Xoshiro128(p.int(0, 0x7fffffff)), clusterOpts);
  const c = run.cluster;
  c.traceEnabled = opts.trace === true;
  const usersCount = p.int(2, 4);
  const faultPhaseMs = opts.faultPhaseMs ?? 25_000;
  const n = clusterOpts.network;
  const profile = `nodes=${nodeCount} drop=${n.dropProb} dup=${n.dupProb} delay<=${n.delayMsMax}ms clientDelay<=${run.net.opts.delayMsMax}ms ` +
    `fsync<=${clusterOpts.fsyncMsMax}ms compact=${clusterOpts.snapshotEntries ?? 'default'} users=${usersCount} locks=${run.lockNames.join('')} ` +
    `ttl=${run.ttlMs}ms faultPhase=${faultPhaseMs}ms variant=${variant}`;
  const result = (property: string, error: string): ClientSimResult => ({
    seed, ok: property === '', property, error, profile, stats: c.statsNow(),
    clientStats: { ...run.stats, resets: run.net.resets }, trace: c.trace, events: c.world.eventsRun, virtualMs: c.nowMs,
  });
  try {
    if (!(await c.world.runUntil(() => c.stableLeader() !== null, leaderAfterHealMs))) return result('liveness', 'no first leader');
    const addresses = c.nodes.map(simAddress);
    for (let i = 0; i < usersCount; i++) run.addUser([...addresses.slice(i % nodeCount), ...addresses.slice(0, i % nodeCount)], false);
    const sample = (): void => {
      run.sampleHealth();
      c.world.at(healthSampleMs, sample);
    };
    c.world.at(0, sample);
    const checkLoop = (): void => {
      run.checkGrantsCommitted();
      run.checkSettled();
      c.world.at(250, checkLoop);
    };
    c.world.at(250, checkLoop);
    const nemesis = new Xoshiro128(seed ^ 0x5eed0c1e);
    const endMs = c.nowMs + faultPhaseMs;
    await c.world.runMs(nemesis.int(500, 2_000));
    while (c.nowMs < endMs) await c.world.runMs(run.episode(nemesis));

    c.healAll();
    run.net.healAll();
    run.healed();
    for (const u of run.users) u.liveness = true;
    if (!(await c.world.runUntil(() => c.stableLeader() !== null, leaderAfterHealMs))) {
      return result('liveness', `no stable leader within ${leaderAfterHealMs}ms of healing`);
    }
    if (!(await c.world.runUntil(() => run.users.every((u) => u.done), convergeMsMax))) {
      return result('liveness', `users without locks ${convergeMsMax}ms after healing: ${run.users.map((u) => u.describe()).join('; ')}`);
    }
    for (const u of run.users) u.stopped = true;
    if (!(await c.world.runUntil(() => run.callsPending === 0 && run.sim.converged(), convergeMsMax))) {
      return result('liveness', `replicas did not converge or ${run.callsPending} calls stayed pending`);
    }
    run.checkGrantsCommitted();
    for (const lock of run.lockNames) run.checkHolds(lock);
    return result('', '');
  } catch (err) {
    const failure = failureOf(err);
    return result(failure.property, failure.error);
  }
}
