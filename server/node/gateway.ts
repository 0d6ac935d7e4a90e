// The JSON gateway on the HTTP port (/v1/...): the binary protocol's operations for
// callers that speak HTTP. It implements no service logic. Each route encodes its JSON
// input into the request payload of one opcode with the protocol's own codecs, runs it
// through DsyncNode.serve (the handler table the binary port dispatches to, with the same
// access check), over a GatewayLink (an in-process ClientLink), and decodes the reply or
// error frame back into JSON. Limits, error codes and request metrics are therefore the
// binary protocol's.
//
// What HTTP lacks and the binary protocol gets from its connection, the caller makes
// explicit (as etcd's gateway does with leases):
// - Lock sessions: POST /v1/sessions opens one (TTL), the caller keeps it alive
//   (POST /v1/sessions/{id}/keepalive) and names it in every lock call; it expires by its
//   TTL, releasing its locks. There is no push over HTTP: a lock lost to expiry or a
//   force-release shows at the next keepalive (SESSION_EXPIRED) or release (NOT_FOUND).
//   Requests carry this node's gateway client id and a sequence number of its own (the
//   lock table's dedup), so an HTTP retry is a new request, not a deduplicated one.
// - Consumers: POST /v1/topics/{topic}/consumers makes a consumer identity on this node,
//   with a TTL renewed by every fetch, ack, nack, extend or keepalive. Its deliveries
//   survive between a fetch and the ack that follows (they belong to the consumer, not to
//   one HTTP request); ack deadlines still redeliver; when it is deleted or its TTL runs
//   out its link closes and the partition leaders take its deliveries back at once
//   (consumerGone), as for a binary client whose connection closed.
// - Leaders: requests go where the binary protocol sends them. A node that does not lead
//   what is asked answers 503 NOT_LEADER naming the leader (id and client address), or
//   UNAVAILABLE when none is known; the caller retries at the leader's HTTP port.

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { assert, assertNever } from '../../core/assert.js';
import {
  cacheTtlMsMax, httpBodyBytesMax, httpLingerBytesMax, httpLingerMs, httpConsumersMax, httpFetchCountDefault, httpConsumerTtlMsDefault, httpConsumerTtlMsMax, httpConsumerTtlMsMin, httpPartitionMapCacheMs,
  httpPartitionMapsMax, httpRequestsInFlightMax, lockDelayMsMax, overloadRetryAfterMs, queueAckBatchCountMax, queueAckDeadlineMsMax,
  queueAckDeadlineMsMin, queueFetchCountMax, queueFetchWaitMsMax, queueMaxDeliveriesMax, queueTopicPartitionsMax, sessionTtlMsDefault, sessionTtlMsMax,
  sessionTtlMsMin,
} from '../../core/constants.js';
import { keyHash, partitionOfKey } from '../../client/queues/queues.js';
import { DsyncError, ErrorCode } from '../../protocol/errors.js';
import { Opcode } from '../../protocol/frame.js';
import { schema } from '../../protocol/index.js';
import type { ClientLink } from '../services/service.js';
import { arr, bool, type Field, FieldError, int, type Json, map, num, obj, type ObjectField, opt, parseParameter, str, validate } from './gateway-fields.js';
import { sendJson } from './http.js';
import type { Logger } from './log.js';
import { type Credential, type NodeSecurity, RateBucket, roleAllows } from './security.js';

/** Where the spec lives next to the compiled gateway (dist/server/node/ -> docs/). */
export const apiSpecUrl = new URL('../../../docs/api.yaml', import.meta.url);

/** The node as the gateway sees it. */
export interface GatewayNode {
  readonly nodeId: string;
  readonly log: Logger;
  readonly config: { readonly security: NodeSecurity };
  serve(link: ClientLink, credential: Credential | null, opcode: number, requestId: number, payload: Uint8Array): void;
  requestAnswered(opcode: number, code: string, seconds: number): void;
  fatal(message: string, err?: unknown): void;
}

// ------------------------------------------------------------------ the in-process link

interface Waiting {
  readonly opcode: number;
  readonly arrivedMs: number;
  resolve(payload: Uint8Array): void;
  reject(err: DsyncError): void;
}

/**
 * A ClientLink inside the node: a request is served by node.serve and its answer resolves
 * a promise. One per HTTP request (closed when the HTTP exchange ends, so a lock wait whose
 * caller hung up is withdrawn), or one per HTTP consumer (closed when the consumer ends).
 */
export class GatewayLink implements ClientLink {
  private readonly waiting = new Map<number, Waiting>();
  private readonly closeListeners = new Set<() => void>();
  private nextRequestId = 1;
  private isClosed = false;

  constructor(private readonly node: GatewayNode) {}

  get closed(): boolean {
    return this.isClosed;
  }

  /**
   * Serves one request through the node's handler table, checked against `credential` as a
   * binary connection's hello token is; resolves with the reply payload, rejects with the error.
   */
  request(opcode: number, payload: Uint8Array, credential: Credential | null): Promise<Uint8Array> {
    if (this.isClosed) return Promise.reject(new DsyncError(ErrorCode.CONNECTION_CLOSED, 'this request\'s link is closed'));
    const requestId = this.nextRequestId++;
    return new Promise<Uint8Array>((resolve, reject) => {
      this.waiting.set(requestId, { opcode, arrivedMs: performance.now(), resolve, reject });
      try {
        this.node.serve(this, credential, opcode, requestId, payload);
      } catch (err) {
        // A handler threw something other than a DsyncError: a broken invariant, as on the binary port.
        this.waiting.delete(requestId);
        reject(new DsyncError(ErrorCode.INTERNAL, 'internal error'));
        this.node.fatal(`handler for opcode ${opcode} threw on the HTTP gateway`, err);
      }
    });
  }

  reply(requestId: number, opcode: number, payload: Uint8Array): void {
    const w = this.answered(requestId, opcode, 'OK');
    w?.resolve(payload);
  }

  replyError(requestId: number, opcode: number, err: DsyncError): void {
    const w = this.answered(requestId, opcode, err.code);
    w?.reject(err);
  }

  /** HTTP has no channel for unrequested frames (a lock taken away): the caller learns it at its next call. */
  push(_opcode: number, _requestId: number, _payload: Uint8Array): void {}

  onClose(fn: () => void): () => void {
    if (this.isClosed) {
      fn();
      return () => {};
    }
    this.closeListeners.add(fn);
    return () => this.closeListeners.delete(fn);
  }

  /**
   * Ends the link: requests still waiting fail with CONNECTION_CLOSED and `why`, and whoever
   * registered onClose hears it. (The error is made only when someone waits: an Error's stack
   * costs more than the rest of a request's end.)
   */
  close(why: string): void {
    if (this.isClosed) return;
    this.isClosed = true;
    if (this.waiting.size > 0) {
      const err = new DsyncError(ErrorCode.CONNECTION_CLOSED, why);
      for (const w of this.waiting.values()) w.reject(err);
    }
    this.waiting.clear();
    const listeners = [...this.closeListeners];
    this.closeListeners.clear();
    for (const fn of listeners) fn();
  }

  private answered(requestId: number, opcode: number, code: string): Waiting | undefined {
    const w = this.waiting.get(requestId);
    // Handlers may answer a request whose link closed meanwhile (nobody listens any more).
    assert(w !== undefined || this.isClosed, `gateway link: an answer to request ${requestId} that is not waiting`);
    if (w === undefined) return undefined;
    assert(w.opcode === opcode, `gateway link: request ${requestId} answered as opcode ${opcode}, asked as ${w.opcode}`);
    this.waiting.delete(requestId);
    this.node.requestAnswered(opcode, code, (performance.now() - w.arrivedMs) / 1000);
    return w;
  }
}

// ------------------------------------------------------------------ routes

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'DELETE';

