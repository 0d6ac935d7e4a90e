// Router long polls (followLeader) share one AbortController per group and target: every
// long poll waiting on a node is abandoned and resent to the new leader as soon as any
// request learns the group's leader moved, and a long poll sent to the old node later is
// not born abandoned (the aborted controller is not reused).

import t from 'tap';
import type { ClientConnection } from '../../../client/transport/connection.js';
import { Router } from '../../../client/transport/router.js';
import { DsyncError, ErrorCode } from '../../../protocol/errors.js';

interface Sent { readonly address: string; readonly opcode: number; readonly signal: AbortSignal | undefined }

function fakeConnection(address: string, sent: Sent[], answer: (opcode: number) => Uint8Array | DsyncError | null): ClientConnection {
  return {
    address, hello: null, isOpen: true, onClose: () => {}, close: () => {},
    request: (opcode, _payload, _timeoutMs, signal) => new Promise<Uint8Array>((resolve, reject) => {
      sent.push({ address, opcode, signal });
      const a = answer(opcode);
      if (a instanceof DsyncError) reject(a);
      else if (a !== null) resolve(a);
      else signal?.addEventListener('abort', () => reject(signal.reason), { once: true }); // a long poll: only an abort ends it
    }),
  };
}

t.test('a leader move abandons every long poll waiting on the old leader, once', async (t) => {
  const sent: Sent[] = [];
  const poll = 7;
  const other = 8;
  const conns = new Map<string, ClientConnection>([
    ['a:1', fakeConnection('a:1', sent, (op) => (op === poll ? null : new DsyncError(ErrorCode.NOT_LEADER, 'moved', { leaderAddress: 'b:1' })))],
    ['b:1', fakeConnection('b:1', sent, (op) => new Uint8Array([op]))],
  ]);
  const router = new Router({ seeds: ['a:1', 'b:1'], name: 't', connect: async (address) => conns.get(address) as ClientConnection });
  t.teardown(() => router.close());
  router.hintLeader(0, 'a:1');
  // Open the connection first, so the long polls are queued on it synchronously.
  await router.connection('a:1');
  await router.connection('b:1');
  const warnings: string[] = [];
  const onWarning = (w: Error): void => { warnings.push(w.name); };
  process.on('warning', onWarning);
  t.teardown(() => { process.off('warning', onWarning); });
  const waiting = 16;
  const polls = Array.from({ length: waiting }, () => router.request(0, poll, new Uint8Array(0), { followLeader: true, timeoutMs: 60_000 }));
  await new Promise((r) => setImmediate(r));
  t.equal(sent.filter((s) => s.address === 'a:1' && s.opcode === poll).length, waiting, `${waiting} long polls wait on a:1`);
  t.equal(new Set(sent.map((s) => s.signal)).size, 1, 'they share one signal');
  await new Promise((r) => setImmediate(r));
  t.same(warnings, [], 'with no MaxListenersExceededWarning (a signal shared by more than 10 waiters)');
  // Another request hears NOT_LEADER -> b:1 and is answered there: the leader moved.
  t.same([...await router.request(0, other, new Uint8Array(0), { idempotent: true })], [other]);
  const answers = await Promise.all(polls);
  t.same(answers.map((a) => [...a]), Array.from({ length: waiting }, () => [poll]), 'every long poll was resent to b:1 and answered');
  t.equal(sent.filter((s) => s.address === 'b:1' && s.opcode === poll).length, waiting);
  // Back to a:1: a new long poll there gets a fresh signal, not the aborted one.
  router.hintLeader(1, 'a:1');
  const late = router.request(1, poll, new Uint8Array(0), { followLeader: true, timeoutMs: 60_000 });
  await new Promise((r) => setImmediate(r));
  const last = sent[sent.length - 1] as Sent;
  t.equal(last.address, 'a:1');
  t.equal(last.signal?.aborted, false, 'a later long poll is not born abandoned');
  // Group 1's leader moving ends it the same way.
  t.same([...await router.request(1, other, new Uint8Array(0), { idempotent: true })], [other]);
  t.same([...await late], [poll]);
});
