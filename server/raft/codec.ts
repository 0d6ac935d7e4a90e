// Converts Raft messages between core's typed structs and the protobuf
// RaftMessage on the wire (the one codec for peer traffic), and checks what a
// peer sent before core/raft sees it: peer input is untrusted, Raft.step asserts.

import { appendEntriesCountMax, raftMessageContextBytesMax } from '../../core/constants.js';
import { type GroupId, groupId, logIndex, type NodeId, term } from '../../core/ids.js';
import { type Entry, EntryType, type Message, MessageType, type Snapshot } from '../../core/raft/types.js';
import { bytesEqual, newMessage } from '../../core/raft/message.js';
import { quiesceContext } from '../../core/raft/raft.js';
import { ErrorCode, ProtocolError } from '../../protocol/errors.js';
import { wireNumber } from '../../protocol/wire-number.js';
import { schema } from '../../protocol/index.js';
import type { dsync } from '../../protocol/generated/dsync.js';

type WireMessage = ReturnType<typeof schema.RaftMessage.create>;
const emptyBytes = new Uint8Array(0);

export function toWire(group: GroupId, m: Message): WireMessage {
  return schema.RaftMessage.create({
    group,
    type: m.type,
    from: m.from,
    to: m.to,
    term: m.term,
    logTerm: m.logTerm,
    index: m.index,
    entries: m.entries.map((e) => ({ term: e.term, index: e.index, type: e.type, data: e.data })),
    commit: m.commit,
    reject: m.reject,
    rejectHint: m.rejectHint,
    rejectHintTerm: m.rejectHintTerm,
    snapshot: m.snapshot === null ? null : {
      index: m.snapshot.meta.index, term: m.snapshot.meta.term, voters: [...m.snapshot.meta.conf.voters],
      learners: [...m.snapshot.meta.conf.learners], data: m.snapshot.data,
    },
    context: m.context,
  });
}

export function fromWire(w: dsync.RaftMessage.$Properties): { group: GroupId; message: Message } {
  const entries: Entry[] = (w.entries ?? []).map((e) => ({
    term: term(wireNumber(e.term)), index: logIndex(wireNumber(e.index)), type: (e.type ?? 0) as EntryType, data: e.data ?? emptyBytes,
  }));
  const s = w.snapshot;
  const snapshot: Snapshot | null = s === null || s === undefined ? null : {
    meta: {
      index: logIndex(wireNumber(s.index)), term: term(wireNumber(s.term)),
      conf: { voters: (s.voters ?? []) as NodeId[], learners: (s.learners ?? []) as NodeId[] },
    },
    data: s.data ?? emptyBytes,
  };
  return {
    group: groupId(w.group ?? 0),
    message: {
      type: (w.type ?? 0) as MessageType,
      from: (w.from ?? '') as NodeId,
      to: (w.to ?? '') as NodeId,
      term: term(wireNumber(w.term)),
      logTerm: term(wireNumber(w.logTerm)),
      index: logIndex(wireNumber(w.index)),
      entries,
      commit: logIndex(wireNumber(w.commit)),
      reject: w.reject === true,
      rejectHint: logIndex(wireNumber(w.rejectHint)),
      rejectHintTerm: term(wireNumber(w.rejectHintTerm)),
      snapshot,
      context: w.context ?? emptyBytes,
    },
  };
}

const messageTypeMax = MessageType.ReadIndexResp;

/**
 * Why a peer's RaftMessage cannot be stepped, or null when it can: the type is known,
 * it comes from `from` and is addressed to `self`, every number is a non-negative safe
 * integer, terms are ordered as Raft's own messages order them (log terms and entry
 * terms never above the message term, entries' terms non-decreasing from the previous
 * log term), entries appear only on appends, contiguous right after `index`, and a
 * snapshot only on (and always on) a snapshot message. A non-null answer means the
 * link is broken or hostile: close it (BAD_PAYLOAD, fatal to the connection).
 */
