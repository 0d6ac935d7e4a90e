// A simulated disk with the WAL's contract (server/storage/wal.ts), so test/sim can
// run the real GroupRunner on it: append() returns a seq, records become durable in
// order after a seeded fsync delay, a crash keeps the durable records plus some
// prefix of the unsynced ones (a torn tail, cut at a record boundary), and restart
// rebuilds each group the way server/storage/recovery.ts does.

import { assert } from '../../core/assert.js';
import type { GroupId } from '../../core/ids.js';
import { logIndex } from '../../core/ids.js';
import type { Xoshiro128 } from '../../core/prng.js';
import type { Entry, HardState, Snapshot } from '../../core/raft/types.js';
import type { RaftStorage } from '../../server/raft/runner.js';
import type { RecoveredGroup, SaveSnapshotOptions } from '../../server/storage/wal.js';
import type { NodeTime, SimWorld } from './world.js';

/**
 * Deliberately broken disks (canaries) the checkers must catch:
 * - ack-before-fsync: whenDurable() resolves (and `durable` claims) before the write is durable;
 * - forget-vote: a crash loses the vote of every group's hard state.
 */
export type DiskVariant = 'correct' | 'ack-before-fsync' | 'forget-vote';

/** What the durable state of one group looks like, as recovery would rebuild it. */
export interface DurableGroup {
  hardState: HardState | null;
  snapshot: Snapshot | null;
  /** Entries records with a lower seq are ignored (written before a log-replacing snapshot). */
  floorSeq: number;
  /** Contiguous; may start at or below the snapshot (compaction filters on recovery). */
  entries: Entry[];
}

/** Told about each record the moment it becomes durable (the Raft checker's persistence view). */
export interface DiskObserver {
  onDurableEntry(group: GroupId, entry: Entry, prevTerm: number, nodeTerm: number, overwritten: Entry | undefined): void;
  onDurableHardState(group: GroupId, hs: HardState, before: HardState | null, lastIndex: number): void;
}

type DiskRecord =
  | { readonly seq: number; readonly group: GroupId; readonly kind: 'entries'; readonly entries: readonly Entry[]; readonly term: number }
  | { readonly seq: number; readonly group: GroupId; readonly kind: 'hardState'; readonly hardState: HardState }
  | { readonly seq: number; readonly group: GroupId; readonly kind: 'tombstone' };

interface InFlight {
  readonly records: DiskRecord[];
  readonly durableAtMs: number;
}

export interface DiskOptions {
  /** A batch is durable 0..fsyncMsMax ms after its append (never before an earlier batch). */
  readonly fsyncMsMax: number;
  readonly variant: DiskVariant;
}

export interface DiskStats {
  appends: number;
  crashes: number;
  tornWrites: number;
  snapshotsSaved: number;
}

export class SimDisk {
  private readonly groups = new Map<GroupId, DurableGroup>();
  /** Groups whose tombstone was appended: nothing more may be written for them (ids are never reused). */
  private readonly closedGroups = new Set<GroupId>();
  private inFlight: InFlight[] = [];
  private nextSeq = 1;
  private durableSeq = 0;
  private lastDurableAtMs = 0;
  /** Bumped by every crash: completions scheduled before it are void. */
  private epoch = 0;
  /** Term of the last hard state appended per group: the term an entries record was written in. */
  private readonly appendedTerm = new Map<GroupId, number>();
  private handle: SimStorage | null = null;
  /** Called (once) after the next append with the ms until it is durable: lets a fault crash mid-write. */
  private onNextAppend: ((msUntilDurable: number) => void) | null = null;
  observer: DiskObserver | null = null;
  readonly stats: DiskStats = { appends: 0, crashes: 0, tornWrites: 0, snapshotsSaved: 0 };

  constructor(
    private readonly world: SimWorld,
    private readonly prng: Xoshiro128,
    private readonly opts: DiskOptions,
  ) {}

