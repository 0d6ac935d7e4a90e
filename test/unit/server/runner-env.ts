// An in-process GroupHostEnv for unit tests of server/raft/runner.ts: storage that
// is durable at once (or reports overload on demand), a manual scheduler, a fixed
// clock, and recorders for peer sends and fatal calls. Drives groups by ticking
// and draining deferred work in bounded loops, with no timers and no disk.

import { readContextNonceBytes } from '../../../core/constants.js';
import { type GroupId, groupId, type NodeId, nodeId } from '../../../core/ids.js';
import type { Entry, HardState, Snapshot } from '../../../core/raft/types.js';
import { DsyncError, ErrorCode } from '../../../protocol/errors.js';
import { Logger } from '../../../server/node/log.js';
import { GroupHost, type GroupHostEnv, type GroupRunner, type RaftStorage, type StateMachine } from '../../../server/raft/runner.js';
import type { Cancel, MonotonicClock, Scheduler } from '../../../server/runtime.js';

/** Storage whose every append is durable the moment it returns. */
export class InstantStorage implements RaftStorage {
  durable = 0;
  appends = 0;
  /** Bytes the fake pretends are queued; hasRoomFor() refuses when this plus the request exceed roomBytes. */
  queuedBytes = 0;
  roomBytes = Number.MAX_SAFE_INTEGER;

  /** Every append, in order: what the runner asked the WAL to write. */
  readonly batches: { readonly hardState: HardState | null; readonly entries: number }[] = [];

  append(_group: GroupId, hs: HardState | null, entries: readonly Entry[]): number {
    this.appends++;
    this.batches.push({ hardState: hs, entries: entries.length });
    return ++this.durable;
  }

  whenDurable(_seq: number): Promise<void> {
    return Promise.resolve();
  }

  hasRoomFor(bytes: number): boolean {
    return this.queuedBytes + bytes <= this.roomBytes;
  }

  saveSnapshot(_group: GroupId, _snapshot: Snapshot): Promise<void> {
    return Promise.resolve();
  }

  readonly droppedGroups: GroupId[] = [];

  dropGroup(group: GroupId): Promise<void> {
    this.droppedGroups.push(group);
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** Deferred work and periodic callbacks, run only when the test says so. */
export class ManualScheduler implements Scheduler {
  readonly deferred: (() => void)[] = [];
  readonly periodic = new Set<() => void>();

  defer(fn: () => void): void {
    this.deferred.push(fn);
  }

  after(_ms: number, _fn: () => void): Cancel {
    return () => {};
  }

  every(_ms: number, fn: () => void): Cancel {
    this.periodic.add(fn);
    return () => this.periodic.delete(fn);
  }

  /** Runs deferred work until none is left (bounded: a loop of deferrals is a bug). */
  drain(): void {
    for (let i = 0; i < 100_000 && this.deferred.length > 0; i++) this.deferred.shift()?.();
    if (this.deferred.length > 0) throw new Error('deferred work never settles');
  }

  tick(): void {
    for (const fn of [...this.periodic]) fn();
    this.drain();
  }
}

export const nullMachine: StateMachine = {
  apply: () => undefined,
  snapshot: () => new Uint8Array(0),
  restore: () => {},
};

export interface TestHost {
  readonly host: GroupHost;
  readonly storage: InstantStorage;
  readonly scheduler: ManualScheduler;
  readonly fatals: string[];
  readonly sent: { peer: NodeId; batch: Uint8Array }[];
}

export function nonce(fill: number): Uint8Array {
  return new Uint8Array(readContextNonceBytes).fill(fill);
}

export function testHost(opts: { id?: string; bootNonce?: Uint8Array; storage?: InstantStorage; clock?: MonotonicClock } = {}): TestHost {
  const storage = opts.storage ?? new InstantStorage();
  const scheduler = new ManualScheduler();
  const fatals: string[] = [];
  const sent: { peer: NodeId; batch: Uint8Array }[] = [];
  const env: GroupHostEnv = {
    nodeId: nodeId(opts.id ?? 'n1'),
    storage,
    recovered: new Map(),
    sendToPeer: (peer, batch) => { sent.push({ peer, batch }); },
    clock: opts.clock ?? { nowMs: () => 0 },
    scheduler,
    log: new Logger(opts.id ?? 'n1', 'error', () => {}),
    notLeader: (what, leader) => new DsyncError(ErrorCode.NOT_LEADER, `not the leader for ${what} (${leader})`),
    fatal: (message) => { fatals.push(message); },
    seed: 1,
    bootNonce: opts.bootNonce ?? nonce(1),
  };
  return { host: new GroupHost(env), storage, scheduler, fatals, sent };
}

/** Group 0 with this node as its only voter, ticked until it leads (bounded). */
export function soloLeader(h: TestHost): GroupRunner {
  const g = h.host.ensure(groupId(0), nullMachine, { voters: [h.host.nodeId], learners: [] });
  for (let i = 0; i < 1_000 && !(g.isLeader && g.applied > 0); i++) h.scheduler.tick();
  if (!g.isLeader) throw new Error('a single-voter group did not elect itself within 1000 ticks');
  return g;
}
