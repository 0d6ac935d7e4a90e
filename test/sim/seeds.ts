// The simulators' regression files: every seed that ever failed, replayed before
// the random seeds. failed-seeds.json (cluster simulator: run.ts, sim.test.ts),
// locks-failed-seeds.json (lock simulator: locks-run.ts, locks.test.ts), both
// appended to by their runner; and the kept-seed files the membership, reads
// and transfer suites replay (membership-seeds.json, ...).

import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface FailedSeed {
  readonly seed: number;
  readonly property: string;
  readonly note: string;
}

/** A regression file in test/sim/ and the environment variable that can point elsewhere. */
interface RegressionFile {
  readonly fileName: string;
  readonly pathEnv: string;
  /** Whether an entry may be a bare seed number instead of { seed, property, note }. */
  readonly bareSeedsAllowed: boolean;
}

const clusterSeedsFile: RegressionFile = { fileName: 'failed-seeds.json', pathEnv: 'FAILED_SEEDS_FILE', bareSeedsAllowed: true };
const lockSeedsFile: RegressionFile = { fileName: 'locks-failed-seeds.json', pathEnv: 'LOCK_FAILED_SEEDS_FILE', bareSeedsAllowed: false };

/** The source file, whether we run from dist/, another outDir inside or outside the repo, or the repo root. */
function regressionPath(file: RegressionFile): string {
  const env = process.env[file.pathEnv];
  if (env !== undefined && env !== '') return env;
  const fromCwd = join(process.cwd(), 'test', 'sim', file.fileName);
  if (existsSync(fromCwd)) return fromCwd;
  // dist/test/sim/seeds.js -> <repo>/test/sim/<fileName>
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'test', 'sim', file.fileName);
}

function loadRegression(file: RegressionFile): FailedSeed[] {
  const path = regressionPath(file);
  if (!existsSync(path)) return [];
  const parsed: unknown = JSON.parse(readFileSync(path, 'utf8'));
  if (!Array.isArray(parsed)) throw new Error(`${path}: expected an array`);
  return parsed.map((item: unknown) => {
    if (file.bareSeedsAllowed && typeof item === 'number') return { seed: item, property: '', note: '' };
    const o = item as { seed?: unknown; property?: unknown; note?: unknown };
    if (typeof o.seed !== 'number') throw new Error(`${path}: entry without a numeric seed`);
    return { seed: o.seed, property: typeof o.property === 'string' ? o.property : '', note: typeof o.note === 'string' ? o.note : '' };
  });
}

/** Appends the seed unless it is already kept; false when it was. */
function recordRegression(file: RegressionFile, entry: FailedSeed): boolean {
  const seeds = loadRegression(file);
  if (seeds.some((s) => s.seed === entry.seed)) return false;
  seeds.push(entry);
  writeFileSync(regressionPath(file), JSON.stringify(seeds, null, 2) + '\n');
  return true;
}

export function failedSeedsPath(): string {
  return regressionPath(clusterSeedsFile);
}

export function loadFailedSeeds(): FailedSeed[] {
  return loadRegression(clusterSeedsFile);
}

export function recordFailedSeed(entry: FailedSeed): boolean {
  return recordRegression(clusterSeedsFile, entry);
}

export function lockSeedsPath(): string {
  return regressionPath(lockSeedsFile);
}

export function loadLockFailedSeeds(): FailedSeed[] {
  return loadRegression(lockSeedsFile);
}

export function recordLockFailedSeed(entry: FailedSeed): boolean {
  return recordRegression(lockSeedsFile, entry);
}

/** A seed a suite keeps replaying, with the property it once showed (when the file says). */
export interface KeptSeed {
  readonly seed: number;
  readonly property: string;
}

/** test/sim/<fileName> from the working directory, else beside the source when run from dist/; throws when neither parses. */
export function loadKeptSeeds(fileName: string): KeptSeed[] {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(process.cwd(), 'test', 'sim', fileName), resolve(here, '..', '..', '..', 'test', 'sim', fileName)];
  for (const path of candidates) {
    try {
      return JSON.parse(readFileSync(path, 'utf8')) as KeptSeed[];
    } catch {
      // try the next location
    }
  }
  throw new Error(`${fileName} not found (tried ${candidates.join(', ')})`);
}
