// Checks the per-connection pending-request limit (issue 7, item 11): a real
// loopback socket into a server/node Connection whose owner never answers
// requests; the client pipelines 2 x pendingRequestsPerConnectionMax pings. Exactly
// the limit must be dispatched and exactly the rest refused with TOO_MANY_REQUESTS
// (a refusal must not free a slot it never took).

import t from 'tap';
import { pendingRequestsPerConnectionMax } from '../../../core/constants.js';
import { ErrorCode } from '../../../protocol/errors.js';
import { FrameType, Opcode } from '../../../protocol/frame.js';
import { schema } from '../../../protocol/index.js';
import { errorCode, pingFrame } from '../../integration/helpers/raw.js';
import { connectionRig } from './connection-env.js';

t.test('pipelining 2x the pending limit: the limit is dispatched, the rest refused', async (t) => {
  let dispatched = 0;
  // The owner never answers: every dispatched request stays pending.
  const { raw, conns } = await connectionRig(t, () => { dispatched++; });

  const total = 2 * pendingRequestsPerConnectionMax;
  const frames: Uint8Array[] = [];
  for (let i = 0; i < total; i++) frames.push(pingFrame(100 + i, new Uint8Array(0)));
  raw.write(Buffer.concat(frames));
  const refusedCount = (): number => raw.frames.filter((f) => f.type === FrameType.Error).length;
  for (let i = 0; i < 500 && dispatched + refusedCount() < total; i++) await new Promise((r) => setTimeout(r, 20));

  const errors = raw.frames.filter((f) => f.type === FrameType.Error);
  t.equal(dispatched + errors.length, total, 'every request was either dispatched or refused');
  t.equal(dispatched, pendingRequestsPerConnectionMax, 'exactly the limit was dispatched');
  t.equal(errors.length, pendingRequestsPerConnectionMax, 'exactly the rest was refused');
  t.ok(errors.every((f) => errorCode(f) === ErrorCode.TOO_MANY_REQUESTS && f.opcode === Opcode.Ping), 'each refusal is TOO_MANY_REQUESTS');
  t.ok(errors.every((f) => f.requestId >= 100 + pendingRequestsPerConnectionMax), 'and only requests beyond the limit were refused');
  t.ok(errors.every((f) => schema.ErrorReply.decode(f.payload).retryAfterMs > 0), 'with a retry hint');
  t.equal(conns[0]?.pending, pendingRequestsPerConnectionMax, 'the connection counts the limit as pending');
});