export interface RouteInput {
  readonly params: Readonly<Record<string, unknown>>;
  readonly query: Readonly<Record<string, unknown>>;
  readonly body: Readonly<Record<string, unknown>>;
}

/** What a route runs with: its request's link into the node, and the gateway's own state. */
export interface RouteContext {
  call(opcode: number, payload: Uint8Array): Promise<Uint8Array>;
  /** Who is asking (null: the node asks for no tokens). */
  readonly credential: Credential | null;
  readonly gateway: HttpGateway;
}

export interface GatewayRoute {
  readonly method: HttpMethod;
  /** OpenAPI path template: `/v1/locks/{name}/acquire`. */
  readonly path: string;
  readonly operationId: string;
  readonly tag: 'cluster' | 'locks' | 'queues' | 'cache';
  readonly summary: string;
  readonly params: Readonly<Record<string, Field>>;
  readonly query: Readonly<Record<string, Field>>;
  /** null: the route takes no body. */
  readonly body: ObjectField | null;
  readonly reply: ObjectField;
  run(input: RouteInput, ctx: RouteContext): Promise<Record<string, Json>>;
}

const encodingField = str({ enum: ['utf8', 'base64'], default: 'utf8' });
type Encoding = 'utf8' | 'base64';
const textEncoder = new TextEncoder();

function bytesOf(value: string, encoding: Encoding, what: string): Uint8Array {
  if (encoding === 'utf8') return textEncoder.encode(value);
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(value) || value.length % 4 !== 0) throw new FieldError(`${what} is not base64`);
  return new Uint8Array(Buffer.from(value, 'base64'));
}

function textOf(bytes: Uint8Array | null | undefined, encoding: Encoding): string {
  const b = Buffer.from(bytes ?? new Uint8Array(0));
  return encoding === 'utf8' ? b.toString('utf8') : b.toString('base64');
}

const n = (v: number | { toNumber(): number } | null | undefined): number => (v === null || v === undefined ? 0 : typeof v === 'number' ? v : v.toNumber());
const s = (v: string | null | undefined): string => v ?? '';

// ---- reply shapes shared by several routes ----

const memberField = obj({ id: str(), address: str(), connected: bool(), voter: bool(), role: str(), peerAddress: str() });
const groupField = obj({ group: int(), leaderId: str(), term: int(), commit: int(), applied: int(), lastIndex: int(), role: str(),
  voters: arr(str()), learners: arr(str()) });
const modeField = str({ enum: ['exclusive', 'shared'] });
const lockStateField = obj({
  name: str(),
  holders: arr(obj({ session: int(), mode: modeField, count: int(), token: int() })),
  waiters: arr(obj({ session: int(), mode: modeField, requestId: str(), clientId: str() })),
  lastToken: int(),
  delayUntilMs: num(),
});
const grantField = obj({ lock: str(), token: int(), mode: modeField, count: int() });
const retentionField = obj({ maxAgeMs: int({ minimum: 0 }), maxBytes: int({ minimum: 0 }), dropUnacked: bool() });
const topicField = obj({
  name: str(), id: int(), partitions: int(), replicas: int(), maxDeliveries: int(), ackDeadlineMs: int(), retention: retentionField,
  deadLetterTopic: str(), createdIndex: int(),
  partitionList: arr(obj({
    index: int(), groupId: int(), replicas: arr(str()), epoch: int(), hosts: arr(str()), leaderId: str(), leaderAddress: str(), hosted: bool(),
    logStart: int(), logEnd: int(), groups: arr(obj({ group: str(), cursor: int(), lag: int(), inFlight: int(), pending: int() })),
  })),
});
const fencingField = opt(obj({ lock: str({ minLength: 1 }), token: int({ minimum: 0 }) }));
const settleReplyField = obj({ statuses: arr(obj({ code: str(), message: str(), atMs: num() })) });
const consumerField = obj({ consumer: str(), topic: str(), group: str(), ttlMs: int() });

type Member = schema.Member.$Properties;
const memberJson = (m: Member): Record<string, Json> => ({ id: s(m.id), address: s(m.address), connected: m.connected === true, voter: m.voter === true,
  role: s(m.role) === '' ? 'voter' : s(m.role), peerAddress: s(m.peerAddress) });

type LockStateWire = schema.LockState.$Properties;
const lockStateJson = (l: LockStateWire): Record<string, Json> => ({
  name: s(l.name),
  holders: (l.holders ?? []).map((h) => ({ session: n(h.session), mode: h.exclusive === true ? 'exclusive' : 'shared', count: n(h.count), token: n(h.token) })),
  waiters: (l.waiters ?? []).map((w) => ({ session: n(w.session), mode: w.exclusive === true ? 'exclusive' : 'shared', requestId: s(w.requestId), clientId: s(w.clientId) })),
  lastToken: n(l.lastToken),
  delayUntilMs: n(l.delayUntilMs),
});

type LockReplyWire = ReturnType<typeof schema.LockReply.decode>;
const grantJson = (r: LockReplyWire, name: string): Record<string, Json> =>
  ({ lock: s(r.lock) === '' ? name : s(r.lock), token: n(r.token), mode: r.exclusive === true ? 'exclusive' : 'shared', count: n(r.count) });

type TopicWire = schema.TopicState.$Properties;
const topicJson = (t: TopicWire): Record<string, Json> => ({
  name: s(t.name), id: n(t.id), partitions: n(t.partitions), replicas: n(t.replicas), maxDeliveries: n(t.maxDeliveries), ackDeadlineMs: n(t.ackDeadlineMs),
  retention: { maxAgeMs: n(t.retention?.maxAgeMs), maxBytes: n(t.retention?.maxBytes), dropUnacked: t.retention?.dropUnacked === true },
  deadLetterTopic: s(t.deadLetterTopic), createdIndex: n(t.createdIndex),
  partitionList: (t.partitionList ?? []).map((p) => ({
    index: n(p.index), groupId: n(p.groupId), replicas: [...(p.replicas ?? [])], epoch: n(p.epoch),
    // While a move is under way: every node hosting the partition (the wanted replicas and those being left); else the replicas.
    hosts: (p.hosts ?? []).length > 0 ? [...(p.hosts ?? [])] : [...(p.replicas ?? [])],
    leaderId: s(p.leaderId), leaderAddress: s(p.leaderAddress), hosted: p.hosted === true,
    logStart: n(p.logStart), logEnd: n(p.logEnd),
    groups: (p.groups ?? []).map((g) => ({ group: s(g.group), cursor: n(g.cursor), lag: n(g.lag), inFlight: n(g.inFlight), pending: n(g.pending) })),
  })),
});

const settleJson = (payload: Uint8Array): Record<string, Json> =>
  ({ statuses: schema.SettleReply.decode(payload).statuses.map((st) => ({ code: s(st.code), message: s(st.message), atMs: n(st.atMs) })) });

const emptyBody = obj({});
const lockName = { name: str({ minLength: 1 }) };
const topicParam = { topic: str({ minLength: 1 }) };
const consumerParams = { topic: str({ minLength: 1 }), consumer: str({ minLength: 1 }) };
const settleItem = obj({ delivery: int({ minimum: 0 }), attempt: int({ minimum: 0 }) });

