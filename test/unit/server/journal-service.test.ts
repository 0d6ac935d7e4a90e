// Checks that the journal service's answers to appends (what bench:raft and bench:latency
// time) ask to leave once the ready pass's task ends (ClientLink.reply's afterTask), both the
// applied answer and a refused proposal's error, as lock answers do: written at the end of
// the turn instead, each append waited behind the next poll phase. Driven through the
// service seam with a fake group 0 and a recording link.

import t from 'tap';
import { nodeId } from '../../../core/ids.js';
import { DsyncError, ErrorCode } from '../../../protocol/errors.js';
import { Opcode } from '../../../protocol/frame.js';
import { schema } from '../../../protocol/index.js';
import { ConsoleRegistry } from '../../../server/node/console.js';
import { NodeMetrics } from '../../../server/node/metrics.js';
import { Logger } from '../../../server/node/log.js';
import type { GroupRegistry, GroupRunner, ProposalOutcome } from '../../../server/raft/runner.js';
import { monotonicClock, nodeScheduler } from '../../../server/runtime.js';
import { JournalService } from '../../../server/services/journal/service.js';
import { type ClientLink, type RequestHandler, type ServiceNode, serviceContext } from '../../../server/services/service.js';

interface Answer {
  readonly requestId: number;
  readonly kind: 'reply' | 'error';
  readonly afterTask: boolean;
}

function recordingLink(answers: Answer[]): ClientLink {
  return {
    closed: false,
    reply: (requestId, _opcode, _payload, afterTask = false) => { answers.push({ requestId, kind: 'reply', afterTask }); },
    replyError: (requestId, _opcode, _err, afterTask = false) => { answers.push({ requestId, kind: 'error', afterTask }); },
    push: () => {},
    onClose: () => () => {},
  };
}

t.test('journal append answers (applied or refused) leave after the task, not at the end of the turn', async (t) => {
  const handlers = new Map<number, RequestHandler>();
  const node: ServiceNode = {
    nodeId: nodeId('n1'),
    log: new Logger('n1', 'error', () => {}),
    consoleCommands: new ConsoleRegistry(),
    metrics: new NodeMetrics('n1'),
    notLeader: (what) => new DsyncError(ErrorCode.UNAVAILABLE, what),
    addressOf: (id) => (id === '' ? '' : `test://${id}`),
    asDsyncError: (err) => (err instanceof DsyncError ? err : new DsyncError(ErrorCode.INTERNAL, String(err))),
    handle: (opcode, h) => { handlers.set(opcode, h); },
    sendPeer: () => true,
    handlePeerPush: () => {},
    members: () => [],
  };
  let proposals = 0;
  // The first proposal is applied, the second refused (this node lost leadership).
  const group0 = {
    proposeFor: (_data: Uint8Array, outcome: ProposalOutcome): void => {
      if (++proposals === 1) outcome.applied({ index: 5, count: 1 });
      else outcome.failed(new DsyncError(ErrorCode.UNAVAILABLE, 'this node lost leadership before the request committed; retry'));
    },
  } as unknown as GroupRunner;
  const groups = { group0 } as unknown as GroupRegistry;
  const service = new JournalService();
  service.start(serviceContext(service, { node, groups, clock: monotonicClock, scheduler: nodeScheduler, log: node.log }));
  const append = handlers.get(Opcode.JournalAppend);
  t.ok(append !== undefined, 'the journal registers its append handler');
  const answers: Answer[] = [];
  const link = recordingLink(answers);
  const payload = schema.JournalAppend.encode({ data: new Uint8Array([1, 2, 3]) }).finish();
  append?.({ conn: link, requestId: 1, opcode: Opcode.JournalAppend }, payload);
  append?.({ conn: link, requestId: 2, opcode: Opcode.JournalAppend }, payload);
  await new Promise((resolve) => setImmediate(resolve));
  t.same(answers, [{ requestId: 1, kind: 'reply', afterTask: true }, { requestId: 2, kind: 'error', afterTask: true }],
    'both answers asked to leave after the task');
});
