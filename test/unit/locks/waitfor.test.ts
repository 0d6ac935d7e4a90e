// Checks the wait-for graph module against its naive twins: on random lock queues
// the reduced blocker sets reach exactly what the literal definition reaches, and
// the DFS cycle check agrees with brute-force transitive closure on random graphs.
// Plus hand-made graphs: cycles of length 1..3 found, DAGs (diamonds, chains) not.

import fc from 'fast-check';
import t from 'tap';
import { sessionId } from '../../../core/ids.js';
import type { SessionId } from '../../../core/ids.js';
import type { LockMode } from '../../../core/locks/commands.js';
import { blockersFull, blockersReduced, naiveReachesItself, reachesItself } from '../../../core/locks/waitfor.js';

const params = <T,>(): fc.Parameters<T> => {
  const seed = process.env['SEED'];
  return { numRuns: 500, ...(seed !== undefined ? { seed: Number(seed) } : {}) };
};

const fromEdges = (edges: [number, number][]): Map<SessionId, SessionId[]> => {
  const g = new Map<SessionId, SessionId[]>();
  for (const [a, b] of edges) {
    const out = g.get(sessionId(a)) ?? [];
    out.push(sessionId(b));
    g.set(sessionId(a), out);
  }
  return g;
};
const dfs = (g: Map<SessionId, SessionId[]>, start: number): boolean =>
  reachesItself(sessionId(start), (s, out) => {
    out.push(...(g.get(s) ?? []));
    return out;
  }, 1_000);

t.test('hand-made graphs', async (t) => {
  t.equal(dfs(fromEdges([[1, 2], [2, 1]]), 1), true, 'cycle of 2');
  t.equal(dfs(fromEdges([[1, 2], [2, 3], [3, 1]]), 2), true, 'cycle of 3');
  t.equal(dfs(fromEdges([[1, 2], [1, 3], [2, 4], [3, 4]]), 1), false, 'diamond');
  t.equal(dfs(fromEdges([[1, 2], [2, 3], [3, 2]]), 1), false, 'a cycle elsewhere does not make 1 a victim');
  t.equal(dfs(fromEdges([[1, 2], [2, 3], [3, 2]]), 1), naiveReachesItself(sessionId(1), fromEdges([[1, 2], [2, 3], [3, 2]])));
});

t.test('DFS cycle check agrees with the brute-force closure', async (t) => {
  const edge = fc.tuple(fc.integer({ min: 1, max: 7 }), fc.integer({ min: 1, max: 7 }));
  const r = fc.check(
    fc.property(fc.array(edge, { maxLength: 20 }), fc.integer({ min: 1, max: 7 }), (edges, start) => {
      const g = fromEdges(edges);
      return dfs(g, start) === naiveReachesItself(sessionId(start), g);
    }),
    params(),
  );
  t.equal(r.failed, false, fc.defaultReportMessage(r) ?? `seed ${r.seed}`);
});

t.test('reduced blockers reach exactly what the literal definition reaches', async (t) => {
  const mode = fc.constantFrom<LockMode>('shared', 'exclusive');
  // Holders: sessions 1..3 (valid set: one exclusive or all shared); waiters: 4..9 (+ maybe an upgrading holder first).
  const queue = fc.record({
    holderModes: fc.oneof(fc.constant<LockMode[]>(['exclusive']), fc.array(fc.constant<LockMode>('shared'), { maxLength: 3 })),
    waiterModes: fc.array(mode, { minLength: 1, maxLength: 6 }),
    upgrade: fc.boolean(),
  });
  const r = fc.check(
    fc.property(queue, ({ holderModes, waiterModes, upgrade }) => {
      const holders = holderModes.map((m, i) => ({ session: sessionId(i + 1), mode: m }));
      const waiters = waiterModes.map((m, i) => ({ session: sessionId(i + 4), mode: m }));
      if (upgrade && holders[0]?.mode === 'shared') waiters.unshift({ session: sessionId(1), mode: 'exclusive' });
      const reach = (edgesOf: (s: SessionId) => SessionId[]): Map<SessionId, Set<SessionId>> => {
        const g = new Map<SessionId, SessionId[]>();
        for (const w of waiters) g.set(w.session, edgesOf(w.session));
        const out = new Map<SessionId, Set<SessionId>>();
        for (const w of waiters) {
          const seen = new Set<SessionId>();
          const stack = [...(g.get(w.session) ?? [])];
          while (stack.length > 0) {
            const s = stack.pop() as SessionId;
            if (seen.has(s)) continue;
            seen.add(s);
            stack.push(...(g.get(s) ?? []));
          }
          out.set(w.session, seen);
        }
        return out;
      };
      const full = reach((s) => blockersFull(holders, waiters, s));
      const reduced = reach((s) => blockersReduced(holders, waiters, s, []));
      for (const w of waiters) {
        const a = [...(full.get(w.session) ?? [])].sort();
        const b = [...(reduced.get(w.session) ?? [])].sort();
        if (JSON.stringify(a) !== JSON.stringify(b)) return false;
        // And the reduced set is a subset of the literal one.
        const lit = new Set(blockersFull(holders, waiters, w.session));
        if (!blockersReduced(holders, waiters, w.session, []).every((x) => lit.has(x))) return false;
      }
      return true;
    }),
    params(),
  );
  t.equal(r.failed, false, fc.defaultReportMessage(r) ?? `seed ${r.seed}`);
});
