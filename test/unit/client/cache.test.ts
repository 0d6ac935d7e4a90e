// Checks when the client's cache part (client/cache/cache.ts) sends a request again,
// against a fake router whose connection answers from a script. A get has no effect and
// is asked again after any refusal or a closed connection. A write is sent again only
// after a refusal made before anything happened (UNAVAILABLE, TOO_MANY_REQUESTS, or no
// connection to send it on); once sent, a closed connection or a TIMEOUT leaves its fate
// unknown and the write rejects. The 30-minute fault run caught the old client sending
// such a set again: it applied a second time after another client's write (a stale value
// came back). Asserts the requests sent, not times.

import t from 'tap';
import { CacheClient } from '../../../client/cache/cache.js';
import type { Router } from '../../../client/transport/router.js';
import { DsyncError, ErrorCode } from '../../../protocol/errors.js';
import { Opcode } from '../../../protocol/frame.js';
import { schema } from '../../../protocol/index.js';

type Step = 'ok' | 'no-connection' | ErrorCode;

/** A CacheClient over a router that plays `steps`, one per attempt; records the opcodes sent. */
function scripted(steps: readonly Step[]): { client: CacheClient; sent: number[] } {
  const sent: number[] = [];
  let i = 0;
  const next = (): Step => steps[Math.min(i++, steps.length - 1)] as Step;
  let pending: Step = 'ok';
  const conn = {
    request: async (opcode: number): Promise<Uint8Array> => {
      sent.push(opcode);
      if (pending === 'ok') return schema.CacheReply.encode({ found: true, value: new Uint8Array([1]) }).finish();
      throw new DsyncError(pending as ErrorCode, `scripted ${pending}`);
    },
  };
  const router = {
    requestTimeoutMs: 1_000,
    openConnectionNow: () => null,
    anyConnection: async () => {
      pending = next();
      if (pending === 'no-connection') throw new DsyncError(ErrorCode.CONNECTION_CLOSED, 'connection to 127.0.0.1:1 failed: ECONNREFUSED');
      return conn;
    },
  } as unknown as Router;
  return { client: new CacheClient(router, async () => {}), sent };
}

t.test('a get is asked again after refusals and closed connections', async (t) => {
  const { client, sent } = scripted([ErrorCode.UNAVAILABLE, ErrorCode.CONNECTION_CLOSED, 'no-connection', ErrorCode.TOO_MANY_REQUESTS, 'ok']);
  t.same(await client.get('k'), new Uint8Array([1]));
  t.same(sent, [Opcode.CacheGet, Opcode.CacheGet, Opcode.CacheGet, Opcode.CacheGet], 'four sends (no connection sends nothing)');
});

t.test('a write is sent again only after a refusal made before it did anything', async (t) => {
  const refused = scripted([ErrorCode.UNAVAILABLE, ErrorCode.TOO_MANY_REQUESTS, 'no-connection', 'ok']);
  await refused.client.set('k', 'v');
  t.same(refused.sent, [Opcode.CacheSet, Opcode.CacheSet, Opcode.CacheSet], 'refused twice, no connection once, then applied');

  for (const code of [ErrorCode.CONNECTION_CLOSED, ErrorCode.TIMEOUT]) {
    const set = scripted([code, 'ok']);
    await t.rejects(set.client.set('k', 'v'), { code }, `a set whose connection answered ${code} rejects`);
    t.same(set.sent, [Opcode.CacheSet], `${code}: the set was sent once`);
    const del = scripted([code, 'ok']);
    await t.rejects(del.client.delete('k'), { code }, `a delete whose connection answered ${code} rejects`);
    t.same(del.sent, [Opcode.CacheDelete], `${code}: the delete was sent once`);
  }
});
