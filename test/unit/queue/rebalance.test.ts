// Checks partition moves (core/queue/rebalance.ts and the move/settle commands of
// core/queue/topics.ts), table-driven:
// - planMoves: a current placement and the voters (some down) give the moves to propose:
//   a joining node gets replicas until every count is within one of the mean, replicas on departed
//   or down nodes are rebuilt on spare nodes (none when there is no spare), moves under
//   way count against the bound, a partition never moves back to a node it left;
// - nextMoveStep: a group's configuration and progress give the next membership step
//   (learner, promote once caught up, remove, hand leadership over before removing the
//   leader), and steps that would leave fewer live voters than a quorum wait;
// - the topic table: a move is a compare and set on the epoch, hosts cover both replica
//   sets until the settle, the settle retires the nodes left, and a snapshot round trip
//   (and a snapshot from before moves existed) keeps all of it;
// - a walk: applying planned moves and steps to a model of the groups until nothing is
//   left ends with every group's voters equal to its placement and counts within one of the mean.

import t from 'tap';
import type { NodeId } from '../../../core/ids.js';
import { type GroupView, type MoveStep, nextMoveStep, planMoves, type PlannedMove } from '../../../core/queue/rebalance.js';
import { isMoving, type TopicRecord, TopicTable, type TopicTableSnapshot } from '../../../core/queue/topics.js';

const ids = (...xs: string[]): NodeId[] => xs as NodeId[];
const nd = (x: string): NodeId => x as NodeId;

/** A topic record with the given placements, settled (hosts = placement) unless `hosts` says otherwise. */
function topic(name: string, placement: string[][], extra: { hosts?: string[][]; retired?: string[][]; epochs?: number[] } = {}): TopicRecord {
  const p = placement.map((r) => ids(...r));
  return {
    name, id: 1, partitions: p.length, replicas: p[0]?.length ?? 0, maxDeliveries: 5, ackDeadlineMs: 30_000,
    retention: { maxAgeMs: 0, maxBytes: 0, dropUnacked: false }, deadLetterTopic: '', placement: p, createdIndex: 1,
    epochs: extra.epochs ?? p.map(() => 0), hosts: extra.hosts?.map((r) => ids(...r)) ?? p.map((r) => [...r].sort()), origin: p.map((r) => [...r].sort()),
    retired: extra.retired?.map((r) => ids(...r)) ?? p.map(() => []),
  };
}

const summary = (moves: readonly PlannedMove[]): string[] => moves.map((m) => `${m.topic}/${m.partition}@${m.epoch} -> ${m.replicas.join(',')} (${m.reason})`);

