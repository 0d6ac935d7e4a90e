// The node's defer (server/runtime.ts, TurnDeferQueue): work deferred in a turn runs
// after it, and work that deferred work defers (directly, or from the promise chains it
// resolved) runs in the same check phase, before the next event-loop iteration; a
// callback that throws is an uncaught exception and the callbacks queued after it still
// run. Asserts order only: a setImmediate queued at the chain's start marks the next
// iteration.

import t from 'tap';
import { TurnDeferQueue } from '../../../server/runtime.js';

t.test('a chain of deferred hand-offs finishes in one check phase, before the next iteration', async (t) => {
  const q = new TurnDeferQueue();
  const order: string[] = [];
  await new Promise<void>((done) => {
    q.defer(() => {
      order.push('hop 1');
      setImmediate(() => {
        order.push('next iteration');
        done();
      });
      q.defer(() => {
        order.push('hop 2');
        // A promise chain three hops deep (as a proposal's answer is) defers the last hop.
        void Promise.resolve().then(() => undefined).then(() => undefined).then(() => {
          q.defer(() => {
            order.push('hop 3');
            q.defer(() => order.push('hop 4'));
          });
        });
      });
    });
  });
  t.same(order, ['hop 1', 'hop 2', 'hop 3', 'hop 4', 'next iteration']);
});

t.test('what one turn defers runs together, in the order deferred, after the turn', async (t) => {
  const q = new TurnDeferQueue();
  const order: string[] = [];
  q.defer(() => order.push('a'));
  q.defer(() => order.push('b'));
  order.push('turn');
  await new Promise<void>((r) => setImmediate(r));
  t.same(order, ['turn', 'a', 'b']);
});

t.test('a chain that never ends yields to the event loop: I/O and timers still run', async (t) => {
  const q = new TurnDeferQueue();
  let hops = 0;
  let stop = false;
  const again = (): void => {
    hops++;
    if (!stop) q.defer(again);
  };
  q.defer(again);
  await new Promise<void>((r) => setTimeout(r, 5));
  stop = true;
  t.ok(hops > 0, 'the chain ran');
  await new Promise<void>((r) => setImmediate(r));
});

t.test('a throwing callback is an uncaught exception; the callbacks after it still run', async (t) => {
  const q = new TurnDeferQueue();
  const order: string[] = [];
  const listeners = process.listeners('uncaughtException');
  process.removeAllListeners('uncaughtException');
  const caught = new Promise<Error>((resolve) => process.once('uncaughtException', (err) => resolve(err)));
  t.teardown(() => {
    for (const l of listeners) process.on('uncaughtException', l);
  });
  q.defer(() => order.push('before'));
  q.defer(() => {
    throw new Error('boom');
  });
  q.defer(() => order.push('after'));
  const err = await caught;
  t.equal(err.message, 'boom');
  await new Promise<void>((r) => setImmediate(r));
  await new Promise<void>((r) => setImmediate(r));
  t.same(order, ['before', 'after']);
});
