// The lock simulator's regression file (test/sim/locks-failed-seeds.json): every
// seed that ever failed, replayed by locks.test.ts and locks-run.ts before the
// random seeds; locks-run.ts appends new failures.

import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface LockFailedSeed {
  readonly seed: number;
  readonly property: string;
  readonly note: string;
}

/** The source file, whether we run from dist/, another outDir, or the repo root. */
export function lockSeedsPath(): string {
  const env = process.env['LOCK_FAILED_SEEDS_FILE'];
  if (env !== undefined && env !== '') return env;
  const fromCwd = join(process.cwd(), 'test', 'sim', 'locks-failed-seeds.json');
  if (existsSync(fromCwd)) return fromCwd;
  // dist/test/sim/locks-seeds.js -> <repo>/test/sim/locks-failed-seeds.json
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'test', 'sim', 'locks-failed-seeds.json');
}

export function loadLockFailedSeeds(): LockFailedSeed[] {
  const path = lockSeedsPath();
  if (!existsSync(path)) return [];
  const parsed: unknown = JSON.parse(readFileSync(path, 'utf8'));
  if (!Array.isArray(parsed)) throw new Error(`${path}: expected an array`);
  return parsed.map((item: unknown) => {
    const o = item as { seed?: unknown; property?: unknown; note?: unknown };
    if (typeof o.seed !== 'number') throw new Error(`${path}: entry without a numeric seed`);
    return { seed: o.seed, property: typeof o.property === 'string' ? o.property : '', note: typeof o.note === 'string' ? o.note : '' };
  });
}

export function recordLockFailedSeed(entry: LockFailedSeed): boolean {
  const seeds = loadLockFailedSeeds();
  if (seeds.some((s) => s.seed === entry.seed)) return false;
  seeds.push(entry);
  writeFileSync(lockSeedsPath(), JSON.stringify(seeds, null, 2) + '\n');
  return true;
}
