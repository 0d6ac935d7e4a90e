// The dsync client: one per service. Composes the per-service parts (locks now;
// queues and cache later) over one Router, which keeps a connection per node,
// a leader per Raft group, follows NOT_LEADER and retries what is safe to retry.

import { DsyncError, ErrorCode } from '../protocol/errors.js';
import { Opcode } from '../protocol/frame.js';
import { schema } from '../protocol/index.js';
import { type HeldLock, type LockAdmin, LockClient, type LockOptions } from './locks/locks.js';
import { type Consumer, type ConsumerOptions, type Producer, QueueClient, type TopicAdmin } from './queues/queues.js';
import type { ClientTlsOptions } from './transport/connection.js';
import { Router } from './transport/router.js';
import { type CacheApi, CacheClient } from './cache/cache.js';

export interface ClientOptions {
  /** Any subset of the cluster's client addresses (host:port); the rest is discovered. */
  readonly seeds: readonly string[];
  /** Per-request deadline (default 5000 ms). */
  readonly requestTimeoutMs?: number;
  /** Per-connection connect + hello deadline (default 3000 ms). */
  readonly connectTimeoutMs?: number;
  /** Shown in the nodes' logs. */
  readonly name?: string;
  /**
   * Longest wait for one node's answer to a request that is safe to repeat (lock
   * requests carry a client id + seq) before trying another member, so a paused or
   * partitioned leader costs one attempt rather than the whole requestTimeoutMs
   * (default: min(1000 ms, requestTimeoutMs / 3); keep-alives use at most TTL / 3).
   * A waiting acquire is not cut by it: it moves when the client learns of a new leader.
   */
  readonly attemptTimeoutMs?: number;
  /**
   * Attempts per request: following NOT_LEADER and retrying UNAVAILABLE, a closed
   * connection or an attempt's TIMEOUT on the next member, with backoff from 50 ms
   * doubling to 500 ms (or the node's retry-after hint) (default 8).
   */
  readonly maxRedirects?: number;
  /** TTL of this client's lock session (default 10000 ms); kept alive in the background. */
  readonly sessionTtlMs?: number;
  /**
   * Lock-delay (Chubby/Consul): when this client's session EXPIRES (a crash, not a clean
   * release), the locks it held are not granted to anyone for this long (default 0).
   */
  readonly lockDelayMs?: number;
  /** Token for nodes started with an auth file (sent in every hello; its role decides what this client may do). */
  readonly token?: string;
  /** TLS to nodes started with tls-cert: at least the CA that signed their certificates. */
  readonly tls?: ClientTlsOptions;
}

export interface MemberStatus {
  readonly id: string;
  readonly address: string;
  /** Reachable from the answering node (the leader: heard from recently; others: a live peer link). */
  readonly connected: boolean;
  readonly voter: boolean;
  /** 'voter' or 'learner' in group 0's configuration. */
  readonly role: string;
}

/** Cluster membership administration (answered by group 0's leader). */
export interface ClusterAdmin {
  /** Every member with its role and whether the leader hears from it. */
  members(): Promise<MemberStatus[]>;
  /**
   * Removes a member from group 0; resolves with the members after. Rejects with
   * WOULD_LOSE_QUORUM when group 0 would be left without a quorum of reachable voters,
   * NOT_FOUND for a node that is not a member. Removing an already removed node resolves.
   */
  remove(id: string): Promise<MemberStatus[]>;
}

function memberStatus(m: { id?: string | null; address?: string | null; connected?: boolean | null; voter?: boolean | null; role?: string | null }): MemberStatus {
  return { id: m.id ?? '', address: m.address ?? '', connected: m.connected === true, voter: m.voter === true,
    role: m.role === undefined || m.role === null || m.role === '' ? (m.voter === true ? 'voter' : 'learner') : m.role };
}

export interface GroupStatus {
  readonly group: number;
  readonly role: string;
  readonly leaderId: string;
  readonly term: number;
  readonly commit: number;
  readonly applied: number;
  readonly lastIndex: number;
  readonly voters: readonly string[];
  readonly learners: readonly string[];
  /** The group is idle here: no ticks or heartbeats until something happens. */
  readonly quiesced: boolean;
}

export interface NodeStatus {
  readonly nodeId: string;
  readonly address: string;
  readonly members: readonly MemberStatus[];
  readonly leaderId: string;
  readonly leaderAddress: string;
  readonly uptimeMs: number;
  readonly groups: readonly GroupStatus[];
  /** Group 0's cluster id ('' until its first leader chose one, or from an older node). */
  readonly clusterId: string;
  /** The feature version every member speaks (0 from an older node). */
  readonly clusterVersion: number;
}

/** The Router under a Client: for tests and tools inside this repository, not part of the public API. */
const routers = new WeakMap<Client, Router>();
export function routerOf(client: Client): Router {
  const r = routers.get(client);
  if (r === undefined) throw new DsyncError(ErrorCode.BAD_REQUEST, 'not a dsync Client');
  return r;
}

