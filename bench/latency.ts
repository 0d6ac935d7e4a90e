// Latency path of one uncontended replicated append (`npm run bench:latency`): a 3-node
// cluster of child processes started with DSYNC_LATENCY_TRACE (server/node/latency-trace.ts),
// one client sending group 0 journal appends one at a time straight to the leader. Each
// node's event loop and WAL worker write step timestamps (CLOCK_MONOTONIC, comparable
// across processes); this script joins them per log index with the client's send and
// receive times and prints every step's p50 and p90 in microseconds, along the path
// client -> leader decode -> propose -> Ready -> WAL -> App sent -> follower decode ->
// follower WAL fsync -> AppResp -> leader commit -> apply -> reply -> client, plus the
// leader's own WAL write beside it and fsyncs per append on each node.
// The tracing itself costs a few microseconds per step; compare end-to-end figures with
// bench:raft at RAFT_BENCH_DEPTH=1 RAFT_BENCH_PROPOSERS=1, not with this.
//
// LATENCY_BENCH_OP=lock times the lock service instead: one client's session acquires a
// lock (one of 1,000 names) and releases it, and prints the same table for the acquires
// and for the releases (the entry of each is the leader's first group 0 proposal after
// the request was sent; the client's session keep-alives are rare enough not to matter).
//
// Env: LATENCY_BENCH_APPENDS (2000 measured; lock: pairs), LATENCY_BENCH_WARMUP_APPENDS (200),
// LATENCY_BENCH_OP (append | lock), LATENCY_BENCH_PORT_BASE (0: free ports; else 9 ports from it).

import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { routerOf } from '../client/client.js';
import { Client } from '../client/index.js';
import { Opcode } from '../protocol/frame.js';
import { schema } from '../protocol/index.js';
import { TestCluster } from '../test/integration/helpers/cluster.js';
import { waitForLeader } from '../test/integration/raft-helpers.js';
import { createCleanup, envInt, runBenchmark, runCleanup } from './common.js';

const appendsCount = envInt('LATENCY_BENCH_APPENDS', 2000, 10, 1_000_000);
const warmupCount = envInt('LATENCY_BENCH_WARMUP_APPENDS', 200, 0, 100_000);
const portBase = envInt('LATENCY_BENCH_PORT_BASE', 0, 0, 65_000);
const requestTimeoutMs = 10_000;
const payloadBytes = 64;
const op = process.env['LATENCY_BENCH_OP'] ?? 'append';
if (op !== 'append' && op !== 'lock') throw new Error(`LATENCY_BENCH_OP must be append or lock, got ${op}`);
const lockNamesCount = 1000;

interface TraceEvent {
  readonly ns: number;
  readonly step: string;
  readonly a: number;
  readonly b: string;
}

interface NodeTrace {
  readonly id: string;
  readonly main: TraceEvent[];
  readonly worker: TraceEvent[];
}

function parseTrace(text: string): TraceEvent[] {
  const out: TraceEvent[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const [ns, step, a, b] = line.split(' ');
    out.push({ ns: Number(ns), step: step ?? '', a: Number(a), b: b ?? '' });
  }
  out.sort((x, y) => x.ns - y.ns);
  return out;
}

/** Every node's event loop and WAL worker trace, by node id (the event loop's 'node' line names it). */
function readTraces(dir: string): Map<string, NodeTrace> {
  const byPid = new Map<string, { main: TraceEvent[]; worker: TraceEvent[] }>();
  for (const f of readdirSync(dir)) {
    const m = /^t-(\d+)-(\d+)\.trace$/.exec(f);
    if (m === null) continue;
    const entry = byPid.get(m[1] ?? '') ?? { main: [], worker: [] };
    byPid.set(m[1] ?? '', entry);
    const events = parseTrace(readFileSync(join(dir, f), 'utf8'));
    if (m[2] === '0') entry.main.push(...events);
    else entry.worker.push(...events);
  }
  const out = new Map<string, NodeTrace>();
  for (const { main, worker } of byPid.values()) {
    const id = main.find((e) => e.step === 'node')?.b;
    if (id === undefined) continue;
    out.set(id, { id, main, worker });
  }
  return out;
}

