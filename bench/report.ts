// `npm run bench:report`: runs every benchmark once with bounded durations (the four in
// bench/ from dist/, then any other `bench:*` script package.json has, via npm, each
// killed after its time limit), and writes docs/performance.md with tables, the machine
// it ran on (CPU, cores, kernel, Node, load average before and after) and SVG charts in
// docs/performance/ drawn with plain strings (throughput; latency percentiles per
// operation next to the loopback and fsync floors measured in the same run).

import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem, type as osType } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const resultsDir = join(repoRoot, 'bench', 'results');
const docPath = join(repoRoot, 'docs', 'performance.md');
const chartDir = join(repoRoot, 'docs', 'performance');

/** Per-benchmark wall-clock limits: the whole report stays under ~5 minutes. */
const builtinTimeoutMs = 90_000;
const extraScriptTimeoutMs = 120_000;
/** How a bench:* script in package.json starts when it builds first. */
const buildPrefix = 'npm run build && ';
/** Output lines of an extra bench:* script kept in the report. */
const extraOutputLinesMax = 40;

interface Step {
  readonly name: string;
  readonly argv: readonly string[];
  readonly env: Record<string, string>;
  readonly timeoutMs: number;
}

const node = process.execPath;
const builtins: readonly Step[] = [
  { name: 'ping', argv: [node, join(repoRoot, 'dist/bench/ping.js')], env: { BENCH_DURATION_MS: '5000', BENCH_WARMUP_MS: '1000' }, timeoutMs: builtinTimeoutMs },
  { name: 'wal', argv: [node, join(repoRoot, 'dist/bench/wal.js'), '--seconds', '3'], env: {}, timeoutMs: builtinTimeoutMs },
  { name: 'raft', argv: [node, join(repoRoot, 'dist/bench/raft.js')], env: { RAFT_BENCH_SECONDS: '8', RAFT_BENCH_WARMUP_SECONDS: '1' }, timeoutMs: builtinTimeoutMs },
  { name: 'locks', argv: [node, join(repoRoot, 'dist/bench/locks.js')], env: { LOCKS_BENCH_SECONDS: '8', LOCKS_BENCH_WARMUP_SECONDS: '1' }, timeoutMs: builtinTimeoutMs },
];
/** bench:* scripts the built-in steps already cover (and this report itself). */
const coveredScripts = new Set(['bench:ping', 'bench:wal', 'bench:raft', 'bench:locks', 'bench:report']);

interface StepRun {
  readonly name: string;
  readonly code: number | null;
  readonly timedOut: boolean;
  readonly seconds: number;
  readonly stdout: string;
  readonly stderr: string;
}

function run(step: Step): Promise<StepRun> {
  const t0 = performance.now();
  return new Promise((resolveRun) => {
    const child = spawn(step.argv[0] ?? node, step.argv.slice(1), { cwd: repoRoot, env: { ...process.env, ...step.env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s; process.stdout.write(s); });
    child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      // The benchmark's own process group: its nodes go with it.
      if (child.pid !== undefined) { try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ } }
    }, step.timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolveRun({ name: step.name, code, timedOut, seconds: (performance.now() - t0) / 1000, stdout, stderr });
    });
  });
}

function readJson(name: string): unknown {
  try {
    return JSON.parse(readFileSync(join(resultsDir, `${name}.json`), 'utf8'));
  } catch {
    return null;
  }
}

// ---- the results' shapes (as bench/*.ts write them) ----

interface Pct { p50: number; p99: number; p999?: number; max?: number; mean?: number }
interface PingJson { dsync: { opsPerSec: number; latencyUs: Pct; connections: number; depth: number; frameBytes: number }; echo: { opsPerSec: number; latencyUs: Pct }; ratio: number }
interface WalJson { entryBytes: number; rawWriteFdatasyncMs: Pct; serialAppendDurableMs: Pct;
  pipelined: { groups: number; appendsPerSec: number; fsyncsPerSec: number; appendsPerFsync: number; mbPerSec: number; workerFsyncMeanMs: number } }