export function checkWire(w: dsync.RaftMessage.$Properties, from: NodeId, self: NodeId): ProtocolError | null {
  const bad = (why: string): ProtocolError => new ProtocolError(ErrorCode.BAD_PAYLOAD, `malformed raft message from ${from}: ${why}`, true);
  const type = w.type ?? 0;
  if (!Number.isInteger(type) || type < 0 || type > messageTypeMax) return bad(`unknown message type ${type}`);
  if ((w.from ?? '') !== from) return bad(`it names ${JSON.stringify(w.from ?? '')} as its sender on ${from}'s link`);
  if ((w.to ?? '') !== self) return bad(`it is addressed to ${JSON.stringify(w.to ?? '')}, not this node (${self})`);
  const n = {
    group: wireNumber(w.group), term: wireNumber(w.term), logTerm: wireNumber(w.logTerm), index: wireNumber(w.index),
    commit: wireNumber(w.commit), rejectHint: wireNumber(w.rejectHint), rejectHintTerm: wireNumber(w.rejectHintTerm),
  };
  // Checked field by field: a loop over Object.entries(n) allocated its arrays on every message.
  if (!(isCount(n.group) && isCount(n.term) && isCount(n.logTerm) && isCount(n.index) && isCount(n.commit) && isCount(n.rejectHint)
    && isCount(n.rejectHintTerm))) {
    for (const [name, v] of Object.entries(n)) {
      if (!isCount(v)) return bad(`${name} ${v} is not a non-negative safe integer`);
    }
  }
  if (n.logTerm > n.term) return bad(`log term ${n.logTerm} is above the message term ${n.term}`);
  if (n.rejectHintTerm > n.term) return bad(`reject hint term ${n.rejectHintTerm} is above the message term ${n.term}`);
  if ((w.context?.length ?? 0) > raftMessageContextBytesMax) return bad(`context of ${w.context?.length ?? 0} bytes (limit ${raftMessageContextBytesMax})`);
  const entries = w.entries ?? [];
  if (entries.length > 0 && type !== MessageType.App) return bad(`entries on a message of type ${type}`);
  if (entries.length > appendEntriesCountMax) return bad(`${entries.length} entries (limit ${appendEntriesCountMax})`);
  let prevIndex = n.index;
  let prevTerm = n.logTerm;
  for (const e of entries) {
    const index = wireNumber(e.index);
    const entryTerm = wireNumber(e.term);
    if (!isCount(index) || !isCount(entryTerm)) return bad(`entry index ${index} / term ${entryTerm} is not a non-negative safe integer`);
    if (index !== prevIndex + 1) return bad(`entry ${index} does not follow ${prevIndex} (entries must be contiguous after the message index)`);
    if (entryTerm < prevTerm) return bad(`entry ${index} has term ${entryTerm}, below the term ${prevTerm} before it`);
    if (entryTerm > n.term) return bad(`entry ${index} has term ${entryTerm}, above the message term ${n.term}`);
    const entryType = e.type ?? 0;
    if (entryType !== EntryType.Normal && entryType !== EntryType.ConfChange) return bad(`entry ${index} has unknown type ${entryType}`);
    prevIndex = index;
    prevTerm = entryTerm;
  }
  const snap = w.snapshot;
  const hasSnapshot = snap !== null && snap !== undefined;
  if (hasSnapshot !== (type === MessageType.Snap)) return bad(type === MessageType.Snap ? 'a snapshot message without a snapshot' : `a snapshot on a message of type ${type}`);
  if (hasSnapshot) {
    const snapIndex = wireNumber(snap.index);
    const snapTerm = wireNumber(snap.term);
    if (!isCount(snapIndex) || !isCount(snapTerm)) return bad('snapshot index or term is not a non-negative safe integer');
    if (snapTerm > n.term) return bad(`snapshot term ${snapTerm} is above the message term ${n.term}`);
    if ((snap.voters ?? []).length === 0) return bad('a snapshot whose configuration has no voters');
  }
  return null;
}

type WireHeartbeat = ReturnType<typeof schema.RaftHeartbeat.create>;

/**
 * A heartbeat or heartbeat response that can travel coalesced (RaftHeartbeat): one without
 * a read context (those carry a ReadIndex round and go at once) or a quiesce notice.
 */
export function coalescible(m: Message): boolean {
  return (m.type === MessageType.Heartbeat || m.type === MessageType.HeartbeatResp)
    && (m.context.length === 0 || bytesEqual(m.context, quiesceContext));
}

export function heartbeatToWire(group: GroupId, m: Message): WireHeartbeat {
  return schema.RaftHeartbeat.create({ group, term: m.term, commit: m.commit, response: m.type === MessageType.HeartbeatResp,
    quiesce: m.context.length > 0 });
}

/** The Raft message a coalesced heartbeat from `from` to `self` stands for, or a BAD_PAYLOAD error. */
export function heartbeatFromWire(h: dsync.RaftHeartbeat.$Properties, from: NodeId, self: NodeId): { group: GroupId; message: Message } | ProtocolError {
  const group = wireNumber(h.group);
  const t = wireNumber(h.term);
  const commit = wireNumber(h.commit);
  if (!isCount(group) || !isCount(t) || !isCount(commit) || from === self) {
    return new ProtocolError(ErrorCode.BAD_PAYLOAD, `malformed raft heartbeat from ${from}: group ${group}, term ${t}, commit ${commit}`, true);
  }
  const type = h.response === true ? MessageType.HeartbeatResp : MessageType.Heartbeat;
  return { group: groupId(group), message: newMessage(type, from, self, t, { commit, ...(h.quiesce === true ? { context: quiesceContext } : {}) }) };
}

function isCount(v: number): boolean {
  return Number.isSafeInteger(v) && v >= 0;
}
