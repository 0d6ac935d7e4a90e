// Checks the cache's batched renewal messages on the wire (server/services/cache/codec.ts):
// a RenewBatch and a RenewedBatch, a Volume and a VolumeGranted with its revocations, and a
// Data with its volume period come back identical through a CachePeerBatch, and a
// malformed one (field counts unlike the key count, no keys, too many, an empty or
// oversized key) is a ProtocolError, never an assertion in the core.

import t from 'tap';
import { St } from '../../../core/cache/messages.js';
import type { Data, RenewBatch, RenewedBatch, Volume, VolumeGranted } from '../../../core/cache/messages.js';
import { cacheKeyBytesMax, cacheRenewBatchKeysMax } from '../../../core/constants.js';
import { cacheNodeIndex } from '../../../core/ids.js';
import { ProtocolError } from '../../../protocol/errors.js';
import { schema } from '../../../protocol/index.js';
import { decodeToHome, decodeToNode, encodeToHome, encodeToNode } from '../../../server/services/cache/codec.js';

const nodes = 3;

function viaWire(toHome: ReturnType<typeof encodeToHome>[], toNode: ReturnType<typeof encodeToNode>[]): ReturnType<typeof schema.CachePeerBatch.decode> {
  return schema.CachePeerBatch.decode(schema.CachePeerBatch.encode({ ring: 4, toHome, toNode }).finish());
}

t.test('RenewBatch and RenewedBatch round-trip', async (t) => {
  const ask: RenewBatch = { kind: 'RenewBatch', from: cacheNodeIndex(0), incarnation: 9, to: cacheNodeIndex(2), sentMs: 123_456.75, keys: ['a', 'ü/b', 'key:9999'], versions: [1, 0, 4_000_000_000] };
  const answer: RenewedBatch = { kind: 'RenewedBatch', from: cacheNodeIndex(2), to: cacheNodeIndex(0), incarnation: 9, keys: ['a', 'ü/b'], ok: [true, false], versions: [3, 0], leaseUntilMs: [125_406.75, 0] };
  const wire = viaWire([encodeToHome(ask)], [encodeToNode(answer)]);
  t.same(decodeToHome(wire.toHome[0] as schema.ICachePeerMessage, nodes), ask);
  t.same(decodeToNode(wire.toNode[0] as schema.ICachePeerMessage, nodes), answer);
});

t.test('Volume, VolumeGranted (with revocations) and a Data\'s volume period round-trip; malformed revocations are protocol errors', async (t) => {
  const ask: Volume = { kind: 'Volume', from: cacheNodeIndex(1), incarnation: 3, to: cacheNodeIndex(2), sentMs: 77_000.5 };
  const grant: VolumeGranted = { kind: 'VolumeGranted', from: cacheNodeIndex(2), to: cacheNodeIndex(1), incarnation: 3, epoch: 1_700_000_001, seq: 4, leaseUntilMs: 78_950.5,
    revoke: [{ key: 'a', round: 12, version: 7, fwdTo: null }, { key: 'b', round: 13, version: 2, fwdTo: St.S }, { key: 'c', round: 14, version: 9, fwdTo: St.I }] };
  const data: Data = { kind: 'Data', from: cacheNodeIndex(2), to: cacheNodeIndex(1), incarnation: 3, key: 'a', reqId: 5, state: St.E, version: 8, value: new Uint8Array([1, 2]), leaseUntilMs: 90_000, ttl: false, epoch: 1_700_000_001, seq: 4 };
  const wire = viaWire([encodeToHome(ask)], [encodeToNode(grant), encodeToNode(data), encodeToNode({ ...grant, revoke: [] })]);
  t.same(decodeToHome(wire.toHome[0] as schema.ICachePeerMessage, nodes), ask);
  t.same(decodeToNode(wire.toNode[0] as schema.ICachePeerMessage, nodes), grant);
  t.same(decodeToNode(wire.toNode[1] as schema.ICachePeerMessage, nodes), data);
  t.same(decodeToNode(wire.toNode[2] as schema.ICachePeerMessage, nodes), { ...grant, revoke: [] });
  const w = encodeToNode(grant);
  const bad: [string, schema.ICachePeerMessage][] = [['rounds unlike keys', { ...w, revokeRounds: [1] }], ['an unknown revocation kind', { ...w, revokeKinds: [0, 9, 0] }], ['an empty revoked key', { ...w, renewKeys: ['', 'b', 'c'] }]];
  for (const [what, m] of bad) {
    t.throws(() => decodeToNode(viaWire([], [m]).toNode[0] as schema.ICachePeerMessage, nodes), ProtocolError, what);
  }
});

t.test('malformed batches are protocol errors', async (t) => {
  const base = { kind: 'RenewBatch' as const, from: cacheNodeIndex(0), incarnation: 1, to: cacheNodeIndex(1), sentMs: 5 };
  const bad: [string, schema.ICachePeerMessage][] = [
    ['versions unlike keys', { ...encodeToHome({ ...base, keys: ['a', 'b'], versions: [1, 2] }), renewVersions: [1] }],
    ['no keys', { ...encodeToHome({ ...base, keys: ['a'], versions: [1] }), renewKeys: [], renewVersions: [] }],
    ['too many keys', { ...encodeToHome({ ...base, keys: ['a'], versions: [1] }), renewKeys: Array.from({ length: cacheRenewBatchKeysMax + 1 }, (_, i) => `k${i}`), renewVersions: Array.from({ length: cacheRenewBatchKeysMax + 1 }, () => 1) }],
    ['an empty key', { ...encodeToHome({ ...base, keys: ['a'], versions: [1] }), renewKeys: [''] }],
    ['an oversized key', { ...encodeToHome({ ...base, keys: ['a'], versions: [1] }), renewKeys: ['x'.repeat(cacheKeyBytesMax + 1)] }],
  ];
  for (const [what, w] of bad) {
    const wire = viaWire([w], []);
    t.throws(() => decodeToHome(wire.toHome[0] as schema.ICachePeerMessage, nodes), ProtocolError, what);
  }
  const answer = encodeToNode({ kind: 'RenewedBatch', from: cacheNodeIndex(1), to: cacheNodeIndex(0), incarnation: 1, keys: ['a', 'b'], ok: [true, true], versions: [1, 1], leaseUntilMs: [9, 9] });
  const badAnswers: [string, schema.ICachePeerMessage][] = [['ok unlike keys', { ...answer, renewOk: [true] }], ['leases unlike keys', { ...answer, renewLeaseUntilMs: [9] }]];
  for (const [what, w] of badAnswers) {
    const wire = viaWire([], [w]);
    t.throws(() => decodeToNode(wire.toNode[0] as schema.ICachePeerMessage, nodes), ProtocolError, what);
  }
});
