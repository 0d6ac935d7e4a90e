// Test helper (not a test): drives a LockTable the way the server would, with
// increasing log indices, a leader clock, and a clientId + seq per session.

import { clientId, logIndex } from '../../../core/ids.js';
import type { ClientId, LogIndex, SessionId } from '../../../core/ids.js';
import type { ApplyOutcome, LockCommand, LockMode } from '../../../core/locks/commands.js';
import { LockTable } from '../../../core/locks/table.js';

type Distribute<T> = T extends unknown ? Omit<T, 'nowMs' | 'clientId' | 'seq'> : never;
export type Body = Distribute<LockCommand>;

export class Driver {
  table = new LockTable();
  index = 0;
  nowMs = 1_000_000;
  private readonly seqs = new Map<ClientId, number>();
  private readonly clientOf = new Map<SessionId, ClientId>();
  /** Every outcome, for checks across a whole scenario. */
  readonly log: { cmd: LockCommand; index: LogIndex; out: ApplyOutcome }[] = [];

  applyRaw(cmd: LockCommand): ApplyOutcome {
    this.index++;
    const index = logIndex(this.index);
    const out = this.table.apply(cmd, index);
    this.log.push({ cmd, index, out });
    return out;
  }

  nextSeq(c: ClientId): number {
    const s = (this.seqs.get(c) ?? 0) + 1;
    this.seqs.set(c, s);
    return s;
  }

  /** A client request: stamps clientId (the session's, or `client`), the next seq and nowMs. */
  send(body: Body, client?: string): ApplyOutcome {
    const c =
      client !== undefined
        ? clientId(client)
        : 'session' in body
          ? (this.clientOf.get(body.session) ?? clientId('admin'))
          : clientId('admin');
    return this.applyRaw({ ...body, clientId: c, seq: this.nextSeq(c), nowMs: this.nowMs } as LockCommand);
  }

  open(client = `c${this.clientOf.size + 1}`, ttlMs = 10_000, lockDelayMs = 0): SessionId {
    const out = this.send({ kind: 'openSession', ttlMs, lockDelayMs }, client);
    if (out.result.kind !== 'sessionOpened') throw new Error(`open failed: ${JSON.stringify(out.result)}`);
    this.clientOf.set(out.result.session, clientId(client));
    return out.result.session;
  }

  acquire(session: SessionId, lock: string, mode: LockMode, wait = true, requestId = `r${this.index + 1}`): ApplyOutcome {
    return this.send({ kind: 'acquire', session, lock, mode, wait, requestId });
  }

  release(session: SessionId, lock: string): ApplyOutcome {
    return this.send({ kind: 'release', session, lock });
  }

  expire(...sessions: SessionId[]): ApplyOutcome {
    const leases = sessions.map((s) => {
      const info = this.table.sessionInfo(s);
      return { session: s, renewedIndex: info?.renewedIndex ?? logIndex(0) };
    });
    return this.applyRaw({ kind: 'expireSessions', sessions: leases, nowMs: this.nowMs });
  }

  holders(lock: string): string[] {
    return (this.table.lockInfo(lock)?.holders ?? []).map((h) => `${h.session}:${h.mode}:${h.count}`);
  }

  waiters(lock: string): string[] {
    return (this.table.lockInfo(lock)?.waiters ?? []).map((w) => `${w.session}:${w.mode}`);
  }
}
