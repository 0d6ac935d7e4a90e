// FrameWriter's two batching horizons: send() writes what a whole event-loop turn queued in
// one write, sendAfterTask() what the current task queued, in a microtask as soon as that
// task ends (before anything the next turn reads). Asserts on the order and number of writes.

import t from 'tap';
import { FrameDecoder, FrameType, Opcode } from '../../../protocol/frame.js';
import { FrameWriter } from '../../../protocol/writer.js';

class Recorder {
  readonly writes: Uint8Array[] = [];
  readonly events: string[] = [];
  write(chunk: Uint8Array): boolean {
    this.writes.push(chunk);
    this.events.push(`write of ${this.framesIn(chunk).join(',')}`);
    return true;
  }

  /** The request ids of the frames in one write, in order. */
  framesIn(chunk: Uint8Array): number[] {
    const ids: number[] = [];
    const decoder = new FrameDecoder({ frame: (_type, _opcode, requestId) => { ids.push(requestId); }, error: (err) => { throw err; } });
    decoder.push(chunk);
    return ids;
  }
}

const payload = new Uint8Array([1, 2, 3]);

t.test('sendAfterTask: one write after the task, before the next turn, with what send() queued before it', async (t) => {
  const sink = new Recorder();
  const w = new FrameWriter(sink);
  setImmediate(() => sink.events.push('next turn'));
  w.send(FrameType.Response, Opcode.LockAcquire, 1, payload);
  w.sendAfterTask(FrameType.Response, Opcode.LockAcquire, 2, payload);
  w.sendAfterTask(FrameType.Response, Opcode.LockAcquire, 3, payload);
  sink.events.push('task ends');
  await new Promise((resolve) => setImmediate(resolve));
  t.same(sink.events, ['task ends', 'write of 1,2,3', 'next turn'], 'written in a microtask, all three in one write, in order');
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(sink.writes.length, 1, 'the turn-end flush that send() scheduled finds nothing left');
});

t.test('send alone still waits for the end of the turn', async (t) => {
  const sink = new Recorder();
  const w = new FrameWriter(sink);
  w.send(FrameType.Response, Opcode.LockAcquire, 1, payload);
  await Promise.resolve();
  t.equal(sink.writes.length, 0, 'not written in the microtasks after the task');
  await new Promise((resolve) => setImmediate(resolve));
  t.same(sink.events, ['write of 1'], 'written by the end of the turn');
});

t.test('frames queued after a task flushed go in a write of their own; a closed writer drops them', async (t) => {
  const sink = new Recorder();
  const w = new FrameWriter(sink);
  w.sendAfterTask(FrameType.Response, Opcode.LockAcquire, 1, payload);
  await Promise.resolve();
  w.sendAfterTask(FrameType.Error, Opcode.LockAcquire, 2, payload);
  await new Promise((resolve) => setImmediate(resolve));
  t.same(sink.events, ['write of 1', 'write of 2'], 'two tasks, two writes');
  w.close();
  w.sendAfterTask(FrameType.Response, Opcode.LockAcquire, 3, payload);
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(sink.writes.length, 2, 'nothing after close');
});

t.test('a flush writes only what was queued since the last one, however many frames the earlier batches held', async (t) => {
  const sink = new Recorder();
  const w = new FrameWriter(sink);
  for (const id of [1, 2, 3]) w.send(FrameType.Response, Opcode.LockAcquire, id, new Uint8Array(id).fill(id));
  w.flush();
  w.send(FrameType.Response, Opcode.LockAcquire, 4, new Uint8Array([4, 4, 4, 4]));
  w.flush();
  for (const id of [5, 6]) w.sendAfterTask(FrameType.Error, Opcode.LockAcquire, id, new Uint8Array([id]));
  await Promise.resolve();
  t.same(sink.events, ['write of 1,2,3', 'write of 4', 'write of 5,6'], 'each write holds its own frames, in order');
  const payloads: number[][] = [];
  const decoder = new FrameDecoder({ frame: (_type, _opcode, _id, p) => { payloads.push([...p]); }, error: (err) => { throw err; } });
  for (const chunk of sink.writes) decoder.push(chunk);
  t.same(payloads, [[1], [2, 2], [3, 3, 3], [4, 4, 4, 4], [5], [6]], 'every frame with its own payload');
  t.equal(w.queuedBytes, 0, 'nothing left queued');
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(sink.writes.length, 3, 'the flushes send() scheduled find nothing left');
});

t.test('several writers: one write each at the end of the turn, in the order they first queued; a frame queued meanwhile waits a turn', async (t) => {
  const order: string[] = [];
  const named = (name: string, onWrite?: () => void): FrameWriter => new FrameWriter({ write: (chunk) => {
    order.push(`${name}:${new Recorder().framesIn(chunk).join(',')}`);
    onWrite?.();
    return true;
  } });
  const late = named('late');
  const a = named('a', () => late.send(FrameType.Response, Opcode.LockAcquire, 9, payload));
  const b = named('b');
  b.send(FrameType.Response, Opcode.LockAcquire, 1, payload);
  a.send(FrameType.Response, Opcode.LockAcquire, 2, payload);
  b.send(FrameType.Response, Opcode.LockAcquire, 3, payload);
  b.flush();
  b.send(FrameType.Response, Opcode.LockAcquire, 4, payload);
  a.close();
  const c = named('c');
  c.send(FrameType.Response, Opcode.LockAcquire, 5, payload);
  setImmediate(() => order.push('turn end'));
  await new Promise((resolve) => setImmediate(resolve));
  t.same(order, ['b:1,3', 'b:4', 'c:5', 'turn end'], 'b flushed early, then once more at the turn end; closed a wrote nothing; c after b');
  const c2 = named('c2', () => late.send(FrameType.Response, Opcode.LockAcquire, 8, payload));
  c2.send(FrameType.Response, Opcode.LockAcquire, 6, payload);
  setImmediate(() => order.push('turn end'));
  await new Promise((resolve) => setImmediate(resolve));
  await new Promise((resolve) => setImmediate(resolve));
  t.same(order.slice(4), ['c2:6', 'turn end', 'late:8'], 'a frame queued by a turn-end write goes out at the next turn end');
});
