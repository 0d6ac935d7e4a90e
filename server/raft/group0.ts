// Group 0's state machine: its log carries the journal, the lock table and the
// cluster membership. Normal entries start with one byte naming the sub-machine;
// the rest is that machine's payload. ConfChange entries go to the one
// sub-machine that owns membership (the members service), if any.

import { assert } from '../../core/assert.js';
import type { NodeId } from '../../core/ids.js';
import type { ConfChange, Entry } from '../../core/raft/types.js';
import type { SnapshotJob, StateMachine } from './runner.js';
import { featureVersionSnapshotsStreamed } from '../../core/constants.js';
import { allSnapshotFormats, FeatureVersionError, type SnapshotFormats } from '../node/version.js';

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
  /**
   * Optional, with restoreChunks: the part's state as of now written in bounded slices
   * (Group0StateMachine.beginSnapshot). Without it the part is written whole, as JSON.
   */
  beginSnapshot?(): PartSnapshotJob;
  /** Restores what a PartSnapshotJob wrote (its chunks, in order). */
  restoreChunks?(chunks: readonly Uint8Array[]): void;
  onLeaderChange?(isLeader: boolean, leader: NodeId | ''): void;
}

/** One part's snapshot being written in slices. */
export interface PartSnapshotJob {
  /** Writes one bounded slice, appending its bytes to `out`; true once the part is complete. */
  step(out: Uint8Array[]): boolean;
  abort(): void;
}

/**
 * Group 0 snapshot layouts, told apart by the first byte: the original one JSON document
 * (always '{'), and the chunked container written in slices:
 *   u8 1, u32 parts, then per part: u32 name bytes, name (UTF-8), u32 chunks, then per
 *   chunk u32 bytes and the bytes (little endian). A part written whole is one chunk of
 *   JSON; a part with beginSnapshot is the chunks its job wrote.
 */
const snapshotLayoutChunked = 1;
const snapshotLayoutJson = 0x7b; // '{'

function encodeChunked(parts: readonly { readonly name: string; readonly chunks: readonly Uint8Array[] }[]): Uint8Array {
  const names = parts.map((p) => new TextEncoder().encode(p.name));
  let total = 1 + 4;
  parts.forEach((p, i) => {
    total += 4 + (names[i] as Uint8Array).length + 4;
    for (const c of p.chunks) total += 4 + c.length;
  });
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  out[0] = snapshotLayoutChunked;
  view.setUint32(1, parts.length, true);
  let off = 5;
  parts.forEach((p, i) => {
    const name = names[i] as Uint8Array;
    view.setUint32(off, name.length, true);
    out.set(name, off + 4);
    off += 4 + name.length;
    view.setUint32(off, p.chunks.length, true);
    off += 4;
    for (const c of p.chunks) {
      view.setUint32(off, c.length, true);
      out.set(c, off + 4);
      off += 4 + c.length;
    }
  });
  assert(off === total, 'group 0 snapshot layout');
  return out;
}

/** The parts of a chunked group 0 snapshot by name; throws (a corrupt snapshot) on any overrun. */
function decodeChunked(data: Uint8Array): Map<string, Uint8Array[]> {
  assert(data[0] === snapshotLayoutChunked, 'chunked group 0 snapshot');
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let off = 1;
  const u32 = (): number => {
    assert(off + 4 <= data.length, 'group 0 snapshot truncated');
    const n = view.getUint32(off, true);
    off += 4;
    return n;
  };
  const bytes = (n: number): Uint8Array => {
    assert(off + n <= data.length, 'group 0 snapshot truncated');
    const b = data.subarray(off, off + n);
    off += n;
    return b;
  };
  const parts = new Map<string, Uint8Array[]>();
  const partsCount = u32();
  for (let i = 0; i < partsCount; i++) {
    const name = new TextDecoder().decode(bytes(u32()));
    const chunksCount = u32();
    const chunks: Uint8Array[] = [];
    for (let j = 0; j < chunksCount; j++) chunks.push(bytes(u32()));
    parts.set(name, chunks);
  }
  assert(off === data.length, 'group 0 snapshot has trailing bytes');
  return parts;
}