interface RaftJson { proposalsPerSec: number; commitLatencyMs: Pct; proposalsPerLeaderFsync: number; errors: number;
  config: { proposers: number; depthPerProposer: number; payloadBytes: number };
  floor: { fdatasync4KiBMs: { p50Ms: number; p99Ms: number; meanMs: number }; loopbackPingMs: { p50Ms: number; p99Ms: number } } }
interface LocksJson { config: { clients: number; names: number }; scenarios: { scenario: string; description: string; opsPerSec: number; opsUnit: string;
  acquireLatencyMs: Pct; errors: number; entriesPerLeaderFsync: number }[] }

/** An operation's latency for the table and the chart, in milliseconds. */
interface LatencyRow { readonly op: string; readonly p50: number; readonly p99: number; readonly p999: number | null; readonly floor: boolean }
interface ThroughputRow { readonly op: string; readonly perSec: number; readonly unit: string; readonly floor: boolean }

// ---- SVG, as plain strings ----

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function fmt(v: number): string {
  if (v >= 1000) return Math.round(v).toLocaleString('en-US');
  if (v >= 10) return v.toFixed(0);
  if (v >= 1) return v.toFixed(2);
  return v.toFixed(3);
}

/**
 * Horizontal bars on a log10 axis (values span several decades: a loopback round trip
 * and a lock hand-over). Each row has one bar per series; floors are drawn hatched grey.
 */
