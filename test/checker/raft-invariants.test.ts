// Unit tests of the Raft safety checker: for each property, a hand-written
// history that respects it passes and one that breaks it throws an
// InvariantViolation naming that property.

import t from 'tap';
import { InvariantViolation, RaftSafetyChecker } from '../checker/raft-invariants.js';
import type { CheckedEntry } from '../checker/raft-invariants.js';

const enc = new TextEncoder();
const e = (index: number, term: number, data = ''): CheckedEntry => ({ index, term, type: 0, data: enc.encode(data) });

function violation(fn: () => void): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof InvariantViolation) return err.property;
    throw err;
  }
  return 'none';
}

t.test('election safety', async (t) => {
  const c = new RaftSafetyChecker();
  c.onLeader('n1', 1);
  c.onLeader('n1', 1);
  c.onLeader('n2', 2);
  t.equal(violation(() => c.onLeader('n3', 2)), 'election-safety');
});

t.test('vote safety', async (t) => {
  const c = new RaftSafetyChecker();
  c.onVoteGranted('n1', 3, 'n2');
  c.onVoteGranted('n1', 3, 'n2');
  c.onVoteGranted('n1', 4, 'n3');
  t.equal(violation(() => c.onVoteGranted('n1', 3, 'n3')), 'vote-safety');
});

t.test('log matching: same index and term means same entry and same predecessor', async (t) => {
  const c = new RaftSafetyChecker();
  c.onPersistedEntry('n1', e(1, 1, 'a'), 0, 1, undefined);
  c.onPersistedEntry('n2', e(1, 1, 'a'), 0, 1, undefined);
  c.onPersistedEntry('n1', e(2, 2, 'b'), 1, 2, undefined);
  t.equal(violation(() => c.onPersistedEntry('n3', e(1, 1, 'x'), 0, 1, undefined)), 'log-matching');
  t.equal(violation(() => c.onPersistedEntry('n3', e(2, 2, 'b'), 0, 2, undefined)), 'log-matching');
});

t.test('state machine safety and committed entries never lost', async (t) => {
  const c = new RaftSafetyChecker();
  c.onCommitted('n1', e(1, 2, 'a'), 2);
  c.onCommitted('n2', e(1, 2, 'a'), 2);
  t.equal(violation(() => c.onCommitted('n3', e(1, 1, 'z'), 3)), 'state-machine-safety');
  // A replica still in term 1 may take a stale leader's entry at index 1 ...
  c.onPersistedEntry('n3', e(1, 1, 'z'), 0, 1, undefined);
  // ... but not once it reached the commit's term, nor by dropping the committed entry.
  t.equal(violation(() => c.onPersistedEntry('n3', e(1, 1, 'z'), 0, 2, undefined)), 'committed-never-lost');
  t.equal(violation(() => c.onPersistedEntry('n2', e(1, 1, 'z'), 0, 1, e(1, 2, 'a'))), 'committed-never-lost');
  t.equal(violation(() => c.onSnapshotEntry('n4', 1, 2, 'other', 5)), 'state-machine-safety');
  c.onSnapshotEntry('n4', 1, 2, 'a', 5);
});

t.test('leader completeness', async (t) => {
  const c = new RaftSafetyChecker();
  c.onCommitted('n1', e(1, 1, 'a'), 1);
  c.onCommitted('n1', e(2, 1, 'b'), 1);
  const log = [e(1, 1, 'a'), e(2, 1, 'b'), e(3, 2)];
  c.checkLeaderCompleteness('n2', 2, 0, 3, (i) => log[i - 1]);
  c.checkLeaderCompleteness('n2', 2, 2, 3, () => undefined); // both under its snapshot
  t.equal(violation(() => c.checkLeaderCompleteness('n3', 2, 0, 1, (i) => log[i - 1])), 'leader-completeness');
  const other = [e(1, 1, 'a'), e(2, 2, 'x')];
  t.equal(violation(() => c.checkLeaderCompleteness('n3', 3, 0, 2, (i) => other[i - 1])), 'leader-completeness');
  // A stale leader of the commit's own term is not bound by entries committed later.
  c.checkLeaderCompleteness('n4', 1, 0, 1, (i) => log[i - 1]);
});