/** Index of the first event at or after `fromNs` that matches (binary search on time, then scan). */
function first(events: readonly TraceEvent[], fromNs: number, match: (e: TraceEvent) => boolean): TraceEvent | undefined {
  let lo = 0;
  let hi = events.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((events[mid] as TraceEvent).ns < fromNs) lo = mid + 1;
    else hi = mid;
  }
  for (let i = lo; i < events.length; i++) if (match(events[i] as TraceEvent)) return events[i];
  return undefined;
}

function last(events: readonly TraceEvent[], beforeNs: number, afterNs: number, match: (e: TraceEvent) => boolean): TraceEvent | undefined {
  let found: TraceEvent | undefined;
  for (const e of events) {
    if (e.ns > beforeNs) break;
    if (e.ns >= afterNs && match(e)) found = e;
  }
  return found;
}

/** One node's path through its WAL for the entry queued with `seq` at `fromNs`. */
function walPath(node: NodeTrace, fromNs: number, seq: number): Record<'wake' | 'batch' | 'fsyncStart' | 'fsyncEnd' | 'seen', number | undefined> {
  const wake = first(node.main, fromNs, (e) => e.step === 'walWake')?.ns;
  const end = first(node.worker, fromNs, (e) => e.step === 'fsyncEnd' && e.a >= seq);
  if (end === undefined) return { wake, batch: undefined, fsyncStart: undefined, fsyncEnd: undefined, seen: undefined };
  const start = last(node.worker, end.ns, fromNs, (e) => e.step === 'fsyncStart');
  const batch = last(node.worker, end.ns, fromNs - 1e9, (e) => e.step === 'batch');
  const seen = first(node.main, end.ns, (e) => e.step === 'durableSeen' && e.a >= seq)?.ns;
  return { wake, batch: batch?.ns, fsyncStart: start?.ns, fsyncEnd: end.ns, seen };
}

interface Sample {
  /** The entry's log index; 0: the leader's first group 0 proposal after sendNs. */
  index: number;
  readonly sendNs: number;
  readonly recvNs: number;
}

type Timeline = Record<string, number | undefined>;

