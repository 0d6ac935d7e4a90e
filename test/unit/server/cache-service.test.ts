// The cache service (server/services/cache/service.ts) on two nodes in one process, with a
// hand-driven world: a manual clock and scheduler, group 0 faked down to its ReadIndex
// barrier (which the test lets succeed or fail per node), and peer batches handed from one
// service to the other unless the test holds them. Checked: a set waiting on its key's home
// survives a lapse of its node's confirmation (a slow group 0 barrier) and completes once
// the node is confirmed again, while a get waiting at the same time is told UNAVAILABLE at
// once; a set whose client deadline passes while unconfirmed gets TIMEOUT then, not before.
// Before, every waiting set was answered TIMEOUT ("may or may not have been applied") as
// soon as the confirmation lapsed.

import t from 'tap';
import { cacheConfigDefault } from '../../../core/cache/messages.js';
import type { NodeId } from '../../../core/ids.js';
import { DsyncError } from '../../../protocol/errors.js';
import { Opcode } from '../../../protocol/frame.js';
import { schema } from '../../../protocol/index.js';
import { ConsoleRegistry } from '../../../server/node/console.js';
import { Logger } from '../../../server/node/log.js';
import { NodeMetrics } from '../../../server/node/metrics.js';
import type { Cancel, Scheduler } from '../../../server/runtime.js';
import { InProcessBacking } from '../../../server/services/cache/backing.js';
import { encodeCacheRingCommand } from '../../../server/services/cache/ring-machine.js';
import { CacheService } from '../../../server/services/cache/service.js';
import type { ClientLink, PeerMessageHandler, RequestHandler, ServiceContext } from '../../../server/services/service.js';

const cfg = cacheConfigDefault;
const n1 = 'n1' as NodeId;
const n2 = 'n2' as NodeId;

interface Timer { at: number; every: number; fn: () => void; cancelled: boolean }

class World {
  nowMs = 1_000;
  private readonly timers: Timer[] = [];
  private deferred: (() => void)[] = [];
  readonly scheduler: Scheduler = {
    defer: (fn) => { this.deferred.push(fn); },
    after: (ms, fn) => this.add(ms, 0, fn),
    every: (ms, fn) => this.add(ms, ms, fn),
  };
  /** Peer payloads in flight: delivered by run() unless their destination is held. */
  readonly inFlight: { from: NodeId; to: NodeId; payload: Uint8Array }[] = [];
  /** The `now` argument of every peer send: whether the batch was handed to the link at once. */
  readonly sentNow: (boolean | undefined)[] = [];
  readonly held = new Set<NodeId>();
  readonly peerHandlers = new Map<NodeId, PeerMessageHandler>();
  /** Whether each node's group 0 barrier succeeds now. */
  readonly quorum = new Map<NodeId, boolean>([[n1, true], [n2, true]]);

  private add(ms: number, every: number, fn: () => void): Cancel {
    const timer: Timer = { at: this.nowMs + ms, every, fn, cancelled: false };
    this.timers.push(timer);
    return () => { timer.cancelled = true; };
  }

  /** Moves time forward in steps of 10 ms, running timers, deferred work, promise callbacks and peer deliveries. */
  async run(ms: number): Promise<void> {
    const end = this.nowMs + ms;
    while (this.nowMs < end) {
      this.nowMs += 10;
      for (const timer of [...this.timers]) {
        if (timer.cancelled || timer.at > this.nowMs) continue;
        if (timer.every > 0) timer.at += timer.every;
        else timer.cancelled = true;
        timer.fn();
      }
      await this.settle();
    }
  }

  async settle(): Promise<void> {
    for (let i = 0; i < 100; i++) {
      await new Promise<void>((r) => { setImmediate(r); });
      const work = this.deferred.splice(0);
      for (const fn of work) fn();
      const deliver = this.inFlight.filter((m) => !this.held.has(m.to));
      for (const m of deliver) this.inFlight.splice(this.inFlight.indexOf(m), 1);
      for (const m of deliver) {
        const err = this.peerHandlers.get(m.to)?.(m.from, m.payload);
        if (err !== null && err !== undefined) throw err;
      }
      if (work.length === 0 && deliver.length === 0) return;
    }
  }

