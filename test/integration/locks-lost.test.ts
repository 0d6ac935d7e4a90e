// A force-released holder learns it (issue 7 item 7), over a real node process: a
// raw client connection opens a session and takes a lock, a second connection
// force-releases it, and the holder's connection must receive a LockLost push naming
// the lock, the session, its token and FORCE_RELEASED. One node, so it leads at once.

import t from 'tap';
import { encodeFrame, FrameType, Opcode, schema } from '../../protocol/index.js';
import { TestCluster } from './helpers/cluster.js';
import { errorCode, RawConnection, type ReceivedFrame } from './helpers/raw.js';

const callTimeoutMs = 10_000;
/** Attempts to open the first session while the node elects itself (50 ms apart). */
const openAttemptsMax = 200;

let nextRequestId = 100;

/** Sends one lock request and waits for its answer (a Response or an Error frame). */
async function call(conn: RawConnection, opcode: number, fields: Parameters<typeof schema.LockRequest.create>[0]): Promise<ReceivedFrame> {
  const requestId = ++nextRequestId;
  conn.write(encodeFrame(FrameType.Request, opcode, requestId, schema.LockRequest.encode(schema.LockRequest.create(fields)).finish()));
  const deadline = Date.now() + callTimeoutMs;
  for (;;) {
    const answer = conn.frames.find((f) => f.requestId === requestId && (f.type === FrameType.Response || f.type === FrameType.Error));
    if (answer !== undefined) return answer;
    if (Date.now() > deadline) throw new Error(`no answer to opcode ${opcode} request ${requestId}`);
    await conn.waitFrames(conn.frames.length + 1, Math.max(1, deadline - Date.now())).catch(() => undefined);
  }
}

t.test('force-release pushes LockLost to the holder\'s connection', async (t) => {
  const cluster = await TestCluster.start(t, { nodes: 1 });
  const port = cluster.nodes[0]!.spec.port;
  const holder = await RawConnection.open(port);
  const admin = await RawConnection.open(port);
  t.teardown(() => { holder.destroy(); admin.destroy(); });
  await holder.hello();
  await admin.hello();

  let opened: ReceivedFrame | null = null;
  for (let seq = 1; seq <= openAttemptsMax && opened === null; seq++) {
    const f = await call(holder, Opcode.SessionOpen, { clientId: 'holder', seq, ttlMs: 30_000 });
    if (f.type === FrameType.Response) opened = f;
    else await new Promise((r) => setTimeout(r, 50)); // not leader yet
  }
  t.ok(opened !== null, 'the holder opened a session');
  const session = Number(schema.LockReply.decode(opened!.payload).session);
  const seq = openAttemptsMax + 1;

  const grant = await call(holder, Opcode.LockAcquire, { clientId: 'holder', seq, session, lock: 'orders', exclusive: true, requestId: 'r1', wait: true });
  t.equal(grant.type, FrameType.Response, grant.type === FrameType.Error ? errorCode(grant) : 'granted');
  const token = Number(schema.LockReply.decode(grant.payload).token);
  t.ok(token > 0, `fencing token ${token}`);
  t.equal(holder.frames.filter((f) => f.type === FrameType.Push).length, 0, 'no push while the hold stands');

  const forced = await call(admin, Opcode.LockForceRelease, { clientId: 'operator', seq: 1, lock: 'orders' });
  t.equal(forced.type, FrameType.Response, 'force-release answered');

  const pushed = (): ReceivedFrame | undefined => holder.frames.find((f) => f.type === FrameType.Push && f.opcode === Opcode.LockLost);
  while (pushed() === undefined) await holder.waitFrames(holder.frames.length + 1, callTimeoutMs);
  const lost = schema.LockLostPush.decode(pushed()!.payload);
  t.same({ session: Number(lost.session), lock: lost.lock, code: lost.code, token: Number(lost.token) },
    { session, lock: 'orders', code: 'FORCE_RELEASED', token }, 'the push names the session, lock, code and lost token');
  t.match(lost.message, /force-released/);
  t.equal(admin.frames.filter((f) => f.type === FrameType.Push).length, 0, 'the operator\'s connection gets no push');
});
