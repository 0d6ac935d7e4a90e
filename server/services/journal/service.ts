// The journal service: opaque blobs appended through group 0 and read back as a
// (count, crc chain) summary. Integration tests and bench:raft use it to drive and
// compare replicated writes without any service semantics in the way.

import { Opcode } from '../../../protocol/frame.js';
import { schema } from '../../../protocol/index.js';
import { decodePayload } from '../../node/node.js';
import type { DsyncError } from '../../../protocol/errors.js';
import { EntryKind, type SubMachine } from '../../raft/group0.js';
import type { ProposalOutcome } from '../../raft/runner.js';
import { encodeJournalAppendReply, journalEntryFromAppend } from './codec.js';
import type { RequestContext, Service, ServiceContext } from '../service.js';
import { Journal } from './journal.js';

/**
 * Answers one append once its entry is applied here, or fails: one object per append, no
 * promise. Answered after the ready pass's task (afterTask), as lock answers are: at the
 * end of the turn the reply would wait behind the next poll phase, a loop turn per append.
 */
class AppendAnswer implements ProposalOutcome {
  constructor(private readonly rc: RequestContext) {}

  applied(result: unknown): void {
    const { index, count } = result as { index: number; count: number };
    this.rc.conn.reply(this.rc.requestId, this.rc.opcode, encodeJournalAppendReply(index, count), true);
  }

  failed(err: DsyncError): void {
    this.rc.conn.replyError(this.rc.requestId, this.rc.opcode, err, true);
  }
}

export class JournalService implements Service {
  readonly name = 'journal';
  readonly opcodes = { min: Opcode.JournalAppend, max: 19 };
  private readonly journal = new Journal();
  readonly group0: { kind: EntryKind; machine: SubMachine } = {
    kind: EntryKind.Journal,
    machine: {
      apply: (entry, body) => ({ index: entry.index, count: this.journal.apply(body) }),
      snapshot: () => this.journal.toSnapshot(),
      restore: (s) => this.journal.restore(s as { count: number; hash: number }),
    },
  };

  start(ctx: ServiceContext): void {
    const group0 = ctx.groups.group0;
    ctx.handle(Opcode.JournalAppend, (rc, payload) => {
      group0.proposeFor(journalEntryFromAppend(EntryKind.Journal, payload), new AppendAnswer(rc));
    });
    ctx.handle(Opcode.JournalInfo, (rc, payload) => {
      const req = decodePayload((b) => schema.JournalInfoRequest.decode(b), payload, 'journal info');
      const answer = (): void => rc.conn.reply(rc.requestId, rc.opcode, schema.JournalInfoReply.encode({
        count: this.journal.count, hash: this.journal.hash, appliedIndex: group0.applied, nodeId: ctx.node.nodeId,
      }).finish());
      if (req.local) {
        answer();
        return;
      }
      group0.readBarrier().then(answer, (err: unknown) => rc.conn.replyError(rc.requestId, rc.opcode, ctx.node.asDsyncError(err)));
    }, 'read');
  }

  stop(): void {
    // Nothing of its own to release: proposals are failed by the group runner.
  }
}
