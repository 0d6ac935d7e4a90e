// Group 0's cache-ring sub-machine (EntryKind.CacheRing): the generation and members of
// the cache ring (core/cache/ring.ts argues why they are replicated), with a listener the
// cache service hears every change through, in log order.

import { assert } from '../../../core/assert.js';
import { applyCacheRing, type CacheRingCommand, cacheRingEmpty, type CacheRingState, normalizeMembers } from '../../../core/cache/ring.js';
import type { NodeId } from '../../../core/ids.js';
import type { Entry } from '../../../core/raft/types.js';
import type { SubMachine } from '../../raft/group0.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

export function encodeCacheRingCommand(cmd: CacheRingCommand): Uint8Array {
  return enc.encode(JSON.stringify({ basedOn: cmd.basedOn, members: cmd.members }));
}

/** A body this code wrote; anything else is a replica bug, so it crashes (as every group 0 replica would). */
export function decodeCacheRingCommand(body: Uint8Array): CacheRingCommand {
  const v = JSON.parse(dec.decode(body)) as { basedOn?: unknown; members?: unknown };
  assert(Number.isInteger(v.basedOn) && Array.isArray(v.members) && v.members.every((m) => typeof m === 'string'), 'malformed cache ring entry');
  return { basedOn: v.basedOn as number, members: v.members as NodeId[] };
}

/** How a change arrived: one entry after another, or a snapshot that may have skipped several. */
export type RingChangeHow = 'entry' | 'snapshot';

export class CacheRingMachine implements SubMachine {
  private current: CacheRingState = cacheRingEmpty;
  onChange: (state: CacheRingState, how: RingChangeHow) => void = () => {};

  get state(): CacheRingState {
    return this.current;
  }

  apply(_entry: Entry, body: Uint8Array): CacheRingState | null {
    const next = applyCacheRing(this.current, decodeCacheRingCommand(body));
    if (next === null) return null;
    this.current = next;
    this.onChange(next, 'entry');
    return next;
  }

  snapshot(): CacheRingState {
    return this.current;
  }

  restore(state: unknown): void {
    const s = state as { generation?: unknown; members?: unknown };
    assert(Number.isInteger(s.generation) && Array.isArray(s.members), 'malformed cache ring snapshot');
    this.current = { generation: s.generation as number, members: normalizeMembers(s.members as NodeId[]) };
    this.onChange(this.current, 'snapshot');
  }
}
