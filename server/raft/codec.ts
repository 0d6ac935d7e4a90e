// Converts Raft messages between core's typed structs and the protobuf
// RaftMessage on the wire (the one codec for peer traffic).

import { type GroupId, groupId, logIndex, type NodeId, term } from '../../core/ids.js';
import type { Entry, EntryType, Message, MessageType, Snapshot } from '../../core/raft/types.js';
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
    term: term(Number(e.term ?? 0)), index: logIndex(Number(e.index ?? 0)), type: (e.type ?? 0) as EntryType, data: e.data ?? emptyBytes,
  }));
  const s = w.snapshot;
  const snapshot: Snapshot | null = s === null || s === undefined ? null : {
    meta: {
      index: logIndex(Number(s.index ?? 0)), term: term(Number(s.term ?? 0)),
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
      term: term(Number(w.term ?? 0)),
      logTerm: term(Number(w.logTerm ?? 0)),
      index: logIndex(Number(w.index ?? 0)),
      entries,
      commit: logIndex(Number(w.commit ?? 0)),
      reject: w.reject === true,
      rejectHint: logIndex(Number(w.rejectHint ?? 0)),
      rejectHintTerm: term(Number(w.rejectHintTerm ?? 0)),
      snapshot,
      context: w.context ?? emptyBytes,
    },
  };
}