  context(self: NodeId, handlers: Map<number, RequestHandler>): ServiceContext {
    const log = new Logger(self, 'error', () => {});
    const world = this;
    const node = {
      nodeId: self, log, consoleCommands: new ConsoleRegistry(), metrics: new NodeMetrics(self),
      members: () => [{ id: n1, voter: true }, { id: n2, voter: true }],
    };
    const group0 = {
      isLeader: false,
      readBarrier: (): Promise<void> => (world.quorum.get(self) === true ? Promise.resolve() : Promise.reject(new Error('no quorum'))),
      propose: (): Promise<void> => Promise.reject(new Error('not the leader')),
    };
    return {
      node, groups: { group0, sinceHeardMs: () => 0 }, clock: { nowMs: () => this.nowMs }, scheduler: this.scheduler, log,
      handle: (opcode: number, handler: RequestHandler) => { handlers.set(opcode, handler); },
      peers: {
        send: (to: NodeId, _opcode: number, payload: Uint8Array, now?: boolean) => { this.inFlight.push({ from: self, to, payload }); this.sentNow.push(now); return true; },
        handle: (_opcode: number, handler: PeerMessageHandler) => { this.peerHandlers.set(self, handler); },
      },
    } as unknown as ServiceContext;
  }
}

/** A client link that records the one answer of each request. */
class Answers implements ClientLink {
  closed = false;
  readonly got = new Map<number, string>();
  reply(requestId: number, _opcode: number, _payload: Uint8Array): void { this.got.set(requestId, 'ok'); }
  replyError(requestId: number, _opcode: number, err: DsyncError): void { this.got.set(requestId, err.code); }
  push(): void {}
  onClose(): () => void { return () => {}; }
}

async function twoNodes(t: { teardown(fn: () => void | Promise<void>): void }): Promise<{ world: World; call: (node: NodeId, opcode: number, requestId: number, payload: Uint8Array) => void; answers: Answers; homeOf: (key: string) => string }> {
  const world = new World();
  const handlers = new Map<NodeId, Map<number, RequestHandler>>();
  const services = new Map<NodeId, CacheService>();
  for (const id of [n1, n2]) {
    const h = new Map<number, RequestHandler>();
    handlers.set(id, h);
    const s = new CacheService({ cfg, backing: new InProcessBacking(), incarnationBase: 100 });
    const ctx = world.context(id, h);
    s.start(ctx);
    services.set(id, s);
    t.teardown(() => s.stop());
  }
  // xxhash loads asynchronously (a real promise), then the ring: generation 1 of both nodes.
  for (let i = 0; i < 50 && world.peerHandlers.size < 2; i++) await world.settle();
  await new Promise((r) => { setTimeout(r, 50); });
  for (const s of services.values()) s.ring.apply({ term: 1, index: 1 } as never, encodeCacheRingCommand({ basedOn: 0, members: [n1, n2] }));
  // Confirmed, and past the new homes' first lease.
  await world.run(cfg.leaseMs + 200);
  const answers = new Answers();
  const call = (node: NodeId, opcode: number, requestId: number, payload: Uint8Array): void => {
    const handler = handlers.get(node)?.get(opcode);
    if (handler === undefined) throw new Error(`no handler for ${opcode}`);
    try {
      handler({ conn: answers, requestId, opcode }, payload);
    } catch (err) {
      if (!(err instanceof DsyncError)) throw err;
      answers.replyError(requestId, opcode, err);
    }
  };
  const homeOf = (key: string): string => {
    const text = (services.get(n1) as unknown as { consoleRun(args: string[]): string }).consoleRun(['key', key]);
    return /home: here/.test(text) ? 'n1' : (/home: (\w+)/.exec(text)?.[1] ?? '?');
  };
  return { world, call, answers, homeOf };
}

