// Group 0's state machine: its log carries the journal, the lock table and the
// cluster membership. Normal entries start with one byte naming the sub-machine;
// the rest is that machine's payload. ConfChange entries go to the one
// sub-machine that owns membership (the members service), if any.

import { assert } from '../../core/assert.js';
import type { NodeId } from '../../core/ids.js';
import type { ConfChange, Entry } from '../../core/raft/types.js';
import type { StateMachine } from './runner.js';

export const EntryKind = {
  Journal: 1,
  Lock: 2,
  Members: 3,
  Topics: 4,
  CacheRing: 5,
} as const;
export type EntryKind = (typeof EntryKind)[keyof typeof EntryKind];

/** One part of group 0's state, with a JSON-able snapshot. */
export interface SubMachine {
  apply(entry: Entry, body: Uint8Array): unknown;
  /** Only the membership sub-machine: a committed ConfChange entry, decoded. */
  applyConfChange?(entry: Entry, change: ConfChange): unknown;
  snapshot(): unknown;
  restore(state: unknown): void;
  onLeaderChange?(isLeader: boolean, leader: NodeId | ''): void;
}

export function frameEntry(kind: EntryKind, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + body.length);
  out[0] = kind;
  out.set(body, 1);
  return out;
}

export class Group0StateMachine implements StateMachine {
  private readonly parts = new Map<EntryKind, { name: string; machine: SubMachine; initial: unknown }>();
  private confOwner: SubMachine | null = null;

  register(kind: EntryKind, name: string, machine: SubMachine): void {
    assert(!this.parts.has(kind), `group 0 sub-machine ${name} registered twice`);
    // Its state before any entry: what a snapshot taken before this part existed (an older version) restores it to.
    this.parts.set(kind, { name, machine, initial: JSON.parse(JSON.stringify(machine.snapshot() ?? null)) as unknown });
    if (machine.applyConfChange !== undefined) {
      assert(this.confOwner === null, `group 0 sub-machine ${name} is a second owner of membership`);
      this.confOwner = machine;
    }
  }

  /** Without a membership sub-machine (the simulator's nodes) a conf change only changes Raft's configuration. */
  applyConfChange(entry: Entry, change: ConfChange): unknown {
    return this.confOwner?.applyConfChange?.(entry, change);
  }

  apply(entry: Entry): unknown {
    const kind = entry.data[0] as EntryKind;
    const part = this.parts.get(kind);
    // Every replica must fail the same way on an entry it cannot read: crash, never diverge.
    assert(part !== undefined, `group 0 entry ${entry.index} has unknown kind ${kind}`);
    return part.machine.apply(entry, entry.data.subarray(1));
  }

  snapshot(): Uint8Array {
    const state: Record<string, unknown> = {};
    for (const { name, machine } of this.parts.values()) state[name] = machine.snapshot();
    return new TextEncoder().encode(JSON.stringify(state));
  }

  restore(data: Uint8Array): void {
    const state = JSON.parse(new TextDecoder().decode(data)) as Record<string, unknown>;
    // A part the snapshot lacks did not exist when it was taken (an upgrade added it): nothing of it was applied yet.
    for (const { name, machine, initial } of this.parts.values()) machine.restore(name in state ? state[name] : initial);
  }

  onLeaderChange(isLeader: boolean, leader: NodeId | ''): void {
    for (const { machine } of this.parts.values()) machine.onLeaderChange?.(isLeader, leader);
  }
}
