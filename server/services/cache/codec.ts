// Wire form of core/cache's coherence messages: each ToHome / ToNode as one
// CachePeerMessage (kind = its index in toHomeKinds / toNodeKinds), batched per peer in a
// CachePeerBatch. Decoding checks every field a core state machine asserts on, so a
// malformed batch is a ProtocolError (the peer link closes), never an assertion.

import { cacheKeyBytesMax, cacheNodesMax, cacheRenewBatchKeysMax, cacheValueBytesMax, cacheVolumeRevokesMax } from '../../../core/constants.js';
import { cacheNodeIndex } from '../../../core/ids.js';
import { St, toHomeKinds, toNodeKinds } from '../../../core/cache/messages.js';
import type { CacheValue, ToHome, ToNode } from '../../../core/cache/messages.js';
import { type Fence, fenceLockCharsMax } from '../../../core/cache/fence.js';
import { ErrorCode, ProtocolError } from '../../../protocol/errors.js';
import { schema } from '../../../protocol/index.js';

type Wire = schema.ICachePeerMessage;
const empty = new Uint8Array(0);

function valueOut(v: CacheValue): { value: Uint8Array; hasValue: boolean } {
  return v === null ? { value: empty, hasValue: false } : { value: v, hasValue: true };
}

export function encodeToHome(m: ToHome): Wire {
  if (m.kind === 'RenewBatch') {
    return { kind: toHomeKinds.indexOf(m.kind), from: m.from, to: m.to, incarnation: m.incarnation, sentMs: m.sentMs, renewKeys: m.keys as string[], renewVersions: m.versions as number[] };
  }
  if (m.kind === 'Volume') return { kind: toHomeKinds.indexOf(m.kind), from: m.from, to: m.to, incarnation: m.incarnation, sentMs: m.sentMs };
  const w: Record<string, unknown> = { kind: toHomeKinds.indexOf(m.kind), from: m.from, to: m.to, incarnation: m.incarnation, key: m.key };
  switch (m.kind) {
    case 'GetS':
      Object.assign(w, { reqId: m.reqId, sentMs: m.sentMs });
      break;
    case 'GetM':
      Object.assign(w, { reqId: m.reqId, sentMs: m.sentMs, write: m.write, ttlMs: m.ttlMs }, valueOut(m.value), fenceOut(m.fence));
      break;
    case 'Write':
      Object.assign(w, { reqId: m.reqId, sentMs: m.sentMs, version: m.version, ttlMs: m.ttlMs }, valueOut(m.value), fenceOut(m.fence));
      break;
    case 'PutM':
      Object.assign(w, { reqId: m.reqId, sentMs: m.sentMs, version: m.version }, valueOut(m.value));
      break;
    case 'Renew':
      Object.assign(w, { reqId: m.reqId, sentMs: m.sentMs, version: m.version });
      break;
    case 'Ack':
      Object.assign(w, { epoch: m.epoch, round: m.round, kept: m.kept, dirty: m.dirty }, valueOut(m.value));
      break;
  }
  return w as Wire;
}

export function encodeToNode(m: ToNode): Wire {
  if (m.kind === 'RenewedBatch') {
    return { kind: toNodeKinds.indexOf(m.kind), from: m.from, to: m.to, incarnation: m.incarnation,
      renewKeys: m.keys as string[], renewOk: m.ok as boolean[], renewVersions: m.versions as number[], renewLeaseUntilMs: m.leaseUntilMs as number[] };
  }
  if (m.kind === 'VolumeGranted') {
    return { kind: toNodeKinds.indexOf(m.kind), from: m.from, to: m.to, incarnation: m.incarnation, epoch: m.epoch, volumeSeq: m.seq, leaseUntilMs: m.leaseUntilMs,
      renewKeys: m.revoke.map((r) => r.key), renewVersions: m.revoke.map((r) => r.version), revokeRounds: m.revoke.map((r) => r.round),
      revokeKinds: m.revoke.map((r) => (r.fwdTo === null ? 0 : 1 + r.fwdTo)) };
  }
  const w: Record<string, unknown> = { kind: toNodeKinds.indexOf(m.kind), from: m.from, to: m.to, incarnation: m.incarnation, key: m.key };
  switch (m.kind) {
    case 'Data':
      Object.assign(w, { reqId: m.reqId, state: m.state, version: m.version, leaseUntilMs: m.leaseUntilMs, ttl: m.ttl, epoch: m.epoch, volumeSeq: m.seq }, valueOut(m.value));
      break;
    case 'Push':
      Object.assign(w, { version: m.version }, valueOut(m.value));
      break;
    case 'WriteAck':
      Object.assign(w, { reqId: m.reqId, version: m.version, state: m.state, leaseUntilMs: m.leaseUntilMs, ttl: m.ttl, epoch: m.epoch, volumeSeq: m.seq });
      break;
    case 'PutAck':
      Object.assign(w, { reqId: m.reqId, applied: m.applied });
      break;
    case 'Nack':
      Object.assign(w, { reqId: m.reqId, stale: m.reason === 'stale', fenced: m.reason === 'fenced', retryAfterMs: m.retryAfterMs, fenceToken: m.newestToken });
      break;
    case 'Inv':
      Object.assign(w, { epoch: m.epoch, round: m.round, version: m.version });
      break;
    case 'Fwd':
      Object.assign(w, { epoch: m.epoch, round: m.round, version: m.version, toState: m.toState });
      break;
    case 'Renewed':
      Object.assign(w, { ok: m.ok, version: m.version, leaseUntilMs: m.leaseUntilMs });
      break;
  }
  return w as Wire;
}