function barChartSvg(title: string, unit: string, rows: readonly { label: string; values: readonly (number | null)[]; floor: boolean }[],
  series: readonly { name: string; color: string }[]): string {
  const labelW = 250;
  const plotW = 470;
  const barH = 12;
  const rowH = series.length * barH + 10;
  const top = 44;
  const legendH = series.length > 1 ? 22 : 0;
  const axisY = top + rows.length * rowH + 4;
  const height = axisY + 24 + legendH;
  const width = labelW + plotW + 80;
  const all = rows.flatMap((r) => r.values).filter((v): v is number => v !== null && v > 0);
  const lo = Math.pow(10, Math.floor(Math.log10(Math.min(...all, 1))));
  const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(...all, lo * 10))));
  const x = (v: number): number => labelW + ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * plotW;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#d5d9e0"/><line x1="0" y1="0" x2="0" y2="6" stroke="#9aa3b0" stroke-width="2"/></pattern></defs>',
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="10" y="20" font-size="15" font-weight="bold">${esc(title)}</text>`,
    `<text x="10" y="36" fill="#555">${esc(unit)}, log scale; hatched: the floor the hardware allows, measured in the same run</text>`,
  ];
  for (let d = lo; d <= hi * 1.0001; d *= 10) {
    out.push(`<line x1="${x(d).toFixed(1)}" y1="${top - 4}" x2="${x(d).toFixed(1)}" y2="${axisY}" stroke="#e3e6eb"/>`,
      `<text x="${x(d).toFixed(1)}" y="${axisY + 16}" text-anchor="middle" fill="#555">${esc(fmt(d))}</text>`);
  }
  rows.forEach((r, i) => {
    const y0 = top + i * rowH;
    out.push(`<text x="${labelW - 8}" y="${y0 + (series.length * barH) / 2 + 4}" text-anchor="end">${esc(r.label)}</text>`);
    r.values.forEach((v, s) => {
      if (v === null || !(v > 0)) return;
      const y = y0 + s * barH;
      const color = series[s]?.color ?? '#2f6fd6';
      const w = Math.max(1, x(v) - labelW).toFixed(1);
      // A floor: the series' colour, faded, under the grey hatching.
      out.push(r.floor
        ? `<rect x="${labelW}" y="${y}" width="${w}" height="${barH - 2}" fill="${color}" fill-opacity="0.45"/><rect x="${labelW}" y="${y}" width="${w}" height="${barH - 2}" fill="url(#hatch)" fill-opacity="0.6"/>`
        : `<rect x="${labelW}" y="${y}" width="${w}" height="${barH - 2}" fill="${color}"/>`,
        `<text x="${(x(v) + 4).toFixed(1)}" y="${y + barH - 3}" font-size="10" fill="#333">${esc(fmt(v))}</text>`);
    });
  });
  if (series.length > 1) {
    series.forEach((s, i) => out.push(`<rect x="${labelW + i * 90}" y="${height - 16}" width="10" height="10" fill="${s.color}"/>`,
      `<text x="${labelW + i * 90 + 14}" y="${height - 7}" font-size="11">${esc(s.name)}</text>`));
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

// ---- markdown ----

function table(head: readonly string[], rows: readonly (readonly string[])[]): string {
  return [`| ${head.join(' | ')} |`, `| ${head.map((h, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

async function main(): Promise<void> {
  const loadBefore = loadavg();
  const startedAt = new Date();
  const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { scripts?: Record<string, string> };
  const extras: Step[] = Object.keys(pkg.scripts ?? {}).filter((s) => s.startsWith('bench:') && !coveredScripts.has(s)).sort()
    .map((s) => {
      // The build already ran (this report runs from dist/): run what follows it, not a second tsc inside the time limit.
      const command = pkg.scripts?.[s] ?? '';
      const rest = command.startsWith(buildPrefix) ? command.slice(buildPrefix.length) : null;
      return { name: s, argv: rest === null ? ['npm', 'run', '--silent', s] : ['sh', '-c', rest], env: {}, timeoutMs: extraScriptTimeoutMs };
    });
  for (const name of ['ping', 'wal', 'raft', 'locks']) rmSync(join(resultsDir, `${name}.json`), { force: true });

  const runs: StepRun[] = [];
  for (const step of [...builtins, ...extras]) {
    process.stdout.write(`\n== bench:report: ${step.name} (limit ${step.timeoutMs / 1000} s) ==\n`);
    runs.push(await run(step));
  }
  const loadAfter = loadavg();
  // wal.ts prints its JSON as the last line of stdout rather than writing a file.
  const walRun = runs.find((r) => r.name === 'wal');
  const walLine = walRun?.stdout.trim().split('\n').pop() ?? '';
  let wal: WalJson | null = null;
  try { wal = JSON.parse(walLine) as WalJson; } catch { wal = null; }
  const ping = readJson('ping') as PingJson | null;
  const raft = readJson('raft') as RaftJson | null;
  const locks = readJson('locks') as LocksJson | null;

  const throughput: ThroughputRow[] = [];
  const latency: LatencyRow[] = [];
  if (ping !== null) {
    const us = (p: Pct): Pct => ({ p50: p.p50 / 1000, p99: p.p99 / 1000, p999: (p.p999 ?? 0) / 1000 });
    throughput.push({ op: 'ping (binary protocol, one node)', perSec: ping.dsync.opsPerSec, unit: 'requests/s', floor: false },
      { op: 'raw TCP echo, same load (floor)', perSec: ping.echo.opsPerSec, unit: 'round trips/s', floor: true });
    const d = us(ping.dsync.latencyUs);
    const e = us(ping.echo.latencyUs);
    latency.push({ op: `ping under load (${ping.dsync.connections} conns x ${ping.dsync.depth})`, p50: d.p50, p99: d.p99, p999: d.p999 ?? null, floor: false },
      { op: 'raw TCP echo, same load (floor)', p50: e.p50, p99: e.p99, p999: e.p999 ?? null, floor: true });
  }
  if (raft !== null) {
    throughput.push({ op: 'Raft commit (3 nodes, journal append)', perSec: raft.proposalsPerSec, unit: 'proposals/s', floor: false });
    latency.push({ op: 'Raft commit (3 nodes)', p50: raft.commitLatencyMs.p50, p99: raft.commitLatencyMs.p99, p999: raft.commitLatencyMs.p999 ?? null, floor: false },
      { op: 'loopback ping, idle (floor)', p50: raft.floor.loopbackPingMs.p50Ms, p99: raft.floor.loopbackPingMs.p99Ms, p999: null, floor: true },
      { op: 'write + fdatasync 4 KiB (floor)', p50: raft.floor.fdatasync4KiBMs.p50Ms, p99: raft.floor.fdatasync4KiBMs.p99Ms, p999: null, floor: true });
  }
  if (locks !== null) {
    for (const s of locks.scenarios) {
      throughput.push({ op: `locks: ${s.scenario}`, perSec: s.opsPerSec, unit: s.opsUnit, floor: false });
      latency.push({ op: `lock acquire: ${s.scenario}`, p50: s.acquireLatencyMs.p50, p99: s.acquireLatencyMs.p99, p999: s.acquireLatencyMs.p999 ?? null, floor: false });
    }
  }
  if (wal !== null) {
    throughput.push({ op: `WAL appends, ${wal.pipelined.groups} groups pipelined`, perSec: wal.pipelined.appendsPerSec, unit: 'appends/s', floor: false },
      { op: 'WAL fsyncs (group commit)', perSec: wal.pipelined.fsyncsPerSec, unit: 'fsyncs/s', floor: false });
    latency.push({ op: 'WAL append -> durable, serial', p50: wal.serialAppendDurableMs.p50, p99: wal.serialAppendDurableMs.p99, p999: null, floor: false },
      { op: `write + fdatasync ${wal.entryBytes} B (floor)`, p50: wal.rawWriteFdatasyncMs.p50, p99: wal.rawWriteFdatasyncMs.p99, p999: null, floor: true });
  }

  mkdirSync(chartDir, { recursive: true });
  writeFileSync(join(chartDir, 'throughput.svg'), barChartSvg('Throughput', 'operations per second',
    throughput.map((r) => ({ label: r.op, values: [r.perSec], floor: r.floor })), [{ name: 'ops/s', color: '#2f6fd6' }]));
  writeFileSync(join(chartDir, 'latency.svg'), barChartSvg('Latency percentiles per operation', 'milliseconds',
    latency.map((r) => ({ label: r.op, values: [r.p50, r.p99, r.p999], floor: r.floor })),
    [{ name: 'p50', color: '#1f8a4c' }, { name: 'p99', color: '#b7791f' }, { name: 'p99.9', color: '#c2352b' }]));

  const cpu = cpus();
  const la = (l: number[]): string => l.map((v) => v.toFixed(2)).join(' / ');
  const lines: string[] = [
    '<!-- Generated by `npm run bench:report` (bench/report.ts); do not edit by hand: run it again. -->',
    '# dsync performance',
    '',
    `Measured ${startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC by \`npm run bench:report\`, every benchmark once with`,
    'the bounded durations below. Figures from a shared machine vary from run to run; compare a figure',
    'with its floor from the same run rather than with another machine\'s.',
    '',
    '## Machine',
    '',
    table(['machine', ''], [
      ['CPU', esc(cpu[0]?.model ?? 'unknown')],
      ['cores', String(cpu.length)],
      ['memory', `${(totalmem() / 2 ** 30).toFixed(1)} GiB`],
      ['kernel', `${osType()} ${release()}`],
      ['Node', process.version],
      ['load average (1/5/15 min) before', la(loadBefore)],
      ['load average (1/5/15 min) after', la(loadAfter)],
    ]),
    '',
    'The load average counts every process on the machine, not only the benchmark: a value near',
    'the core count before the run means the figures are lower than an idle machine would give.',
    ...(loadBefore[0] !== undefined && loadBefore[0] > cpu.length
      ? ['', `**This run was made on a busy machine** (load ${loadBefore[0].toFixed(1)} on ${cpu.length} cores before it started: other work was`,
        'running). Throughput is lower and the latency tails longer than on an idle machine; the ratios to the floors',
        'measured in the same run are the figures to compare.']
      : []),
    '',
    '## Throughput',
    '',
    '![throughput](performance/throughput.svg)',
    '',
    table(['operation', 'per second', 'unit'], throughput.map((r) => [r.op, fmt(r.perSec), r.unit])),
    '',
    '## Latency',
    '',
    '![latency percentiles](performance/latency.svg)',
    '',
    table(['operation', 'p50 ms', 'p99 ms', 'p99.9 ms'], latency.map((r) => [r.op, fmt(r.p50), fmt(r.p99), r.p999 === null ? '–' : fmt(r.p999)])),
    '',
    '## Against the floors',
    '',
  ];
  if (ping !== null) lines.push(`- The binary protocol's ping reaches **${(ping.ratio * 100).toFixed(0)}%** of a raw TCP echo's round trips/s under the same load (${ping.dsync.connections} connections x depth ${ping.dsync.depth}, ${ping.dsync.frameBytes}-byte frames).`);
  if (raft !== null) {
    lines.push(`- A Raft commit (p50 ${fmt(raft.commitLatencyMs.p50)} ms) needs at least one fdatasync on the leader and one on a follower plus a loopback round trip: the floors are ${fmt(raft.floor.fdatasync4KiBMs.p50Ms)} ms (fdatasync p50) and ${fmt(raft.floor.loopbackPingMs.p50Ms)} ms (loopback ping p50). With ${raft.config.proposers * raft.config.depthPerProposer} requests in flight, queueing alone (Little's law: in flight / throughput) predicts a mean latency of ${fmt((raft.config.proposers * raft.config.depthPerProposer / Math.max(1, raft.proposalsPerSec)) * 1000)} ms. Group commit puts **${raft.proposalsPerLeaderFsync.toFixed(1)}** proposals in each leader fsync (${raft.config.proposers} proposers x depth ${raft.config.depthPerProposer}, ${raft.config.payloadBytes}-byte entries; ${raft.errors} errors).`);
  }
  if (wal !== null) lines.push(`- The WAL commits **${fmt(wal.pipelined.appendsPerFsync)}** appends per fdatasync when ${wal.pipelined.groups} groups append at once (${fmt(wal.pipelined.mbPerSec)} MB/s, fsync mean ${fmt(wal.pipelined.workerFsyncMeanMs)} ms).`);
  if (locks !== null) for (const s of locks.scenarios) lines.push(`- Locks, ${s.scenario}: ${s.description} (${locks.config.clients} clients; ${fmt(s.entriesPerLeaderFsync)} lock entries per leader fsync; ${s.errors} errors).`);
  lines.push('', '## Runs', '', table(['benchmark', 'command', 'settings', 'seconds', 'result'], [...builtins, ...extras].map((step, i) => {
    const r = runs[i];
    const result = r === undefined ? 'not run' : r.timedOut ? `**killed after ${step.timeoutMs / 1000} s**` : r.code === 0 ? 'ok' : `**exit ${String(r.code)}**: ${esc((r.stderr.trim().split('\n').pop() ?? '').slice(0, 120))}`;
    const command = step.argv[0] === 'npm' ? `npm run ${step.name}` : step.argv[0] === 'sh' ? (step.argv[2] ?? '')
      : `node ${step.argv.slice(1).map((a) => a.replace(`${repoRoot}/`, '')).join(' ')}`;
    return [step.name, `\`${command}\``, Object.entries(step.env).map(([k, v]) => `${k}=${v}`).join(' ') || '–', r === undefined ? '–' : r.seconds.toFixed(0), result];
  })), '');
  for (const r of runs.filter((x) => extras.some((e) => e.name === x.name))) {
    lines.push(`### ${r.name}`, '', 'Its own output (the last lines):', '', '```', ...r.stdout.trim().split('\n').slice(-extraOutputLinesMax), '```', '');
  }
  lines.push('Each benchmark also prints its table and writes JSON to `bench/results/` (not committed); run one alone with',
    '`npm run bench:ping`, `bench:raft`, `bench:locks`, or `node dist/bench/wal.js`. The knobs are environment variables',
    'named at the top of each file in `bench/`.', '');
  writeFileSync(docPath, lines.join('\n'));
  process.stdout.write(`\nwrote ${docPath} and ${chartDir}/{throughput,latency}.svg (load average before ${la(loadBefore)}, after ${la(loadAfter)})\n`);
  const failed = runs.filter((r) => r.timedOut || r.code !== 0);
  if (failed.length > 0) {
    process.stderr.write(`bench:report: ${failed.map((r) => r.name).join(', ')} did not finish cleanly (see the Runs table)\n`);
    process.exitCode = 1;
  }
}

await main();
