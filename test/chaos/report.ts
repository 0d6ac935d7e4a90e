// The readable report of a fault run: faults injected, operations by outcome,
// checker counts, availability during and outside faults, time to recover after
// each healed fault, every anomaly with the operations involved, and the seed line
// to replay it.

import type { BaseOp } from '../checker/history.js';
import type { ChaosResult } from './runner.js';

const s = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;
const pct = (x: number): string => (Number.isNaN(x) ? '-' : `${(x * 100).toFixed(1)}%`);

export function formatReport(r: ChaosResult): string {
  const out: string[] = [];
  out.push(`== dsync fault run: seed ${r.seed}, ${r.nodes} nodes, ${s(r.durationMs)} of load, session TTL ${r.ttlMs} ms` +
    `${r.canary === null ? '' : `, CANARY ${r.canary}`} (wall ${s(r.wallMs)})`);
  out.push(`-- faults (${r.faults.length})`);
  for (const f of r.faults) out.push(`  #${f.id} ${s(f.startMs).padStart(7)} .. ${s(f.healMs).padStart(7)}  ${f.kind.padEnd(24)} ${f.detail}`);
  const byId = new Map<number, BaseOp>(r.history.map((o) => [o.id, o]));
  for (const svc of r.services) {
    out.push(`-- ${svc.service}: operations by outcome`);
    for (const [f, c] of Object.entries(svc.opsByOutcome)) out.push(`  ${f.padEnd(10)} ok ${c.ok}  fail ${c.fail}  unknown ${c.unknown}`);
    out.push(`  checker: ${Object.entries(svc.stats).map(([k, v]) => `${k} ${v}`).join(', ')}`);
    const a = svc.availability;
    out.push(`  availability: during faults ${pct(a.okRatioDuring)} ok (${a.duringFaults.ok}/${a.duringFaults.ok + a.duringFaults.fail + a.duringFaults.unknown}),` +
      ` outside ${pct(a.okRatioOutside)} ok (${a.outsideFaults.ok}/${a.outsideFaults.ok + a.outsideFaults.fail + a.outsideFaults.unknown})`);
    out.push(`  time to recover (first ok after heal): p50 ${a.recoverMsP50 === null ? '-' : `${a.recoverMsP50.toFixed(0)} ms`},` +
      ` max ${a.recoverMsMax === null ? '-' : `${a.recoverMsMax.toFixed(0)} ms`}`);
    for (const rec of a.recoveries) {
      out.push(`    #${rec.fault} ${rec.kind.padEnd(24)} ${rec.recoverMs === null ? 'NOT RECOVERED' : `${rec.recoverMs.toFixed(0)} ms`}` +
        `${rec.overlapped ? ' (another fault began meanwhile)' : ''}`);
    }
    out.push(`  anomalies: ${svc.anomalies.length}`);
    for (const an of svc.anomalies.slice(0, 50)) {
      out.push(`  ! ${an.kind}: ${an.message}`);
      for (const id of an.ops) {
        const o = byId.get(id);
        if (o !== undefined) out.push(`      op ${id}: ${JSON.stringify(o)}`);
      }
    }
    if (svc.anomalies.length > 50) out.push(`  ... ${svc.anomalies.length - 50} more in the JSON results`);
  }
  out.push(`== ${r.anomalies === 0 ? 'no anomalies' : `${r.anomalies} ANOMALIES`}; replay: ${r.replay}`);
  return out.join('\n');
}