const setPayload = (key: string, waitMs: number): Uint8Array =>
  schema.CacheRequest.encode({ key, value: new TextEncoder().encode('v'), hasValue: true, waitMs }).finish();
const getPayload = (key: string): Uint8Array => schema.CacheRequest.encode({ key }).finish();

t.test('a set waiting on its home survives a lapse of its node\'s confirmation; a get is told at once', async (t) => {
  const { world, call, answers, homeOf } = await twoNodes(t);
  let key = '';
  for (let i = 0; key === '' && i < 100; i++) if (homeOf(`k${i}`) === 'n2') key = `k${i}`;
  let other = '';
  for (let i = 100; other === '' && i < 200; i++) if (homeOf(`k${i}`) === 'n2') other = `k${i}`;
  t.not(key, '', `a key homed at n2 (${key})`);

  // n2 hears nothing for now: the set and a get of another key wait at n1.
  world.held.add(n2);
  call(n1, Opcode.CacheSet, 1, setPayload(key, 8 * cfg.leaseMs));
  call(n1, Opcode.CacheGet, 2, getPayload(other));
  await world.run(100);
  t.equal(answers.got.size, 0, 'both wait for their home');

  // n1's group 0 barrier fails from now on: its confirmation lapses within a lease.
  world.quorum.set(n1, false);
  await world.run(cfg.leaseMs + 500);
  t.equal(answers.got.get(2), 'UNAVAILABLE', 'the get was told to retry elsewhere');
  t.equal(answers.got.get(1), undefined, 'the set still waits (it was answered TIMEOUT here before)');

  // Quorum back, n2 reachable: the set completes.
  world.quorum.set(n1, true);
  world.held.delete(n2);
  await world.run(cfg.leaseMs);
  t.equal(answers.got.get(1), 'ok', 'the set completed');
});

t.test('a set whose client deadline passes while its node is unconfirmed gets TIMEOUT then', async (t) => {
  const { world, call, answers, homeOf } = await twoNodes(t);
  let key = '';
  for (let i = 0; key === '' && i < 100; i++) if (homeOf(`k${i}`) === 'n2') key = `k${i}`;
  world.held.add(n2);
  world.quorum.set(n1, false);
  call(n1, Opcode.CacheSet, 1, setPayload(key, 3 * cfg.leaseMs));
  await world.run(2 * cfg.leaseMs);
  t.equal(answers.got.get(1), undefined, 'waiting within its deadline');
  await world.run(2 * cfg.leaseMs);
  t.equal(answers.got.get(1), 'TIMEOUT', 'TIMEOUT once its client stopped waiting');
});

t.test('a turn\'s peer batch is handed to its link at once, not left for the link\'s own end-of-turn flush', async (t) => {
  // The outbox is flushed from a deferred callback, after the turn that filled it; a batch
  // the link then queued for its own flush left one event-loop turn later, on every hop of
  // a miss or an invalidation round (before d25a247 every send here had now undefined).
  const { world, call, answers, homeOf } = await twoNodes(t);
  let key = '';
  for (let i = 0; key === '' && i < 100; i++) if (homeOf(`k${i}`) === 'n2') key = `k${i}`;
  t.not(key, '', `a key homed at n2 (${key})`);
  world.sentNow.length = 0;
  call(n1, Opcode.CacheSet, 1, setPayload(key, 8 * cfg.leaseMs));
  call(n1, Opcode.CacheGet, 2, getPayload(key));
  await world.run(200);
  t.equal(answers.got.get(1), 'ok', 'the set completed');
  t.equal(answers.got.get(2), 'ok', 'the get completed');
  t.ok(world.sentNow.length >= 2, `batches went both ways (${world.sentNow.length})`);
  t.same(world.sentNow.filter((now) => now !== true), [], 'every batch was written at once');
});