  /** The RaftStorage one node incarnation writes through (the previous one is dead). */
  open(time: NodeTime): RaftStorage {
    this.handle = new SimStorage(this, time, this.opts.variant === 'ack-before-fsync');
    return this.handle;
  }

  get durable(): number {
    return this.durableSeq;
  }

  /** Arms fn to run after the next append (see onNextAppend); replaces an earlier arming. */
  armOnNextAppend(fn: (msUntilDurable: number) => void): void {
    this.onNextAppend = fn;
  }

  /** Records written but not yet durable (what a crash now would lose or tear). */
  get unsyncedCount(): number {
    return this.inFlight.reduce((a, b) => a + b.records.length, 0);
  }

  get lastSeq(): number {
    return this.nextSeq - 1;
  }

  /** The durable view of a group (for the checkers); undefined when it never wrote. */
  group(group: GroupId): DurableGroup | undefined {
    return this.groups.get(group);
  }

  /** Last durable log index of a group (snapshot index when its log is empty). */
  lastIndex(group: GroupId): number {
    const g = this.groups.get(group);
    if (g === undefined) return 0;
    const last = g.entries[g.entries.length - 1];
    return Math.max(last?.index ?? 0, g.snapshot?.meta.index ?? 0);
  }

  append(group: GroupId, hardState: HardState | null, entries: readonly Entry[]): number {
    assert(hardState !== null || entries.length > 0, 'append writes something');
    assert(!this.closedGroups.has(group), `group ${group} was dropped; group ids are never reused`);
    this.stats.appends++;
    // The term the entries are attributed to is the one before this batch's hard state:
    // a Ready may carry entries taken in term t together with a step to a later term.
    const termBefore = this.appendedTerm.get(group) ?? 0;
    if (hardState !== null) this.appendedTerm.set(group, hardState.term);
    const records: DiskRecord[] = [];
    // Entries first, the hard state that may commit them last (etcd's order; item 2 of issue 7).
    if (entries.length > 0) {
      records.push({ seq: this.nextSeq++, group, kind: 'entries', entries: entries.slice(), term: termBefore });
    }
    if (hardState !== null) records.push({ seq: this.nextSeq++, group, kind: 'hardState', hardState });
    return this.queue(records);
  }

  /** The WAL's dropGroup: a tombstone record; once durable the group is gone (a restart does not see it). */
  dropGroup(group: GroupId): number {
    assert(!this.closedGroups.has(group), `group ${group} dropped twice`);
    this.closedGroups.add(group);
    return this.queue([{ seq: this.nextSeq++, group, kind: 'tombstone' }]);
  }

  private queue(records: DiskRecord[]): number {
    const durableAtMs = Math.max(this.lastDurableAtMs, this.world.nowMs + this.prng.int(0, this.opts.fsyncMsMax));
    this.lastDurableAtMs = durableAtMs;
    this.inFlight.push({ records, durableAtMs });
    const epoch = this.epoch;
    this.world.at(durableAtMs - this.world.nowMs, () => this.complete(epoch));
    const armed = this.onNextAppend;
    if (armed !== null) {
      this.onNextAppend = null;
      armed(durableAtMs - this.world.nowMs);
    }
    return this.nextSeq - 1;
  }

  /** The fsync of every batch due by now returns. */
  private complete(epoch: number): void {
    if (epoch !== this.epoch) return;
    let done = 0;
    while (done < this.inFlight.length && this.inFlight[done]!.durableAtMs <= this.world.nowMs) {
      for (const rec of this.inFlight[done]!.records) this.persist(rec);
      done++;
    }
    if (done === 0) return;
    this.inFlight = this.inFlight.slice(done);
    const last = this.inFlight[0]?.records[0]?.seq;
    this.durableSeq = last === undefined ? this.nextSeq - 1 : last - 1;
    this.handle?.durableAdvanced(this.durableSeq);
  }

