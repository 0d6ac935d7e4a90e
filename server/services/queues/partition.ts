// One queue partition's Raft state machine on one replica: core/queue's QueuePartition
// over a message store (storage.ts), plus the partition's fencing table (the newest
// token seen per lock). Every replica applies the same entries to the same state.
//
// Entries (codec.ts) carry one or more commands; apply answers one result per command,
// in order. A command with a fencing token older than the newest this partition has seen
// for that lock is refused (FENCED) and not applied; a newer one raises the newest.
// QueuePartition asserts strictly increasing apply indexes, so command i of entry n is
// applied at n x queueEntryCommandsMax + i.
//
// Snapshots and the backlog. snapshot() kicks the store's sync (storage.ts: write and
// fsync in the background) and answers the machine's state and the store's range
// [logStart, logEnd) but not the bodies (bodies_in_store; memory stores, whose contents
// die with the process, still put the bodies in). The runner saves the snapshot only
// once that sync is done (persistSnapshot), and segments below its front go only after
// the save, so a durable snapshot always finds its range in the files. restore():
// - at start-up (no store open yet) reopens the store this node kept at the snapshot's
//   range (QueueStore.open with the checkpoint: it cuts the unsynced tail past it), or
//   the streamed-in one a crash left before it was switched in; entries after the
//   snapshot re-apply from the WAL;
// - at run time (a snapshot installed from the leader) adopts the incoming store that
//   admitSnapshot() waited for: the listener streamed the range in from the sender's
//   segment files (catchup.ts) before Raft saw the snapshot, so this replica never
//   acks or applies past what its store holds;
// - a snapshot with bodies (memory stores, or one an older node took) rebuilds the store
//   from them: the upgrade path.
// Snapshots happen every snapshotEntriesThreshold applied entries.

import { assert } from '../../../core/assert.js';
import { featureVersionSnapshotsStreamed, queueEntryCommandsMax, queueFencingLocksMax } from '../../../core/constants.js';
import { allSnapshotFormats, FeatureVersionError, type SnapshotFormats } from '../../node/version.js';
import { logIndex, offset } from '../../../core/ids.js';
import type { QueueOutcome, QueueResult } from '../../../core/queue/commands.js';
import { QueuePartition, type PartitionConfig, type QueuePartitionOptions, type QueuePartitionSnapshot } from '../../../core/queue/partition.js';
import type { MessageStore } from '../../../core/queue/store.js';
import type { Entry, Snapshot } from '../../../core/raft/types.js';
import type { NodeId } from '../../../core/ids.js';
import { schema } from '../../../protocol/index.js';
import type { StateMachine } from '../../raft/runner.js';
import { decodeQueueEntry, type EntryCommand, fromWireMessage, toWireMessage } from './codec.js';
import type { QueueStoreCheckpoint, QueueStoreChunk } from '../../storage/queue-store.js';
import type { PartitionStorage } from './storage.js';

/** A fenced command's answer: refused, nothing applied. */
export interface FencedOutcome {
  readonly result: { readonly kind: 'error'; readonly code: 'FENCED'; readonly message: string };
  readonly duplicate: false;
  readonly events: readonly [];
}

export type CommandOutcome = QueueOutcome | FencedOutcome;

/** What the service hears after every applied entry (on every replica). */
export interface PartitionListener {
  applied(machine: PartitionMachine, entry: Entry, commands: readonly EntryCommand[], outcomes: readonly CommandOutcome[]): void;
  leaderChanged(machine: PartitionMachine, isLeader: boolean, leader: NodeId | ''): void;
  /**
   * A snapshot whose bodies are in its sender's store: true once this node's incoming store
   * holds `range` synced; else start or go on streaming it in, then call `retry`. Absent: never.
   */
  admitSnapshot?(machine: PartitionMachine, range: SnapshotRange, from: NodeId, retry: () => void): boolean;
}

/** What a partition snapshot says of the store: the range it records, and whether its bodies are left out. */
export interface SnapshotRange {
  readonly firstOffset: number;
  readonly nextOffset: number;
  readonly bodiesInStore: boolean;
}

/** The range of an encoded partition snapshot (decodes the small fields; the state stays undecoded bytes). */
export function snapshotRange(data: Uint8Array): SnapshotRange {
  const snap = schema.QueuePartitionSnapshotData.decode(data);
  return { firstOffset: Number(snap.firstOffset), nextOffset: Number(snap.nextOffset), bodiesInStore: snap.bodiesInStore === true };
}

