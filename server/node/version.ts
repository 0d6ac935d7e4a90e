// The feature version this node speaks (core/constants.ts, featureVersionCurrent), and
// how it refuses to run in a cluster that already requires more. DSYNC_FEATURE_VERSION
// makes a node speak an older version: a test seam standing in for an older release
// (it writes only that version's formats and refuses to read newer ones).

import { featureVersionBase, featureVersionCurrent } from '../../core/constants.js';

/** `dsync node` exits with this when the cluster requires a feature version it does not speak (docs/operations.md). */
export const featureVersionExitCode = 4;

/** The cluster (or a snapshot it sent) requires a feature version this node does not speak. */
export class FeatureVersionError extends Error {
  /** `required` null: the cluster said so without a number (a refused join; `what` carries its words). */
  constructor(readonly required: number | null, readonly spoken: number, what: string) {
    super(`${what} requires ${required === null ? 'a newer feature version' : `feature version ${required}`}; this node speaks ${spoken}. Upgrade this node's dsync `
      + `(a cluster version never goes down, so a node cannot be downgraded below it)`);
    this.name = 'FeatureVersionError';
  }
}

/** The version a node speaks: DSYNC_FEATURE_VERSION (featureVersionBase..featureVersionCurrent) or the current one. */
export function featureVersionFrom(env: NodeJS.ProcessEnv): number {
  const raw = env.DSYNC_FEATURE_VERSION;
  if (raw === undefined || raw === '') return featureVersionCurrent;
  const v = Number(raw);
  if (!Number.isSafeInteger(v) || v < featureVersionBase || v > featureVersionCurrent) {
    throw new Error(`DSYNC_FEATURE_VERSION=${raw}: this build speaks feature versions ${featureVersionBase} to ${featureVersionCurrent}`);
  }
  return v;
}

/** What a hello's or a join request's feature_version field means (0: an older node that does not say). */
export function spokenFeatureVersion(field: number | null | undefined): number {
  return field === null || field === undefined || field < featureVersionBase ? featureVersionBase : field;
}

/**
 * Which snapshot formats a state machine writes and reads: it writes a format only once
 * formatVersion() (the cluster version) includes it, and refuses (FeatureVersionError) a
 * snapshot in a format above readsUpTo (the version this node speaks).
 */
export interface SnapshotFormats {
  readonly formatVersion: () => number;
  readonly readsUpTo: number;
}

/** No gate: write and read every format this build knows (unit tests, the simulator). */
export const allSnapshotFormats: SnapshotFormats = { formatVersion: () => featureVersionCurrent, readsUpTo: featureVersionCurrent };