export class Client {
  readonly #router: Router;
  readonly #locks: LockClient;
  #closed = false;
  /** Lock administration and inspection (linearizable reads through the leader). */
  readonly locks: LockAdmin;
  /** Cluster membership: list and remove members. */
  readonly cluster: ClusterAdmin;
  /** The coherent cache, against the node this client is attached to. */
  readonly cache: CacheApi;
  readonly #queues: QueueClient;
  /** Queue topics: create, delete, info, list. */
  readonly topics: TopicAdmin;

  private constructor(opts: ClientOptions) {
    const name = opts.name ?? `client-${process.pid}`;
    this.#router = new Router({ seeds: opts.seeds, name,
      ...(opts.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: opts.requestTimeoutMs }),
      ...(opts.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: opts.connectTimeoutMs }),
      ...(opts.attemptTimeoutMs === undefined ? {} : { attemptTimeoutMs: opts.attemptTimeoutMs }),
      ...(opts.maxRedirects === undefined ? {} : { attemptsMax: opts.maxRedirects }),
      ...(opts.token === undefined ? {} : { token: opts.token }),
      ...(opts.tls === undefined ? {} : { tls: opts.tls }) });
    this.#locks = new LockClient(this.#router, { name,
      ...(opts.sessionTtlMs === undefined ? {} : { sessionTtlMs: opts.sessionTtlMs }),
      ...(opts.lockDelayMs === undefined ? {} : { lockDelayMs: opts.lockDelayMs }) });
    const locks = this.#locks;
    this.locks = { info: (name) => locks.info(name), sessions: () => locks.sessions(), forceRelease: (name) => locks.forceRelease(name) };
    const router = this.#router;
    this.cluster = {
      members: async () => schema.MembersReply.decode(await router.request(0, Opcode.MemberList,
        schema.MembersRequest.encode({}).finish(), { idempotent: true })).members.map(memberStatus),
      // Idempotent: the leader answers a repeated removal of a removed node as the first time.
      remove: async (id) => schema.MembersReply.decode(await router.request(0, Opcode.MemberRemove,
        schema.MemberRemoveRequest.encode({ id }).finish(), { idempotent: true })).members.map(memberStatus),
    };
    this.cache = new CacheClient(router);
    this.#queues = new QueueClient(this.#router, name);
    this.topics = this.#queues.topics;
    routers.set(this, this.#router);
  }

  /** A producer for `topic`: publish(key, value) resolves with { partition, offset } once durable on a majority. */
  producer(topic: string): Producer {
    return this.#queues.producer(topic);
  }

  /** A consumer of `topic` in consumer group `group`: an async iterator of messages to ack, nack or extend. */
  consumer(topic: string, group: string, opts?: ConsumerOptions): Consumer {
    return this.#queues.consumer(topic, group, opts);
  }

  /** Acquires a lock (waiting as needed); the held lock carries its fencing token. Works with `await using`. */
  lock(name: string, opts?: LockOptions): Promise<HeldLock> {
    return this.#locks.lock(name, opts);
  }

  /** Acquires a lock only if it is free right now; resolves null otherwise. */
  tryLock(name: string, opts?: Omit<LockOptions, 'waitMs'>): Promise<HeldLock | null> {
    return this.#locks.tryLock(name, opts);
  }

  /** Connects to the first reachable seed and learns the members from its hello. */
  static async connect(opts: ClientOptions): Promise<Client> {
    const client = new Client(opts);
    await client.#router.anyConnection();
    return client;
  }

  /** Round trip to the attached node; resolves with the measured milliseconds. */
  async ping(payload: Uint8Array = new Uint8Array(0)): Promise<number> {
    const conn = await this.#router.anyConnection();
    const started = performance.now();
    const reply = schema.Pong.decode(await conn.request(Opcode.Ping, schema.Ping.encode({ payload }).finish(), this.#router.requestTimeoutMs));
    if (reply.payload.length !== payload.length) throw new DsyncError(ErrorCode.BAD_PAYLOAD, 'ping echo does not match what was sent');
    return performance.now() - started;
  }

  /** The attached node's view: its id, members, who it thinks leads, its groups. */
  async status(address?: string): Promise<NodeStatus> {
    const conn = address === undefined ? await this.#router.anyConnection() : await this.#router.connection(address);
    const s = schema.StatusReply.decode(await conn.request(Opcode.Status, new Uint8Array(0), this.#router.requestTimeoutMs));
    return {
      nodeId: s.nodeId,
      address: s.address,
      members: s.members.map(memberStatus),
      leaderId: s.leaderId,
      leaderAddress: s.leaderAddress,
      uptimeMs: Number(s.uptimeMs),
      groups: s.groups.map((g) => ({ group: g.group ?? 0, role: g.role ?? '', leaderId: g.leaderId ?? '', term: Number(g.term ?? 0),
        commit: Number(g.commit ?? 0), applied: Number(g.applied ?? 0), lastIndex: Number(g.lastIndex ?? 0), voters: g.voters ?? [],
        learners: g.learners ?? [], quiesced: g.quiesced === true })),
      clusterId: s.clusterId,
      clusterVersion: s.clusterVersion,
    };
  }

  /** Every member address learned so far (seeds plus what nodes reported). */
  members(): readonly string[] {
    return this.#router.members();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#queues.close();
    await this.#locks.close();
    await this.#router.close();
  }
}