interface SnapshotState {
  readonly partition: QueuePartitionSnapshot;
  readonly fencing: readonly (readonly [string, number])[];
}

export class PartitionMachine implements StateMachine {
  private part: QueuePartition | null = null;
  private store: MessageStore | null = null;
  /** Lock -> newest fencing token seen, least recently raised first. */
  private readonly fencing = new Map<string, number>();
  /** The last snapshot's store sync, until the runner takes it (persistSnapshot). */
  private checkpointing: { readonly ready: Promise<void>; readonly store: MessageStore; readonly cp: QueueStoreCheckpoint } | null = null;

  constructor(
    readonly topic: string,
    readonly index: number,
    private readonly config: PartitionConfig,
    private readonly storage: PartitionStorage,
    private readonly listener: PartitionListener,
    private readonly options: QueuePartitionOptions = {},
    private readonly formats: SnapshotFormats = allSnapshotFormats,
  ) {}

  /** The partition state (created empty on first use when no snapshot was restored). */
  get partition(): QueuePartition {
    if (this.part === null) {
      this.store = this.storage.create(offset(0));
      this.part = new QueuePartition(this.config, this.store, this.options);
    }
    return this.part;
  }

  /** Reads a retained message's body (for fetch answers). */
  read(at: number): ReturnType<MessageStore['read']> {
    assert(this.store !== null, 'a partition with messages has a store');
    return this.store.read(offset(at));
  }

  apply(entry: Entry): CommandOutcome[] {
    const commands = decodeQueueEntry(entry.data);
    assert(commands.length <= queueEntryCommandsMax, `entry ${entry.index} carries ${commands.length} commands`);
    const part = this.partition;
    const outcomes: CommandOutcome[] = [];
    for (const [i, c] of commands.entries()) {
      if (c.fencing !== undefined) {
        const newest = this.fencing.get(c.fencing.lock);
        if (newest !== undefined && c.fencing.token < newest) {
          outcomes.push({ result: { kind: 'error', code: 'FENCED', message: `fencing token ${c.fencing.token} of lock ${c.fencing.lock} is older than ${newest}, the newest this partition has seen` },
            duplicate: false, events: [] });
          continue;
        }
        this.fencing.delete(c.fencing.lock);
        this.fencing.set(c.fencing.lock, Math.max(newest ?? 0, c.fencing.token));
        if (this.fencing.size > queueFencingLocksMax) this.fencing.delete(this.fencing.keys().next().value as string);
      }
      outcomes.push(part.apply(c.cmd, logIndex(entry.index * queueEntryCommandsMax + i)));
    }
    this.listener.applied(this, entry, commands, outcomes);
    return outcomes;
  }

  snapshot(): Uint8Array {
    const part = this.partition;
    const store = this.store;
    assert(store !== null, 'a partition has a store');
    const cp = { firstOffset: part.logStartOffset, nextOffset: part.logEndOffset };
    this.checkpointing = { ready: this.storage.checkpoint(store), store, cp };
    const state: SnapshotState = { partition: part.toSnapshot(), fencing: [...this.fencing] };
    const messages: ReturnType<typeof schema.QueueStoredMessage.create>[] = [];
    // A member that does not speak streamed catch-up can only install a snapshot that carries its bodies.
    const carryBodies = this.storage.snapshotsCarryBodies || this.formats.formatVersion() < featureVersionSnapshotsStreamed;
    if (carryBodies) {
      for (let o = part.logStartOffset as number; o < part.logEndOffset; o++) {
        const m = store.read(offset(o));
        messages.push({ offset: o, timestampMs: m.timestampMs, message: toWireMessage(m), onlyGroup: m.onlyGroup ?? '' });
      }
    }
    return schema.QueuePartitionSnapshotData.encode({
      state: new TextEncoder().encode(JSON.stringify(state)), firstOffset: cp.firstOffset, nextOffset: cp.nextOffset, messages,
      bodiesInStore: !carryBodies,
    }).finish();
  }

