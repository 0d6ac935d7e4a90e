// Majority maths: the commit index a set of voters' match indexes supports, and
// the outcome of an election. Each has a deliberately naive twin for property tests.

import { assert } from '../assert.js';

/** Votes needed out of `voterCount`. */
export function majority(voterCount: number): number {
  assert(voterCount >= 0, 'negative voter count');
  return Math.floor(voterCount / 2) + 1;
}

/**
 * The largest index that a majority of `matches` (one per voter) has reached.
 * Sorts `matches` in place (pass a scratch array). 0 when there are no voters.
 */
export function committedIndex(matches: Float64Array): number {
  const n = matches.length;
  if (n === 0) return 0;
  // Insertion sort: voter counts are tiny (3..7) and this allocates nothing.
  for (let i = 1; i < n; i++) {
    const v = matches[i] as number;
    let j = i - 1;
    while (j >= 0 && (matches[j] as number) > v) {
      matches[j + 1] = matches[j] as number;
      j--;
    }
    matches[j + 1] = v;
  }
  const result = matches[n - majority(n)] as number;
  assert(result >= (matches[0] as number), 'committed index below the minimum match');
  return result;
}

/** Naive twin: the largest candidate value that at least a majority reached. */
export function committedIndexNaive(matches: readonly number[]): number {
  let best = 0;
  for (const candidate of matches) {
    let reached = 0;
    for (const m of matches) if (m >= candidate) reached++;
    if (reached >= majority(matches.length) && candidate > best) best = candidate;
  }
  return best;
}

export const enum VoteResult {
  Pending = 0,
  Won = 1,
  Lost = 2,
}

/** granted/rejected count only voters that answered; the rest are pending. */
export function voteResult(voterCount: number, granted: number, rejected: number): VoteResult {
  assert(granted + rejected <= voterCount, 'more votes than voters');
  const q = majority(voterCount);
  if (granted >= q) return VoteResult.Won;
  if (voterCount - rejected < q) return VoteResult.Lost;
  return VoteResult.Pending;
}

/** Naive twin: try every way the pending voters could still answer. */
export function voteResultNaive(voterCount: number, granted: number, rejected: number): VoteResult {
  const pending = voterCount - granted - rejected;
  let canWin = false;
  let canLose = false;
  for (let yes = 0; yes <= pending; yes++) {
    if ((granted + yes) * 2 > voterCount) canWin = true;
    else canLose = true;
  }
  if (canWin && !canLose) return VoteResult.Won;
  if (canLose && !canWin) return VoteResult.Lost;
  return VoteResult.Pending;
}
