// Checks that a connection never swallows a broken invariant (issue 7, item 10):
// a handler that throws an AssertionError (or any non-DsyncError) must reach the
// owner's fatal hook (the node stops), not be answered with INTERNAL and forgotten.
// A loopback socket into a Connection whose owner's dispatch throws on request.

import t from 'tap';
import { AssertionError } from '../../../core/assert.js';
import { FrameType } from '../../../protocol/frame.js';
import { pingFrame } from '../../integration/helpers/raw.js';
import { connectionRig } from './connection-env.js';

for (const [what, thrown] of [['an AssertionError', new AssertionError('raft: commit 9 outside log')],
  ['a TypeError', new TypeError('cannot read properties of undefined')]] as const) {
  t.test(`${what} thrown by a handler stops the node`, async (t) => {
    let dispatched = 0;
    const { raw, fatals } = await connectionRig(t, () => {
      dispatched++;
      throw thrown;
    });
    raw.write(pingFrame(5, new Uint8Array(0)));
    for (let i = 0; i < 200 && fatals.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    t.equal(dispatched, 1, 'the request reached the handler');
    t.equal(fatals.length, 1, 'the fatal hook was called once');
    t.equal(fatals[0]?.err, thrown, 'with the thrown error');
    t.match(fatals[0]?.message ?? '', /Ping/, 'naming the request it was handling');
    t.notOk(raw.frames.some((f) => f.type === FrameType.Error && f.requestId === 5), 'and the bug was not answered as if it were an operating error');
  });
}
