// The nemesis of a fault run: a seeded schedule of faults against the cluster —
// kill -9 and restart, SIGSTOP/SIGCONT past the session TTL (including a leader
// paused while a fresh client makes its first lock(), and a leader paused ~15 s
// scaled to the run), partitions through the peer-link proxies (minority/majority,
// one-way, bridge; connections reset or blackholed), delayed and flaky links, a new
// node joining as a voter and being removed again — one
// fault at a time, each healed before a quiet gap so recovery can be measured.
// It knows nothing of services: workloads hear of each fault through a callback.

import type { Prng } from '../../core/prng.js';
import type { FaultEvent } from '../checker/history.js';
import type { ChaosCluster, ChaosNode } from './cluster.js';
import type { FaultNotice } from './workload.js';

export type MoveName = 'kill' | 'pause' | 'pause-leader-first-lock' | 'pause-leader-long' | 'partition' | 'one-way' | 'bridge' | 'delay'
  | 'flaky' | 'lose-unsynced' | 'join-leave';

export const moveNames: readonly MoveName[] = ['kill', 'pause', 'pause-leader-first-lock', 'pause-leader-long', 'partition', 'one-way',
  'bridge', 'delay', 'flaky', 'lose-unsynced', 'join-leave'];

/** Moves every run makes once (the repairs issue's scenarios and the basic kinds), in a seeded order. */
const mustMoves: readonly MoveName[] = ['pause-leader-first-lock', 'pause-leader-long', 'kill', 'partition', 'lose-unsynced'];
/** A must move's usual length with the quiet gap after it (the long pause is longer, a kill shorter). */
const mustMoveMsTypical = 9_000;
/** After a lose-unsynced hold, how long a node still running may take to reach its failpoint. */
const loseUnsyncedGraceMs = 15_000;
const randomMoves: readonly MoveName[] = ['kill', 'kill', 'pause', 'pause', 'partition', 'partition', 'one-way', 'bridge', 'delay', 'flaky',
  'lose-unsynced', 'join-leave'];

export interface NemesisOptions {
  readonly ttlMs: number;
  /** Run length; the long leader pause is min(15 s, a quarter of it). */
  readonly durationMs: number;
  /** Run-relative ms after which no new fault starts (all healed by then + its length). */
  readonly faultsUntilMs: number;
  /** Pause before the first fault. */
  readonly warmupMs: number;
  /** Only these moves (default: all). */
  readonly moves?: readonly MoveName[];
}

interface Planned {
  readonly kind: string;
  readonly detail: string;
  readonly nodes: readonly string[];
  readonly tag: string;
  readonly holdMs: number;
  readonly apply: () => Promise<void>;
  /** Undoes the fault; a string it returns is what happened, added to the fault's detail. */
  readonly heal: () => Promise<void | string>;
}

export class Nemesis {
  readonly faults: FaultEvent[] = [];
  private stopped = false;
  private nextId = 1;

  constructor(private readonly cluster: ChaosCluster, private readonly prng: Prng, private readonly opts: NemesisOptions,
    private readonly now: () => number, private readonly onFault: (n: FaultNotice) => void, private readonly log: (s: string) => void) {}

  stop(): void {
    this.stopped = true;
  }

  async run(): Promise<void> {
    await this.sleep(this.opts.warmupMs);
    const allowed = this.opts.moves ?? [...new Set([...mustMoves, ...randomMoves])];
    const must = this.shuffle(mustMoves.filter((m) => allowed.includes(m)));
    const pool = randomMoves.filter((m) => allowed.includes(m));
    while (!this.stopped) {
      // Random moves between the must moves, unless the window left is only enough for the latter.
      const tight = must.length * mustMoveMsTypical > this.opts.faultsUntilMs - this.now();
      const move = must.length > 0 && (pool.length === 0 || tight || this.prng.next() < 0.6) ? must.shift() : this.pick(pool);
      if (move === undefined) break;
      const plan = await this.plan(move);
      if (plan === null) continue;
      if (this.now() + plan.holdMs > this.opts.faultsUntilMs) {
        if (must.length > 0 && move !== 'pause-leader-long') continue; // a shorter one may still fit
        break;
      }
      await this.execute(plan);
      await this.sleep(this.prng.int(1_500, 3_500));
    }
  }

