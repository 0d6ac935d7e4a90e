// Test helper (not a test): drives one CacheHome or one NodeCache by hand with short,
// readable messages, answering the home's memory operations at once from an
// InMemoryBacking, and prints outputs and state compactly for golden tables.

import type { Fence } from '../../../core/cache/fence.js';
import { CacheHome } from '../../../core/cache/home.js';
import type { HomeOptions } from '../../../core/cache/home.js';
import { InMemoryBacking } from '../../../core/cache/backing.js';
import { St, stateNames } from '../../../core/cache/messages.js';
import type { CacheConfig, CacheValue, ToHome, ToNode } from '../../../core/cache/messages.js';
import { NodeCache } from '../../../core/cache/node.js';
import { cacheNodeIndex } from '../../../core/ids.js';

const enc = new TextEncoder();
const dec = new TextDecoder();
export const val = (s: string | null): CacheValue => (s === null ? null : enc.encode(s));
export const str = (v: CacheValue): string => (v === null ? '-' : dec.decode(v));

export const KEY = 'k';

function mask(m: number): string {
  const out: number[] = [];
  for (let i = 0; i < 32; i++) if ((m & (1 << i)) !== 0) out.push(i);
  return `{${out.join(',')}}`;
}

/** A message to a node as a short string: kind>to plus what matters. */
export function showToNode(m: ToNode): string {
  switch (m.kind) {
    case 'Data':
      return `Data>${m.to} ${stateNames[m.state]} v${m.version} =${str(m.value)}`;
    case 'Push':
      return `Push>${m.to} v${m.version} =${str(m.value)}`;
    case 'WriteAck':
      return `WriteAck>${m.to} ${stateNames[m.state]} v${m.version}`;
    case 'PutAck':
      return `PutAck>${m.to}`;
    case 'Nack':
      return `Nack>${m.to} ${m.reason}`;
    case 'Inv':
      return `Inv>${m.to} v${m.version}`;
    case 'Fwd':
      return `Fwd>${m.to} ${stateNames[m.toState]} v${m.version}`;
    case 'Renewed':
      return `Renewed>${m.to} ${m.ok ? 'ok' : 'refused'}`;
    case 'RenewedBatch':
      return `RenewedBatch>${m.to} ${m.keys.map((k, i) => `${k}:${m.ok[i] === true ? 'ok' : 'refused'}`).join(',')}`;
    case 'VolumeGranted':
      return `VolumeGranted>${m.to} seq${m.seq}${m.revoke.map((r) => ` ${r.fwdTo === null ? 'Inv' : `Fwd ${stateNames[r.fwdTo]}`} ${r.key}v${r.version}`).join('')}`;
  }
}

export function showToHome(m: ToHome): string {
  switch (m.kind) {
    case 'GetS':
    case 'GetM':
      return `${m.kind}#${m.reqId}`;
    case 'Write':
      return `Write#${m.reqId} v${m.version} =${str(m.value)}${m.ttlMs > 0 ? ` ttl${m.ttlMs}` : ''}`;
    case 'PutM':
      return `PutM#${m.reqId} v${m.version} =${str(m.value)}`;
    case 'Renew':
      return `Renew v${m.version}`;
    case 'RenewBatch':
      return `RenewBatch ${m.keys.map((k, i) => `${k}v${m.versions[i] ?? '?'}`).join(',')}`;
    case 'Ack':
      return `Ack${m.kept ? ' kept' : ''}${m.dirty ? ` dirty=${str(m.value)}` : ''}`;
    case 'Volume':
      return 'Volume';
  }
}

export class HomeRig {
  nowMs = 100_000;
  readonly backing = new InMemoryBacking();
  readonly home: CacheHome;
  private reqId = 100;
  private readonly inc = [1, 1, 1, 1];
  /** Last round sent to each node (Inv or Fwd), for ack(). */
  private readonly rounds = new Map<number, { epoch: number; round: number }>();
  /** Last reqId used by each node, for dup(). */
  readonly lastReq = new Map<number, ToHome>();

  constructor(readonly cfg: CacheConfig, opts: Partial<HomeOptions> = {}) {
    this.home = new CacheHome(cfg, { self: cacheNodeIndex(3), epoch: 7, startedMs: this.nowMs - 10 * cfg.leaseMs, ...opts });
  }

  private base(n: number): { from: ReturnType<typeof cacheNodeIndex>; incarnation: number; to: ReturnType<typeof cacheNodeIndex>; key: string } {
    return { from: cacheNodeIndex(n), incarnation: this.inc[n] as number, to: cacheNodeIndex(3), key: KEY };
  }

