// LockRequest and LockReply laid out and read by hand: the bytes protobufjs writes and
// reads (test/unit/client/lock-codec.test.ts compares them), without its Writer objects
// and without a Long per uint64 field (protobufjs makes one for every seq, session and
// token, and for every absent uint64 field of a reply). Strings with surrogates and
// replies with fields this reader does not know go through protobufjs.

import { schema } from '../../protocol/index.js';
import { wireNumber } from '../../protocol/wire-number.js';
import { putVarint, varintBytes } from '../../protocol/varint.js';

export interface LockRequestFields {
  clientId?: string;
  seq?: number;
  session?: number;
  lock?: string;
  exclusive?: boolean;
  requestId?: string;
  wait?: boolean;
  waitMs?: number;
  ttlMs?: number;
  lockDelayMs?: number;
}

export interface LockReplyFields {
  readonly session: number;
  readonly ttlMs: number;
  readonly token: number;
  readonly exclusive: boolean;
  readonly count: number;
  readonly lock: string;
}

const surrogate = /[\uD800-\uDFFF]/;
/** Strict, as protobufjs' string reader is: invalid UTF-8 (a lone surrogate written by a lax writer) is refused; a leading U+FEFF is kept, as protobufjs keeps it. */
const dec = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** A field protobufjs writes (proto3): set, and not its type's default ('', 0, false). */
function present(v: string | number | boolean | undefined | null): boolean {
  return v !== undefined && v !== null && v !== '' && v !== 0 && v !== false;
}

/** uint32 fields go on the wire as protobufjs writes them (value >>> 0). */
const u32 = (v: number): number => v >>> 0;

/**
 * The bytes of `schema.LockRequest.encode(fields).finish()`, with `clientId` and `seq` (a
 * lane's, per attempt) in place of the fields' own, which stay untouched.
 */
export function encodeLockRequest(f: Readonly<LockRequestFields>, clientId = f.clientId, seq = f.seq): Uint8Array {
  const lock = f.lock;
  const requestId = f.requestId;
  if ((present(clientId) && surrogate.test(clientId as string)) || (present(lock) && surrogate.test(lock as string))
    || (present(requestId) && surrogate.test(requestId as string))) {
    return schema.LockRequest.encode({ ...f, clientId: clientId ?? null, seq: seq ?? null }).finish();
  }
  const clientIdBytes = present(clientId) ? Buffer.byteLength(clientId as string, 'utf8') : -1;
  const lockBytes = present(lock) ? Buffer.byteLength(lock as string, 'utf8') : -1;
  const requestIdBytes = present(requestId) ? Buffer.byteLength(requestId as string, 'utf8') : -1;
  let size = 0;
  if (clientIdBytes >= 0) size += 1 + varintBytes(clientIdBytes) + clientIdBytes;
  if (present(seq)) size += 1 + varintBytes(seq as number);
  if (present(f.session)) size += 1 + varintBytes(f.session as number);
  if (lockBytes >= 0) size += 1 + varintBytes(lockBytes) + lockBytes;
  if (present(f.exclusive)) size += 2;
  if (requestIdBytes >= 0) size += 1 + varintBytes(requestIdBytes) + requestIdBytes;
  if (present(f.wait)) size += 2;
  if (present(f.waitMs)) size += 1 + varintBytes(u32(f.waitMs as number));
  if (present(f.ttlMs)) size += 1 + varintBytes(u32(f.ttlMs as number));
  if (present(f.lockDelayMs)) size += 1 + varintBytes(u32(f.lockDelayMs as number));
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  if (clientIdBytes >= 0) {
    out[at++] = 0x0a;
    at = putVarint(out, at, clientIdBytes);
    at += out.write(clientId as string, at, 'utf8');
  }
  if (present(seq)) { out[at++] = 0x10; at = putVarint(out, at, seq as number); }
  if (present(f.session)) { out[at++] = 0x18; at = putVarint(out, at, f.session as number); }
  if (lockBytes >= 0) {
    out[at++] = 0x22;
    at = putVarint(out, at, lockBytes);
    at += out.write(lock as string, at, 'utf8');
  }
  if (present(f.exclusive)) { out[at++] = 0x28; out[at++] = 1; }
  if (requestIdBytes >= 0) {
    out[at++] = 0x32;
    at = putVarint(out, at, requestIdBytes);
    at += out.write(requestId as string, at, 'utf8');
  }
  if (present(f.wait)) { out[at++] = 0x38; out[at++] = 1; }
  if (present(f.waitMs)) { out[at++] = 0x40; at = putVarint(out, at, u32(f.waitMs as number)); }
  if (present(f.ttlMs)) { out[at++] = 0x48; at = putVarint(out, at, u32(f.ttlMs as number)); }
  if (present(f.lockDelayMs)) { out[at++] = 0x50; at = putVarint(out, at, u32(f.lockDelayMs as number)); }
  return out;
}

/** A LockReply as plain numbers; what protobufjs decodes, read by hand when every field is one of LockReply's six. */
export function decodeLockReply(payload: Uint8Array): LockReplyFields {
  let session = 0;
  let ttlMs = 0;
  let token = 0;
  let exclusive = false;
  let count = 0;
  let lock = '';
  let at = 0;
  const end = payload.length;
  while (at < end) {
    const tag = payload[at++] as number;
    if (tag === 0x32) {
      let len = 0;
      let scale = 1;
      for (;;) {
        if (at >= end || scale > 2 ** 28) return slowDecode(payload);
        const b = payload[at++] as number;
        len += (b & 0x7f) * scale;
        if (b < 0x80) break;
        scale *= 128;
      }
      if (at + len > end) return slowDecode(payload);
      lock = dec.decode(payload.subarray(at, at + len));
      at += len;
      continue;
    }
    if (tag !== 0x08 && tag !== 0x10 && tag !== 0x18 && tag !== 0x20 && tag !== 0x28) return slowDecode(payload);
    let v = 0;
    let scale = 1;
    for (;;) {
      // Beyond 7 bytes (2^49) a varint is not one this reader keeps exact: protobufjs decides.
      if (at >= end || scale > 2 ** 42) return slowDecode(payload);
      const b = payload[at++] as number;
      v += (b & 0x7f) * scale;
      if (b < 0x80) break;
      scale *= 128;
    }
    switch (tag) {
      case 0x08: session = v; break;
      case 0x10: ttlMs = v >>> 0; break;
      case 0x18: token = v; break;
      case 0x20: exclusive = v !== 0; break;
      default: count = v >>> 0; break;
    }
  }
  return { session, ttlMs, token, exclusive, count, lock };
}

function slowDecode(payload: Uint8Array): LockReplyFields {
  const r = schema.LockReply.decode(payload);
  return { session: wireNumber(r.session), ttlMs: r.ttlMs, token: wireNumber(r.token), exclusive: r.exclusive, count: r.count, lock: r.lock };
}
