// Test helper (not a test): runs LockService replicas without a node or sockets. A
// fake group 0 applies each proposal to every replica in log order; the clock and
// scheduler are fakes the test moves by hand; client connections record what they get.

import { assert } from '../../../core/assert.js';
import { logIndex, nodeId, type NodeId, term } from '../../../core/ids.js';
import { EntryType } from '../../../core/raft/types.js';
import { DsyncError, ErrorCode } from '../../../protocol/errors.js';
import { schema } from '../../../protocol/index.js';
import { ConsoleRegistry } from '../../../server/node/console.js';
import { NodeMetrics } from '../../../server/node/metrics.js';
import { Logger } from '../../../server/node/log.js';
import type { GroupRegistry, GroupRunner } from '../../../server/raft/runner.js';
import type { Cancel, MonotonicClock, Scheduler } from '../../../server/runtime.js';
import { LockService } from '../../../server/services/locks/service.js';
import type { ClientLink, RequestHandler, ServiceContext, ServiceNode } from '../../../server/services/service.js';

export class FakeClock implements MonotonicClock {
  ms = 10_000;
  nowMs(): number {
    return this.ms;
  }
}

/** Timers that fire only when the test calls runDue(). */
export class FakeScheduler implements Scheduler {
  private readonly timers: { at: number; every: number; fn: () => void; live: boolean }[] = [];
  constructor(private readonly clock: FakeClock) {}
  defer(fn: () => void): void {
    this.after(0, fn);
  }
  after(ms: number, fn: () => void): Cancel {
    const t = { at: this.clock.ms + ms, every: 0, fn, live: true };
    this.timers.push(t);
    return () => { t.live = false; };
  }
  every(ms: number, fn: () => void): Cancel {
    assert(ms > 0, 'interval positive');
    const t = { at: this.clock.ms + ms, every: ms, fn, live: true };
    this.timers.push(t);
    return () => { t.live = false; };
  }
  /** Runs every live timer due at the clock's time (an interval once per call). */
  runDue(): void {
    for (const t of [...this.timers]) {
      if (!t.live || t.at > this.clock.ms) continue;
      if (t.every > 0) t.at = this.clock.ms + t.every;
      else t.live = false;
      t.fn();
    }
  }
}

export class FakeLink implements ClientLink {
  closed = false;
  /** afterTask: the service asked for the answer to leave once the current task ends (ClientLink.reply). */
  readonly replies: { requestId: number; opcode: number; payload: Uint8Array; afterTask: boolean }[] = [];
  readonly errors: { requestId: number; opcode: number; err: DsyncError; afterTask: boolean }[] = [];
  readonly pushes: { opcode: number; payload: Uint8Array }[] = [];
  private readonly closers = new Set<() => void>();
  reply(requestId: number, opcode: number, payload: Uint8Array, afterTask = false): void {
    this.replies.push({ requestId, opcode, payload, afterTask });
  }
  replyError(requestId: number, opcode: number, err: DsyncError, afterTask = false): void {
    this.errors.push({ requestId, opcode, err, afterTask });
  }
  push(opcode: number, _requestId: number, payload: Uint8Array): void {
    this.pushes.push({ opcode, payload });
  }
  onClose(fn: () => void): () => void {
    this.closers.add(fn);
    return () => this.closers.delete(fn);
  }
  close(): void {
    this.closed = true;
    for (const fn of [...this.closers]) fn();
  }
}

/** One LockService replica with its own handlers and scheduler. */
export interface Replica {
  readonly id: NodeId;
  readonly service: LockService;
  readonly scheduler: FakeScheduler;
  readonly handlers: Map<number, RequestHandler>;
}

/** Group 0 reduced to "the leader's proposal is applied on every replica, in order". */
export class FakeGroup {
  readonly replicas: Replica[] = [];
  leader: NodeId | '' = '';
  private index = 0;
  private requestId = 0;

  constructor(readonly clock: FakeClock, count: number) {
    for (let i = 1; i <= count; i++) this.addReplica(nodeId(`n${i}`));
  }