  /** Node n's message; a request comes with a renewal of n's volume lease (its answer not shown), as a node keeps one while it asks. */
  send(msg: ToHome): string {
    if (msg.kind !== 'Ack' && msg.kind !== 'Renew' && msg.kind !== 'RenewBatch' && msg.kind !== 'Volume') {
      this.lastReq.set(msg.from, msg);
      this.home.step({ kind: 'Volume', from: msg.from, incarnation: msg.incarnation, to: msg.to, sentMs: this.nowMs }, this.nowMs);
    }
    this.home.step(msg, this.nowMs);
    return this.drain();
  }

  /** Answers memory operations at once; returns the messages sent, in order. */
  drain(): string {
    const out: string[] = [];
    for (;;) {
      const r = this.home.ready();
      for (const m of r.messages) {
        if (m.kind === 'Inv' || m.kind === 'Fwd') this.rounds.set(m.to, { epoch: m.epoch, round: m.round });
        if (m.kind !== 'VolumeGranted' || m.revoke.length > 0) out.push(showToNode(m));
      }
      if (r.memory.length === 0) break;
      for (const op of r.memory) {
        if (op.kind === 'read') this.home.memoryRead(op.key, this.backing.read(op.key), this.nowMs);
        else {
          this.backing.write(op.key, op.record);
          this.home.memoryWritten(op.key, this.nowMs);
        }
      }
    }
    return out.join(' ');
  }

  getS(n: number): string {
    return this.send({ kind: 'GetS', ...this.base(n), reqId: ++this.reqId, sentMs: this.nowMs });
  }
  getM(n: number, write?: string | null, ttlMs = 0, fence: Fence | null = null): string {
    return this.send({ kind: 'GetM', ...this.base(n), reqId: ++this.reqId, sentMs: this.nowMs, write: write !== undefined, value: val(write ?? null), ttlMs, fence });
  }
  write(n: number, value: string | null, ttlMs = 0, version = this.home.entry(KEY)?.version ?? 0, fence: Fence | null = null): string {
    return this.send({ kind: 'Write', ...this.base(n), reqId: ++this.reqId, sentMs: this.nowMs, version, value: val(value), ttlMs, fence });
  }
  putM(n: number, value: string | null, version = this.home.entry(KEY)?.version ?? 0): string {
    return this.send({ kind: 'PutM', ...this.base(n), reqId: ++this.reqId, sentMs: this.nowMs, version, value: val(value) });
  }
  renew(n: number): string {
    return this.send({ kind: 'Renew', ...this.base(n), reqId: 0, sentMs: this.nowMs, version: this.home.entry(KEY)?.version ?? 0 });
  }
  /** Resends node n's last request unchanged. */
  dup(n: number): string {
    const m = this.lastReq.get(n);
    if (m === undefined) throw new Error(`node ${n} sent nothing`);
    return this.send(m);
  }
  ack(n: number, opts: { kept?: boolean; dirty?: string } = {}): string {
    const r = this.rounds.get(n);
    if (r === undefined) throw new Error(`no round sent to node ${n}`);
    return this.send({ kind: 'Ack', ...this.base(n), epoch: r.epoch, round: r.round, kept: opts.kept ?? false, dirty: opts.dirty !== undefined, value: val(opts.dirty ?? null) });
  }
  restart(n: number): void {
    this.inc[n] = (this.inc[n] as number) + 1;
  }
  tick(ms: number): string {
    this.nowMs += ms;
    this.home.tick(this.nowMs);
    return this.drain();
  }

  /** The entry as `STATE o<owner> s{sharers} v<version> =<value>` (+ busy, stale). */
  state(): string {
    const e = this.home.entry(KEY);
    if (e === null) return 'none';
    return `${stateNames[e.state]} o${e.owner} s${mask(e.sharers)} v${e.version} =${str(e.value)}${e.busy ? ' busy' : ''}${e.memoryStale ? ' mem-stale' : ''}`;
  }
}

export class NodeRig {
  nowMs = 100_000;
  node: NodeCache;
  private opId = 0;
  readonly sent: ToHome[] = [];
  readonly done: string[] = [];