/** The step timestamps of one append, or null when a step is missing from a trace (a lost tail, a leader change). */
function timeline(s: Sample, leader: NodeTrace, followers: readonly NodeTrace[]): Timeline | null {
  const L = leader.main;
  const propose = first(L, s.sendNs, (e) => e.step === 'propose' && (s.index === 0 || e.a === s.index) && e.b === '0');
  if (propose === undefined || propose.ns > s.recvNs) return null;
  const i = propose.a;
  const t: Timeline = { clientSend: s.sendNs, propose: propose.ns, clientRecv: s.recvNs };
  t['leaderFrameIn'] = last(L, propose.ns, s.sendNs, (e) => e.step === 'frameIn' && e.a === 0)?.ns;
  t['leaderReady'] = first(L, propose.ns, (e) => e.step === 'ready' && e.a === i)?.ns;
  const walQueued = first(L, propose.ns, (e) => e.step === 'walQueued' && e.a === i);
  if (walQueued === undefined) return null;
  t['leaderWalQueued'] = walQueued.ns;
  const lw = walPath(leader, walQueued.ns, Number(walQueued.b));
  t['leaderWalWake'] = lw.wake;
  t['leaderBatch'] = lw.batch;
  t['leaderFsyncStart'] = lw.fsyncStart;
  t['leaderFsyncEnd'] = lw.fsyncEnd;
  t['leaderDurableSeen'] = lw.seen;
  t['leaderFlightDone'] = first(L, walQueued.ns, (e) => e.step === 'flightDone' && e.a === i && e.b === '0')?.ns;
  const appQueued = first(L, propose.ns, (e) => e.step === 'appQueued' && e.a >= i);
  if (appQueued === undefined) return null;
  t['leaderAppQueued'] = appQueued.ns;
  const flush = first(L, appQueued.ns, (e) => e.step === 'hostFlush');
  t['leaderAppFlush'] = flush?.ns;
  t['leaderAppWrite'] = flush === undefined ? undefined : first(L, flush.ns, (e) => e.step === 'peerWrite')?.ns;
  // The follower whose AppResp reached the leader first is the one that made the commit.
  let best: { f: NodeTrace; respRecv: number } | null = null;
  for (const f of followers) {
    const r = first(L, propose.ns, (e) => e.step === 'respRecv' && e.a >= i && e.b === f.id);
    if (r !== undefined && (best === null || r.ns < best.respRecv)) best = { f, respRecv: r.ns };
  }
  if (best === null) return null;
  const F = best.f.main;
  const appRecv = first(F, propose.ns, (e) => e.step === 'appRecv' && e.a >= i);
  if (appRecv === undefined) return null;
  t['followerFrameIn'] = last(F, appRecv.ns, propose.ns, (e) => e.step === 'frameIn' && e.a === 1)?.ns;
  t['followerAppRecv'] = appRecv.ns;
  t['followerReady'] = first(F, appRecv.ns, (e) => e.step === 'ready' && e.a === i)?.ns;
  const fQueued = first(F, appRecv.ns, (e) => e.step === 'walQueued' && e.a === i);
  if (fQueued === undefined) return null;
  t['followerWalQueued'] = fQueued.ns;
  const fw = walPath(best.f, fQueued.ns, Number(fQueued.b));
  t['followerWalWake'] = fw.wake;
  t['followerBatch'] = fw.batch;
  t['followerFsyncStart'] = fw.fsyncStart;
  t['followerFsyncEnd'] = fw.fsyncEnd;
  t['followerDurableSeen'] = fw.seen;
  const fDone = first(F, fQueued.ns, (e) => e.step === 'flightDone' && e.a === i && e.b === '0');
  t['followerFlightDone'] = fDone?.ns;
  const resp = first(F, fQueued.ns, (e) => e.step === 'respQueued' && e.a >= i);
  t['followerRespQueued'] = resp?.ns;
  const fFlush = resp === undefined ? undefined : first(F, resp.ns, (e) => e.step === 'hostFlush');
  t['followerRespFlush'] = fFlush?.ns;
  t['followerRespWrite'] = fFlush === undefined ? undefined : first(F, fFlush.ns, (e) => e.step === 'peerWrite')?.ns;
  t['leaderRespFrameIn'] = last(L, best.respRecv, t['followerRespWrite'] ?? propose.ns, (e) => e.step === 'frameIn' && e.a === 1)?.ns;
  t['leaderRespRecv'] = best.respRecv;
  const apply = first(L, propose.ns, (e) => e.step === 'apply' && e.a >= i);
  t['leaderApply'] = apply?.ns;
  t['leaderReplyWrite'] = apply === undefined ? undefined : first(L, apply.ns, (e) => e.step === 'writeOut' && e.a === 0)?.ns;
  return t;
}

