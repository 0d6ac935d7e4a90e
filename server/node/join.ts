// How a node started with --join asks to be added to group 0: one request at a
// time over a plain client connection (server/ does not use the client library),
// following NOT_LEADER to the leader and retrying UNAVAILABLE with backoff, a
// bounded number of times. The leader answers once the node is a learner.

import { joinAttemptsMax, joinAttemptTimeoutMs, joinRetryBackoffMsMax, joinRetryBackoffMsMin, protocolVersion } from '../../core/constants.js';
import { DsyncError, ErrorCode, isErrorCode, type ProtocolError } from '../../protocol/errors.js';
import { FrameDecoder, FrameType, Opcode } from '../../protocol/frame.js';
import { schema } from '../../protocol/index.js';
import { FrameWriter } from '../../protocol/writer.js';
import type { Logger } from './log.js';
import { dialNode, type NodeSecurity, openSecurity } from './security.js';

export type JoinReply = ReturnType<typeof schema.MemberJoinReply.decode>;

/** One request/response exchange with `address` (hello first); rejects with a DsyncError. */
export function exchange(address: string, opcode: number, payload: Uint8Array, name: string, timeoutMs: number, security: NodeSecurity): Promise<Uint8Array> {
  const sep = address.lastIndexOf(':');
  const host = address.slice(0, sep).replace(/^\[(.*)\]$/, '$1');
  const port = Number(address.slice(sep + 1));
  return new Promise((resolve, reject) => {
    const socket = dialNode(host, port, security, null, () => {
      writer.send(FrameType.Request, Opcode.Hello, 1, schema.Hello.encode({ role: schema.Role.ROLE_CLIENT, protocolVersion, name,
        credentials: security.auth?.peerToken ?? '' }).finish());
      writer.send(FrameType.Request, opcode, 2, payload);
    });
    let settled = false;
    const finish = (err: DsyncError | null, reply?: Uint8Array): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (err !== null) reject(err);
      else resolve(reply ?? new Uint8Array(0));
    };
    const timer = setTimeout(() => finish(new DsyncError(ErrorCode.TIMEOUT, `${address} did not answer within ${timeoutMs} ms`)), timeoutMs);
    const writer = new FrameWriter({ write: (chunk) => socket.write(chunk) });
    const decoder = new FrameDecoder({
      frame: (type, op, requestId, body) => {
        if (type === FrameType.Error) {
          let err: DsyncError;
          try {
            const e = schema.ErrorReply.decode(body);
            err = new DsyncError(isErrorCode(e.code) ? e.code : ErrorCode.INTERNAL, e.message,
              { leaderAddress: e.leaderAddress, leaderId: e.leaderId, retryAfterMs: e.retryAfterMs });
          } catch {
            err = new DsyncError(ErrorCode.BAD_PAYLOAD, `${address} sent an undecodable error`);
          }
          finish(err);
          return;
        }
        if (type === FrameType.Response && op === opcode && requestId === 2) finish(null, body.slice());
      },
      error: (err: ProtocolError) => finish(new DsyncError(ErrorCode.BAD_FRAME, `${address} sent malformed bytes: ${err.message}`)),
    });
    socket.on('data', (chunk: Buffer) => decoder.push(chunk));
    socket.on('error', (err) => finish(new DsyncError(ErrorCode.UNAVAILABLE, `cannot reach ${address}: ${err.message}`)));
    socket.on('close', () => finish(new DsyncError(ErrorCode.CONNECTION_CLOSED, `${address} closed the connection`)));
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Asks the cluster reachable at `seed` to add this node. Resolves with the leader's answer
 * once the node is a learner; throws the last DsyncError after joinAttemptsMax attempts,
 * or at once for an answer that retrying cannot change (MEMBER_REMOVED, BAD_REQUEST, ...).
 */
export async function requestJoin(seed: string, request: { id: string; address: string; peerAddress: string; featureVersion?: number }, log: Logger,
  security: NodeSecurity = openSecurity): Promise<JoinReply> {
  const payload = schema.MemberJoinRequest.encode(request).finish();
  let target = seed;
  let backoffMs = joinRetryBackoffMsMin;
  let last: DsyncError | null = null;
  for (let attempt = 1; attempt <= joinAttemptsMax; attempt++) {
    try {
      const reply = await exchange(target, Opcode.MemberJoin, payload, `join ${request.id}`, joinAttemptTimeoutMs, security);
      return schema.MemberJoinReply.decode(reply);
    } catch (err) {
      if (!(err instanceof DsyncError)) throw err;
      last = err;
      if (err.code === ErrorCode.NOT_LEADER && err.leaderAddress !== '' && err.leaderAddress !== target) {
        log.info('join: following the leader', { from: target, leader: err.leaderId, address: err.leaderAddress });
        target = err.leaderAddress;
        continue;
      }
      const retryable = err.code === ErrorCode.UNAVAILABLE || err.code === ErrorCode.NOT_LEADER || err.code === ErrorCode.TIMEOUT
        || err.code === ErrorCode.CONNECTION_CLOSED || err.code === ErrorCode.TOO_MANY_REQUESTS;
      if (!retryable) throw err;
      log.info('join: retrying', { target, attempt, code: err.code, err: err.message });
      // A dead or deposed target: go back to the seed, which knows (or will know) the leader.
      target = seed;
      await sleep(Math.max(backoffMs, err.retryAfterMs));
      backoffMs = Math.min(backoffMs * 2, joinRetryBackoffMsMax);
    }
  }
  throw new DsyncError(ErrorCode.UNAVAILABLE, `could not join the cluster through ${seed} in ${joinAttemptsMax} attempts: ${last?.message ?? 'no answer'}`);
}