/** Every route of the gateway: the spec (docs/api.yaml) must list exactly these, with these fields. */
export function gatewayRoutes(): readonly GatewayRoute[] {
  const lockCall = (ctx: RouteContext, opcode: number, fields: Partial<ReturnType<typeof schema.LockRequest.create>>): Promise<LockReplyWire> => {
    const seq = ctx.gateway.nextSeq();
    return ctx.call(opcode, schema.LockRequest.encode({ clientId: ctx.gateway.clientId, seq, ...fields }).finish())
      .then((b) => schema.LockReply.decode(b));
  };
  return [
    // ---- cluster ----
    {
      method: 'GET', path: '/v1/cluster/status', operationId: 'clusterStatus', tag: 'cluster',
      summary: 'This node\'s view: members, leader of group 0, uptime, every Raft group it hosts',
      params: {}, query: {}, body: null,
      reply: obj({ nodeId: str(), address: str(), leaderId: str(), leaderAddress: str(), uptimeMs: int(), members: arr(memberField), groups: arr(groupField) }),
      run: async (_in, ctx) => {
        const r = schema.StatusReply.decode(await ctx.call(Opcode.Status, schema.StatusRequest.encode({}).finish()));
        return { nodeId: s(r.nodeId), address: s(r.address), leaderId: s(r.leaderId), leaderAddress: s(r.leaderAddress), uptimeMs: n(r.uptimeMs),
          members: r.members.map(memberJson),
          groups: r.groups.map((g) => ({ group: n(g.group), leaderId: s(g.leaderId), term: n(g.term), commit: n(g.commit), applied: n(g.applied),
            lastIndex: n(g.lastIndex), role: s(g.role), voters: [...(g.voters ?? [])], learners: [...(g.learners ?? [])] })) };
      },
    },
    {
      method: 'GET', path: '/v1/cluster/members', operationId: 'clusterMembers', tag: 'cluster',
      summary: 'Group 0\'s members with role and reachability, as the leader sees them (leader only)',
      params: {}, query: {}, body: null,
      reply: obj({ leaderId: str(), members: arr(memberField) }),
      run: async (_in, ctx) => {
        const r = schema.MembersReply.decode(await ctx.call(Opcode.MemberList, schema.MembersRequest.encode({}).finish()));
        return { leaderId: s(r.leaderId), members: r.members.map(memberJson) };
      },
    },
    {
      method: 'POST', path: '/v1/cluster/members', operationId: 'clusterJoin', tag: 'cluster',
      summary: 'Adds a node as a learner (admin); it is promoted to voter once caught up. The node itself then starts with --join',
      params: {}, query: {}, body: obj({ id: str({ minLength: 1 }), address: str({ minLength: 1 }), peerAddress: opt(str()) }),
      reply: obj({ voters: arr(str()), learners: arr(str()), members: arr(memberField) }),
      run: async (input, ctx) => {
        const b = input.body as { id: string; address: string; peerAddress?: string };
        const r = schema.MemberJoinReply.decode(await ctx.call(Opcode.MemberJoin,
          schema.MemberJoinRequest.encode({ id: b.id, address: b.address, peerAddress: b.peerAddress ?? b.address }).finish()));
        return { voters: [...r.voters], learners: [...r.learners], members: r.members.map(memberJson) };
      },
    },
    {
      method: 'DELETE', path: '/v1/cluster/members/{id}', operationId: 'clusterRemove', tag: 'cluster',
      summary: 'Removes a member (admin); refused (WOULD_LOSE_QUORUM) if group 0 would lose its quorum of reachable voters',
      params: { id: str({ minLength: 1 }) }, query: {}, body: null,
      reply: obj({ leaderId: str(), members: arr(memberField) }),
      run: async (input, ctx) => {
        const r = schema.MembersReply.decode(await ctx.call(Opcode.MemberRemove, schema.MemberRemoveRequest.encode({ id: input.params['id'] as string }).finish()));
        return { leaderId: s(r.leaderId), members: r.members.map(memberJson) };
      },
    },
    {
      method: 'GET', path: '/v1/cluster/ring', operationId: 'clusterRing', tag: 'cluster',
      summary: 'The consistent-hash ring over group 0\'s voters: each member\'s share of the hash space and the partition replicas it hosts',
      params: {}, query: {}, body: null,
      reply: obj({ vnodesPerNode: int(), members: arr(obj({ id: str(), share: num(), partitionReplicas: int() })) }),
      run: async (_in, ctx) => {
        const r = schema.RingReply.decode(await ctx.call(Opcode.Ring, schema.RingRequest.encode({}).finish()));
        return { vnodesPerNode: n(r.vnodesPerNode), members: r.members.map((m) => ({ id: s(m.id), share: n(m.share), partitionReplicas: n(m.partitionReplicas) })) };
      },
    },

    // ---- lock sessions ----
    {
      method: 'POST', path: '/v1/sessions', operationId: 'sessionOpen', tag: 'locks',
      summary: 'Opens a lock session (a lease): keep it alive within its TTL and pass it to every lock call; when it expires its locks are released',
      params: {}, query: {},
      body: obj({ ttlMs: opt(int({ minimum: sessionTtlMsMin, maximum: sessionTtlMsMax, default: sessionTtlMsDefault })),
        lockDelayMs: opt(int({ minimum: 0, maximum: lockDelayMsMax, default: 0 })) }),
      reply: obj({ session: int(), ttlMs: int() }),
      run: async (input, ctx) => {
        const b = input.body as { ttlMs: number; lockDelayMs: number };
        const r = await lockCall(ctx, Opcode.SessionOpen, { ttlMs: b.ttlMs, lockDelayMs: b.lockDelayMs });
        return { session: n(r.session), ttlMs: n(r.ttlMs) };
      },
    },
    {
      method: 'GET', path: '/v1/sessions', operationId: 'sessionList', tag: 'locks',
      summary: 'Every open lock session with its TTL, holds and waits',
      params: {}, query: {}, body: null,
      reply: obj({ sessions: arr(obj({ session: int(), clientId: str(), ttlMs: int(), holds: arr(str()), waits: int(), lockDelayMs: int() })) }),
      run: async (_in, ctx) => {
        const r = schema.SessionListReply.decode(await ctx.call(Opcode.SessionList, schema.LockQuery.encode({}).finish()));
        return { sessions: r.sessions.map((x) => ({ session: n(x.session), clientId: s(x.clientId), ttlMs: n(x.ttlMs), holds: [...(x.holds ?? [])], waits: n(x.waits),
          lockDelayMs: n(x.lockDelayMs) })) };
      },
    },
    {
      method: 'POST', path: '/v1/sessions/{session}/keepalive', operationId: 'sessionKeepAlive', tag: 'locks',
      summary: 'Renews a session\'s lease; SESSION_EXPIRED (410) when it already expired (its locks are gone)',
      params: { session: int({ minimum: 1 }) }, query: {}, body: emptyBody,
      reply: obj({ session: int() }),
      run: async (input, ctx) => {
        const session = input.params['session'] as number;
        await lockCall(ctx, Opcode.SessionKeepAlive, { session });
        return { session };
      },
    },
    {
      method: 'DELETE', path: '/v1/sessions/{session}', operationId: 'sessionClose', tag: 'locks',
      summary: 'Closes a session, releasing its locks and withdrawing its waits',
      params: { session: int({ minimum: 1 }) }, query: {}, body: null,
      reply: obj({ session: int() }),
      run: async (input, ctx) => {
        const session = input.params['session'] as number;
        await lockCall(ctx, Opcode.SessionClose, { session });
        return { session };
      },
    },

    // ---- locks ----
    {
      method: 'GET', path: '/v1/locks', operationId: 'lockList', tag: 'locks',
      summary: 'Every lock with holders or waiters',
      params: {}, query: {}, body: null,
      reply: obj({ locks: arr(lockStateField) }),
      run: async (_in, ctx) => {
        const r = schema.LockListReply.decode(await ctx.call(Opcode.LockList, schema.LockQuery.encode({}).finish()));
        return { locks: r.locks.map(lockStateJson) };
      },
    },
    {
      method: 'GET', path: '/v1/locks/{name}', operationId: 'lockInfo', tag: 'locks',
      summary: 'Holders and waiters of one lock (empty lists when it is free); names with "/" are percent-encoded',
      params: lockName, query: {}, body: null,
      reply: lockStateField,
      run: async (input, ctx) => {
        const name = input.params['name'] as string;
        const r = schema.LockListReply.decode(await ctx.call(Opcode.LockInfo, schema.LockQuery.encode({ lock: name }).finish()));
        const l = r.locks[0];
        return l === undefined ? { name, holders: [], waiters: [], lastToken: 0, delayUntilMs: 0 } : lockStateJson(l);
      },
    },
    {
      method: 'POST', path: '/v1/locks/{name}/acquire', operationId: 'lockAcquire', tag: 'locks',
      summary: 'Takes a lock for a session, waiting up to waitMs (0: no limit) unless wait is false; answers the fencing token. '
        + 'DEADLOCK (409) when the wait would close a cycle, LOCK_TIMEOUT (409) when waitMs passed, WOULD_BLOCK (409) when held and wait is false',
      params: lockName, query: {},
      body: obj({ session: int({ minimum: 1 }), mode: opt(str({ enum: ['exclusive', 'shared'], default: 'exclusive' })), wait: opt(bool({ default: true })),
        waitMs: opt(int({ minimum: 0, maximum: 0xffff_ffff, default: 0 })) }),
      reply: grantField,
      run: async (input, ctx) => {
        const name = input.params['name'] as string;
        const b = input.body as { session: number; mode: 'exclusive' | 'shared'; wait: boolean; waitMs: number };
        const seq = ctx.gateway.nextSeq();
        const r = schema.LockReply.decode(await ctx.call(Opcode.LockAcquire, schema.LockRequest.encode({ clientId: ctx.gateway.clientId, seq,
          session: b.session, lock: name, exclusive: b.mode === 'exclusive', requestId: `http-${seq}`, wait: b.wait, waitMs: b.waitMs }).finish()));
        return grantJson(r, name);
      },
    },
    {
      method: 'POST', path: '/v1/locks/{name}/release', operationId: 'lockRelease', tag: 'locks',
      summary: 'Releases one hold of a session (count: holds left, reentrant acquires); NOT_FOUND when the session does not hold it',
      params: lockName, query: {}, body: obj({ session: int({ minimum: 1 }) }),
      reply: obj({ lock: str(), count: int() }),
      run: async (input, ctx) => {
        const name = input.params['name'] as string;
        const r = await lockCall(ctx, Opcode.LockRelease, { session: (input.body as { session: number }).session, lock: name });
        return { lock: s(r.lock) === '' ? name : s(r.lock), count: n(r.count) };
      },
    },
    {
      method: 'POST', path: '/v1/locks/{name}/downgrade', operationId: 'lockDowngrade', tag: 'locks',
      summary: 'Turns a session\'s exclusive hold into a shared one',
      params: lockName, query: {}, body: obj({ session: int({ minimum: 1 }) }),
      reply: grantField,
      run: async (input, ctx) => {
        const name = input.params['name'] as string;
        return grantJson(await lockCall(ctx, Opcode.LockDowngrade, { session: (input.body as { session: number }).session, lock: name }), name);
      },
    },
    {
      method: 'POST', path: '/v1/locks/{name}/force-release', operationId: 'lockForceRelease', tag: 'locks',
      summary: 'Breaks every hold of a lock (admin tokens only); the holders learn it at their next call',
      params: lockName, query: {}, body: emptyBody,
      reply: obj({ lock: str() }),
      run: async (input, ctx) => {
        const name = input.params['name'] as string;
        await lockCall(ctx, Opcode.LockForceRelease, { lock: name });
        return { lock: name };
      },
    },

    // ---- topics ----
    {
      method: 'POST', path: '/v1/topics', operationId: 'topicCreate', tag: 'queues',
      summary: 'Creates a topic (admin) and its dead-letter topic NAME.dlq; ALREADY_EXISTS (409) when the name is taken',
      params: {}, query: {},
      body: obj({ name: str({ minLength: 1 }), partitions: opt(int({ minimum: 1, maximum: queueTopicPartitionsMax })), replicas: opt(int({ minimum: 1 })),
        maxDeliveries: opt(int({ minimum: 0, maximum: queueMaxDeliveriesMax })), ackDeadlineMs: opt(int({ minimum: queueAckDeadlineMsMin, maximum: queueAckDeadlineMsMax })),
        retention: opt(obj({ maxAgeMs: opt(int({ minimum: 0, default: 0 })), maxBytes: opt(int({ minimum: 0, default: 0 })), dropUnacked: opt(bool({ default: false })) })) }),
      reply: topicField,
      run: async (input, ctx) => {
        const b = input.body as { name: string; partitions?: number; replicas?: number; maxDeliveries?: number; ackDeadlineMs?: number;
          retention?: { maxAgeMs: number; maxBytes: number; dropUnacked: boolean } };
        const r = schema.TopicState.decode(await ctx.call(Opcode.TopicCreate, schema.TopicRequest.encode({
          name: b.name, partitions: b.partitions ?? 0, replicas: b.replicas ?? 0, maxDeliveries: b.maxDeliveries ?? 0,
          hasMaxDeliveries: b.maxDeliveries !== undefined, ackDeadlineMs: b.ackDeadlineMs ?? 0,
          ...(b.retention === undefined ? {} : { retention: b.retention }),
        }).finish()));
        return topicJson(r);
      },
    },
    {
      method: 'GET', path: '/v1/topics', operationId: 'topicList', tag: 'queues',
      summary: 'Every topic with its partitions',
      params: {}, query: {}, body: null,
      reply: obj({ topics: arr(topicField) }),
      run: async (_in, ctx) => {
        const r = schema.TopicListReply.decode(await ctx.call(Opcode.TopicList, schema.TopicRequest.encode({}).finish()));
        return { topics: r.topics.map(topicJson) };
      },
    },
    {
      method: 'GET', path: '/v1/topics/{topic}', operationId: 'topicInfo', tag: 'queues',
      summary: 'One topic: settings, and per partition its replicas, leader, offsets and each group\'s lag (offsets and lag for partitions this node hosts)',
      params: topicParam, query: {}, body: null,
      reply: topicField,
      run: async (input, ctx) => topicJson(schema.TopicState.decode(await ctx.call(Opcode.TopicInfo,
        schema.TopicRequest.encode({ name: input.params['topic'] as string }).finish()))),
    },
    {
      method: 'DELETE', path: '/v1/topics/{topic}', operationId: 'topicDelete', tag: 'queues',
      summary: 'Deletes a topic and its dead-letter topic (admin); answers the topics deleted',
      params: topicParam, query: {}, body: null,
      reply: obj({ topics: arr(topicField) }),
      run: async (input, ctx) => {
        const r = schema.TopicListReply.decode(await ctx.call(Opcode.TopicDelete, schema.TopicRequest.encode({ name: input.params['topic'] as string }).finish()));
        return { topics: r.topics.map(topicJson) };
      },
    },
    {
      method: 'POST', path: '/v1/topics/{topic}/publish', operationId: 'publish', tag: 'queues',
      summary: 'Publishes one message; answers once it is durable on a majority of the partition\'s replicas. '
        + 'The partition is the key\'s (xxhash32 of the key mod partitions, as the client library) unless given',
      params: topicParam, query: {},
      body: obj({ value: str(), key: opt(str({ default: '' })), headers: opt(map(str())), partition: opt(int({ minimum: 0 })), encoding: opt(encodingField),
        fencing: fencingField }),
      reply: obj({ partition: int(), offset: int(), timestampMs: num() }),
      run: async (input, ctx) => {
        const topic = input.params['topic'] as string;
        const b = input.body as { value: string; key: string; headers?: Record<string, string>; partition?: number; encoding: Encoding;
          fencing?: { lock: string; token: number } };
        const message = {
          key: textEncoder.encode(b.key), value: bytesOf(b.value, b.encoding, 'body.value'),
          headers: Object.entries(b.headers ?? {}).map(([name, v]) => ({ name, value: bytesOf(v, b.encoding, `body.headers.${name}`) })),
        };
        const partition = b.partition ?? await ctx.gateway.partitionOf(ctx, topic, b.key);
        const r = schema.PublishReply.decode(await ctx.call(Opcode.Publish, schema.PublishRequest.encode({ topic, partition, messages: [message],
          ...(b.fencing === undefined ? {} : { fencing: b.fencing }) }).finish()).catch((err: unknown) => {
          if (err instanceof DsyncError && (err.code === ErrorCode.NOT_FOUND || err.code === ErrorCode.BAD_REQUEST || err.code === ErrorCode.UNAVAILABLE)) {
          ctx.gateway.forgetPartitions(topic);
        }
          throw err;
        }));
        return { partition: n(r.partition), offset: n(r.baseOffset), timestampMs: n(r.timestampMs) };
      },
    },

    {
      method: 'POST', path: '/v1/topics/{topic}/groups/{group}/replay', operationId: 'replay', tag: 'queues',
      summary: 'Moves a group\'s cursor in one partition to an offset, or to the first message at or after timestampMs; what follows is delivered again '
        + '(at the partition\'s leader)',
      params: { topic: str({ minLength: 1 }), group: str({ minLength: 1 }) }, query: {},
      body: obj({ partition: int({ minimum: 0 }), offset: opt(int({ minimum: 0 })), timestampMs: opt(int({ minimum: 0 })) }),
      reply: obj({ offset: int() }),
      run: async (input, ctx) => {
        const b = input.body as { partition: number; offset?: number; timestampMs?: number };
        if ((b.offset === undefined) === (b.timestampMs === undefined)) throw new FieldError('body must give one of offset and timestampMs');
        const r = schema.ReplayReply.decode(await ctx.call(Opcode.Replay, schema.ReplayRequest.encode({ topic: input.params['topic'] as string,
          partition: b.partition, group: input.params['group'] as string, offset: b.offset ?? 0, timestampMs: b.timestampMs ?? 0,
          byTime: b.timestampMs !== undefined }).finish()));
        return { offset: n(r.offset) };
      },
    },

    // ---- consumers ----
    {
      method: 'POST', path: '/v1/topics/{topic}/consumers', operationId: 'consumerCreate', tag: 'queues',
      summary: 'Makes a consumer identity of a group on this node, kept while used within ttlMs; fetch, ack, nack and extend name it',
      params: topicParam, query: {},
      body: obj({ group: str({ minLength: 1 }), ttlMs: opt(int({ minimum: httpConsumerTtlMsMin, maximum: httpConsumerTtlMsMax, default: httpConsumerTtlMsDefault })) }),
      reply: consumerField,
      run: (input, ctx) => {
        const b = input.body as { group: string; ttlMs: number };
        // A consumer exists to fetch and settle, which need write access: a read-only token may not make one.
        if (ctx.credential !== null && !roleAllows(ctx.credential.role, 'write')) {
          throw new DsyncError(ErrorCode.FORBIDDEN, `${ctx.credential.name} (${ctx.credential.role}) may not make a consumer: it needs write access`);
        }
        const c = ctx.gateway.createConsumer(input.params['topic'] as string, b.group, b.ttlMs);
        return Promise.resolve({ consumer: c.id, topic: c.topic, group: c.group, ttlMs: c.ttlMs });
      },
    },
    {
      method: 'POST', path: '/v1/topics/{topic}/consumers/{consumer}/keepalive', operationId: 'consumerKeepAlive', tag: 'queues',
      summary: 'Renews a consumer\'s TTL without fetching',
      params: consumerParams, query: {}, body: emptyBody,
      reply: consumerField,
      run: (input, ctx) => {
        const c = ctx.gateway.consumer(input.params['topic'] as string, input.params['consumer'] as string);
        return Promise.resolve({ consumer: c.id, topic: c.topic, group: c.group, ttlMs: c.ttlMs });
      },
    },
    {
      method: 'DELETE', path: '/v1/topics/{topic}/consumers/{consumer}', operationId: 'consumerDelete', tag: 'queues',
      summary: 'Ends a consumer: the partition leaders on this node hand its unsettled deliveries back to the group at once',
      params: consumerParams, query: {}, body: null,
      reply: obj({ consumer: str() }),
      run: (input, ctx) => {
        const c = ctx.gateway.consumer(input.params['topic'] as string, input.params['consumer'] as string);
        ctx.gateway.dropConsumer(c, 'deleted');
        return Promise.resolve({ consumer: c.id });
      },
    },
    {
      method: 'POST', path: '/v1/topics/{topic}/consumers/{consumer}/fetch', operationId: 'fetch', tag: 'queues',
      summary: 'Takes up to max deliveries from one partition for the consumer\'s group, waiting up to waitMs for some (long poll); '
        + 'each must be acked, nacked or extended before its deadline or it is delivered again',
      params: consumerParams, query: {},
      body: obj({ partition: int({ minimum: 0 }), max: opt(int({ minimum: 1, maximum: queueFetchCountMax, default: httpFetchCountDefault })),
        waitMs: opt(int({ minimum: 0, maximum: queueFetchWaitMsMax, default: 0 })),
        ackDeadlineMs: opt(int({ minimum: queueAckDeadlineMsMin, maximum: queueAckDeadlineMsMax })), encoding: opt(encodingField) }),
      reply: obj({ partition: int(), messages: arr(obj({ delivery: int(), attempt: int(), offset: int(), deadlineMs: num(), timestampMs: num(),
        key: str(), value: str(), headers: map(str()) })) }),
      run: async (input, ctx) => {
        const b = input.body as { partition: number; max: number; waitMs: number; ackDeadlineMs?: number; encoding: Encoding };
        const c = ctx.gateway.consumer(input.params['topic'] as string, input.params['consumer'] as string);
        const payload = await c.fetch(b.partition, ctx.credential, (seq) => schema.FetchRequest.encode({ topic: c.topic, partition: b.partition, group: c.group,
          consumer: c.id, seq, max: b.max, waitMs: b.waitMs, ackDeadlineMs: b.ackDeadlineMs ?? 0 }).finish());
        const r = schema.FetchReply.decode(payload);
        return { partition: n(r.partition), messages: r.messages.map((d) => ({ delivery: n(d.delivery), attempt: n(d.attempt), offset: n(d.offset),
          deadlineMs: n(d.deadlineMs), timestampMs: n(d.timestampMs), key: textOf(d.message?.key, 'utf8'), value: textOf(d.message?.value, b.encoding),
          headers: Object.fromEntries((d.message?.headers ?? []).map((h) => [s(h.name), textOf(h.value, b.encoding)])) })) };
      },
    },
    settleRoute('ack', Opcode.Ack, 'Acks deliveries of one partition (one status per item: "" = OK, else NOT_FOUND, LATE_ACK, ...)',
      obj({ partition: int({ minimum: 0 }), items: arr(settleItem, { minItems: 1, maxItems: queueAckBatchCountMax }), fencing: fencingField })),
    settleRoute('nack', Opcode.Nack, 'Hands deliveries back for redelivery after delayMs (default: the backoff by attempt); after maxDeliveries they go to NAME.dlq',
      obj({ partition: int({ minimum: 0 }), items: arr(obj({ delivery: int({ minimum: 0 }), attempt: int({ minimum: 0 }), delayMs: opt(int({ minimum: 0, maximum: 0xffff_ffff })) }),
        { minItems: 1, maxItems: queueAckBatchCountMax }), fencing: fencingField })),
    settleRoute('extend', Opcode.Extend, 'Moves deliveries\' deadlines one ack deadline ahead (atMs: the new deadline)',
      obj({ partition: int({ minimum: 0 }), items: arr(settleItem, { minItems: 1, maxItems: queueAckBatchCountMax }), fencing: fencingField })),

    // ---- cache ----
    {
      method: 'GET', path: '/v1/cache/keys/{key}', operationId: 'cacheGet', tag: 'cache',
      summary: 'Reads a key at this node (from its lines while their lease lasts); NOT_FOUND (404) when it has no value',
      params: { key: str({ minLength: 1 }) }, query: { encoding: opt(encodingField) }, body: null,
      reply: obj({ key: str(), value: str(), encoding: str({ enum: ['utf8', 'base64'] }) }),
      run: async (input, ctx) => {
        const key = input.params['key'] as string;
        const encoding = input.query['encoding'] as Encoding;
        const r = schema.CacheReply.decode(await ctx.call(Opcode.CacheGet, schema.CacheRequest.encode({ key }).finish()));
        if (r.found !== true) throw new DsyncError(ErrorCode.NOT_FOUND, `cache key ${JSON.stringify(key)} has no value`);
        return { key, value: textOf(r.value, encoding), encoding };
      },
    },
    {
      method: 'PUT', path: '/v1/cache/keys/{key}', operationId: 'cacheSet', tag: 'cache',
      summary: 'Writes a key; answers once every other copy is invalidated (and, write-through, the home\'s memory has it)',
      params: { key: str({ minLength: 1 }) }, query: {},
      body: obj({ value: str(), ttlMs: opt(int({ minimum: 0, maximum: cacheTtlMsMax, default: 0 })), encoding: opt(encodingField) }),
      reply: obj({ key: str() }),
      run: async (input, ctx) => {
        const key = input.params['key'] as string;
        const b = input.body as { value: string; ttlMs: number; encoding: Encoding };
        await ctx.call(Opcode.CacheSet, schema.CacheRequest.encode({ key, value: bytesOf(b.value, b.encoding, 'body.value'), hasValue: true, ttlMs: b.ttlMs }).finish());
        return { key };
      },
    },
    {
      method: 'DELETE', path: '/v1/cache/keys/{key}', operationId: 'cacheDelete', tag: 'cache',
      summary: 'Deletes a key (every copy invalidated)',
      params: { key: str({ minLength: 1 }) }, query: {}, body: null,
      reply: obj({ key: str() }),
      run: async (input, ctx) => {
        const key = input.params['key'] as string;
        await ctx.call(Opcode.CacheDelete, schema.CacheRequest.encode({ key }).finish());
        return { key };
      },
    },
    {
      method: 'GET', path: '/v1/cache/stats', operationId: 'cacheStats', tag: 'cache',
      summary: 'This node\'s cache settings and counters (hits, misses, transitions, invalidations, write-backs, ...)',
      params: {}, query: {}, body: null,
      reply: obj({ nodeId: str(), protocol: str(), writePolicy: str(), backing: str(), counters: map(num()) }),
      run: async (_in, ctx) => {
        const r = schema.CacheStatsReply.decode(await ctx.call(Opcode.CacheStats, schema.CacheStatsRequest.encode({}).finish()));
        return { nodeId: s(r.nodeId), protocol: s(r.protocol), writePolicy: s(r.writePolicy), backing: s(r.backing),
          counters: Object.fromEntries(r.counters.map((c) => [s(c.name), n(c.value)])) };
      },
    },
    {
      method: 'POST', path: '/v1/cache/flush', operationId: 'cacheFlush', tag: 'cache',
      summary: 'Write-back: sends this node\'s dirty lines to their homes',
      params: {}, query: {}, body: emptyBody,
      reply: obj({}),
      run: async (_in, ctx) => {
        await ctx.call(Opcode.CacheFlush, schema.CacheFlushRequest.encode({}).finish());
        return {};
      },
    },
  ];
}

