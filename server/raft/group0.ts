// Group 0's state machine: every node is a voter; its log carries the journal
// and the lock table (and later cluster metadata). Entries start with one byte
// naming the sub-machine; the rest is that machine's payload.

import { assert } from '../../core/assert.js';
import type { NodeId } from '../../core/ids.js';
import type { Entry } from '../../core/raft/types.js';
import type { StateMachine } from './runner.js';

export const EntryKind = {
  Journal: 1,
  Lock: 2,
} as const;
export type EntryKind = (typeof EntryKind)[keyof typeof EntryKind];

/** One part of group 0's state, with a JSON-able snapshot. */
export interface SubMachine {
  apply(entry: Entry, body: Uint8Array): unknown;
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
  private readonly parts = new Map<EntryKind, { name: string; machine: SubMachine }>();

  register(kind: EntryKind, name: string, machine: SubMachine): void {
    assert(!this.parts.has(kind), `group 0 sub-machine ${name} registered twice`);
    this.parts.set(kind, { name, machine });
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
    for (const { name, machine } of this.parts.values()) {
      assert(name in state, `group 0 snapshot lacks ${name}`);
      machine.restore(state[name]);
    }
  }

  onLeaderChange(isLeader: boolean, leader: NodeId | ''): void {
    for (const { machine } of this.parts.values()) machine.onLeaderChange?.(isLeader, leader);
  }
}