t.test('planMoves (table)', async (t) => {
  const three = [['a', 'b', 'c'], ['b', 'c', 'a'], ['c', 'a', 'b'], ['a', 'b', 'c']];
  const cases: { what: string; topics: TopicRecord[]; voters: string[]; down?: string[]; movesMax?: number; want: string[] }[] = [
    { what: 'balanced: nothing', topics: [topic('t', three)], voters: ['a', 'b', 'c'], want: [] },
    {
      what: 'a fourth node joins: replicas move to it, one per partition, until every count is within one of the mean',
      topics: [topic('t', three)], voters: ['a', 'b', 'c', 'd'],
      // loads a4 b4 c4 d0, mean 3 -> a3 b4 c3 d2: from the most loaded (ties: the last id) to d, in its position
      want: ['t/0@0 -> a,b,d (balance)', 't/1@0 -> d,c,a (balance)'],
    },
    {
      what: 'the bound counts moves already under way',
      topics: [topic('t', three, { hosts: [['a', 'b', 'c', 'd'], ['a', 'b', 'c'], ['a', 'b', 'c'], ['a', 'b', 'c']], epochs: [1, 0, 0, 0] })],
      voters: ['a', 'b', 'c', 'd'], movesMax: 2, want: ['t/1@0 -> b,d,a (balance)'],
    },
    {
      what: 'counts within one of the mean (as the ring places a new topic): nothing',
      topics: [topic('t', [['a', 'b', 'c'], ['a', 'b', 'd'], ['a', 'c', 'd'], ['b', 'c', 'e']])], voters: ['a', 'b', 'c', 'd', 'e'], want: [],
    },
    {
      what: 'a departed node (no longer a voter) is replaced by the spare',
      topics: [topic('t', [['a', 'b', 'c'], ['b', 'c', 'e']])], voters: ['a', 'b', 'c', 'd'],
      want: ['t/1@0 -> b,c,d (repair)'],
    },
    {
      what: 'a down node is replaced, in place (it was the preferred leader: the spare is now)',
      topics: [topic('t', [['c', 'a', 'b'], ['a', 'b', 'd']])], voters: ['a', 'b', 'c', 'd'], down: ['c'],
      want: ['t/0@0 -> d,a,b (repair)'],
    },
    {
      what: 'a down node with no spare: nothing can be rebuilt',
      topics: [topic('t', three)], voters: ['a', 'b', 'c'], down: ['c'], want: [],
    },
    {
      what: 'two replicas down: both replaced in one move',
      topics: [topic('t', [['a', 'b', 'c']])], voters: ['a', 'b', 'c', 'd', 'e'], down: ['b', 'c'],
      want: ['t/0@0 -> a,d,e (repair)'],
    },
    {
      what: 'never back to a node the partition left (retired)',
      topics: [topic('t', [['a', 'b', 'c'], ['a', 'b', 'c'], ['a', 'b', 'c'], ['a', 'b', 'c']], { retired: [['d'], ['d'], ['d'], []] })],
      voters: ['a', 'b', 'c', 'd'], want: ['t/3@0 -> a,b,d (balance)'],
    },
    {
      what: 'a move under way whose new node died is re-aimed (repair), hosts kept',
      topics: [topic('t', [['d', 'b', 'c']], { hosts: [['a', 'b', 'c', 'd']], epochs: [3] })], voters: ['a', 'b', 'c', 'd', 'e'], down: ['d'],
      want: ['t/0@3 -> e,b,c (repair)'],
    },
    {
      what: 'a move under way is not moved again for balance',
      topics: [topic('t', [['d', 'b', 'c']], { hosts: [['a', 'b', 'c', 'd']], epochs: [1] })], voters: ['a', 'b', 'c', 'd', 'e'], want: [],
    },
    {
      what: 'a node the partition is still leaving is no spare',
      topics: [topic('t', [['d', 'b', 'c'], ['a', 'b', 'c']], { hosts: [['a', 'b', 'c', 'd'], ['a', 'b', 'c']], epochs: [1, 0] })],
      voters: ['a', 'b', 'c', 'd'], down: ['b'],
      // p0's only live candidate, a, is still in its group (hosts): no spare; p1 gets d.
      want: ['t/1@0 -> a,d,c (repair)'],
    },
  ];
  for (const c of cases) {
    const moves = planMoves({ topics: c.topics, voters: ids(...c.voters), down: new Set(ids(...(c.down ?? []))), movesMax: c.movesMax ?? 4, retiredMax: 64 });
    t.same(summary(moves), c.want, c.what);
  }
});

t.test('planMoves is bounded and converges: a joining node ends within one replica of the mean', async (t) => {
  const placement = Array.from({ length: 16 }, (_, p) => [['a', 'b', 'c'], ['b', 'c', 'a'], ['c', 'a', 'b']][p % 3] as string[]);
  let tp = topic('t', placement);
  let rounds = 0;
  for (;;) {
    const moves = planMoves({ topics: [tp], voters: ids('a', 'b', 'c', 'd'), down: new Set(), movesMax: 3, retiredMax: 64 });
    if (moves.length === 0) break;
    t.ok(moves.length <= 3, `round ${rounds}: at most the bound (${moves.length})`);
    // Apply and settle each move at once (the walk test below goes step by step).
    for (const m of moves) {
      const placementNow = tp.placement.map((r, i) => (i === m.partition ? [...m.replicas] : r));
      tp = { ...tp, placement: placementNow, hosts: placementNow.map((r) => [...r].sort()), epochs: tp.epochs.map((e, i) => (i === m.partition ? e + 1 : e)) };
    }
    rounds++;
    if (rounds > 20) break;
  }
  const load = new Map<string, number>();
  for (const r of tp.placement) for (const n of r) load.set(n, (load.get(n) ?? 0) + 1);
  const counts = [...load.values()];
  t.ok(counts.every((n) => Math.abs(n - 12) <= 1), `every count within one of the mean (12): ${JSON.stringify([...load])}`);
  t.ok((load.get('d') ?? 0) >= 11, `the new node took its share (${load.get('d')})`);
  t.ok(rounds <= 5, `converged in ${rounds} rounds`);
});