  private addReplica(id: NodeId): void {
    const service = new LockService();
    const scheduler = new FakeScheduler(this.clock);
    const handlers = new Map<number, RequestHandler>();
    const group = this;
    const runner = {
      get leader(): NodeId | '' { return group.leader; },
      propose: (data: Uint8Array): Promise<unknown> => {
        if (group.leader !== id) return Promise.reject(new DsyncError(ErrorCode.NOT_LEADER, `${id} is not the leader`));
        return Promise.resolve(group.applyEverywhere(data, id));
      },
      readBarrier: (): Promise<void> => Promise.resolve(),
    };
    const groups = {
      // The service uses only leader, propose and readBarrier of its runner.
      group0: runner as unknown as GroupRunner,
      ensure: () => { throw new Error('not in this fake'); },
      drop: () => { throw new Error('not in this fake'); },
      leaderOf: () => group.leader,
    } as unknown as GroupRegistry;
    const log = new Logger(id, 'error', () => {});
    const node: ServiceNode = {
      nodeId: id,
      log,
      consoleCommands: new ConsoleRegistry(),
      metrics: new NodeMetrics(id),
      notLeader: (what, leader) => new DsyncError(ErrorCode.NOT_LEADER, `${id} does not lead ${what}; ${leader} does`),
      addressOf: (peer) => (peer === '' ? '' : `test://${peer}`),
      asDsyncError: (err) => (err instanceof DsyncError ? err : new DsyncError(ErrorCode.INTERNAL, String(err))),
      handle: (opcode, handler) => { handlers.set(opcode, handler); },
      sendPeer: () => false,
      handlePeerPush: () => {},
      members: () => [],
    };
    const ctx: ServiceContext = { node, groups, clock: this.clock, scheduler, log, handle: node.handle,
      peers: { send: node.sendPeer, handle: node.handlePeerPush } };
    service.start(ctx);
    this.replicas.push({ id, service, scheduler, handlers });
  }

  private applyEverywhere(data: Uint8Array, proposer: NodeId): unknown {
    this.index++;
    const entry = { term: term(1), index: logIndex(this.index), type: EntryType.Normal, data };
    let answer: unknown;
    for (const r of this.replicas) {
      const result = r.service.apply(entry, data.subarray(1));
      if (r.id === proposer) answer = result;
    }
    return answer;
  }

  replica(id: NodeId): Replica {
    const r = this.replicas.find((x) => x.id === id);
    assert(r !== undefined, `replica ${id}`);
    return r;
  }

  /** Makes `id` the leader (the old one steps down first), as the runner reports it. */
  elect(id: NodeId): void {
    const old = this.leader;
    this.leader = id;
    if (old !== '') this.replica(old).service.onLeaderChange(false, id);
    for (const r of this.replicas) if (r.id !== id && r.id !== old) r.service.onLeaderChange(false, id);
    this.replica(id).service.onLeaderChange(true, id);
  }

  /** Sends a lock request to replica `to` over `link`; returns the request id it used. */
  request(to: NodeId, link: FakeLink, opcode: number, fields: Parameters<typeof schema.LockRequest.create>[0]): number {
    const handler = this.replica(to).handlers.get(opcode);
    assert(handler !== undefined, `handler for opcode ${opcode}`);
    const requestId = ++this.requestId;
    const payload = schema.LockRequest.encode(schema.LockRequest.create(fields)).finish();
    try {
      handler({ conn: link, requestId, opcode }, payload);
    } catch (err) {
      link.replyError(requestId, opcode, err instanceof DsyncError ? err : new DsyncError(ErrorCode.INTERNAL, String(err)));
    }
    return requestId;
  }

  /** Lets proposal promises and their replies settle. */
  async settle(): Promise<void> {
    for (let i = 0; i < 10; i++) await Promise.resolve();
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** The LockReply a link got for one request, decoded. */
export function replyTo(link: FakeLink, requestId: number): ReturnType<typeof schema.LockReply.decode> | null {
  const r = link.replies.find((x) => x.requestId === requestId);
  return r === undefined ? null : schema.LockReply.decode(r.payload);
}
