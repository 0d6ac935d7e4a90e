// Checks the per-request latency bookkeeping of a server/node Connection (what feeds
// dsync_request_duration_seconds): over a fake socket (no port), one request at a time and
// several pipelined and answered out of order, every answered request is reported exactly
// once, with a duration that orders as arrivals and answers do. No time thresholds.

import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import t from 'tap';
import { DsyncError, ErrorCode } from '../../../protocol/errors.js';
import { encodeFrame, FrameType, Opcode } from '../../../protocol/frame.js';
import { schema } from '../../../protocol/index.js';
import { Connection, type ConnectionOwner } from '../../../server/node/connection.js';
import { Logger } from '../../../server/node/log.js';
import { helloFrame } from '../../integration/helpers/raw.js';

/** The parts of a net.Socket a Connection uses; incoming bytes are emitted as 'data'. */
class FakeSocket extends EventEmitter {
  readonly remoteAddress = '127.0.0.1';
  readonly remotePort = 1;
  destroyed = false;
  writableLength = 0;
  setNoDelay(): void {}
  setTimeout(): void {}
  pause(): void {}
  resume(): void {}
  end(): void {}
  destroySoon(): void {}
  write(): boolean {
    return true;
  }

  destroy(): void {
    this.destroyed = true;
  }
}

t.test('each answered request is reported once, one pending or several answered out of order', async (t) => {
  const dispatched: number[] = [];
  const reported: { opcode: number; seconds: number }[] = [];
  const owner: ConnectionOwner = {
    nodeId: 'n1',
    log: new Logger('n1', 'error', () => {}),
    helloReply: () => schema.HelloReply.encode({ nodeId: 'n1' }).finish(),
    dispatch: (_conn, _type, _opcode, requestId) => { dispatched.push(requestId); },
    closed: () => {},
    peerHello: () => {},
    fatal: (message) => { throw new Error(message); },
    requestAnswered: (opcode, _code, seconds) => { reported.push({ opcode, seconds }); },
  };
  const socket = new FakeSocket();
  const conn = new Connection(socket as unknown as Socket, owner);
  t.teardown(() => conn.close('test over'));
  const request = (requestId: number): Buffer => Buffer.from(encodeFrame(FrameType.Request, Opcode.Ping, requestId, new Uint8Array(0)));
  socket.emit('data', Buffer.from(helloFrame()));

  for (const id of [10, 11, 12]) {
    socket.emit('data', request(id));
    conn.reply(id, Opcode.Ping, new Uint8Array(0));
  }
  t.equal(reported.length, 3, 'one at a time: each reported');

  socket.emit('data', Buffer.concat([request(20), request(21), request(22), request(23)]));
  t.same(dispatched.slice(3), [20, 21, 22, 23], 'four pipelined requests dispatched');
  t.equal(conn.pending, 4, 'all four pending');
  conn.replyError(23, Opcode.Ping, new DsyncError(ErrorCode.UNAVAILABLE, 'test'));
  conn.reply(20, Opcode.Ping, new Uint8Array(0));
  socket.emit('data', request(24));
  conn.reply(22, Opcode.Ping, new Uint8Array(0));
  conn.reply(24, Opcode.Ping, new Uint8Array(0));
  conn.reply(21, Opcode.Ping, new Uint8Array(0));
  t.equal(conn.pending, 0, 'nothing pending');
  t.equal(reported.length, 8, 'every one of the eight answers reported once');
  t.ok(reported.every((r) => r.opcode === Opcode.Ping && r.seconds >= 0), 'as pings, with non-negative durations');
  const [d23, d20, , d24, d21] = reported.slice(3).map((r) => r.seconds) as [number, number, number, number, number];
  t.ok(d20 >= d23, 'request 20 arrived before 23 and was answered after it: its duration is not shorter');
  t.ok(d21 >= d24, 'request 21 arrived before 24 and was answered after it: its duration is not shorter');
});