/** The path, as consecutive steps: [label, from, to]. */
const steps: readonly (readonly [string, string, string])[] = [
  ['client send -> leader frame decoded', 'clientSend', 'leaderFrameIn'],
  ['leader: frame -> propose (service, encode entry)', 'leaderFrameIn', 'propose'],
  ['leader: propose -> Ready taken (setImmediate)', 'propose', 'leaderReady'],
  ['leader: Ready -> entry in WAL ring', 'leaderReady', 'leaderWalQueued'],
  ['leader: ring -> App queued for peers', 'leaderWalQueued', 'leaderAppQueued'],
  ['leader: App queued -> host flush', 'leaderAppQueued', 'leaderAppFlush'],
  ['leader: host flush -> peer socket write', 'leaderAppFlush', 'leaderAppWrite'],
  ['leader socket write -> follower frame decoded', 'leaderAppWrite', 'followerFrameIn'],
  ['follower: frame -> App stepped', 'followerFrameIn', 'followerAppRecv'],
  ['follower: App -> Ready taken (setImmediate)', 'followerAppRecv', 'followerReady'],
  ['follower: Ready -> entry in WAL ring', 'followerReady', 'followerWalQueued'],
  ['follower: ring -> worker woken (microtask + notify)', 'followerWalQueued', 'followerWalWake'],
  ['follower: notify -> worker batch start', 'followerWalWake', 'followerBatch'],
  ['follower: worker write()', 'followerBatch', 'followerFsyncStart'],
  ['follower: fdatasync', 'followerFsyncStart', 'followerFsyncEnd'],
  ['follower: fsync end -> event loop sees it (waitAsync)', 'followerFsyncEnd', 'followerDurableSeen'],
  ['follower: durable seen -> flight done (promise)', 'followerDurableSeen', 'followerFlightDone'],
  ['follower: flight done -> AppResp queued', 'followerFlightDone', 'followerRespQueued'],
  ['follower: AppResp queued -> host flush', 'followerRespQueued', 'followerRespFlush'],
  ['follower: host flush -> socket write', 'followerRespFlush', 'followerRespWrite'],
  ['follower socket write -> leader frame decoded', 'followerRespWrite', 'leaderRespFrameIn'],
  ['leader: frame -> AppResp stepped', 'leaderRespFrameIn', 'leaderRespRecv'],
  ['leader: AppResp -> entry applied (commit)', 'leaderRespRecv', 'leaderApply'],
  ['leader: apply -> reply socket write (promise, setImmediate)', 'leaderApply', 'leaderReplyWrite'],
  ['leader reply write -> client has the answer', 'leaderReplyWrite', 'clientRecv'],
];

/** Beside the path: the leader's own write, which commit also waits for. */
const leaderWalSteps: readonly (readonly [string, string, string])[] = [
  ['leader: ring -> worker woken', 'leaderWalQueued', 'leaderWalWake'],
  ['leader: notify -> worker batch start', 'leaderWalWake', 'leaderBatch'],
  ['leader: fdatasync', 'leaderFsyncStart', 'leaderFsyncEnd'],
  ['leader: fsync end -> event loop sees it', 'leaderFsyncEnd', 'leaderDurableSeen'],
  ['leader: entry queued -> own flight done', 'leaderWalQueued', 'leaderFlightDone'],
  ['leader: own flight done -> AppResp stepped (<0: own disk last)', 'leaderFlightDone', 'leaderRespRecv'],
  ['total: client send -> client has the answer', 'clientSend', 'clientRecv'],
];

function quantileUs(values: number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  values.sort((a, b) => a - b);
  return (values[Math.min(values.length - 1, Math.floor(q * values.length))] as number) / 1000;
}

function printSteps(title: string, list: readonly (readonly [string, string, string])[], lines: readonly Timeline[]): void {
  console.log(`  ${title}`);
  console.log(`  ${'step'.padEnd(66)} ${'p50 us'.padStart(8)} ${'p90 us'.padStart(8)}`);
  for (const [label, from, to] of list) {
    const d: number[] = [];
    for (const t of lines) {
      const a = t[from];
      const b = t[to];
      if (a !== undefined && b !== undefined) d.push(b - a);
    }
    console.log(`  ${label.padEnd(66)} ${quantileUs([...d], 0.5).toFixed(0).padStart(8)} ${quantileUs(d, 0.9).toFixed(0).padStart(8)}`);
  }
}