  private async execute(p: Planned): Promise<void> {
    const startMs = this.now();
    const id = this.nextId++;
    this.log(`${fmt(startMs)} fault ${id} ${p.kind} ${p.detail} for ${p.holdMs} ms`);
    await p.apply();
    const leader = p.tag === '' ? null : p.nodes[0] ?? null;
    const open: FaultEvent = { id, kind: p.kind, detail: p.detail, nodes: p.nodes, startMs, healMs: Infinity };
    this.onFault({ fault: open, leader, tag: p.tag });
    await this.sleep(p.holdMs);
    const healMs = this.now();
    let outcome: void | string = undefined;
    try {
      outcome = await p.heal();
    } finally {
      this.faults.push({ ...open, detail: typeof outcome === 'string' ? `${open.detail}; ${outcome}` : open.detail, healMs });
      this.log(`${fmt(this.now())} healed ${id}`);
    }
  }

  private async plan(move: MoveName): Promise<Planned | null> {
    const c = this.cluster;
    const ids = c.ids;
    const ttl = this.opts.ttlMs;
    const leader = await c.leader();
    const anyNode = (): string => this.pick(ids) ?? 'n1';
    const target = (leaderBias: number): string => (leader !== null && this.prng.next() < leaderBias ? leader : anyNode());
    switch (move) {
      case 'kill': {
        const n = target(0.5);
        const holdMs = this.prng.int(500, 4_000);
        return { kind: 'kill', detail: `${n}${n === leader ? ' (leader)' : ''} kill -9, restart after ${holdMs} ms`, nodes: [n], tag: '',
          holdMs, apply: () => c.node(n).kill9(), heal: () => c.node(n).start() };
      }
      case 'lose-unsynced': {
        // Restarted with the WAL failpoint: after a few more batches it loses the unsynced
        // half of one (a power cut between write and fsync) and dies; restarted clean at heal.
        const n = target(0.5);
        // A restarted follower writes a batch only when appends reach it (commit-only hard
        // states ride along), which takes its peer links a moment: few batches, time to fire
        // (1-20 did not fire within the hold in 3 of 3 faults on a machine at load 15).
        const batches = this.prng.int(1, 8);
        const holdMs = this.prng.int(4_000, 8_000);
        return { kind: 'lose-unsynced', detail: `${n}${n === leader ? ' (leader)' : ''} loses the unsynced half of its WAL batch ` +
          `${batches + 1} after a restart, then dies; clean restart after ${holdMs} ms`, nodes: [n], tag: '', holdMs,
          apply: async () => { await c.node(n).kill9(); await c.node(n).start(`lose-unsynced-after:${batches}`); },
          heal: async () => {
            // The hold starts at spawn, so a slow start (a loaded machine) can eat most of it:
            // give the failpoint a bounded grace to fire before calling it a miss.
            await c.node(n).exitedWithin(loseUnsyncedGraceMs);
            const outcome = c.node(n).running ? 'the failpoint did not fire (killed)' : 'died at the failpoint';
            this.log(`${fmt(this.now())} ${n}: ${outcome}`);
            await c.node(n).kill9();
            await c.node(n).start();
            return outcome;
          } };
      }
      case 'join-leave': {
        // A new node joins (learner, caught up, promoted to voter), serves a while as a
        // member (replica, cache home, maybe leader), then is removed and stopped.
        const via = c.node(leader ?? anyNode()).address;
        const holdMs = this.prng.int(3_000, 6_000);
        let joined: ChaosNode | null = null;
        return { kind: 'join-leave', detail: `a new node joins through ${via}, is removed after ${holdMs} ms as a voter`, nodes: [], tag: '', holdMs,
          apply: async () => { joined = await c.join(via); },
          heal: async () => {
            if (joined === null) return 'it never joined';
            await c.leave(joined);
            return `${joined.id} joined as a voter and left`;
          } };
      }
      case 'pause':
      case 'pause-leader-first-lock':
      case 'pause-leader-long': {
        const n = move === 'pause' ? target(0.6) : leader;
        if (n === null) return null;
        const holdMs = move === 'pause-leader-long' ? Math.min(15_000, Math.floor(this.opts.durationMs / 4))
          : this.prng.int(Math.floor(ttl * 1.3), ttl * 2);
        const what = move === 'pause-leader-first-lock' ? ' while a fresh client makes its first lock()' : '';
        return { kind: move === 'pause' ? 'pause' : move, detail: `${n}${n === leader ? ' (leader)' : ''} SIGSTOP ${holdMs} ms${what}`,
          nodes: [n], tag: move === 'pause-leader-first-lock' ? 'first-lock' : '', holdMs,
          apply: () => Promise.resolve(c.node(n).pause()), heal: () => Promise.resolve(c.node(n).resume()) };
      }
      case 'partition': {
        const minoritySize = this.prng.int(1, Math.floor((ids.length - 1) / 2));
        const rest = this.shuffle(ids.filter((x) => x !== leader));
        const minority = leader !== null && this.prng.next() < 0.5 ? [leader, ...rest].slice(0, minoritySize) : rest.slice(0, minoritySize);
        const majority = ids.filter((x) => !minority.includes(x));
        const style = this.prng.next() < 0.5 ? 'reset' as const : 'blackhole' as const;
        const holdMs = this.prng.int(2_000, Math.max(2_000, ttl * 3));
        const links = minority.flatMap((a) => majority.flatMap((b) => [[a, b], [b, a]] as const));
        return { kind: 'partition', detail: `{${minority.join(',')}}${leader !== null && minority.includes(leader) ? ' (with leader)' : ''} | ` +
          `{${majority.join(',')}} ${style}`, nodes: minority, tag: '', holdMs,
          apply: () => this.cut(links, style), heal: () => this.heal() };
      }
      case 'one-way': {
        const n = target(0.7);
        const outbound = this.prng.next() < 0.5;
        const others = ids.filter((x) => x !== n);
        const links = others.map((o) => (outbound ? [n, o] as const : [o, n] as const));
        const holdMs = this.prng.int(2_000, Math.max(2_000, ttl * 3));
        return { kind: 'one-way', detail: `${n}${n === leader ? ' (leader)' : ''} ${outbound ? 'cannot send to' : 'cannot hear from'} ` +
          `${others.join(',')}`, nodes: [n], tag: '', holdMs, apply: () => this.cut(links, 'blackhole'), heal: () => this.heal() };
      }
      case 'bridge': {
        const order = this.shuffle(ids);
        const bridge = order[0] ?? 'n1';
        const half = Math.floor((order.length - 1) / 2);
        const a = order.slice(1, 1 + half);
        const b = order.slice(1 + half);
        const links = a.flatMap((x) => b.flatMap((y) => [[x, y], [y, x]] as const));
        const holdMs = this.prng.int(2_000, Math.max(2_000, ttl * 3));
        return { kind: 'bridge', detail: `{${a.join(',')}} | {${b.join(',')}} joined only through ${bridge}`, nodes: [...a, ...b], tag: '',
          holdMs, apply: () => this.cut(links, 'reset'), heal: () => this.heal() };
      }
      case 'delay': {
        const n = target(0.5);
        const delayMs = this.prng.int(20, 150);
        const jitterMs = Math.floor(delayMs / 2);
        const holdMs = this.prng.int(3_000, 6_000);
        const links = ids.filter((x) => x !== n).flatMap((o) => [[n, o], [o, n]] as const);
        return { kind: 'delay', detail: `links of ${n} delayed ${delayMs}±${jitterMs} ms`, nodes: [n], tag: '', holdMs,
          apply: () => Promise.resolve(links.forEach(([x, y]) => c.setLink(x, y, { kind: 'delay', delayMs, jitterMs }))),
          heal: () => this.heal() };
      }
      case 'flaky': {
        const resetRatio = this.prng.int(1, 10) / 100;
        const holdMs = this.prng.int(3_000, 6_000);
        return { kind: 'flaky', detail: `every peer link resets ${(resetRatio * 100).toFixed(0)}% of chunks`, nodes: ids, tag: '', holdMs,
          apply: () => Promise.resolve(ids.forEach((x) => ids.forEach((y) => { if (x !== y) c.setLink(x, y, { kind: 'flaky', resetRatio }); }))),
          heal: () => this.heal() };
      }
    }
  }

  private cut(links: readonly (readonly [string, string])[], style: 'reset' | 'blackhole'): Promise<void> {
    for (const [a, b] of links) this.cluster.setLink(a, b, { kind: style });
    return Promise.resolve();
  }

  private heal(): Promise<void> {
    this.cluster.healLinks();
    return Promise.resolve();
  }

  private pick<T>(xs: readonly T[]): T | undefined {
    return xs.length === 0 ? undefined : xs[this.prng.int(0, xs.length - 1)];
  }

  private shuffle<T>(xs: readonly T[]): T[] {
    const out = [...xs];
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.prng.int(0, i);
      const tmp = out[i] as T;
      out[i] = out[j] as T;
      out[j] = tmp;
    }
    return out;
  }

  private async sleep(ms: number): Promise<void> {
    const until = this.now() + ms;
    while (!this.stopped && this.now() < until) await new Promise((r) => setTimeout(r, Math.min(200, until - this.now())));
  }
}

function fmt(ms: number): string {
  return `[${(ms / 1000).toFixed(1).padStart(6)} s]`;
}
