// `npm run bench:ping`: ping ops/s and p50/p99/p999 against a local dsync node
// (child process), then the same load against a minimal raw Node TCP echo of the
// same frame size (the floor), and their ratio. The goal: dsync >= 70%
// of the echo floor at 64 connections x depth 16. Writes bench/results/ping.json.
//
// Knobs (env): BENCH_DURATION_MS (10000), BENCH_WARMUP_MS (2000),
// BENCH_CONNECTIONS (64), BENCH_DEPTH (16), BENCH_FRAME_BYTES (64),
// BENCH_NODE_ARGS (extra node flags for the server children, e.g.
// "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile them under load).

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { frameOverheadBytes, Opcode, schema } from '../protocol/index.js';
import { formatTable, type LoadOptions, type LoadResult, runLoad } from './loadgen.js';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, '../..');
const targetRatio = 0.7;

function envInt(name: string, fallback: number): number {
  const v = process.env[name];
  const n = v === undefined ? fallback : Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got ${v}`);
  return n;
}

const durationMs = envInt('BENCH_DURATION_MS', 10_000);
const warmupMs = envInt('BENCH_WARMUP_MS', 2_000);
const connections = envInt('BENCH_CONNECTIONS', 64);
const depth = envInt('BENCH_DEPTH', 16);
const frameBytes = envInt('BENCH_FRAME_BYTES', 64);
const nodeArgs = (process.env['BENCH_NODE_ARGS'] ?? '').split(' ').filter((s) => s.length > 0);

/** A Ping whose whole frame (prefix + header + protobuf) is `frameBytes` long. */
function pingPayloadFor(bytes: number): Uint8Array {
  for (let n = Math.max(0, bytes - frameOverheadBytes); n >= 0; n--) {
    const encoded = schema.Ping.encode({ payload: new Uint8Array(n).fill(0x61) }).finish();
    if (frameOverheadBytes + encoded.length === bytes) return encoded;
  }
  throw new Error(`no Ping frame is exactly ${bytes} bytes`);
}

/** Spawns a server child and resolves with its port, read from the first stdout line matching `portPattern`. */
function startChild(label: string, args: readonly string[], portPattern: RegExp): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [...nodeArgs, ...args], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolvePort, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${label} did not report its port in 20 s`)), 20_000);
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (s: string) => {
      out += s;
      const m = portPattern.exec(out);
      if (m !== null) {
        clearTimeout(timer);
        resolvePort({ child, port: Number(m[1]) });
      }
    });
    child.once('exit', (code) => reject(new Error(`${label} exited early (code ${code})`)));
  });
}

function stopChild(child: ChildProcess): Promise<void> {
  return new Promise((r) => {
    if (child.exitCode !== null) return r();
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    child.once('exit', () => {
      clearTimeout(timer);
      r();
    });
    child.kill('SIGTERM');
  });
}

async function measure(label: string, args: readonly string[], portPattern: RegExp, hello: boolean, payload: Uint8Array): Promise<LoadResult> {
  const { child, port } = await startChild(label, args, portPattern);
  try {
    await new Promise((r) => setTimeout(r, 500)); // let the server settle (a node elects itself leader of group 0)
    const opts: LoadOptions = { host: '127.0.0.1', port, connections, depth, durationMs, warmupMs, opcode: Opcode.Ping, payload, hello };
    process.stdout.write(`${label}: ${connections} connections x depth ${depth}, ${frameBytes}-byte frames, ${warmupMs} ms warm-up + ${durationMs} ms...\n`);
    return await runLoad(label, opts);
  } finally {
    await stopChild(child);
  }
}

const payload = pingPayloadFor(frameBytes);
const dataDir = mkdtempSync(join(tmpdir(), 'dsync-bench-'));
let results: LoadResult[];
try {
  const dsync = await measure('dsync ping', [join(repoRoot, 'bin', 'dsync.js'), 'node', '--id', 'bench1', '--port', '0', '--data-dir', dataDir,
    '--log-level', 'warn'], /listening on [^\s]+:(\d+)/, true, payload);
  const echo = await measure('raw echo floor', [join(here, 'echo-server.js')], /"port":(\d+)/, false, payload);
  results = [dsync, echo];
} finally {
  rmSync(dataDir, { recursive: true, force: true });
}
const [dsync, echo] = results as [LoadResult, LoadResult];
const ratio = echo.opsPerSec === 0 ? 0 : dsync.opsPerSec / echo.opsPerSec;
process.stdout.write(`\n${formatTable(results)}\n\ndsync / echo floor = ${(ratio * 100).toFixed(1)}% (goal >= ${targetRatio * 100}%) ${ratio >= targetRatio ? 'OK' : 'BELOW GOAL'}\n`);
const outDir = join(repoRoot, 'bench', 'results');
mkdirSync(outDir, { recursive: true });
const report = {
  bench: 'ping', when: new Date().toISOString(), node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model ?? '',
  connections, depth, frameBytes, durationMs, warmupMs, dsync, echo, ratio: Number(ratio.toFixed(4)), targetRatio, meetsTarget: ratio >= targetRatio,
};
writeFileSync(join(outDir, 'ping.json'), `${JSON.stringify(report, null, 2)}\n`);
process.stdout.write(`wrote ${join('bench', 'results', 'ping.json')}\n`);
