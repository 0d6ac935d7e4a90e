// Raft's safety properties (Figure 3 of the Raft paper) as an incremental checker:
// the simulator reports what replicas persist, send, commit and apply, and this
// module fails loudly the moment any replica's behaviour contradicts them.
//
// Properties:
// - election safety: at most one leader per term (ever, not just at one instant);
// - vote safety: a replica grants at most one vote per term (seen on the wire);
// - log matching: two persisted entries with the same index and term are
//   identical and so are their predecessors (checked by induction: (index, term)
//   determines the entry and the term of the entry before it);
// - leader completeness: a leader's durable log holds every entry committed in
//   an earlier term;
// - state machine safety: no two replicas apply different entries at one index;
// - committed entries are never lost: no replica ever persists an entry that
//   contradicts a known committed one, and (checked by the simulator after each
//   crash) a majority of disks still hold every committed entry.

export class InvariantViolation extends Error {
  override name = 'InvariantViolation';
  constructor(
    readonly property: string,
    readonly detail: string,
  ) {
    super(`${property}: ${detail}`);
  }
}

export interface CheckedEntry {
  readonly index: number;
  readonly term: number;
  readonly type: number;
  readonly data: Uint8Array;
}

interface LogMatchRecord {
  readonly key: string;
  readonly prevTerm: number;
  readonly node: string;
}

interface CommittedRecord {
  readonly key: string;
  readonly term: number;
  /** An upper bound of the term in which the entry was committed. */
  commitTerm: number;
  readonly node: string;
}

const decoder = new TextDecoder();

/** A string identifying an entry's content (term, type, payload). */
export function entryKey(entry: CheckedEntry): string {
  return `${entry.term}/${entry.type}/${decoder.decode(entry.data)}`;
}

export class RaftSafetyChecker {
  private readonly leaderOfTerm = new Map<number, string>();
  private readonly voteOf = new Map<string, string>();
  private readonly logMatch = new Map<string, LogMatchRecord>();
  private readonly committed = new Map<number, CommittedRecord>();
  private committedIndexMax = 0;
  /** Number of checks run; lets tests prove the checker was exercised. */
  checksCount = 0;

  fail(property: string, detail: string): never {
    throw new InvariantViolation(property, detail);
  }

  /** A replica observed in role leader for `term`. */
  onLeader(node: string, term: number): void {
    this.checksCount++;
    const known = this.leaderOfTerm.get(term);
    if (known === undefined) {
      this.leaderOfTerm.set(term, node);
    } else if (known !== node) {
      this.fail('election-safety', `two leaders in term ${term}: ${known} and ${node}`);
    }
  }

  leadersCount(): number {
    return this.leaderOfTerm.size;
  }

  /** A granted (non-rejecting) vote response went onto the wire. */
  onVoteGranted(voter: string, term: number, candidate: string): void {
    this.checksCount++;
    const key = `${voter}@${term}`;
    const known = this.voteOf.get(key);
    if (known === undefined) {
      this.voteOf.set(key, candidate);
    } else if (known !== candidate) {
      this.fail('vote-safety', `${voter} voted for ${known} and ${candidate} in term ${term}`);
    }
  }

