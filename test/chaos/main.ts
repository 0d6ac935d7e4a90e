// `npm run chaos -- --duration 60s --seed n [--nodes 3|5] [--ttl 2000] [--services locks,queues,cache] [--canary NAME[,NAME]]
//   [--moves kill,lose-unsynced,...] [--out FILE]`:
// one fault run on real processes; prints the report, writes the JSON results
// (default chaos-results/seed-<n>.json) and exits 1 if any checker found an anomaly.
// Lives in test/chaos (not bench/): it is a correctness harness built on the
// integration helpers and test/checker, and the CI test runs the same code.

import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { formatReport } from './report.js';
import { type MoveName, moveNames } from './nemesis.js';
import { runChaos, serviceNames, type ServiceName } from './runner.js';

function parseDuration(s: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(s);
  if (m === null) throw new Error(`--duration ${s}: expected e.g. 60s, 1500ms, 30m`);
  const n = Number(m[1]);
  return m[2] === 'ms' ? n : m[2] === 'm' ? n * 60_000 : n * 1000;
}

function parseArgs(argv: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const eq = a.indexOf('=');
    if (eq > 0) out.set(a.slice(2, eq), a.slice(eq + 1));
    else out.set(a.slice(2), argv[++i] ?? '');
  }
  return out;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const seed = Number(args.get('seed') ?? process.env['SEED'] ?? Date.now() % 1_000_000);
  const nodes = Number(args.get('nodes') ?? 3);
  if (!Number.isInteger(seed) || seed < 0) throw new Error('--seed must be a non-negative integer');
  if (nodes !== 3 && nodes !== 5) throw new Error('--nodes must be 3 or 5');
  const durationMs = parseDuration(args.get('duration') ?? '60s');
  const ttlMs = Number(args.get('ttl') ?? 2_000);
  const canary = args.get('canary') ?? null;
  const movesArg = args.get('moves');
  const moves = movesArg === undefined ? undefined : movesArg.split(',').map((m) => m.trim()).filter((m) => m !== '');
  for (const m of moves ?? []) if (!moveNames.includes(m as MoveName)) throw new Error(`--moves: unknown move ${m} (known: ${moveNames.join(', ')})`);
  const servicesArg = args.get('services');
  const services = servicesArg === undefined ? undefined : servicesArg.split(',').map((m) => m.trim()).filter((m) => m !== '');
  for (const m of services ?? []) if (!serviceNames.includes(m as ServiceName)) throw new Error(`--services: unknown service ${m} (known: ${serviceNames.join(', ')})`);
  const result = await runChaos({ seed, nodes, durationMs, ttlMs, canary, ...(moves === undefined ? {} : { moves: moves as MoveName[] }),
    ...(services === undefined ? {} : { services: services as ServiceName[] }),
    log: (line) => process.stderr.write(`${line}\n`) });
  const file = resolve(args.get('out') ?? `chaos-results/seed-${seed}${canary === null ? '' : `-${canary}`}.json`);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(result, (_k, v: unknown) => (v === Infinity ? null : v), 1)}\n`);
  process.stdout.write(`${formatReport(result)}\nresults: ${file}\n`);
  process.exitCode = result.anomalies === 0 ? 0 : 1;
}

// Exits when done: after a failure, clients of a workload may still be retrying against nodes that are gone.
main().catch((err: unknown) => {
  process.stderr.write(`chaos: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exitCode = 2;
}).finally(() => process.exit());
