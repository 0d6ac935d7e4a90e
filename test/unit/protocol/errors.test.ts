// The error codes are part of the wire contract (protocol/errors.ts): this pins
// the foundation's codes so a rename or removal fails here (later services may
// add codes, never rename), checks ProtocolError's fatal
// flag and DsyncError details, and that an ErrorReply round-trips through the
// client's decodeError, including an unknown code from a newer node.

import t from 'tap';
import { decodeError, parseAddress } from '../../../client/transport/connection.js';
import { DsyncError, ErrorCode, isErrorCode, Opcode, opcodeName, ProtocolError, schema } from '../../../protocol/index.js';

t.test('error codes are stable', (t) => {
  // The foundation's codes must all still exist, each equal to its own name.
  for (const code of ['BAD_REQUEST', 'BAD_FRAME', 'BAD_VERSION', 'BAD_PAYLOAD', 'FRAME_TOO_LARGE', 'UNKNOWN_OPCODE', 'HELLO_REQUIRED',
    'TOO_MANY_REQUESTS', 'NOT_LEADER', 'UNAVAILABLE', 'TIMEOUT', 'CONNECTION_CLOSED', 'INTERNAL']) {
    t.equal((ErrorCode as Record<string, string>)[code], code, `${code} is still a code spelled as its name`);
    t.ok(isErrorCode(code));
  }
  for (const [name, value] of Object.entries(ErrorCode)) t.equal(value, name, `${name} is spelled as its name`);
  t.notOk(isErrorCode('NOT_A_CODE'));
  t.end();
});

t.test('typed errors carry code, fatal flag and leader details', (t) => {
  const p = new ProtocolError(ErrorCode.FRAME_TOO_LARGE, 'too big', true);
  t.ok(p instanceof DsyncError, 'a ProtocolError is a DsyncError');
  t.ok(p instanceof Error);
  t.equal(p.name, 'ProtocolError');
  t.equal(p.code, ErrorCode.FRAME_TOO_LARGE);
  t.equal(p.fatal, true);
  t.equal(new ProtocolError(ErrorCode.UNKNOWN_OPCODE, 'x', false).fatal, false);
  const nl = new DsyncError(ErrorCode.NOT_LEADER, 'go there', { leaderId: 'n2', leaderAddress: '127.0.0.1:7402' });
  t.equal(nl.leaderId, 'n2');
  t.equal(nl.leaderAddress, '127.0.0.1:7402');
  t.equal(new DsyncError(ErrorCode.TIMEOUT, 't').leaderAddress, '', 'details default to empty');
  t.end();
});

t.test('ErrorReply round-trips through the client decoder', (t) => {
  const bytes = schema.ErrorReply.encode({ code: ErrorCode.NOT_LEADER, message: 'not me', leaderId: 'n3', leaderAddress: '127.0.0.1:7403' }).finish();
  const err = decodeError(bytes, Opcode.Ping);
  t.equal(err.code, ErrorCode.NOT_LEADER);
  t.equal(err.message, 'not me');
  t.equal(err.leaderAddress, '127.0.0.1:7403');
  const future = decodeError(schema.ErrorReply.encode({ code: 'SOME_FUTURE_CODE', message: 'new' }).finish(), Opcode.Ping);
  t.equal(future.code, ErrorCode.INTERNAL, 'an unknown code from a newer node maps to INTERNAL');
  const junk = decodeError(Uint8Array.of(0xff, 0xff, 0xff), Opcode.Status);
  t.equal(junk.code, ErrorCode.BAD_PAYLOAD, 'an undecodable error answer is BAD_PAYLOAD, not an exception');
  t.match(junk.message, /Status/);
  t.end();
});

t.test('opcode names and addresses', (t) => {
  t.equal(opcodeName(Opcode.Ping), 'Ping');
  t.equal(opcodeName(0xbeef), 'opcode 48879');
  t.equal(Opcode.None, 0, 'opcode 0 is the stream-level None');
  t.same(parseAddress('127.0.0.1:7401'), { host: '127.0.0.1', port: 7401 });
  t.same(parseAddress('[::1]:7401'), { host: '::1', port: 7401 });
  t.same(parseAddress(':7401'), { host: '127.0.0.1', port: 7401 });
  for (const bad of ['127.0.0.1', 'host:0', 'host:70000', 'host:abc']) {
    let code = '';
    try {
      parseAddress(bad);
    } catch (err) {
      code = err instanceof DsyncError ? err.code : 'other';
    }
    t.equal(code, ErrorCode.BAD_REQUEST, `"${bad}" is refused with BAD_REQUEST`);
  }
  t.end();
});
