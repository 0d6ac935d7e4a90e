// DSYNC_CANARY parsing: known names (one or several) are taken, nothing set means no
// canary, and an unknown name is refused naming the known ones (the node then stops
// with that message rather than running a test without the bug it asked for).

import t from 'tap';
import { queueCanaryOf, serverCanaries, serverCanariesFrom } from '../../../server/node/canary.js';

t.test('DSYNC_CANARY', async (t) => {
  t.same([...serverCanariesFrom({})], [], 'unset: none');
  t.same([...serverCanariesFrom({ DSYNC_CANARY: '' })], [], 'empty: none');
  t.same([...serverCanariesFrom({ DSYNC_CANARY: 'cache-skip-invalidation' })], ['cache-skip-invalidation']);
  t.same([...serverCanariesFrom({ DSYNC_CANARY: ' queue-forget-failed , cache-skip-invalidation ' })].sort(),
    ['cache-skip-invalidation', 'queue-forget-failed'], 'several, spaces trimmed');
  t.throws(() => serverCanariesFrom({ DSYNC_CANARY: 'grant-everything' }), new RegExp(`unknown canary "grant-everything".*${Object.keys(serverCanaries)[0]}`));
});

t.test('the queue canaries map to the queue service\'s option; two at once are refused', async (t) => {
  const of = (spec: string): unknown => queueCanaryOf(serverCanariesFrom({ DSYNC_CANARY: spec }));
  t.equal(of('cache-skip-invalidation'), undefined, 'no queue canary');
  t.equal(of('queue-forget-failed'), 'forget-failed-attempts');
  t.equal(of('queue-ack-before-majority,cache-skip-invalidation'), 'ack-before-majority');
  t.equal(of('queue-cursor-before-ack'), 'cursor-before-ack');
  t.throws(() => of('queue-cursor-before-ack,queue-forget-failed'), /2 queue canaries/);
});