const view = (v: string[], l: string[], match: Record<string, number>, live: string[], last = 100, self = 'a'): GroupView => ({
  self: self as NodeId, voters: ids(...v), learners: ids(...l), lastIndex: last,
  match: new Map(Object.entries(match) as [NodeId, number][]), live: new Set(ids(...live)),
});

t.test('nextMoveStep (table)', async (t) => {
  const cases: { what: string; g: GroupView; wanted: string[]; want: MoveStep }[] = [
    { what: 'at the placement: settled', g: view(['a', 'b', 'c'], [], {}, ['a', 'b', 'c']), wanted: ['a', 'b', 'c'], want: { kind: 'settled' } },
    { what: 'a wanted node missing: add it as a learner', g: view(['a', 'b', 'c'], [], {}, ['a', 'b', 'c']), wanted: ['d', 'b', 'c'],
      want: { kind: 'addLearner', node: nd('d') } },
    { what: 'the learner lags: wait', g: view(['a', 'b', 'c'], ['d'], { d: 10 }, ['a', 'b', 'c', 'd']), wanted: ['d', 'b', 'c'],
      want: { kind: 'wait', why: 'learner d is catching up' } },
    { what: 'the learner caught up: promote', g: view(['a', 'b', 'c'], ['d'], { d: 98 }, ['a', 'b', 'c', 'd']), wanted: ['d', 'b', 'c'],
      want: { kind: 'promote', node: nd('d') } },
    { what: 'a caught-up learner that is not heard: wait (not live)', g: view(['a', 'b', 'c'], ['d'], { d: 100 }, ['a', 'b', 'c']), wanted: ['d', 'b', 'c'],
      want: { kind: 'wait', why: 'learner d is catching up' } },
    { what: 'every wanted node a voter: remove the other (the leader hands over first)', g: view(['a', 'b', 'c', 'd'], [], { b: 100, c: 100, d: 100 }, ['a', 'b', 'c', 'd']),
      wanted: ['d', 'b', 'c'], want: { kind: 'transferLeadership', to: nd('d') } },
    { what: 'remove a follower that is not wanted', g: view(['a', 'b', 'c', 'd'], [], {}, ['a', 'b', 'c', 'd']), wanted: ['a', 'b', 'd'],
      want: { kind: 'remove', node: nd('c') } },
    { what: 'a dead extra voter is removed first', g: view(['a', 'b', 'c', 'd', 'e'], [], {}, ['a', 'b', 'd', 'e']), wanted: ['a', 'd', 'e'],
      want: { kind: 'remove', node: nd('c') } },
    { what: 'an unwanted learner (a re-aimed move) is removed', g: view(['a', 'b', 'c'], ['d'], { d: 5 }, ['a', 'b', 'c']), wanted: ['e', 'b', 'c'],
      want: { kind: 'remove', node: nd('d') } },
    { what: 'promoting would leave too few live voters: wait', g: view(['a', 'b', 'c'], ['d'], { d: 100 }, ['a', 'd']), wanted: ['a', 'b', 'd'],
      want: { kind: 'wait', why: 'promoting d would leave too few live voters' } },
    { what: 'removing a live voter would lose the quorum (another is down): wait',
      g: view(['a', 'b', 'c', 'd'], [], {}, ['a', 'c']), wanted: ['a', 'b', 'd'], want: { kind: 'wait', why: 'removing c would leave too few live voters' } },
    { what: 'the leader leaving with no caught-up wanted voter: wait', g: view(['a', 'b', 'c', 'd'], [], { b: 1, c: 1, d: 1 }, ['a', 'b', 'c', 'd']),
      wanted: ['d', 'b', 'c'], want: { kind: 'wait', why: 'no caught-up wanted voter to hand leadership to' } },
  ];
  for (const c of cases) t.same(nextMoveStep(c.g, ids(...c.wanted), 8), c.want, c.what);
});