function settleRoute(what: 'ack' | 'nack' | 'extend', opcode: number, summary: string, body: ObjectField): GatewayRoute {
  return {
    method: 'POST', path: `/v1/topics/{topic}/consumers/{consumer}/${what}`, operationId: what, tag: 'queues', summary,
    params: consumerParams, query: {}, body, reply: settleReplyField,
    run: async (input, ctx) => {
      const b = input.body as { partition: number; items: { delivery: number; attempt: number; delayMs?: number }[]; fencing?: { lock: string; token: number } };
      const c = ctx.gateway.consumer(input.params['topic'] as string, input.params['consumer'] as string);
      // An ack is one command (one seq); nacks and extends one per item (seq, seq + 1, ...).
      const seqs = opcode === Opcode.Ack ? 1 : b.items.length;
      const payload = await c.settle(seqs, (firstSeq) => schema.SettleRequest.encode({ topic: c.topic, partition: b.partition, group: c.group,
        consumer: c.settleId, firstSeq, items: b.items.map((i) => ({ delivery: i.delivery, attempt: i.attempt, delayMs: i.delayMs ?? 0, hasDelay: i.delayMs !== undefined })),
        ...(b.fencing === undefined ? {} : { fencing: b.fencing }) }).finish(), opcode, ctx.credential);
      return settleJson(payload);
    },
  };
}