function bad(why: string): never {
  throw new ProtocolError(ErrorCode.BAD_PAYLOAD, `malformed cache peer message: ${why}`, false);
}

const num = (v: number | null | undefined): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);

function common(w: Wire, nodes: number): { from: ReturnType<typeof cacheNodeIndex>; to: ReturnType<typeof cacheNodeIndex>; incarnation: number; key: string } {
  const from = num(w.from);
  const to = num(w.to);
  if (from >= nodes || to >= nodes || nodes > cacheNodesMax) bad(`node index ${from} or ${to} outside the ring of ${nodes}`);
  const key = w.key ?? '';
  if (Buffer.byteLength(key) > cacheKeyBytesMax) bad('key over the size limit');
  return { from: cacheNodeIndex(from), to: cacheNodeIndex(to), incarnation: num(w.incarnation), key };
}

function fenceOut(f: Fence | null): { fenceLock: string; fenceToken: number } {
  return f === null ? { fenceLock: '', fenceToken: 0 } : { fenceLock: f.lock, fenceToken: f.token };
}

/** A fence as the core asserts it: a named lock (within the key limit) and a positive safe-integer token; else none. */
function fenceIn(w: Wire): Fence | null {
  const token = num(w.fenceToken);
  const lock = w.fenceLock ?? '';
  if (token === 0 && lock === '') return null;
  if (!Number.isSafeInteger(token) || token <= 0 || lock === '' || lock.length > fenceLockCharsMax) bad('fence without a lock or a positive token');
  return { lock, token };
}

/** A renewal batch's keys: 1..cacheRenewBatchKeysMax, each non-empty and within the key limit. */
function renewKeysIn(w: Wire): string[] {
  const keys = w.renewKeys ?? [];
  if (keys.length === 0 || keys.length > cacheRenewBatchKeysMax) bad(`renew batch of ${keys.length} keys (1..${cacheRenewBatchKeysMax})`);
  for (const k of keys) if (k === '' || Buffer.byteLength(k) > cacheKeyBytesMax) bad('renew batch key empty or over the size limit');
  return keys;
}

function valueIn(w: Wire): CacheValue {
  if (w.hasValue !== true) return null;
  const v = w.value ?? empty;
  if (v.byteLength > cacheValueBytesMax) bad('value over the size limit');
  return v;
}

function state(v: number | null | undefined, allowed: readonly St[]): St {
  const s = num(v) as St;
  if (!allowed.includes(s)) bad(`state ${s}`);
  return s;
}

export function decodeToHome(w: Wire, nodes: number): ToHome {
  const c = common(w, nodes);
  if (c.incarnation <= 0) bad('incarnation 0');
  const kind = toHomeKinds[num(w.kind)];
  const req = { reqId: num(w.reqId), sentMs: num(w.sentMs) };
  switch (kind) {
    case 'GetS':
      return { kind, ...c, ...req };
    case 'GetM':
      return { kind, ...c, ...req, write: w.write === true, value: valueIn(w), ttlMs: Math.max(0, num(w.ttlMs)), fence: fenceIn(w) };
    case 'Write':
      return { kind, ...c, ...req, version: num(w.version), value: valueIn(w), ttlMs: Math.max(0, num(w.ttlMs)), fence: fenceIn(w) };
    case 'PutM':
      return { kind, ...c, ...req, version: num(w.version), value: valueIn(w) };
    case 'Renew':
      return { kind, ...c, ...req, version: num(w.version) };
    case 'Ack':
      return { kind, ...c, epoch: num(w.epoch), round: num(w.round), kept: w.kept === true, dirty: w.dirty === true, value: valueIn(w) };
    case 'Volume':
      return { kind, from: c.from, to: c.to, incarnation: c.incarnation, sentMs: num(w.sentMs) };
    case 'RenewBatch': {
      const keys = renewKeysIn(w);
      const versions = (w.renewVersions ?? []).map(num);
      if (versions.length !== keys.length) bad('renew batch with a version count unlike its key count');
      return { kind, from: c.from, to: c.to, incarnation: c.incarnation, sentMs: num(w.sentMs), keys, versions };
    }
    default:
      return bad(`unknown kind ${String(w.kind)} to a home`);
  }
}