  /** The snapshot just taken may be saved once the store's sync resolves; after it is saved, files below its front may go. */
  persistSnapshot(): { ready: Promise<void>; saved(): void } {
    const c = this.checkpointing;
    assert(c !== null, 'persistSnapshot follows snapshot');
    this.checkpointing = null;
    return { ready: c.ready, saved: () => this.storage.checkpointDurable(c.store, c.cp) };
  }

  /**
   * A snapshot from `from` is about to be installed (GroupRunner.step). One whose bodies
   * are in the sender's store is held back until this node's incoming store holds its
   * whole range, synced: the listener streams them in (catchup.ts) and calls `retry`.
   * Raft never hears of the snapshot before, so this replica neither acks nor applies past
   * what its store holds, and a crash meanwhile leaves it at its previous snapshot.
   */
  admitSnapshot(snapshot: Snapshot, from: NodeId, retry: () => void): boolean {
    const range = snapshotRange(snapshot.data);
    if (!range.bodiesInStore || range.firstOffset === range.nextOffset) return true;
    return this.listener.admitSnapshot?.(this, range, from, retry) ?? false;
  }

  /** Records from `from` for a replica catching up (null: this node has no file holding `from`). */
  exportChunk(from: number, upTo: number): QueueStoreChunk | null {
    if (this.store === null) return null;
    return this.storage.exportChunk(this.store, offset(from), offset(upTo));
  }

  restore(data: Uint8Array): void {
    const snap = schema.QueuePartitionSnapshotData.decode(data);
    if (snap.bodiesInStore && this.formats.readsUpTo < featureVersionSnapshotsStreamed) {
      throw new FeatureVersionError(featureVersionSnapshotsStreamed, this.formats.readsUpTo, `queue partition ${this.topic}/${this.index}: a snapshot without its bodies`);
    }
    const state = JSON.parse(new TextDecoder().decode(snap.state)) as SnapshotState;
    const cp = { firstOffset: offset(Number(snap.firstOffset)), nextOffset: offset(Number(snap.nextOffset)) };
    assert(state.partition.logStart === cp.firstOffset && state.partition.logEnd === cp.nextOffset, 'the snapshot\'s bodies are its partition\'s range');
    const atStartUp = this.store === null;
    if (this.store !== null) this.storage.release(this.store);
    this.store = null;
    let store: MessageStore | null = null;
    if (snap.bodiesInStore) {
      // At start-up: the store this node kept (or streamed in: a crash before the switch). At
      // run time: admitSnapshot() held the snapshot back until the incoming store held its range.
      store = atStartUp ? this.storage.reopen(cp) : this.storage.adoptIncoming(cp);
      if (store === null && cp.firstOffset === cp.nextOffset) store = this.storage.create(cp.firstOffset);
      if (store === null) {
        throw new Error(`queue partition ${this.topic}/${this.index}: no message store on this node holds its snapshot's range [${cp.firstOffset}, ${cp.nextOffset})`);
      }
    } else {
      // Bodies in the snapshot (memory stores, or a snapshot an older node took): kept store, else rebuilt from them.
      if (atStartUp) store = this.storage.reopen(cp);
      if (store === null) {
        assert(snap.messages.length === cp.nextOffset - cp.firstOffset, 'the snapshot carries every body of its range');
        store = this.storage.create(cp.firstOffset);
        for (const m of snap.messages) {
          const only = m.onlyGroup ?? '';
          const msg = fromWireMessage(m.message ?? {});
          store.append(offset(Number(m.offset)), m.timestampMs ?? 0, only === '' ? msg : { ...msg, onlyGroup: only as never });
        }
      }
    }
    this.store = store;
    this.part = QueuePartition.fromSnapshot(state.partition, store, this.options);
    this.fencing.clear();
    for (const [lock, token] of state.fencing) this.fencing.set(lock, token);
  }

  onLeaderChange(isLeader: boolean, leader: NodeId | ''): void {
    this.listener.leaderChanged(this, isLeader, leader);
  }

  /** The partition stops on this node: close its store (destroy: remove its files too). */
  close(destroy: boolean): void {
    if (this.store !== null) this.storage.release(this.store);
    if (destroy) this.storage.destroy();
    this.store = null;
    this.part = null;
  }
}

/** The error a command's result is, or null. */
export function errorOf(r: QueueResult | FencedOutcome['result']): { code: string; message: string } | null {
  return r.kind === 'error' ? { code: r.code, message: r.message } : null;
}
