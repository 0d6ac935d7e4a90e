// Checks server/raft/codec.ts checkWire, the gate between a peer's bytes and
// Raft.step (issue 7, item 10), table-driven: one well-formed message of each
// shape passes (including whatever toWire makes of core's messages), and each
// malformed variant of a valid append is refused with a fatal BAD_PAYLOAD that
// says what is wrong, after a round trip through the protobuf encoding.

import t from 'tap';
import { appendEntriesCountMax } from '../../../core/constants.js';
import { groupId, logIndex, nodeId, term } from '../../../core/ids.js';
import { type Message, MessageType } from '../../../core/raft/types.js';
import { ErrorCode, ProtocolError } from '../../../protocol/errors.js';
import { schema } from '../../../protocol/index.js';
import { checkWire, coalescible, heartbeatFromWire, heartbeatToWire, toWire } from '../../../server/raft/codec.js';
import { newMessage } from '../../../core/raft/message.js';
import { quiesceContext } from '../../../core/raft/raft.js';
import type { dsync } from '../../../protocol/generated/dsync.js';

type Wire = dsync.RaftMessage.$Properties;
const self = nodeId('n1');
const peer = nodeId('n2');
const data = new Uint8Array([1]);

/** A valid append from n2 (leader, term 5) to n1: after index 10 (term 4), entries 11 (term 4) and 12 (term 5). */
function app(over: Partial<Wire> = {}): Wire {
  return { group: 0, type: MessageType.App, from: 'n2', to: 'n1', term: 5, logTerm: 4, index: 10, commit: 9,
    entries: [{ index: 11, term: 4, type: 0, data }, { index: 12, term: 5, type: 0, data }], ...over };
}

function viaWire(w: Wire): Wire {
  return schema.RaftMessage.decode(schema.RaftMessage.encode(schema.RaftMessage.create(w)).finish());
}

const core = (over: Partial<Message>): Message => ({
  type: MessageType.Heartbeat, from: peer, to: self, term: term(3), logTerm: term(0), index: logIndex(0), entries: [],
  commit: logIndex(0), reject: false, rejectHint: logIndex(0), rejectHintTerm: term(0), snapshot: null, context: new Uint8Array(0), ...over,
});

const valid: [string, Wire][] = [
  ['an append with entries', app()],
  ['an empty append (probe)', app({ entries: [] })],
  ['a heartbeat (toWire)', toWire(groupId(0), core({ commit: logIndex(4), context: new Uint8Array(16) }))],
  ['a rejecting append response (toWire)', toWire(groupId(3), core({ type: MessageType.AppResp, index: logIndex(7), reject: true,
    rejectHint: logIndex(6), rejectHintTerm: term(2) }))],
  ['a pre-vote for a future term (toWire)', toWire(groupId(0), core({ type: MessageType.PreVote, term: term(4), logTerm: term(3), index: logIndex(20) }))],
  ['a snapshot (toWire)', toWire(groupId(0), core({ type: MessageType.Snap, snapshot: { meta: { index: logIndex(100), term: term(3),
    conf: { voters: [self, peer], learners: [] } }, data } }))],
  ['a read index response', { type: MessageType.ReadIndexResp, from: 'n2', to: 'n1', term: 5, index: 40, context: new Uint8Array(16) }],
];