t.test('topic table: move and settle are compare and set on the epoch; hosts, retired and snapshots', async (t) => {
  const table = new TopicTable(() => 7);
  const created = table.apply({ kind: 'create', spec: { name: 'q', partitions: 2, replicas: 3 } }, ids('a', 'b', 'c'), 5);
  t.equal(created.kind, 'created');
  const before = table.get('q') as TopicRecord;
  t.same(before.epochs, [0, 0]);
  t.same(before.hosts, before.placement.map((r) => [...r].sort()), 'hosts start as the placement');
  t.same(before.origin, before.hosts, 'origin is the first placement');
  const old = before.placement[0] as NodeId[];
  const target = [...old.slice(0, 2), 'd' as NodeId];
  t.match(table.apply({ kind: 'move', name: 'q', partition: 0, epoch: 1, replicas: target }, [], 6), { kind: 'error', code: 'STALE_REQUEST' }, 'wrong epoch');
  t.match(table.apply({ kind: 'move', name: 'q', partition: 0, epoch: 0, replicas: ids('a', 'a', 'd') }, [], 6), { kind: 'error', code: 'BAD_REQUEST' }, 'a node twice');
  t.match(table.apply({ kind: 'move', name: 'q', partition: 0, epoch: 0, replicas: ids('a', 'd') }, [], 6), { kind: 'error', code: 'BAD_REQUEST' }, 'fewer replicas');
  t.match(table.apply({ kind: 'move', name: 'q', partition: 2, epoch: 0, replicas: target }, [], 6), { kind: 'error', code: 'BAD_REQUEST' }, 'no such partition');
  t.match(table.apply({ kind: 'settle', name: 'q', partition: 0, epoch: 0 }, [], 6), { kind: 'error', code: 'STALE_REQUEST' }, 'nothing to settle');
  t.equal(table.apply({ kind: 'move', name: 'q', partition: 0, epoch: 0, replicas: target }, [], 7).kind, 'moved');
  const moving = table.get('q') as TopicRecord;
  t.same(moving.placement[0], target);
  t.equal(moving.epochs[0], 1);
  t.same(moving.hosts[0], [...new Set([...old, 'd'])].sort(), 'hosts: both sets until the settle');
  t.ok(isMoving(moving, 0) && !isMoving(moving, 1));
  t.same(moving.origin, before.origin, 'origin never changes');
  t.match(table.apply({ kind: 'move', name: 'q', partition: 0, epoch: 0, replicas: target }, [], 8), { kind: 'error', code: 'STALE_REQUEST' }, 'the same move twice: refused');
  t.match(table.apply({ kind: 'settle', name: 'q', partition: 0, epoch: 0 }, [], 8), { kind: 'error', code: 'STALE_REQUEST' }, 'a settle of an older epoch');
  // A snapshot taken mid-move restores the move.
  const mid: TopicTableSnapshot = JSON.parse(JSON.stringify(table.toSnapshot())) as TopicTableSnapshot;
  t.equal(table.apply({ kind: 'settle', name: 'q', partition: 0, epoch: 1 }, [], 9).kind, 'settled');
  const settled = table.get('q') as TopicRecord;
  t.same(settled.hosts[0], [...target].sort(), 'hosts shrink to the placement');
  t.same(settled.retired[0], [old[2]], 'the node left is retired');
  t.match(table.apply({ kind: 'move', name: 'q', partition: 0, epoch: 1, replicas: [...target.slice(0, 2), old[2] as NodeId] }, [], 10),
    { kind: 'error', code: 'BAD_REQUEST' }, 'never back to a node it left');
  const copy = new TopicTable(() => 7);
  copy.restore(mid);
  t.same(copy.get('q'), moving, 'a snapshot round trip keeps the move under way');
  // A snapshot from before moves existed: epochs, hosts, origin, retired come from the placement.
  const legacy = JSON.parse(JSON.stringify(new TopicTable(() => 7).toSnapshot())) as { nextId: number; topics: unknown[] };
  const { epochs: _e, hosts: _h, origin: _o, retired: _r, ...bare } = before;
  legacy.topics.push(bare);
  legacy.nextId = 3;
  const upgraded = new TopicTable(() => 7);
  upgraded.restore(legacy as unknown as TopicTableSnapshot);
  t.same(upgraded.get('q'), before, 'an old snapshot restores as if no move ever happened');
});

