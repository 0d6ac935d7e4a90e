// Leader-side ReadIndex bookkeeping (etcd readOnly, "safe" mode): each request
// records the commit index when it arrived and waits for a majority of voters
// to acknowledge a heartbeat carrying its context.

import { assert } from '../assert.js';
import type { NodeId } from '../ids.js';
import { bytesKey } from './message.js';

export interface ReadRequest {
  /** Commit index when the request arrived: the read point once leadership is confirmed. */
  readonly index: number;
  /** Who asked: the leader itself or a follower that forwarded it. */
  readonly from: NodeId;
  readonly context: Uint8Array;
  readonly acks: Set<NodeId>;
}

export class ReadOnlyQueue {
  private readonly pending = new Map<string, ReadRequest>();
  /** Keys in arrival order; a quorum ack of one confirms all earlier ones too. */
  private queue: string[] = [];

  constructor(private readonly requestsMax: number) {
    assert(requestsMax > 0, 'read request bound must be positive');
  }

  get size(): number {
    return this.queue.length;
  }

  /** Returns false when full or when the context is already pending (contexts must be unique). */
  add(index: number, from: NodeId, context: Uint8Array): boolean {
    const key = bytesKey(context);
    if (this.pending.has(key) || this.queue.length >= this.requestsMax) return false;
    this.pending.set(key, { index, from, context, acks: new Set() });
    this.queue.push(key);
    return true;
  }

  /** Records that `from` acknowledged a heartbeat for `context`; returns the ack set (or null if unknown). */
  recvAck(from: NodeId, context: Uint8Array): Set<NodeId> | null {
    const req = this.pending.get(bytesKey(context));
    if (req === undefined) return null;
    req.acks.add(from);
    return req.acks;
  }

  /** Removes and returns every request up to and including `context`. */
  advance(context: Uint8Array): ReadRequest[] {
    const key = bytesKey(context);
    const at = this.queue.indexOf(key);
    if (at < 0) return [];
    const released: ReadRequest[] = [];
    for (let i = 0; i <= at; i++) {
      const k = this.queue[i] as string;
      const req = this.pending.get(k);
      assert(req !== undefined, 'read queue and map out of sync');
      this.pending.delete(k);
      released.push(req);
    }
    this.queue = this.queue.slice(at + 1);
    assert(this.queue.length === this.pending.size, 'read queue and map sizes differ');
    return released;
  }

  /** Context of the newest pending request, for heartbeats (empty when none). */
  lastContext(): Uint8Array | null {
    const k = this.queue[this.queue.length - 1];
    if (k === undefined) return null;
    return (this.pending.get(k) as ReadRequest).context;
  }

  reset(): void {
    this.pending.clear();
    this.queue = [];
  }
}