export function frameEntry(kind: EntryKind, body: Uint8Array): Uint8Array {
  // Pooled (a typed array over 64 bytes costs a malloc and a GC-tracked backing store); every byte is written.
  const out = Buffer.allocUnsafe(1 + body.length);
  out[0] = kind;
  out.set(body, 1);
  return out;
}

export class Group0StateMachine implements StateMachine {
  private readonly parts = new Map<EntryKind, { name: string; machine: SubMachine; initial: unknown }>();
  private confOwner: SubMachine | null = null;

  constructor(private readonly formats: SnapshotFormats = allSnapshotFormats) {}

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

  /**
   * Every part's state as of now, in the chunked layout: parts without beginSnapshot are
   * encoded at once (they are small), the others one slice per step, so the lock table's
   * size never stalls the event loop in one piece (only the final copy into one buffer).
   */
  beginSnapshot(): SnapshotJob {
    if (this.formats.formatVersion() < featureVersionSnapshotsStreamed) {
      // Some member reads only the one-document layout (lock table version 3): written whole, as before.
      const data = this.snapshot();
      return { step: () => data, abort: () => {} };
    }
    const parts: { name: string; chunks: Uint8Array[]; job: PartSnapshotJob | null }[] = [];
    for (const { name, machine } of this.parts.values()) {
      if (machine.beginSnapshot !== undefined && machine.restoreChunks !== undefined) {
        parts.push({ name, chunks: [], job: machine.beginSnapshot() });
        continue;
      }
      const state = machine.snapshot();
      // As JSON.stringify leaves out an undefined member: restored as the part's initial state.
      if (state !== undefined) parts.push({ name, chunks: [new TextEncoder().encode(JSON.stringify(state))], job: null });
    }
    let next = 0;
    return {
      step: () => {
        while (next < parts.length && (parts[next] as { job: PartSnapshotJob | null }).job === null) next++;
        const part = parts[next];
        if (part === undefined) return encodeChunked(parts);
        if ((part.job as PartSnapshotJob).step(part.chunks)) part.job = null;
        return null;
      },
      abort: () => {
        for (const p of parts) p.job?.abort();
      },
    };
  }

  restore(data: Uint8Array): void {
    if (data[0] === snapshotLayoutChunked) {
      if (this.formats.readsUpTo < featureVersionSnapshotsStreamed) {
        throw new FeatureVersionError(featureVersionSnapshotsStreamed, this.formats.readsUpTo, 'a group 0 snapshot in the chunked layout');
      }
      const chunked = decodeChunked(data);
      for (const { name, machine, initial } of this.parts.values()) {
        const chunks = chunked.get(name);
        if (chunks === undefined) machine.restore(initial);
        else if (machine.restoreChunks !== undefined && machine.beginSnapshot !== undefined) machine.restoreChunks(chunks);
        else {
          assert(chunks.length === 1, `group 0 snapshot part ${name} written whole is one chunk`);
          machine.restore(JSON.parse(new TextDecoder().decode(chunks[0])) as unknown);
        }
      }
      return;
    }
    assert(data[0] === snapshotLayoutJson, `group 0 snapshot layout ${String(data[0])}`);
    const state = JSON.parse(new TextDecoder().decode(data)) as Record<string, unknown>;
    // A part the snapshot lacks did not exist when it was taken (an upgrade added it): nothing of it was applied yet.
    for (const { name, machine, initial } of this.parts.values()) machine.restore(name in state ? state[name] : initial);
  }

  onLeaderChange(isLeader: boolean, leader: NodeId | ''): void {
    for (const { machine } of this.parts.values()) machine.onLeaderChange?.(isLeader, leader);
  }
}