// ------------------------------------------------------------------ consumers

/**
 * An HTTP consumer: a consumer id of one group on one topic, with the link its requests
 * go through (the partition leaders remember it; closing it is consumerGone) and its
 * sequence numbers (fetches and settles under two ids, as the client library does, since
 * a parked fetch proposes after later settles).
 */
export class HttpConsumer {
  readonly settleId: string;
  private fetchSeq = 0;
  private settleSeq = 0;
  /** Partitions with a fetch in flight: one at a time each, so a parked fetch never answers STALE_REQUEST. */
  private readonly fetching = new Set<number>();
  private timer: NodeJS.Timeout | null = null;

  constructor(readonly id: string, readonly topic: string, readonly group: string, readonly ttlMs: number, readonly link: GatewayLink,
    private readonly expire: (c: HttpConsumer) => void) {
    this.settleId = `${id}#s`;
    this.touch();
  }

  /** Used now: its TTL starts again. */
  touch(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.expire(this), this.ttlMs);
    this.timer.unref();
  }

  stopTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  async fetch(partition: number, credential: Credential | null, encode: (seq: number) => Uint8Array): Promise<Uint8Array> {
    if (this.fetching.has(partition)) {
      throw new DsyncError(ErrorCode.TOO_MANY_REQUESTS, `consumer ${this.id} already has a fetch waiting on partition ${partition}; one at a time per partition`,
        { retryAfterMs: overloadRetryAfterMs });
    }
    this.fetching.add(partition);
    this.touch();
    try {
      return await this.link.request(Opcode.Fetch, encode(++this.fetchSeq), credential);
    } finally {
      this.fetching.delete(partition);
      if (!this.link.closed) this.touch();
    }
  }

  settle(seqs: number, encode: (firstSeq: number) => Uint8Array, opcode: number, credential: Credential | null): Promise<Uint8Array> {
    assert(seqs >= 1, 'a settle uses at least one sequence number');
    this.touch();
    const firstSeq = this.settleSeq + 1;
    this.settleSeq += seqs;
    return this.link.request(opcode, encode(firstSeq), credential);
  }
}

