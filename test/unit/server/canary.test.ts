// DSYNC_CANARY parsing: known names (one or several) are taken, nothing set means no
// canary, and an unknown name is refused naming the known ones (the node then stops
// with that message rather than running a test without the bug it asked for).

import t from 'tap';
import { serverCanaries, serverCanariesFrom } from '../../../server/node/canary.js';

t.test('DSYNC_CANARY', async (t) => {
  t.same([...serverCanariesFrom({})], [], 'unset: none');
  t.same([...serverCanariesFrom({ DSYNC_CANARY: '' })], [], 'empty: none');
  t.same([...serverCanariesFrom({ DSYNC_CANARY: 'cache-skip-invalidation' })], ['cache-skip-invalidation']);
  t.same([...serverCanariesFrom({ DSYNC_CANARY: ' queue-forget-failed , cache-skip-invalidation ' })].sort(),
    ['cache-skip-invalidation', 'queue-forget-failed'], 'several, spaces trimmed');
  t.throws(() => serverCanariesFrom({ DSYNC_CANARY: 'grant-everything' }), new RegExp(`unknown canary "grant-everything".*${Object.keys(serverCanaries)[0]}`));
});
