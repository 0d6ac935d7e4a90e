// The regression file of seeds that ever failed (test/sim/failed-seeds.json):
// read by the runner and the tap suite, appended to by the runner.

import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface FailedSeed {
  readonly seed: number;
  readonly property: string;
  readonly note: string;
}

/** The source file, whether we run from dist/ or from another outDir inside or outside the repo. */
export function failedSeedsPath(): string {
  const env = process.env['FAILED_SEEDS_FILE'];
  if (env !== undefined && env !== '') return env;
  const fromCwd = join(process.cwd(), 'test', 'sim', 'failed-seeds.json');
  if (existsSync(fromCwd)) return fromCwd;
  // dist/test/sim/seeds.js -> <repo>/test/sim/failed-seeds.json
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'test', 'sim', 'failed-seeds.json');
}

export function loadFailedSeeds(): FailedSeed[] {
  const path = failedSeedsPath();
  if (!existsSync(path)) return [];
  const parsed: unknown = JSON.parse(readFileSync(path, 'utf8'));
  if (!Array.isArray(parsed)) throw new Error(`${path}: expected an array`);
  return parsed.map((item: unknown) => {
    if (typeof item === 'number') return { seed: item, property: '', note: '' };
    const o = item as { seed?: unknown; property?: unknown; note?: unknown };
    if (typeof o.seed !== 'number') throw new Error(`${path}: entry without a numeric seed`);
    return { seed: o.seed, property: typeof o.property === 'string' ? o.property : '', note: typeof o.note === 'string' ? o.note : '' };
  });
}

export function recordFailedSeed(entry: FailedSeed): boolean {
  const seeds = loadFailedSeeds();
  if (seeds.some((s) => s.seed === entry.seed)) return false;
  seeds.push(entry);
  writeFileSync(failedSeedsPath(), JSON.stringify(seeds, null, 2) + '\n');
  return true;
}