  /**
   * `entry` was durably written to `node`'s log in `nodeTerm`, replacing
   * `overwritten` (if any); `prevTerm` is the term of the entry just before it
   * in that log (or of the snapshot it follows; 0 at index 1).
   */
  onPersistedEntry(node: string, entry: CheckedEntry, prevTerm: number, nodeTerm: number, overwritten: CheckedEntry | undefined): void {
    this.checksCount++;
    const key = entryKey(entry);
    const id = `${entry.index}:${entry.term}`;
    const known = this.logMatch.get(id);
    if (known === undefined) {
      this.logMatch.set(id, { key, prevTerm, node });
    } else {
      if (known.key !== key) {
        this.fail('log-matching', `index ${entry.index} term ${entry.term}: ${known.node} has "${known.key}", ${node} has "${key}"`);
      }
      if (known.prevTerm !== prevTerm) {
        this.fail(
          'log-matching',
          `index ${entry.index} term ${entry.term}: predecessor term ${known.prevTerm} on ${known.node} but ${prevTerm} on ${node}`,
        );
      }
    }
    const committed = this.committed.get(entry.index);
    if (committed === undefined || committed.key === key) return;
    // A replica that is behind (a term older than the commit) may still take a
    // stale leader's entry there; it may never drop the committed entry itself,
    // nor take a conflicting one once its term reached the commit's.
    if (overwritten !== undefined && entryKey(overwritten) === committed.key) {
      this.fail('committed-never-lost', `${node} overwrote committed "${committed.key}" at ${entry.index} with "${key}"`);
    }
    if (nodeTerm >= committed.commitTerm) {
      this.fail(
        'committed-never-lost',
        `${node} in term ${nodeTerm} persisted "${key}" at ${entry.index} where "${committed.key}" was committed by term ${committed.commitTerm} (seen on ${committed.node})`,
      );
    }
  }

  /**
   * `node` (in `currentTerm`) reported `entry` as committed: in a Ready's
   * committedEntries, on apply, or inside an installed snapshot.
   */
  onCommitted(node: string, entry: CheckedEntry, currentTerm: number): void {
    this.checksCount++;
    const key = entryKey(entry);
    const known = this.committed.get(entry.index);
    if (known === undefined) {
      this.committed.set(entry.index, { key, term: entry.term, commitTerm: currentTerm, node });
      if (entry.index > this.committedIndexMax) this.committedIndexMax = entry.index;
    } else {
      if (known.key !== key) {
        this.fail('state-machine-safety', `index ${entry.index}: ${known.node} committed "${known.key}", ${node} committed "${key}"`);
      }
      if (currentTerm < known.commitTerm) known.commitTerm = currentTerm;
    }
  }

  /** Like onCommitted for a snapshot's contents, where only payload-bearing entries are known. */
  onSnapshotEntry(node: string, index: number, term: number, payload: string, currentTerm: number): void {
    this.checksCount++;
    const known = this.committed.get(index);
    if (known !== undefined) {
      const knownPayload = known.key.slice(known.key.indexOf('/', known.key.indexOf('/') + 1) + 1);
      if (known.term !== term || knownPayload !== payload) {
        this.fail('state-machine-safety', `snapshot on ${node} has "${term}:${payload}" at ${index}, but "${known.key}" was committed there`);
      }
      if (currentTerm < known.commitTerm) known.commitTerm = currentTerm;
    }
  }

  committedAt(index: number): string | undefined {
    return this.committed.get(index)?.key;
  }

  /** Known committed entries: index -> content key, in first-seen order. */
  committedKeys(): IterableIterator<[number, string]> {
    return (function* (m: Map<number, CommittedRecord>) {
      for (const [index, r] of m) yield [index, r.key] as [number, string];
    })(this.committed);
  }

  committedCount(): number {
    return this.committed.size;
  }

  /**
   * `node` is leader of `term` and its log is durable: every entry committed
   * in an earlier term and above its snapshot must be in `log` (indexed by
   * `entryAt`).
   */
  checkLeaderCompleteness(
    node: string,
    term: number,
    snapshotIndex: number,
    lastIndex: number,
    entryAt: (index: number) => CheckedEntry | undefined,
  ): void {
    this.checksCount++;
    for (const [index, record] of this.committed) {
      if (record.commitTerm >= term || index <= snapshotIndex) continue;
      if (index > lastIndex) {
        this.fail('leader-completeness', `leader ${node} of term ${term} ends at ${lastIndex}, missing committed index ${index} ("${record.key}")`);
      }
      const entry = entryAt(index);
      const key = entry === undefined ? '<none>' : entryKey(entry);
      if (key !== record.key) {
        this.fail('leader-completeness', `leader ${node} of term ${term} has "${key}" at ${index}, committed was "${record.key}"`);
      }
    }
  }
}