/** A model of each partition group's configuration, stepped as the service steps it (every learner caught up at once, every node live). */
t.test('walk: planned moves and their steps end with every group at its placement, counts balanced', async (t) => {
  const table = new TopicTable(() => 7);
  table.apply({ kind: 'create', spec: { name: 'w', partitions: 6, replicas: 3 } }, ids('a', 'b', 'c'), 1);
  const confs = new Map<string, { voters: NodeId[]; learners: NodeId[] }>();
  for (const tp of table.list()) tp.placement.forEach((r, p) => confs.set(`${tp.name}/${p}`, { voters: [...r].sort(), learners: [] }));
  let voters = ids('a', 'b', 'c', 'd');
  let steps = 0;
  for (let round = 0; round < 1000; round++) {
    if (round === 60) voters = ids('b', 'c', 'd', 'e'); // a leaves, e joins
    for (const m of planMoves({ topics: table.list(), voters, down: new Set(), movesMax: 2, retiredMax: 64 })) {
      table.apply({ kind: 'move', name: m.topic, partition: m.partition, epoch: m.epoch, replicas: m.replicas }, voters, round);
    }
    let busy = false;
    for (const tp of table.list()) {
      tp.placement.forEach((wanted, p) => {
        const conf = confs.get(`${tp.name}/${p}`) as { voters: NodeId[]; learners: NodeId[] };
        const leader = conf.voters.find((v) => voters.includes(v)) ?? (conf.voters[0] as NodeId);
        const members = [...conf.voters, ...conf.learners];
        const step = nextMoveStep({ self: leader, voters: conf.voters, learners: conf.learners, lastIndex: 10,
          match: new Map(members.map((m) => [m, 10])), live: new Set(members) }, wanted, 0);
        const quorumBefore = conf.voters.length;
        switch (step.kind) {
          case 'addLearner': conf.learners = [...conf.learners, step.node].sort(); break;
          case 'promote': conf.learners = conf.learners.filter((l) => l !== step.node); conf.voters = [...conf.voters, step.node].sort(); break;
          case 'remove': conf.learners = conf.learners.filter((l) => l !== step.node); conf.voters = conf.voters.filter((v) => v !== step.node); break;
          case 'transferLeadership': conf.voters = [step.to, ...conf.voters.filter((v) => v !== step.to)]; break;
          case 'settled':
            if (isMoving(tp, p)) t.equal(table.apply({ kind: 'settle', name: tp.name, partition: p, epoch: tp.epochs[p] ?? 0 }, voters, round).kind, 'settled');
            return;
          case 'wait': break;
        }
        busy = true;
        steps++;
        t.ok(conf.voters.length >= Math.min(quorumBefore, wanted.length), 'a step never leaves fewer voters than wanted');
      });
    }
    const settledAll = table.list().every((tp) => tp.placement.every((_r, p) => !isMoving(tp, p)));
    if (round > 60 && !busy && settledAll && planMoves({ topics: table.list(), voters, down: new Set(), movesMax: 2, retiredMax: 64 }).length === 0) break;
  }
  const load = new Map<string, number>();
  for (const tp of table.list()) {
    tp.placement.forEach((wanted, p) => {
      t.same(confs.get(`${tp.name}/${p}`)?.voters.slice().sort(), [...wanted].sort(), `${tp.name}/${p}: voters = placement`);
      t.notOk(isMoving(tp, p), `${tp.name}/${p} settled`);
      for (const n of wanted) load.set(n, (load.get(n) ?? 0) + 1);
    });
  }
  t.notOk(load.has('a'), 'nothing left on the node that left');
  const counts = [...load.values()];
  const mean = counts.reduce((a, b) => a + b, 0) / 4;
  t.ok(counts.length === 4 && counts.every((n) => n >= Math.floor(mean) - 1 && n <= Math.ceil(mean) + 1), `balanced over b c d e: ${JSON.stringify([...load])}`);
  t.ok(steps > 0, `${steps} membership steps`);
});