// ------------------------------------------------------------------ the gateway

interface CompiledRoute {
  readonly route: GatewayRoute;
  /** Literal segments, or null where a parameter goes (its name in paramNames). */
  readonly segments: readonly (string | null)[];
  readonly paramNames: readonly string[];
}

/** The HTTP status of each stable error code. */
export function httpStatusOf(code: ErrorCode): number {
  switch (code) {
    case ErrorCode.BAD_REQUEST: case ErrorCode.BAD_PAYLOAD: case ErrorCode.BAD_FRAME: case ErrorCode.BAD_VERSION: case ErrorCode.HELLO_REQUIRED:
    case ErrorCode.FEATURE_VERSION:
      return 400;
    case ErrorCode.UNAUTHORIZED: return 401;
    case ErrorCode.FORBIDDEN: return 403;
    case ErrorCode.NOT_FOUND: return 404;
    case ErrorCode.DEADLOCK: case ErrorCode.LOCK_TIMEOUT: case ErrorCode.WOULD_BLOCK: case ErrorCode.STALE_REQUEST: case ErrorCode.CANCELLED:
    case ErrorCode.LATE_ACK: case ErrorCode.ALREADY_EXISTS: case ErrorCode.FENCED: case ErrorCode.WOULD_LOSE_QUORUM:
      return 409;
    case ErrorCode.SESSION_EXPIRED: case ErrorCode.FORCE_RELEASED: case ErrorCode.CONNECTION_CLOSED: case ErrorCode.MEMBER_REMOVED:
      return 410;
    case ErrorCode.FRAME_TOO_LARGE: case ErrorCode.MESSAGE_TOO_LARGE: return 413;
    case ErrorCode.TOO_MANY_REQUESTS: case ErrorCode.TOO_MANY_WAITERS: case ErrorCode.TOO_MANY_LOCKS: return 429;
    case ErrorCode.INTERNAL: return 500;
    case ErrorCode.UNKNOWN_OPCODE: return 501;
    case ErrorCode.NOT_LEADER: case ErrorCode.UNAVAILABLE: case ErrorCode.TOO_MANY_CONNECTIONS: return 503;
    case ErrorCode.TIMEOUT: return 504;
    default: return assertNever(code, 'error code');
  }
}

