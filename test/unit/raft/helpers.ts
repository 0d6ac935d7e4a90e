// Test helpers for the Raft unit tests: build replicas with a fixed config and
// seed, a tiny in-memory "storage" that follows the Ready contract, and a
// deterministic shuttle that moves ready() messages between replicas.

import { logIndex, nodeId, term } from '../../../core/ids.js';
import type { NodeId } from '../../../core/ids.js';
import { Xoshiro128 } from '../../../core/prng.js';
import { newMessage } from '../../../core/raft/message.js';
import type { MessageFields } from '../../../core/raft/message.js';
import { Raft } from '../../../core/raft/raft.js';
import { EntryType, Role } from '../../../core/raft/types.js';
import type { ConfState, Entry, HardState, Message, MessageType, PersistedState, RaftConfig, Ready, Snapshot } from '../../../core/raft/types.js';

export const A = nodeId('a');
export const B = nodeId('b');
export const C = nodeId('c');
export const D = nodeId('d');
export const E = nodeId('e');

export const electionTicks = 10;
export const heartbeatTicks = 1;

export function config(id: NodeId, over: Partial<RaftConfig> = {}, seed = 1): RaftConfig {
  return {
    id,
    electionTicks,
    heartbeatTicks,
    prng: new Xoshiro128(seed + id.charCodeAt(0)),
    preVote: false,
    checkQuorum: false,
    maxEntriesPerMsg: 64,
    maxInflightMsgs: 256,
    ...over,
  };
}

export function emptyState(voters: readonly NodeId[], learners: readonly NodeId[] = []): PersistedState {
  return {
    hardState: { term: term(0), vote: '', commit: logIndex(0) },
    snapshot: null,
    entries: [],
    conf: { voters: [...voters], learners: [...learners] },
  };
}

export function ent(index: number, t: number, data = ''): Entry {
  return { index: logIndex(index), term: term(t), type: EntryType.Normal, data: new TextEncoder().encode(data) };
}

/** A replica whose log already holds entries with the given terms (index 1, 2, ...). */
export function withLog(id: NodeId, voters: readonly NodeId[], terms: readonly number[], hard: { term?: number; vote?: NodeId | ''; commit?: number } = {}, over: Partial<RaftConfig> = {}): Raft {
  const entries = terms.map((t, i) => ent(i + 1, t));
  const lastTerm = terms[terms.length - 1] ?? 0;
  return new Raft(config(id, over), {
    hardState: { term: term(hard.term ?? lastTerm), vote: hard.vote ?? '', commit: logIndex(hard.commit ?? 0) },
    snapshot: null,
    entries,
    conf: { voters: [...voters], learners: [] },
  });
}

export function msg(type: MessageType, from: NodeId, to: NodeId, t: number, f: MessageFields = {}): Message {
  return newMessage(type, from, to, t, f);
}

/** Calls ready()/advance() once and returns the Ready (persisting is a no-op here). */
export function drain(r: Raft): Ready {
  const rd = r.ready();
  r.advance();
  return rd;
}

/** Messages of one replica after ready()/advance(), optionally filtered by type. */
export function sent(r: Raft, type?: MessageType): Message[] {
  if (!r.hasReady()) return [];
  const ms = drain(r).messages;
  return type === undefined ? [...ms] : ms.filter((m) => m.type === type);
}

/** What one replica has made durable, following the Ready contract. */
export class Storage {
  hardState: HardState = { term: term(0), vote: '', commit: logIndex(0) };
  snapshot: Snapshot | null = null;
  entries: Entry[] = [];
  applied: Entry[] = [];

  constructor(readonly conf: ConfState) {}

  persist(rd: Ready): void {
    if (rd.hardState !== null) this.hardState = rd.hardState;
    if (rd.snapshot !== null) {
      this.snapshot = rd.snapshot;
      this.entries = [];
      this.applied = [];
    }
    const first = rd.entries[0];
    if (first !== undefined) {
      this.entries = this.entries.filter((e) => e.index < first.index).concat(rd.entries);
    }
  }

  persisted(): PersistedState {
    return { hardState: this.hardState, snapshot: this.snapshot, entries: [...this.entries], conf: this.conf };
  }
}

/** A deterministic network of replicas: delivers everything, in order, unless cut. */
export class Net {
  readonly nodes = new Map<NodeId, Raft>();
  readonly storage = new Map<NodeId, Storage>();
  readonly cut = new Set<string>();
  /** Drops a message when it returns true (after the cut check); dropped ones go to `droppedLog`. */
  dropIf: ((m: Message) => boolean) | null = null;
  droppedLog: Message[] = [];
  delivered = 0;
  /** Every message delivered, for counting round trips. */
  log: Message[] = [];

  constructor(ids: readonly NodeId[], over: Partial<RaftConfig> = {}, seed = 1, conf?: ConfState) {
    const c = conf ?? { voters: [...ids], learners: [] };
    for (const id of ids) {
      this.nodes.set(id, new Raft(config(id, over, seed), emptyState(c.voters, c.learners)));
      this.storage.set(id, new Storage(c));
    }
  }

  add(id: NodeId, r: Raft, s: Storage): void {
    this.nodes.set(id, r);
    this.storage.set(id, s);
  }

  node(id: NodeId): Raft {
    const r = this.nodes.get(id);
    if (r === undefined) throw new Error(`no node ${id}`);
    return r;
  }

  isolate(id: NodeId): void {
    for (const other of this.nodes.keys()) {
      if (other === id) continue;
      this.cut.add(`${id}>${other}`);
      this.cut.add(`${other}>${id}`);
    }
  }

  heal(): void {
    this.cut.clear();
  }

  /** Processes readies and delivers messages until nothing is left to do (bounded). */
  settle(roundsMax = 1000): void {
    for (let round = 0; round < roundsMax; round++) {
      const inFlight: Message[] = [];
      for (const [id, r] of [...this.nodes].sort(([x], [y]) => (x < y ? -1 : 1))) {
        if (!r.hasReady()) continue;
        const rd = r.ready();
        const s = this.storage.get(id) as Storage;
        s.persist(rd);
        s.applied.push(...rd.committedEntries);
        inFlight.push(...rd.messages);
        r.advance();
      }
      if (inFlight.length === 0) {
        let anyReady = false;
        for (const r of this.nodes.values()) anyReady ||= r.hasReady();
        if (!anyReady) return;
      }
      for (const m of inFlight) {
        if (this.cut.has(`${m.from}>${m.to}`)) continue;
        if (this.dropIf !== null && this.dropIf(m)) {
          this.droppedLog.push(m);
          continue;
        }
        const to = this.nodes.get(m.to);
        if (to === undefined) continue;
        this.delivered++;
        this.log.push(m);
        to.step(m);
      }
    }
    throw new Error('network did not settle');
  }

  tickAll(n = 1): void {
    for (let i = 0; i < n; i++) {
      for (const r of this.nodes.values()) r.tick();
      this.settle();
    }
  }

  /** Ticks `id` until it campaigns, then settles. */
  elect(id: NodeId): void {
    const r = this.node(id);
    for (let i = 0; i < 2 * electionTicks && r.status().role !== Role.Leader; i++) {
      r.tick();
      this.settle();
    }
    if (r.status().role !== Role.Leader) throw new Error(`${id} did not become leader`);
  }

  applied(id: NodeId): Entry[] {
    return (this.storage.get(id) as Storage).applied;
  }
}

export const text = (s: string): Uint8Array => new TextEncoder().encode(s);
export const untext = (b: Uint8Array): string => new TextDecoder().decode(b);
