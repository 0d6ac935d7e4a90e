// The journal service: opaque blobs appended through group 0 and read back as a
// (count, crc chain) summary. Integration tests and bench:raft use it to drive and
// compare replicated writes without any service semantics in the way.

import { Opcode } from '../../../protocol/frame.js';
import { schema } from '../../../protocol/index.js';
import { decodePayload } from '../../node/node.js';
import { EntryKind, frameEntry, type SubMachine } from '../../raft/group0.js';
import type { Service, ServiceContext } from '../service.js';
import { Journal } from './journal.js';

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
      const req = decodePayload((b) => schema.JournalAppend.decode(b), payload, 'journal append');
      // Answered after the ready pass's task (afterTask), as lock answers are: at the end of
      // the turn the reply would wait behind the next poll phase, a loop turn per append.
      group0.propose(frameEntry(EntryKind.Journal, req.data)).then((applied) => {
        const { index, count } = applied as { index: number; count: number };
        rc.conn.reply(rc.requestId, rc.opcode, schema.JournalAppendReply.encode({ index, count }).finish(), true);
      }, (err: unknown) => rc.conn.replyError(rc.requestId, rc.opcode, ctx.node.asDsyncError(err), true));
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