  /** One record reaches the platter: replayed exactly as recovery replays it. */
  private persist(rec: DiskRecord): void {
    if (rec.kind === 'tombstone') {
      this.groups.delete(rec.group);
      return;
    }
    let g = this.groups.get(rec.group);
    if (g === undefined) {
      g = { hardState: null, snapshot: null, floorSeq: 0, entries: [] };
      this.groups.set(rec.group, g);
    }
    if (rec.kind === 'hardState') {
      const before = g.hardState;
      g.hardState = rec.hardState;
      this.world.guard(() => this.observer?.onDurableHardState(rec.group, rec.hardState, before, this.lastIndex(rec.group)));
      return;
    }
    if (rec.seq < g.floorSeq) return;
    const first = rec.entries[0];
    assert(first !== undefined, 'entries record is non-empty');
    const head = g.entries[0];
    const snapIndex = g.snapshot?.meta.index ?? 0;
    const lastIndex = head === undefined ? snapIndex : head.index + g.entries.length - 1;
    assert(first.index <= lastIndex + 1 || first.index <= snapIndex + 1, `entries from ${first.index} leave a gap after ${lastIndex}`);
    for (const e of rec.entries) {
      const h = g.entries[0];
      const offset = h === undefined ? -1 : e.index - h.index;
      const overwritten = offset >= 0 ? g.entries[offset] : undefined;
      const prev = offset >= 1 ? g.entries[offset - 1] : undefined;
      const prevTerm = prev !== undefined ? prev.term : e.index - 1 === snapIndex ? (g.snapshot?.meta.term ?? 0) : 0;
      this.world.guard(() => this.observer?.onDurableEntry(rec.group, e, prevTerm, rec.term, overwritten));
      // recovery.ts applyEntries: a record starting at i replaces i.. of what came before.
      if (h === undefined || offset <= 0 || offset > g.entries.length) g.entries = [e];
      else {
        g.entries.length = offset;
        g.entries.push(e);
      }
    }
  }

  saveSnapshot(group: GroupId, snapshot: Snapshot, opts: SaveSnapshotOptions, time: NodeTime): Promise<void> {
    const replacesLog = opts.replacesLog ?? false;
    const floorSeq = replacesLog ? this.nextSeq : null;
    const epoch = this.epoch;
    return new Promise<void>((resolve) => {
      // Written atomically (temp file, fsync, rename): all of it or, after a crash, none.
      this.world.at(this.prng.int(0, this.opts.fsyncMsMax), () => {
        if (epoch !== this.epoch || this.closedGroups.has(group)) return;
        let g = this.groups.get(group);
        if (g === undefined) {
          g = { hardState: null, snapshot: null, floorSeq: 0, entries: [] };
          this.groups.set(group, g);
        }
        if (g.snapshot !== null && g.snapshot.meta.index > snapshot.meta.index) {
          resolve();
          return;
        }
        g.snapshot = snapshot;
        this.stats.snapshotsSaved++;
        const index = snapshot.meta.index;
        if (floorSeq !== null) {
          g.floorSeq = floorSeq;
          g.entries = [];
        } else {
          g.entries = g.entries.filter((e) => e.index > index);
        }
        time.defer(resolve);
      });
    });
  }

  /**
   * Power loss: the durable records stay; the unsynced ones survive as a prefix (a
   * torn tail cut at a record boundary, as recovery cuts it), possibly empty.
   */
  crash(): void {
    this.epoch++;
    this.stats.crashes++;
    this.handle = null;
    this.onNextAppend = null;
    const pending = this.inFlight.flatMap((b) => b.records);
    const kept = pending.length === 0 || this.prng.next() < 0.5 ? 0 : this.prng.int(0, pending.length);
    for (let i = 0; i < kept; i++) this.persist(pending[i]!);
    if (kept < pending.length) this.stats.tornWrites++;
    this.inFlight = [];
    this.durableSeq = this.nextSeq - 1;
    this.lastDurableAtMs = this.world.nowMs;
    if (this.opts.variant === 'forget-vote') {
      for (const g of this.groups.values()) if (g.hardState !== null) g.hardState = { ...g.hardState, vote: '' };
    }
    this.appendedTerm.clear();
    for (const [id, g] of this.groups) if (g.hardState !== null) this.appendedTerm.set(id, g.hardState.term);
  }