async function main(): Promise<void> {
  const cleanup = createCleanup();
  const dataRoot = mkdtempSync(join(tmpdir(), 'dsync-bench-latency-'));
  const traceDir = mkdtempSync(join(tmpdir(), 'dsync-latency-trace-'));
  cleanup.teardown(() => {
    rmSync(dataRoot, { recursive: true, force: true });
    rmSync(traceDir, { recursive: true, force: true });
  });
  // The nodes inherit it; this process loaded no server module that reads it.
  process.env['DSYNC_LATENCY_TRACE'] = join(traceDir, 't');
  const samples: Sample[] = [];
  let leaderId = '';
  try {
    const ports = portBase === 0 ? undefined : Array.from({ length: 9 }, (_, i) => portBase + i);
    const cluster = await TestCluster.start(cleanup, { dataRoot, ...(ports === undefined ? {} : { ports }) });
    const control = await Client.connect({ seeds: cluster.seeds });
    cleanup.teardown(() => control.close());
    const leader = await waitForLeader(control, cluster.seeds, cluster.nodes.map((n) => n.spec.id));
    leaderId = leader.leaderId;
    const leaderNode = cluster.node(leaderId);
    const client = await Client.connect({ seeds: [leaderNode.address], name: 'bench-latency' });
    cleanup.teardown(() => client.close());
    const conn = await routerOf(client).connection(leaderNode.address);
    const payload = schema.JournalAppend.encode({ data: new Uint8Array(payloadBytes).fill(7) }).finish();
    const releases: Sample[] = [];
    for (let k = 0; k < warmupCount + appendsCount; k++) {
      if (op === 'lock') {
        const sendNs = Number(process.hrtime.bigint());
        const held = await client.lock(`latency-${k % lockNamesCount}`, { waitMs: requestTimeoutMs });
        const releaseNs = Number(process.hrtime.bigint());
        await held.release();
        const recvNs = Number(process.hrtime.bigint());
        if (k >= warmupCount) {
          samples.push({ index: 0, sendNs, recvNs: releaseNs });
          releases.push({ index: 0, sendNs: releaseNs, recvNs });
        }
        continue;
      }
      const sendNs = Number(process.hrtime.bigint());
      const reply = await conn.request(Opcode.JournalAppend, payload, requestTimeoutMs);
      const recvNs = Number(process.hrtime.bigint());
      const index = Number(schema.JournalAppendReply.decode(reply).index);
      if (k >= warmupCount) samples.push({ index, sendNs, recvNs });
    }
    // A graceful stop writes every trace out.
    await cluster.stop();
    const traces = readTraces(traceDir);
    const leaderTrace = traces.get(leaderId);
    if (leaderTrace === undefined) throw new Error(`no trace from the leader ${leaderId}`);
    const followers = [...traces.values()].filter((n) => n.id !== leaderId);
    const firstNs = samples[0]?.sendNs ?? 0;
    const lastNs = Math.max(samples[samples.length - 1]?.recvNs ?? 0, releases[releases.length - 1]?.recvNs ?? 0);
    const kinds: [string, Sample[]][] = op === 'lock' ? [['lock acquires', samples], ['lock releases', releases]] : [[`${payloadBytes}-byte journal appends`, samples]];
    for (const [what, list] of kinds) {
      const lines: Timeline[] = [];
      for (const s of list) {
        const t = timeline(s, leaderTrace, followers);
        if (t !== null) lines.push(t);
      }
      console.log(`bench:latency  3 nodes, 1 client, 1 in flight, ${what}; ${lines.length} of ${list.length} traced whole`);
      printSteps('critical path (the follower whose AppResp came first)', steps, lines);
      printSteps('beside it', leaderWalSteps, lines);
    }
    const ops = samples.length + releases.length;
    for (const n of traces.values()) {
      const fsyncs = n.worker.filter((e) => e.step === 'fsyncEnd' && e.ns >= firstNs && e.ns <= lastNs).length;
      console.log(`  ${n.id}${n.id === leaderId ? ' (leader)' : ''}: ${(fsyncs / ops).toFixed(2)} fsyncs per request`);
    }
  } finally {
    await runCleanup(cleanup);
  }
}

runBenchmark(main);
