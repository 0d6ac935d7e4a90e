// Checks GatewayLink, the in-process ClientLink the HTTP gateway serves requests through,
// against a scripted node: a reply resolves and an error rejects the request that asked
// (counted in the request metrics with its code), the credential reaches serve(), closing
// fails what still waits and tells onClose listeners once, answers after the close are
// dropped (a handler may answer a request whose caller hung up), an answer to a request
// that never waited on an open link is a broken invariant, and a handler that throws
// something other than a DsyncError stops the node as on the binary port.

import t from 'tap';
import { DsyncError, ErrorCode } from '../../../protocol/errors.js';
import { Opcode } from '../../../protocol/frame.js';
import { GatewayLink, type GatewayNode } from '../../../server/node/gateway.js';
import { Logger } from '../../../server/node/log.js';
import { type Credential, openSecurity } from '../../../server/node/security.js';
import type { ClientLink } from '../../../server/services/service.js';

interface Served {
  readonly link: ClientLink;
  readonly credential: Credential | null;
  readonly opcode: number;
  readonly requestId: number;
}

function fakeNode(onServe: (s: Served) => void = () => {}): GatewayNode & { served: Served[]; answered: string[]; fatals: string[] } {
  const served: Served[] = [];
  const answered: string[] = [];
  const fatals: string[] = [];
  return {
    nodeId: 'n1', log: new Logger('n1', 'error'), config: { security: openSecurity }, served, answered, fatals,
    serve(link, credential, opcode, requestId) {
      const s = { link, credential, opcode, requestId };
      served.push(s);
      onServe(s);
    },
    requestAnswered(opcode, code) { answered.push(`${opcode}:${code}`); },
    fatal(message) { fatals.push(message); },
  };
}

t.test('a reply resolves, an error rejects, both are counted', async (t) => {
  const node = fakeNode();
  const link = new GatewayLink(node);
  const cred: Credential = { name: 'app', role: 'read-write' };
  const a = link.request(Opcode.Status, new Uint8Array(0), cred);
  const b = link.request(Opcode.LockAcquire, new Uint8Array(0), null);
  t.equal(node.served.length, 2, 'served at once');
  t.equal(node.served[0]?.credential, cred, 'with the caller\'s credential');
  const [first, second] = node.served as [Served, Served];
  t.not(first.requestId, second.requestId, 'distinct request ids');
  second.link.replyError(second.requestId, Opcode.LockAcquire, new DsyncError(ErrorCode.DEADLOCK, 'cycle'));
  first.link.reply(first.requestId, Opcode.Status, new Uint8Array([7]));
  t.same([...await a], [7], 'the reply payload');
  await t.rejects(b, { code: ErrorCode.DEADLOCK }, 'the error');
  t.same(node.answered, [`${Opcode.LockAcquire}:DEADLOCK`, `${Opcode.Status}:OK`], 'metrics told');
});

t.test('closing fails what waits, tells listeners once, drops late answers', async (t) => {
  const node = fakeNode();
  const link = new GatewayLink(node);
  let heard = 0;
  link.onClose(() => heard++);
  const unsubscribed = link.onClose(() => heard += 100);
  unsubscribed();
  const waiting = link.request(Opcode.Fetch, new Uint8Array(0), null);
  link.close('consumer deleted');
  link.close('again');
  await t.rejects(waiting, { code: ErrorCode.CONNECTION_CLOSED, message: 'consumer deleted' });
  t.equal(heard, 1, 'one close, heard once, unsubscribed listener not called');
  t.ok(link.closed);
  const s = node.served[0] as Served;
  s.link.reply(s.requestId, Opcode.Fetch, new Uint8Array(0));
  t.same(node.answered, [], 'an answer after the close is dropped, not counted');
  let late = false;
  link.onClose(() => { late = true; });
  t.ok(late, 'a listener added after the close runs at once');
  await t.rejects(link.request(Opcode.Fetch, new Uint8Array(0), null), { code: ErrorCode.CONNECTION_CLOSED }, 'no requests on a closed link');
});

t.test('broken invariants are loud', async (t) => {
  const node = fakeNode();
  const link = new GatewayLink(node);
  t.throws(() => link.reply(42, Opcode.Status, new Uint8Array(0)), /not waiting/, 'an answer nobody asked for');
  const p = link.request(Opcode.Status, new Uint8Array(0), null);
  const s = node.served[0] as Served;
  t.throws(() => link.reply(s.requestId, Opcode.Ping, new Uint8Array(0)), /answered as opcode/, 'an answer with another opcode');
  link.close('done');
  await t.rejects(p);

  const throwing = fakeNode(() => { throw new TypeError('handler bug'); });
  const l2 = new GatewayLink(throwing);
  await t.rejects(l2.request(Opcode.Status, new Uint8Array(0), null), { code: ErrorCode.INTERNAL });
  t.match(throwing.fatals, [/threw on the HTTP gateway/], 'the node is stopped');
});