/** The JSON error body: the code, a message, and the leader / retry hints when there are any. */
export function errorBody(err: DsyncError): { error: Record<string, Json> } {
  return { error: { code: err.code, message: err.message, ...(err.leaderId === '' ? {} : { leaderId: err.leaderId }),
    ...(err.leaderAddress === '' ? {} : { leaderAddress: err.leaderAddress }), ...(err.retryAfterMs === 0 ? {} : { retryAfterMs: err.retryAfterMs }) } };
}

function sendError(res: ServerResponse, err: DsyncError): void {
  if (err.retryAfterMs > 0) res.setHeader('retry-after', String(Math.max(1, Math.ceil(err.retryAfterMs / 1000))));
  sendJson(res, httpStatusOf(err.code), errorBody(err));
}

const noBody = Buffer.alloc(0);

/** Reads the body up to httpBodyBytesMax (Content-Length checked first); FRAME_TOO_LARGE past it. */
function readBody(req: IncomingMessage): Promise<Buffer> | Buffer {
  const length = req.headers['content-length'];
  // No body announced (neither a length nor chunks): nothing to wait for.
  if ((length === undefined || length === '0') && req.headers['transfer-encoding'] === undefined) {
    req.resume();
    return noBody;
  }
  const declared = Number(length ?? 0);
  const tooLarge = (bytes: string): DsyncError => new DsyncError(ErrorCode.FRAME_TOO_LARGE,
    `the request body has ${bytes} bytes; the gateway takes at most ${httpBodyBytesMax}`);
  if (Number.isFinite(declared) && declared > httpBodyBytesMax) return Promise.reject(tooLarge(String(declared)));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    const onData = (chunk: Buffer): void => {
      bytes += chunk.length;
      if (bytes > httpBodyBytesMax) {
        req.off('data', onData);
        req.pause();
        reject(tooLarge(`more than ${httpBodyBytesMax}`));
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => resolve(Buffer.concat(chunks, bytes)));
    req.once('error', (err) => reject(new DsyncError(ErrorCode.BAD_REQUEST, `reading the request body failed: ${err.message}`)));
  });
}

/**
 * The body was refused unread: answer first, then discard what the caller still sends for a
 * bounded time and size, and only then close. Closing at once (Connection: close) with unread
 * bytes makes the kernel reset the connection, and a reset can reach the caller before it has
 * read the 413. A caller that stops in time keeps its connection (the rest of its body was read).
 */
function lingerThenClose(req: IncomingMessage, res: ServerResponse): void {
  const socket = req.socket;
  let discarded = 0;
  let timer: NodeJS.Timeout | undefined;
  const close = (): void => {
    if (timer !== undefined) clearTimeout(timer);
    req.off('data', onData);
    socket.destroy();
  };
  const onData = (chunk: Buffer): void => {
    discarded += chunk.length;
    if (discarded > httpLingerBytesMax) close();
  };
  res.once('finish', () => {
    if (req.complete) return;
    req.on('data', onData);
    req.resume();
    timer = setTimeout(close, httpLingerMs);
    timer.unref();
    req.once('end', () => { clearTimeout(timer); req.off('data', onData); });
  });
  socket.once('close', () => clearTimeout(timer));
}

export class HttpGateway {
  /** The lock table's client id for every lock request through this node's gateway. */
  readonly clientId: string;
  private seq = 0;
  private inFlight = 0;
  private readonly table: readonly CompiledRoute[];
  private readonly consumers = new Map<string, HttpConsumer>();
  private readonly partitionCounts = new Map<string, { readonly partitions: number; readonly atMs: number }>();
  private readonly rates = new WeakMap<Socket, RateBucket>();
  private readonly consumerPrefix: string;
  private nextConsumer = 1;
  /** The OpenAPI document served at /openapi.yaml. */
  readonly spec: string;

  constructor(private readonly node: GatewayNode, routes: readonly GatewayRoute[] = gatewayRoutes()) {
    const boot = randomBytes(4).toString('hex');
    this.clientId = `http/${node.nodeId}/${boot}`;
    this.consumerPrefix = `http-${node.nodeId}-${boot}-`;
    this.table = routes.map((route) => {
      const parts = route.path.split('/').slice(1);
      const paramNames: string[] = [];
      const segments = parts.map((p) => {
        const m = /^\{(\w+)\}$/.exec(p);
        if (m === null) return p;
        paramNames.push(m[1] as string);
        return null;
      });
      assert(paramNames.every((name) => Object.hasOwn(route.params, name)) && Object.keys(route.params).length === paramNames.length,
        `route ${route.method} ${route.path} declares exactly its path parameters`);
      return { route, segments, paramNames };
    });
    this.spec = readFileSync(apiSpecUrl, 'utf8');
  }

  /** The next sequence number of this gateway's lock client id (one counter: requests are proposed in the order they get one). */
  nextSeq(): number {
    return ++this.seq;
  }