export function decodeToNode(w: Wire, nodes: number): ToNode {
  const c = common(w, nodes);
  const kind = toNodeKinds[num(w.kind)];
  switch (kind) {
    case 'Data':
      return { kind, ...c, reqId: num(w.reqId), state: state(w.state, [St.S, St.E, St.M]), version: num(w.version), value: valueIn(w), leaseUntilMs: num(w.leaseUntilMs), ttl: w.ttl === true,
        epoch: num(w.epoch), seq: num(w.volumeSeq) };
    case 'Push':
      return { kind, ...c, version: num(w.version), value: valueIn(w) };
    case 'WriteAck':
      return { kind, ...c, reqId: num(w.reqId), version: num(w.version), state: state(w.state, [St.I, St.S, St.M, St.O]), leaseUntilMs: num(w.leaseUntilMs), ttl: w.ttl === true,
        epoch: num(w.epoch), seq: num(w.volumeSeq) };
    case 'PutAck':
      return { kind, ...c, reqId: num(w.reqId), applied: w.applied === true };
    case 'Nack':
      return { kind, ...c, reqId: num(w.reqId), reason: w.fenced === true ? 'fenced' : w.stale === true ? 'stale' : 'busy', retryAfterMs: Math.max(0, num(w.retryAfterMs)),
        newestToken: w.fenced === true ? Math.max(0, num(w.fenceToken)) : 0 };
    case 'Inv':
      return { kind, ...c, epoch: num(w.epoch), round: num(w.round), version: num(w.version) };
    case 'Fwd':
      return { kind, ...c, epoch: num(w.epoch), round: num(w.round), version: num(w.version), toState: state(w.toState, [St.S, St.I]) };
    case 'Renewed':
      return { kind, ...c, ok: w.ok === true, version: num(w.version), leaseUntilMs: num(w.leaseUntilMs) };
    case 'RenewedBatch': {
      const keys = renewKeysIn(w);
      const ok = (w.renewOk ?? []).map((b) => b === true);
      const versions = (w.renewVersions ?? []).map(num);
      const leaseUntilMs = (w.renewLeaseUntilMs ?? []).map(num);
      if (ok.length !== keys.length || versions.length !== keys.length || leaseUntilMs.length !== keys.length) bad('renewed batch with fields unlike its key count');
      return { kind, from: c.from, to: c.to, incarnation: c.incarnation, keys, ok, versions, leaseUntilMs };
    }
    case 'VolumeGranted': {
      const keys = w.renewKeys ?? [];
      const versions = (w.renewVersions ?? []).map(num);
      const rounds = (w.revokeRounds ?? []).map(num);
      const kinds = (w.revokeKinds ?? []).map(num);
      if (keys.length > cacheVolumeRevokesMax || versions.length !== keys.length || rounds.length !== keys.length || kinds.length !== keys.length) bad('volume grant with revocations unlike its key count');
      const revoke = keys.map((key, i) => {
        if (key === '' || Buffer.byteLength(key) > cacheKeyBytesMax) bad('revoked key empty or over the size limit');
        const k = kinds[i] as number;
        if (k !== 0 && k !== 1 + St.I && k !== 1 + St.S) bad(`revocation kind ${k}`);
        return { key, round: rounds[i] as number, version: versions[i] as number, fwdTo: k === 0 ? null : ((k - 1) as St) };
      });
      return { kind, from: c.from, to: c.to, incarnation: c.incarnation, epoch: num(w.epoch), seq: num(w.volumeSeq), leaseUntilMs: num(w.leaseUntilMs), revoke };
    }
    default:
      return bad(`unknown kind ${String(w.kind)} to a node`);
  }
}
