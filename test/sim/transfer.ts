// Leadership transfer under message loss: a seeded run in which an operator
// repeatedly asks the leader to hand over to another voter - up to date, or made
// to lag first by a short isolation - while clients keep writing. Checked, on top
// of the simulator's Raft invariants (one leader per term, nothing committed lost):
// - transfer-refuse: a proposal right after transferLeadership() is refused with
//   'transferring' (or 'not-leader' once the leader stepped down), never accepted;
// - transfer-stuck: within one election timeout of the leader's clock (plus
//   message slack) the target leads or the leader no longer refuses proposals
//   with 'transferring' (aborted) or stepped down;
// - liveness after heal: every client write applied on every replica.

import { Xoshiro128 } from '../../core/prng.js';
import type { ProposeOutcome } from '../../core/raft/types.js';
import { Role } from '../../core/raft/types.js';
import { Cluster } from './cluster.js';
import type { ClusterOptions, RaftFactory } from './cluster.js';
import { failureOf, seedOutcome } from './common.js';
import type { SeedOutcome } from './common.js';
import { RetryingClient, startClient } from './membership.js';
import { healAll, profileFor } from './swarm.js';
import type { FaultState } from './swarm.js';

export interface TransferOptions {
  readonly raftFactory: RaftFactory;
  readonly transfers?: number;
  readonly trace?: boolean;
  readonly clusterOverrides?: Partial<ClusterOptions>;
}

export interface TransferResult extends SeedOutcome {
  readonly counts: { started: number; lagging: number; completed: number; aborted: number; steppedDown: number; refusedTransferring: number };
}

export function runTransferSeed(seed: number, opts: TransferOptions): TransferResult {
  const profiled = profileFor(seed, opts.raftFactory, 'correct');
  const p = new Xoshiro128(seed ^ 0x7f7f1234);
  const dropProb = [0.01, 0.05, 0.15][p.int(0, 2)] as number;
  const clusterOpts: ClusterOptions = {
    ...profiled.cluster,
    network: { ...profiled.cluster.network, dropProb },
    ...opts.clusterOverrides,
  };
  const c = new Cluster(clusterOpts);
  c.traceEnabled = opts.trace === true;
  const electionMs = clusterOpts.electionTicks * clusterOpts.tickMs;
  const faults: FaultState = { on: true, keepDown: new Set() };
  const clients: RetryingClient[] = [];
  for (let i = 0; i < 2; i++) {
    const client = new RetryingClient(c, `c${i}`, p, 1_000_000, 4 * electionMs);
    clients.push(client);
    startClient(c, p, client);
  }
  const counts = { started: 0, lagging: 0, completed: 0, aborted: 0, steppedDown: 0, refusedTransferring: 0 };
  const profile = `nodes=${clusterOpts.nodeCount} preVote=${clusterOpts.preVote} checkQuorum=${clusterOpts.checkQuorum} drop=${dropProb} delay<=${clusterOpts.network.delayMsMax}ms skew=${clusterOpts.tickSkew}`;
  const result = (property: string, error: string): TransferResult => ({
    ...seedOutcome(seed, property, error, profile, c),
    counts,
  });
  let probeSeq = 0;
  const probe = (idx: number): ProposeOutcome | null => c.proposeNow(idx, `probe-${probeSeq++}`);
  try {
    const transfers = opts.transfers ?? 8;
    for (let k = 0; k < transfers; k++) {
      if (!c.runUntil(() => c.stableLeader() !== null, 30 * electionMs)) return result('liveness', `no stable leader before transfer ${k}`);
      const leader = c.stableLeader();
      if (leader === null || leader.raft === null) continue;
      const others = c.nodes.filter((n) => n.idx !== leader.idx);
      const target = others[p.int(0, others.length - 1)];
      if (target === undefined) continue;
      if (p.next() < 0.5) {
        // Make the target lag: cut it off while writes commit without it.
        counts.lagging++;
        c.isolate(target.idx);
        c.runMs(p.int(electionMs / 2, 3 * electionMs));
        c.reconnect(target.idx);
        const l = c.leader();
        if (l === null || l.idx !== leader.idx) continue; // leadership moved on its own
      }
      const startTerm = c.term(leader.idx);
      counts.started++;
      c.transferLeadership(leader.idx, target.id);
      const first = probe(leader.idx);
      if (first !== null && first.ok) {
        return result('transfer-refuse', `${leader.id} accepted a proposal at ${first.index} right after transferLeadership(${target.id})`);
      }
      if (first !== null && !first.ok && first.reason === 'transferring') counts.refusedTransferring++;
      const deadlineMs = c.nowMs + clusterOpts.electionTicks * leader.tickIntervalMs + 2 * leader.tickIntervalMs + 2 * clusterOpts.network.delayMsMax + clusterOpts.fsyncMsMax;
      let outcome = '';
      while (outcome === '') {
        const st = target.raft?.status();
        if (st !== undefined && st.role === Role.Leader && st.term > startTerm) {
          outcome = 'completed';
          break;
        }
        const out = probe(leader.idx);
        if (out === null || (!out.ok && out.reason === 'not-leader')) {
          // Stepped down: usually for the target's election, which may still be under way.
          const won = c.runUntil(() => {
            const t = target.raft?.status();
            return t !== undefined && t.role === Role.Leader && t.term > startTerm;
          }, Math.max(0, deadlineMs - c.nowMs));
          outcome = won ? 'completed' : 'steppedDown';
        }
        else if (out.ok) outcome = 'aborted';
        else if (out.reason === 'transferring' && c.nowMs > deadlineMs) {
          return result('transfer-stuck', `${leader.id} still transferring to ${target.id} ${c.nowMs - deadlineMs}ms past one election timeout`);
        } else c.runMs(clusterOpts.tickMs);
      }
      counts[outcome as 'completed' | 'aborted' | 'steppedDown']++;
      c.note(`transfer ${leader.id} -> ${target.id}: ${outcome}`);
      c.runMs(p.int(0, 2 * electionMs));
    }
    healAll(c, faults);
    for (const cl of clients) cl.budget = 0;
    const converged = (): boolean => {
      if (!clients.every((cl) => cl.done)) return false;
      const applied = c.nodes[0]?.sm.appliedIndex ?? -1;
      const payloads = clients.flatMap((cl) => cl.issued);
      return c.nodes.every((n) => n.raft !== null && n.sm.appliedIndex === applied && payloads.every((x) => n.sm.seen.has(x)));
    };
    if (!c.runUntil(converged, 20_000)) return result('liveness', `not converged after the transfers: ${clients.map((cl) => cl.describe()).join('; ')}`);
    return result('', '');
  } catch (err) {
    const failure = failureOf(err);
    return result(failure.property, failure.error);
  }
}
