// Checks that Raft traffic never outgrows a peer frame, now that entries can be large
// (queue publish batches up to a maximal message): the log hands out at most
// appendEntriesBytesMax of entry data per append message (but always one entry, however
// large), GroupHost cuts one turn's messages for a peer into several RaftBatch frames
// of at most raftBatchBytesMax, and a message no frame can hold (a huge snapshot) is
// dropped with a log line instead of tripping the frame writer's assertion.

import t from 'tap';
import { appendEntriesBytesMax, frameBytesMax, raftBatchBytesMax } from '../../../core/constants.js';
import { groupId, logIndex, nodeId, term } from '../../../core/ids.js';
import { RaftLog } from '../../../core/raft/log.js';
import { type Entry, EntryType, type Message, MessageType } from '../../../core/raft/types.js';
import { schema } from '../../../protocol/index.js';
import { testHost } from './runner-env.js';

const entry = (index: number, bytes: number): Entry => ({ term: term(1), index: logIndex(index), type: EntryType.Normal, data: new Uint8Array(bytes) });

t.test('the log slices append messages by bytes as well as by count', async (t) => {
  const log = new RaftLog(null, [entry(1, 600_000), entry(2, 600_000), entry(3, 10), entry(4, 3_000_000), entry(5, 10)], 0);
  t.same(log.slice(1, 6, 512).map((e) => e.index), [1, 2, 3, 4, 5], 'no byte bound: the count alone');
  t.same(log.slice(1, 6, 512, appendEntriesBytesMax).map((e) => e.index), [1], 'two 600 KB entries pass 1 MiB: the first goes alone');
  t.same(log.slice(2, 6, 512, appendEntriesBytesMax).map((e) => e.index), [2, 3], 'then the next with the small one after it');
  t.same(log.slice(4, 6, 512, appendEntriesBytesMax).map((e) => e.index), [4], 'an entry over the budget still goes, alone');
  t.same(log.slice(3, 6, 1, appendEntriesBytesMax).map((e) => e.index), [3], 'the count bound still holds');
});

/** Sends outside a ready pass (as here) leave in a microtask (GroupHost.send): let them. */
function sendsLeave(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function appendMessage(to: string, index: number, bytes: number): Message {
  return {
    type: MessageType.App, from: nodeId('n1'), to: nodeId(to), term: term(1), logTerm: term(1), index: logIndex(index - 1),
    entries: [entry(index, bytes)], commit: logIndex(0), reject: false, rejectHint: logIndex(0), rejectHintTerm: term(0), snapshot: null, context: new Uint8Array(0),
  } as unknown as Message;
}

t.test('a turn of large messages for one peer goes out in several frames, each within the bound', async (t) => {
  const h = testHost();
  const big = 900_000;
  h.host.send(groupId(5), [appendMessage('n2', 1, big), appendMessage('n2', 2, big), appendMessage('n2', 3, big), appendMessage('n3', 1, 10)]);
  h.host.send(groupId(6), [appendMessage('n2', 1, big), appendMessage('n2', 2, big)]);
  h.scheduler.drain();
  await sendsLeave();
  const toN2 = h.sent.filter((s) => s.peer === 'n2');
  t.ok(toN2.length >= 3, `five 900 KB messages for n2 in ${toN2.length} frames`);
  for (const s of h.sent) t.ok(s.batch.length <= raftBatchBytesMax + 64 * 1024, `a frame of ${s.batch.length} bytes is within the bound`);
  const messages = toN2.flatMap((s) => schema.RaftBatch.decode(s.batch).messages);
  t.same(messages.map((m) => `${m.group}:${Number(m.entries?.[0]?.index ?? 0)}`), ['5:1', '5:2', '5:3', '6:1', '6:2'], 'every message, in order');
  t.equal(h.sent.filter((s) => s.peer === 'n3').length, 1, 'the other peer gets its one frame');
});

t.test('a message no frame can hold is dropped, not sent', async (t) => {
  const h = testHost();
  const snap = {
    ...appendMessage('n2', 1, 0), type: MessageType.Snap, entries: [],
    snapshot: { meta: { index: logIndex(10), term: term(1), conf: { voters: [nodeId('n1'), nodeId('n2')], learners: [] } }, data: new Uint8Array(frameBytesMax) },
  } as unknown as Message;
  h.host.send(groupId(7), [snap, appendMessage('n2', 11, 10)]);
  h.scheduler.drain();
  await sendsLeave();
  const messages = h.sent.flatMap((s) => schema.RaftBatch.decode(s.batch).messages);
  t.same(messages.map((m) => m.type), [MessageType.App], 'only the small message went out');
  t.same(h.fatals, [], 'and nothing failed');
});