  /** Groups dropped for good (their tombstones, which a restart reads back as recovery.ts does). */
  droppedGroups(): ReadonlySet<GroupId> {
    return new Set(this.closedGroups);
  }

  /** What a restart reads back (recovery.ts): entries above the snapshot, commit clamped into the log. */
  recover(): Map<GroupId, RecoveredGroup> {
    const out = new Map<GroupId, RecoveredGroup>();
    for (const [group, g] of this.groups) {
      const snapIndex = g.snapshot?.meta.index ?? 0;
      const entries = g.entries.filter((e) => e.index > snapIndex);
      const first = entries[0];
      assert(first === undefined || first.index === snapIndex + 1, `group ${group}: log starts at ${first?.index} after snapshot ${snapIndex}`);
      const lastIndex = snapIndex + entries.length;
      // Commit is clamped into [snapshot index, last index]: above the log it names lost
      // entries (issue 7 item 2); below a compaction snapshot it is a commit-only hard
      // state that was never waited for, lost while the snapshot file (fsynced on its own)
      // survived — a snapshot holds applied, hence committed, entries. Found by this
      // simulator (seeds 27 and 58 of runner.test.ts): recovery.ts must clamp the same way,
      // or RaftLog refuses to restart ("restart commit N outside log").
      let hardState = g.hardState;
      if (hardState !== null && hardState.commit > lastIndex) hardState = { ...hardState, commit: logIndex(lastIndex) };
      if (hardState !== null && hardState.commit < snapIndex) hardState = { ...hardState, commit: logIndex(snapIndex) };
      out.set(group, { hardState, snapshot: g.snapshot, entries });
    }
    return out;
  }
}

/** One incarnation's RaftStorage over the disk; whenDurable answers through the node's (pausable) time. */
class SimStorage implements RaftStorage {
  private waiters: { seq: number; resolve: () => void }[] = [];

  constructor(
    private readonly disk: SimDisk,
    private readonly time: NodeTime,
    private readonly ackEarly: boolean,
  ) {}

  get durable(): number {
    return this.ackEarly ? this.disk.lastSeq : this.disk.durable;
  }

  append(group: GroupId, hardState: HardState | null, entries: readonly Entry[]): number {
    assert(this.time.alive, 'a crashed incarnation does not write');
    return this.disk.append(group, hardState, entries);
  }

  /** The simulated disk has no write queue to overflow: WAL overload is tested in test/unit/server/runner-overload. */
  hasRoomFor(_bytes: number): boolean {
    return true;
  }

  whenDurable(seq: number): Promise<void> {
    assert(seq <= this.disk.lastSeq, `whenDurable(${seq}) names an appended seq`);
    if (this.ackEarly || seq <= this.disk.durable) return Promise.resolve();
    return new Promise<void>((resolve) => this.waiters.push({ seq, resolve }));
  }

  durableAdvanced(durableSeq: number): void {
    const due = this.waiters.filter((w) => w.seq <= durableSeq);
    if (due.length === 0) return;
    this.waiters = this.waiters.filter((w) => w.seq > durableSeq);
    this.time.defer(() => {
      for (const w of due) w.resolve();
    });
  }

  saveSnapshot(group: GroupId, snapshot: Snapshot, opts: SaveSnapshotOptions = {}): Promise<void> {
    return this.disk.saveSnapshot(group, snapshot, opts, this.time);
  }

  dropGroup(group: GroupId): Promise<void> {
    assert(this.time.alive, 'a crashed incarnation does not write');
    return this.whenDurable(this.disk.dropGroup(group));
  }

  close(): Promise<void> {
    return this.whenDurable(this.disk.lastSeq);
  }
}
