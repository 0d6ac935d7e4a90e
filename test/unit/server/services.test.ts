// Checks the services seam (server/services/service.ts): opcode ranges of two
// services never overlap, a service cannot register a handler outside its own
// range, and group 0 parts are registered under the service's name.

import t from 'tap';
import { nodeId } from '../../../core/ids.js';
import type { Entry } from '../../../core/raft/types.js';
import { DsyncError, ErrorCode } from '../../../protocol/errors.js';
import { ConsoleRegistry } from '../../../server/node/console.js';
import { NodeMetrics } from '../../../server/node/metrics.js';
import { Logger } from '../../../server/node/log.js';
import { EntryKind, Group0StateMachine, type SubMachine } from '../../../server/raft/group0.js';
import type { GroupRegistry } from '../../../server/raft/runner.js';
import { monotonicClock, nodeScheduler } from '../../../server/runtime.js';
import { JournalService } from '../../../server/services/journal/service.js';
import { LockService } from '../../../server/services/locks/service.js';
import { registerServices, type RequestHandler, type Service, type ServiceNode, serviceContext } from '../../../server/services/service.js';

function fakeService(name: string, min: number, max: number, group0?: Service['group0']): Service {
  return { name, opcodes: { min, max }, ...(group0 === undefined ? {} : { group0 }), start: () => {}, stop: () => {} };
}

const noMachine: SubMachine = { apply: (_e: Entry) => null, snapshot: () => ({}), restore: () => {} };

t.test('overlapping opcode ranges are refused, naming both services', async (t) => {
  t.throws(() => registerServices([fakeService('a', 100, 199), fakeService('b', 150, 250)], new Group0StateMachine()),
    /services a \(100-199\) and b \(150-250\) claim overlapping opcodes/);
  t.throws(() => registerServices([fakeService('b', 200, 299), fakeService('a', 100, 200)], new Group0StateMachine()),
    /overlapping/, 'order of the list does not matter');
  t.throws(() => registerServices([fakeService('a', 5, 20)], new Group0StateMachine()), /services use 11 and up/);
  t.throws(() => registerServices([fakeService('a', 30, 20)], new Group0StateMachine()), /min <= max/);
  t.throws(() => registerServices([fakeService('a', 100, 199), fakeService('b', 300, 399), fakeService('a', 200, 299)], new Group0StateMachine()),
    /service a registered twice/);
  t.doesNotThrow(() => registerServices([fakeService('a', 100, 199), fakeService('b', 200, 299)], new Group0StateMachine()));
});

t.test('the shipped services fit together and own their group 0 parts', async (t) => {
  const sm = new Group0StateMachine();
  t.doesNotThrow(() => registerServices([new JournalService(), new LockService()], sm));
  t.throws(() => sm.register(EntryKind.Lock, 'locks-again', noMachine), /registered twice/, 'the lock kind is taken by the lock service');
  t.throws(() => registerServices([fakeService('x', 300, 399, { kind: EntryKind.Journal, machine: noMachine })], sm), /registered twice/);
});

t.test('a service registers handlers only inside its own range', async (t) => {
  const registered: number[] = [];
  const node: ServiceNode = {
    nodeId: nodeId('n1'),
    log: new Logger('n1', 'error', () => {}),
    consoleCommands: new ConsoleRegistry(),
    metrics: new NodeMetrics('n1'),
    notLeader: (what) => new DsyncError(ErrorCode.UNAVAILABLE, what),
    addressOf: (id) => (id === '' ? '' : `test://${id}`),
    asDsyncError: (err) => (err instanceof DsyncError ? err : new DsyncError(ErrorCode.INTERNAL, String(err))),
    handle: (opcode: number, _h: RequestHandler) => { registered.push(opcode); },
    sendPeer: (to, opcode) => { sent.push(`${to}:${opcode}`); return true; },
    handlePeerPush: (opcode) => { peerHandlers.push(opcode); },
    members: () => [],
  };
  const sent: string[] = [];
  const peerHandlers: number[] = [];
  const groups = {} as GroupRegistry;
  const ctx = serviceContext(fakeService('q', 200, 299), { node, groups, clock: monotonicClock, scheduler: nodeScheduler, log: node.log });
  ctx.handle(200, () => {});
  ctx.handle(299, () => {});
  t.throws(() => ctx.handle(103, () => {}), /service q registers LockAcquire outside its opcodes 200-299/);
  t.throws(() => ctx.handle(300, () => {}), /outside its opcodes/);
  t.same(registered, [200, 299], 'only in-range handlers reach the node');
  // Peer messages are fenced the same way, and never addressed to the node itself.
  t.equal(ctx.peers.send(nodeId('n2'), 250, new Uint8Array(1)), true);
  t.throws(() => ctx.peers.send(nodeId('n2'), 10, new Uint8Array(1)), /service q sends Raft outside its opcodes/);
  t.throws(() => ctx.peers.send(nodeId('n1'), 250, new Uint8Array(1)), /to its own node/);
  ctx.peers.handle(251, () => null);
  t.throws(() => ctx.peers.handle(10, () => null), /outside its opcodes/);
  t.same(sent, ['n2:250']);
  t.same(peerHandlers, [251]);
});

t.test('a group 0 snapshot from before a part existed restores that part to its initial state', async (t) => {
  // A counter part: its state is the number of entries applied.
  const counter = (): SubMachine & { n: number } => {
    const m = {
      n: 0,
      apply: () => ++m.n,
      snapshot: () => ({ n: m.n }),
      restore: (s: unknown) => { m.n = (s as { n: number }).n; },
    };
    return m;
  };
  const entry = (kind: number, index: number) => ({ index, term: 1, type: 0, data: new Uint8Array([kind]) }) as never;
  const old = new Group0StateMachine();
  const oldLocks = counter();
  old.register(EntryKind.Lock, 'locks', oldLocks);
  old.apply(entry(EntryKind.Lock, 1));
  old.apply(entry(EntryKind.Lock, 2));
  const snap = old.snapshot();

  const upgraded = new Group0StateMachine();
  const locks = counter();
  const ring = counter();
  ring.n = 0;
  upgraded.register(EntryKind.Lock, 'locks', locks);
  upgraded.register(EntryKind.CacheRing, 'cacheRing', ring);
  ring.n = 5; // state that must not survive a restore
  upgraded.restore(snap);
  t.equal(locks.n, 2, 'the part the snapshot has is restored from it');
  t.equal(ring.n, 0, 'the part it lacks gets the state it had before any entry');
});