  /** Serves GET /openapi.yaml. */
  serveSpec(_req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'application/yaml; charset=utf-8', 'content-length': Buffer.byteLength(this.spec) });
    res.end(this.spec);
  }

  /** Serves everything under /v1/. */
  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const method = req.method ?? 'GET';
    const parts = path.split('/').slice(1);
    const matching = this.table.filter((c) => c.segments.length === parts.length && c.segments.every((seg, i) => seg === null || seg === parts[i]));
    const found = matching.find((c) => c.route.method === method as HttpMethod) ?? (method === 'HEAD' ? matching.find((c) => c.route.method === 'GET') : undefined);
    if (found === undefined) {
      req.resume();
      if (matching.length > 0) {
        const allowed: string[] = [...new Set(matching.map((c) => c.route.method))];
        if (allowed.includes('GET')) allowed.push('HEAD');
        res.setHeader('allow', allowed.join(', '));
        sendJson(res, 405, { error: { code: 'METHOD_NOT_ALLOWED', message: `${path} answers ${allowed.join(', ')}, not ${method}` } });
        return;
      }
      sendJson(res, 404, { error: { code: ErrorCode.NOT_FOUND, message: `no route ${method} ${path} (the routes are in /openapi.yaml)` } });
      return;
    }
    let counted = false;
    try {
      const credential = this.authenticate(req);
      this.checkRate(req.socket);
      if (this.inFlight >= httpRequestsInFlightMax) {
        throw new DsyncError(ErrorCode.TOO_MANY_REQUESTS, `${httpRequestsInFlightMax} gateway requests are being served on this node; retry shortly`,
          { retryAfterMs: overloadRetryAfterMs });
      }
      this.inFlight++;
      counted = true;
      const input = await this.input(found, parts, url, q, req);
      const requestLink = new GatewayLink(this.node);
      // The HTTP exchange ended (answered, or the caller hung up): a wait still parked is withdrawn.
      res.once('close', () => requestLink.close('the HTTP request ended'));
      const reply = await found.route.run(input, { call: (opcode, payload) => requestLink.request(opcode, payload, credential), credential, gateway: this });
      if (!res.headersSent && !res.destroyed) sendJson(res, 200, reply);
    } catch (err) {
      if (res.headersSent || res.destroyed) return;
      if (err instanceof FieldError) sendError(res, new DsyncError(ErrorCode.BAD_REQUEST, err.message));
      else if (err instanceof DsyncError) {
        if (err.code === ErrorCode.FRAME_TOO_LARGE) lingerThenClose(req, res);
        sendError(res, err);
      } else {
        this.node.log.error('gateway route failed', { route: `${found.route.method} ${found.route.path}`, err: err instanceof Error ? err.stack ?? err.message : String(err) });
        sendError(res, new DsyncError(ErrorCode.INTERNAL, `internal error: ${err instanceof Error ? err.message : String(err)}`));
      }
    } finally {
      if (counted) this.inFlight--;
      assert(this.inFlight >= 0, 'gateway requests in flight counted');
    }
  }

  private authenticate(req: IncomingMessage): Credential | null {
    const auth = this.node.config.security.auth;
    if (auth === null) return null;
    const header = req.headers.authorization;
    if (header === undefined || header === '') {
      throw new DsyncError(ErrorCode.UNAUTHORIZED, `node ${this.node.nodeId} requires a token: send "Authorization: Bearer TOKEN"`);
    }
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (m === null) throw new DsyncError(ErrorCode.UNAUTHORIZED, 'the Authorization header must be "Bearer TOKEN"');
    const credential = auth.check(m[1] as string);
    if (credential === null) throw new DsyncError(ErrorCode.UNAUTHORIZED, 'the token is not valid here');
    return credential;
  }

  /** --request-rate applies per HTTP connection as it does per binary connection. */
  private checkRate(socket: Socket): void {
    const perSecond = this.node.config.security.requestRatePerConnection;
    if (perSecond <= 0) return;
    let bucket = this.rates.get(socket);
    if (bucket === undefined) {
      bucket = new RateBucket(perSecond, performance.now());
      this.rates.set(socket, bucket);
    }
    const waitMs = bucket.take(performance.now());
    if (waitMs > 0) {
      throw new DsyncError(ErrorCode.TOO_MANY_REQUESTS, `this connection is over its rate of ${perSecond} requests/s; retry in ${waitMs} ms`, { retryAfterMs: waitMs });
    }
  }

  private async input(c: CompiledRoute, parts: readonly string[], url: string, q: number, req: IncomingMessage): Promise<RouteInput> {
    const route = c.route;
    const params: Record<string, unknown> = {};
    let k = 0;
    c.segments.forEach((seg, i) => {
      if (seg !== null) return;
      const name = c.paramNames[k++] as string;
      let raw: string;
      try {
        raw = decodeURIComponent(parts[i] as string);
      } catch {
        throw new FieldError(`path parameter ${name} is not valid percent-encoding`);
      }
      params[name] = parseParameter(route.params[name] as Field, raw, `path parameter ${name}`);
    });
    const query: Record<string, unknown> = {};
    const search = new URLSearchParams(q < 0 ? '' : url.slice(q + 1));
    for (const key of new Set(search.keys())) {
      const f = route.query[key];
      if (f === undefined) throw new FieldError(`query parameter ${key} is not known here (known: ${Object.keys(route.query).join(', ') || 'none'})`);
      query[key] = parseParameter(f, search.get(key) ?? '', `query parameter ${key}`);
    }
    for (const [key, f] of Object.entries(route.query)) {
      if (Object.hasOwn(query, key)) continue;
      if (f.optional !== true) throw new FieldError(`query parameter ${key} is required`);
      if ('default' in f && f.default !== undefined) query[key] = f.default;
    }
    const raw = await readBody(req);
    if (route.body === null) {
      if (raw.length > 0) throw new FieldError(`${route.method} ${route.path} takes no body`);
      return { params, query, body: {} };
    }
    let parsed: unknown = {};
    if (raw.length > 0) {
      try {
        parsed = JSON.parse(raw.toString('utf8'));
      } catch (err) {
        throw new FieldError(`the body is not valid JSON: ${(err as Error).message}`);
      }
    }
    return { params, query, body: validate(route.body, parsed, 'body') as Record<string, unknown> };
  }

  // ---- keyed publishes: the partition a key goes to ----

  async partitionOf(ctx: RouteContext, topic: string, key: string): Promise<number> {
    const nowMs = performance.now();
    let known = this.partitionCounts.get(topic);
    if (known === undefined || nowMs - known.atMs > httpPartitionMapCacheMs) {
      // This node's applied topic table (local): a topic's partition count is fixed for its life.
      const state = schema.TopicState.decode(await ctx.call(Opcode.PartitionMap, schema.PartitionMapRequest.encode({ topic, local: true }).finish()));
      known = { partitions: n(state.partitions), atMs: nowMs };
      assert(known.partitions >= 1, `topic ${topic} has at least one partition`);
      this.partitionCounts.delete(topic);
      this.partitionCounts.set(topic, known);
      while (this.partitionCounts.size > httpPartitionMapsMax) this.partitionCounts.delete(this.partitionCounts.keys().next().value as string);
    }
    return partitionOfKey(await keyHash(), key, known.partitions);
  }

  forgetPartitions(topic: string): void {
    this.partitionCounts.delete(topic);
  }

  // ---- consumers ----

  createConsumer(topic: string, group: string, ttlMs: number): HttpConsumer {
    if (this.consumers.size >= httpConsumersMax) {
      throw new DsyncError(ErrorCode.TOO_MANY_REQUESTS, `this node keeps ${httpConsumersMax} HTTP consumers; delete unused ones or let them expire`,
        { retryAfterMs: overloadRetryAfterMs });
    }
    // The link is the consumer's; each request through it is checked against its own caller's token.
    const link = new GatewayLink(this.node);
    const c = new HttpConsumer(`${this.consumerPrefix}${this.nextConsumer++}`, topic, group, ttlMs, link, (expired) => this.dropConsumer(expired, 'expired'));
    this.consumers.set(c.id, c);
    return c;
  }

  consumer(topic: string, id: string): HttpConsumer {
    const c = this.consumers.get(id);
    if (c === undefined || c.topic !== topic) {
      throw new DsyncError(ErrorCode.NOT_FOUND, `consumer ${id} of topic ${topic} is not known on ${this.node.nodeId} (consumers live on the node that made them, until their TTL runs out)`);
    }
    return c;
  }

  dropConsumer(c: HttpConsumer, why: 'deleted' | 'expired'): void {
    if (this.consumers.get(c.id) !== c) return;
    this.consumers.delete(c.id);
    c.stopTimer();
    c.link.close(`consumer ${c.id} was ${why}`);
  }

  stop(): void {
    for (const c of [...this.consumers.values()]) this.dropConsumer(c, 'deleted');
  }
}
