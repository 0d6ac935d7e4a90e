// Property tests (fast-check): the quorum maths and the log's binary-search
// conflict finder agree with deliberately naive twins on random inputs; plus
// the inflight ring buffer and the conf change codec round trip.

import fc from 'fast-check';
import t from 'tap';
import { applyConfChange, decodeConfChange, encodeConfChange } from '../../../core/raft/confchange.js';
import { RaftLog } from '../../../core/raft/log.js';
import { Inflights } from '../../../core/raft/progress.js';
import { committedIndex, committedIndexNaive, voteResult, voteResultNaive } from '../../../core/raft/quorum.js';
import { ConfChangeType } from '../../../core/raft/types.js';
import type { ConfState } from '../../../core/raft/types.js';
import { nodeId } from '../../../core/ids.js';
import { ent } from './helpers.js';

const seed = process.env['SEED'] !== undefined ? Number(process.env['SEED']) : undefined;
const params = { numRuns: 500, ...(seed !== undefined ? { seed } : {}) };

t.test('committedIndex equals the naive majority scan', (t) => {
  fc.assert(
    fc.property(fc.array(fc.nat(1000), { minLength: 0, maxLength: 9 }), (matches) => {
      const got = committedIndex(Float64Array.from(matches));
      return got === committedIndexNaive(matches);
    }),
    params,
  );
  t.equal(committedIndex(Float64Array.from([5, 1, 3])), 3);
  t.equal(committedIndex(Float64Array.from([5, 1, 3, 4])), 3, '3 of 4 reached 3');
  t.end();
});

t.test('voteResult equals the naive enumeration', (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 9 }), fc.nat(9), fc.nat(9), (n, g, r) => {
      if (g + r > n) return true;
      return voteResult(n, g, r) === voteResultNaive(n, g, r);
    }),
    params,
  );
  t.end();
});

t.test('findConflictByTerm (binary search) equals a backward linear scan', (t) => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 0, maxLength: 40 }),
      fc.nat(10),
      fc.nat(60),
      fc.nat(8),
      (steps, compactAt, probeRaw, askTerm) => {
        // Non-decreasing terms starting at 1.
        let term = 1;
        const terms = steps.map((s) => (term += s));
        const log = new RaftLog(null, terms.map((tt, i) => ent(i + 1, tt)), 0);
        log.applied = log.lastIndex();
        const c = Math.min(compactAt, log.lastIndex());
        log.compact(c);
        const probe = c + (probeRaw % (log.lastIndex() - c + 1));
        const [idx, idxTerm] = log.findConflictByTerm(probe, askTerm);
        // Naive: walk back from probe.
        let want = probe;
        let wantTerm = 0;
        for (; want >= log.snapIndex; want--) {
          const tt = log.term(want);
          if (tt <= askTerm) {
            wantTerm = tt;
            break;
          }
        }
        if (want < log.snapIndex) return idx === log.snapIndex && idxTerm === 0;
        return idx === want && idxTerm === wantTerm;
      },
    ),
    params,
  );
  t.end();
});

t.test('inflights: a bounded ring that frees acknowledged messages in order', (t) => {
  const inf = new Inflights(3);
  inf.add(2);
  inf.add(5);
  inf.add(9);
  t.ok(inf.full());
  inf.freeLE(5);
  t.equal(inf.count, 1);
  inf.add(12);
  inf.add(13);
  t.ok(inf.full(), 'wraps around');
  inf.freeFirstOne();
  t.equal(inf.count, 2);
  inf.freeLE(100);
  t.equal(inf.count, 0);
  t.throws(() => {
    inf.add(20);
    inf.add(19);
  }, 'indexes must increase');
  t.end();
});

t.test('conf change codec round-trips and applies', (t) => {
  fc.assert(
    fc.property(fc.constantFrom(ConfChangeType.AddLearner, ConfChangeType.AddVoter, ConfChangeType.Remove), fc.string({ minLength: 1, maxLength: 40 }), (type, id) => {
      const cc = { type, node: nodeId(id) };
      const back = decodeConfChange(encodeConfChange(cc));
      return back.type === cc.type && back.node === cc.node && back.context === undefined;
    }),
    params,
  );
  // A context (a member's addresses) travels with the change, byte for byte.
  fc.assert(
    fc.property(fc.constantFrom(ConfChangeType.AddLearner, ConfChangeType.AddVoter, ConfChangeType.Remove), fc.string({ minLength: 1, maxLength: 40 }),
      fc.uint8Array({ minLength: 1, maxLength: 1024 }), (type, id, context) => {
        const back = decodeConfChange(encodeConfChange({ type, node: nodeId(id), context }));
        return back.type === type && back.node === id && back.context !== undefined && Buffer.from(back.context).equals(Buffer.from(context));
      }),
    params,
  );
  const a = nodeId('a');
  const b = nodeId('b');
  let conf: ConfState = { voters: [a], learners: [] };
  conf = applyConfChange(conf, { type: ConfChangeType.AddLearner, node: b });
  t.same(conf, { voters: [a], learners: [b] });
  conf = applyConfChange(conf, { type: ConfChangeType.AddVoter, node: b });
  t.same(conf, { voters: [a, b], learners: [] });
  conf = applyConfChange(conf, { type: ConfChangeType.Remove, node: a });
  t.same(conf, { voters: [b], learners: [] });
  t.same(applyConfChange(conf, { type: ConfChangeType.Remove, node: b }), conf, 'removing the last voter is refused');
  t.end();
});
