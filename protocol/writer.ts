// Batches outgoing frames per event-loop turn: frames queued during one turn
// are laid out in one buffer and handed to the socket in one write (cork per
// turn), so a burst of pipelined replies costs one syscall, not one each.
// sendAfterTask narrows the batch to the current task: the frames go out in a
// microtask once it ends, not after the rest of the turn (the answers a Raft
// ready pass produces, which would otherwise wait behind the next poll phase).

import { assert } from '../core/assert.js';
import { frameBytesMax, frameHeaderBytes } from '../core/constants.js';
import { frameOverheadBytes, type FrameType, writeFrame } from './frame.js';

export interface ByteSink {
  /** Returns false when the sink's buffer is full (Node stream semantics). */
  write(chunk: Uint8Array): boolean;
}

/** What a flushed payload slot holds, so the writer keeps no reference to a payload it wrote. */
const noPayload = new Uint8Array(0);

/**
 * The writers with frames for the end of this turn, flushed by one setImmediate in the order
 * they queued: one per writer cost an Immediate per connection per turn (a leader answering
 * 64 connections ran 64 of them). A writer queued while they flush waits for the next turn,
 * as its own setImmediate would have.
 */
class TurnEndFlush {
  private queued: (FrameWriter | null)[] = [];
  private queuedCount = 0;
  private flushing: (FrameWriter | null)[] = [];
  private scheduled = false;
  private readonly runBound = (): void => this.run();

  add(writer: FrameWriter): void {
    this.queued[this.queuedCount++] = writer;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.runBound);
    }
  }

  private run(): void {
    this.scheduled = false;
    const writers = this.queued;
    const count = this.queuedCount;
    // Swapped, not truncated: both arrays keep their backing stores from turn to turn.
    this.queued = this.flushing;
    this.queuedCount = 0;
    this.flushing = writers;
    for (let i = 0; i < count; i++) {
      const writer = writers[i] as FrameWriter;
      writers[i] = null;
      writer.flushAtTurnEnd();
    }
  }
}

const turnEndFlush = new TurnEndFlush();

export class FrameWriter {
  /**
   * The queued frames are the first queuedCount slots of these. The arrays keep their
   * length across flushes: truncating them freed their backing stores, and the next
   * turn's first frame allocated four new ones (a tenth of a node's allocations per reply).
   */
  private readonly types: FrameType[] = [];
  private readonly opcodes: number[] = [];
  private readonly requestIds: number[] = [];
  private readonly payloads: Uint8Array[] = [];
  private queuedCount = 0;
  private pendingBytes = 0;
  /** This writer is in turnEndFlush's queue (at most once per turn). */
  private flushAtTurnEndQueued = false;
  private flushAfterTaskScheduled = false;
  private closed = false;
  private readonly flushAfterTaskBound = (): void => {
    this.flushAfterTaskScheduled = false;
    this.flush();
  };

  constructor(private readonly sink: ByteSink) {}

  /** Bytes queued and not yet handed to the sink. */
  get queuedBytes(): number {
    return this.pendingBytes;
  }

  /** Queues a frame for the end of the turn; `now` writes it (and anything queued before it) at once instead. */
  send(type: FrameType, opcode: number, requestId: number, payload: Uint8Array, now = false): void {
    if (!this.enqueue(type, opcode, requestId, payload)) return;
    if (now) {
      this.flush();
      return;
    }
    if (!this.flushAtTurnEndQueued) {
      this.flushAtTurnEndQueued = true;
      turnEndFlush.add(this);
    }
  }

  /**
   * Queues a frame for a microtask after the current task: every frame the task queued
   * (by either send) leaves in one write as soon as it ends, before the next turn.
   */
  sendAfterTask(type: FrameType, opcode: number, requestId: number, payload: Uint8Array): void {
    if (!this.enqueue(type, opcode, requestId, payload)) return;
    if (!this.flushAfterTaskScheduled) {
      this.flushAfterTaskScheduled = true;
      queueMicrotask(this.flushAfterTaskBound);
    }
  }

  private enqueue(type: FrameType, opcode: number, requestId: number, payload: Uint8Array): boolean {
    if (this.closed) return false;
    assert(frameHeaderBytes + payload.length <= frameBytesMax, `outgoing frame of ${payload.length} bytes exceeds the frame limit`);
    const slot = this.queuedCount++;
    this.types[slot] = type;
    this.opcodes[slot] = opcode;
    this.requestIds[slot] = requestId;
    this.payloads[slot] = payload;
    this.pendingBytes += frameOverheadBytes + payload.length;
    return true;
  }

  /** turnEndFlush's call: the end of the turn in which send() queued frames. */
  flushAtTurnEnd(): void {
    this.flushAtTurnEndQueued = false;
    this.flush();
  }

  /** Hands every queued frame to the sink as one buffer; returns the sink's write() result. */
  flush(): boolean {
    const count = this.queuedCount;
    if (count === 0 || this.closed) return true;
    const out = Buffer.allocUnsafe(this.pendingBytes);
    let offset = 0;
    for (let i = 0; i < count; i++) {
      offset = writeFrame(out, offset, this.types[i]!, this.opcodes[i]!, this.requestIds[i]!, this.payloads[i]!);
      this.payloads[i] = noPayload;
    }
    assert(offset === this.pendingBytes, 'frame batch length mismatch');
    this.queuedCount = 0;
    this.pendingBytes = 0;
    return this.sink.write(out);
  }

  /** Drops anything queued; later sends are ignored. */
  close(): void {
    this.closed = true;
    this.queuedCount = 0;
    this.types.length = 0;
    this.opcodes.length = 0;
    this.requestIds.length = 0;
    this.payloads.length = 0;
    this.pendingBytes = 0;
  }
}