  constructor(readonly cfg: CacheConfig, readonly incarnation = 1, opts: { entriesMax?: number; bytesMax?: number } = {}) {
    this.node = new NodeCache(cfg, { self: cacheNodeIndex(0), incarnation, homeOf: () => cacheNodeIndex(3), ...opts });
    // A volume lease from the home for the whole test: these tables are about the lines' own protocol.
    this.node.step({ kind: 'VolumeGranted', from: cacheNodeIndex(3), to: cacheNodeIndex(0), incarnation, epoch: 1, seq: 0, leaseUntilMs: this.nowMs + 1e9, revoke: [] }, this.nowMs);
  }

  private drain(immediate?: string): string {
    const r = this.node.ready();
    const out: string[] = [];
    if (immediate !== undefined) out.push(immediate);
    for (const m of r.messages) {
      this.sent.push(m);
      out.push(showToHome(m));
    }
    for (const c of r.completions) out.push(c.ok ? `done#${c.opId}=${str(c.value)}` : `done#${c.opId}!${c.error}`);
    return out.join(' ');
  }

  get(key = KEY): string {
    const r = this.node.get(++this.opId, key, this.nowMs);
    return this.drain(typeof r === 'symbol' ? r.description ?? '' : `hit=${str(r)}`);
  }
  set(value: string | null, ttlMs = 0, key = KEY, fence: Fence | null = null): string {
    const r = this.node.set(++this.opId, key, val(value), this.nowMs, ttlMs, fence);
    return this.drain(r.description ?? '');
  }
  evict(key = KEY): string {
    this.node.evict(key, this.nowMs);
    return this.drain();
  }
  tick(ms: number): string {
    this.nowMs += ms;
    this.node.tick(this.nowMs);
    return this.drain();
  }

  /** The last request sent (to answer it). */
  last(): ToHome {
    const m = this.sent[this.sent.length - 1];
    if (m === undefined) throw new Error('nothing sent');
    return m;
  }

  private reply(fields: Record<string, unknown>, key = KEY): string {
    const msg = { from: cacheNodeIndex(3), to: cacheNodeIndex(0), incarnation: this.incarnation, key, ...fields } as unknown as ToNode;
    this.node.step(msg, this.nowMs);
    return this.drain();
  }

  /** Grants the last request: Data in `state` at `version`. */
  data(state: St, version: number, value: string | null, opts: { key?: string; leaseMs?: number; reqId?: number; incarnation?: number } = {}): string {
    const last = this.last();
    const reqId = opts.reqId ?? ('reqId' in last ? last.reqId : 0);
    return this.reply({ kind: 'Data', reqId, state, version, value: val(value), leaseUntilMs: this.nowMs + (opts.leaseMs ?? this.cfg.leaseMs - 100), ttl: false, epoch: 1, seq: 0, ...(opts.incarnation !== undefined ? { incarnation: opts.incarnation } : {}) }, opts.key ?? KEY);
  }
  writeAck(state: St, version: number): string {
    const last = this.last();
    return this.reply({ kind: 'WriteAck', reqId: 'reqId' in last ? last.reqId : 0, state, version, leaseUntilMs: this.nowMs + this.cfg.leaseMs - 100, ttl: false, epoch: 1, seq: 0 });
  }
  putAck(applied = true): string {
    const last = this.last();
    return this.reply({ kind: 'PutAck', reqId: 'reqId' in last ? last.reqId : 0, applied });
  }
  nack(reason: 'busy' | 'stale' | 'fenced', newestToken = 0): string {
    const last = this.last();
    return this.reply({ kind: 'Nack', reqId: 'reqId' in last ? last.reqId : 0, reason, retryAfterMs: 0, newestToken });
  }
  inv(version: number): string {
    return this.reply({ kind: 'Inv', epoch: 1, round: 1, version });
  }
  fwd(toState: St, version: number): string {
    return this.reply({ kind: 'Fwd', epoch: 1, round: 1, version, toState });
  }
  push(version: number, value: string): string {
    return this.reply({ kind: 'Push', version, value: val(value) });
  }
  renewed(ok: boolean, version: number): string {
    return this.reply({ kind: 'Renewed', ok, version, leaseUntilMs: this.nowMs + this.cfg.leaseMs - 100 });
  }

  /** The served line as `STATE v<version> =<value>` (+ dirty), or I. */
  state(key = KEY): string {
    const l = this.node.line(key, this.nowMs);
    if (l === null) return this.node.transactions > 0 ? 'I/pending' : 'I';
    return `${stateNames[l.state]} v${l.version} =${str(l.value)}${l.dirty ? ' dirty' : ''}`;
  }
}