const malformed: [string, Wire, RegExp][] = [
  ['an unknown message type', app({ type: 12, entries: [] }), /unknown message type 12/],
  ['a message for another node', app({ to: 'n3' }), /addressed to "n3"/],
  ['a message for nobody', app({ to: '' }), /addressed to ""/],
  ['a sender other than the link', app({ from: 'n3' }), /names "n3" as its sender/],
  ['a gap between entries', app({ entries: [{ index: 11, term: 4, data }, { index: 13, term: 5, data }] }), /entry 13 does not follow 11/],
  ['entries not right after the message index', app({ index: 9 }), /entry 11 does not follow 9/],
  ['entry terms going down', app({ entries: [{ index: 11, term: 5, data }, { index: 12, term: 4, data }] }), /term 4, below the term 5/],
  ['an entry term below the previous log term', app({ logTerm: 5, entries: [{ index: 11, term: 4, data }] }), /term 4, below the term 5/],
  ['an entry term above the message term', app({ entries: [{ index: 11, term: 6, data }] }), /term 6, above the message term 5/],
  ['a log term above the message term', app({ logTerm: 6, entries: [] }), /log term 6 is above/],
  ['an index beyond safe integers', app({ index: 2 ** 60, entries: [] }), /index .* not a non-negative safe integer/],
  ['a commit beyond safe integers', app({ commit: 2 ** 53 + 2 }), /commit .* not a non-negative safe integer/],
  ['a term beyond safe integers', app({ term: 2 ** 60, entries: [] }), /term .* not a non-negative safe integer/],
  ['entries on a heartbeat', app({ type: MessageType.Heartbeat }), /entries on a message of type 6/],
  ['an entry of unknown type', app({ entries: [{ index: 11, term: 4, type: 9, data }] }), /unknown type 9/],
  ['too many entries', app({ logTerm: 5, entries: Array.from({ length: appendEntriesCountMax + 1 }, (_, i) => ({ index: 11 + i, term: 5, data })) }),
    /entries \(limit/],
  ['a snapshot message without a snapshot', app({ type: MessageType.Snap, entries: [] }), /without a snapshot/],
  ['a snapshot on an append', app({ snapshot: { index: 3, term: 1, voters: ['n1'] } }), /a snapshot on a message of type 4/],
  ['a snapshot from a later term', { type: MessageType.Snap, from: 'n2', to: 'n1', term: 5, snapshot: { index: 3, term: 7, voters: ['n1'] } },
    /snapshot term 7 is above/],
  ['a snapshot with no voters', { type: MessageType.Snap, from: 'n2', to: 'n1', term: 5, snapshot: { index: 3, term: 2, voters: [] } }, /no voters/],
  ['an oversized context', app({ type: MessageType.Heartbeat, entries: [], context: new Uint8Array(4096) }), /context of 4096 bytes/],
];

t.test('well-formed peer messages pass', async (t) => {
  for (const [what, w] of valid) t.equal(checkWire(viaWire(w), peer, self), null, what);
});

t.test('each malformed peer message is refused with a fatal BAD_PAYLOAD naming the problem', async (t) => {
  for (const [what, w, why] of malformed) {
    const err = checkWire(viaWire(w), peer, self);
    t.ok(err instanceof ProtocolError && err.code === ErrorCode.BAD_PAYLOAD && err.fatal, `${what}: refused`);
    t.match(err?.message ?? '', why, `${what}: says why`);
  }
});

t.test('coalesced heartbeats: round trip of plain ones, responses and quiesce notices; bad numbers refused', (t) => {
  const viaBatch = (h: dsync.RaftHeartbeat.$Properties): dsync.RaftHeartbeat.$Properties => {
    const b = schema.RaftBatch.decode(schema.RaftBatch.encode({ messages: [], heartbeats: [h] }).finish());
    return b.heartbeats[0] as dsync.RaftHeartbeat.$Properties;
  };
  const cases: Message[] = [
    newMessage(MessageType.Heartbeat, peer, self, 7, { commit: 40 }),
    newMessage(MessageType.HeartbeatResp, peer, self, 7),
    newMessage(MessageType.Heartbeat, peer, self, 7, { commit: 41, context: quiesceContext }),
    newMessage(MessageType.HeartbeatResp, peer, self, 7, { context: quiesceContext }),
  ];
  for (const m of cases) {
    t.ok(coalescible(m), `type ${m.type} (context ${m.context.length} bytes) travels coalesced`);
    const back = heartbeatFromWire(viaBatch(heartbeatToWire(groupId(3), m)), peer, self);
    if (back instanceof ProtocolError) throw back;
    t.equal(back.group, 3);
    t.same(back.message, m, 'the same Raft message comes out');
  }
  t.notOk(coalescible(newMessage(MessageType.Heartbeat, peer, self, 7, { context: new Uint8Array([9, 9]) })), 'a heartbeat carrying a read context goes at once');
  t.notOk(coalescible(newMessage(MessageType.App, peer, self, 7)), 'appends are never coalesced');
  const tooBig = heartbeatFromWire(viaBatch({ group: 3, term: 2 ** 60, commit: 1 }), peer, self);
  t.ok(tooBig instanceof ProtocolError && tooBig.code === ErrorCode.BAD_PAYLOAD && tooBig.fatal, 'a term beyond a safe integer is a fatal BAD_PAYLOAD');
  const fromSelf = heartbeatFromWire({ group: 3, term: 2, commit: 1 }, self, self);
  t.ok(fromSelf instanceof ProtocolError, 'a heartbeat from this node itself is refused');
  t.end();
});
