// The live status page at `/` (static files in server/node/status/, served as they are,
// no build step) and the JSON it polls, `GET /status.json`: this node's own view (members,
// groups, and its metrics registry, which every service already feeds), each other
// member's own Status reply (asked by this node over the binary protocol, as peers would),
// and a 5-minute history sampled here every 2 s for the page's charts.
//
// Why the node asks its peers rather than the page polling each member's HTTP port: the
// HTTP ports of other members are not known to this node (only their client and peer
// addresses are), a browser would need CORS on every node, and an operator behind a port
// forward reaches one node only. The Status request is the one `dsync status` sends, so
// what the page calls "answers" is exactly what the CLI would see from here.

import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import { assert } from '../../core/assert.js';
import { statusFileBytesMax, statusHistorySamplesMax, statusPeerCacheMs, statusPeerTimeoutMs, statusSampleIntervalMs } from '../../core/constants.js';
import { DsyncError } from '../../protocol/errors.js';
import { Opcode } from '../../protocol/frame.js';
import { schema } from '../../protocol/index.js';
import { sendJson } from './http.js';
import { exchange } from './join.js';
import type { DsyncNode } from './node.js';

/** The page's files, next to this module's source (dist/server/node/status.js -> server/node/status/). */
export const statusFilesDir = resolve(dirname(fileURLToPath(import.meta.url)), '../../../server/node/status');
const staticFiles: readonly { readonly path: string; readonly file: string; readonly type: string }[] = [
  { path: '/', file: 'index.html', type: 'text/html; charset=utf-8' },
  { path: '/status/app.js', file: 'app.js', type: 'text/javascript; charset=utf-8' },
  { path: '/status/style.css', file: 'style.css', type: 'text/css; charset=utf-8' },
];

type Labels = Partial<Record<string, string | number>>;
type Metrics = Map<string, MetricValue<string>[]>;

/** The figures charted over time (one sample every statusSampleIntervalMs). */
export interface StatusSample {
  readonly atMs: number;
  readonly locksHeld: number;
  readonly lockWaiters: number;
  /** Sum of consumer lag over the partitions hosted here. */
  readonly queueLag: number;
  /** Sum of log end offsets over the partitions hosted here: grows with every publish. */
  readonly queueMessages: number;
  /** 0-1, or null before the first read. */
  readonly cacheHitRatio: number | null;
  /** Requests answered since start (the page charts the rate between samples). */
  readonly requests: number;
  readonly group0Term: number;
}

export interface MemberStatus {
  readonly id: string;
  readonly address: string;
  readonly role: string;
  readonly self: boolean;
  /** This node has a live peer link to it (always true for itself). */
  readonly reachable: boolean;
  /** It answered this node's Status request just now. */
  readonly answered: boolean;
  readonly error: string;
  readonly uptimeMs: number | null;
  /** Its own view of its groups (empty when it did not answer). */
  readonly groups: readonly GroupView[];
}

export interface GroupView {
  readonly group: number;
  readonly role: string;
  readonly leaderId: string;
  readonly term: number;
  readonly commit: number;
  readonly applied: number;
  readonly voters: readonly string[];
  readonly learners: readonly string[];
}

/** Reads a metric's values from one registry snapshot. */
function values(metrics: Metrics, name: string): MetricValue<string>[] {
  return metrics.get(name) ?? [];
}

function sum(metrics: Metrics, name: string, match: (labels: Labels) => boolean = () => true): number {
  return values(metrics, name).filter((v) => match(v.labels)).reduce((n, v) => n + v.value, 0);
}

/** A group status as either the local view or a decoded peer reply carries it (every field optional). */
interface GroupStatusFields {
  readonly group?: number | null | undefined;
  readonly role?: string | null | undefined;
  readonly leaderId?: string | null | undefined;
  readonly term?: number | Long | null | undefined;
  readonly commit?: number | Long | null | undefined;
  readonly applied?: number | Long | null | undefined;
  readonly voters?: readonly string[] | null | undefined;
  readonly learners?: readonly string[] | null | undefined;
}
type Long = { toNumber(): number };

function groupView(g: GroupStatusFields): GroupView {
  return { group: g.group ?? 0, role: g.role ?? '', leaderId: g.leaderId ?? '', term: Number(g.term ?? 0), commit: Number(g.commit ?? 0),
    applied: Number(g.applied ?? 0), voters: [...(g.voters ?? [])], learners: [...(g.learners ?? [])] };
}

/** What sampleOf reads. */
const sampledMetricNames = ['dsync_cache_hit_ratio', 'dsync_cache_events_total', 'dsync_locks_held', 'dsync_lock_waiters', 'dsync_queue_lag',
  'dsync_queue_log_end_offset', 'dsync_requests_total'] as const;
type SampledName = typeof sampledMetricNames[number];

function sampleOf(metrics: Metrics, atMs: number, group0Term: number): StatusSample {
  // Typed to the sampled names, so reading a series the sampler does not fetch fails to compile.
  const total = (name: SampledName, match?: (labels: Labels) => boolean): number => sum(metrics, name, match);
  const hitRatio = values(metrics, 'dsync_cache_hit_ratio' satisfies SampledName)[0]?.value;
  const reads = total('dsync_cache_events_total', (l) => l.event === 'node.hits' || l.event === 'node.misses');
  return {
    atMs,
    locksHeld: total('dsync_locks_held'),
    lockWaiters: total('dsync_lock_waiters'),
    queueLag: total('dsync_queue_lag'),
    queueMessages: total('dsync_queue_log_end_offset'),
    cacheHitRatio: hitRatio === undefined || reads === 0 ? null : hitRatio,
    requests: total('dsync_requests_total'),
    group0Term,
  };
}

/** Serves `/`, its script and style, and `/status.json`; samples the charted figures until the node stops. */
export function registerStatusPage(node: DsyncNode): void {
  for (const f of staticFiles) {
    const body = readFileSync(join(statusFilesDir, f.file));
    assert(body.length > 0 && body.length <= statusFileBytesMax, `status page file ${f.file} has ${body.length} bytes (1-${statusFileBytesMax})`);
    node.http.route('GET', f.path, (_req, res) => {
      res.writeHead(200, { 'content-type': f.type, 'content-length': body.length, 'cache-control': 'no-cache' });
      res.end(body);
    });
  }

  const history: StatusSample[] = [];
  const snapshot = async (): Promise<Metrics> => {
    const list = await node.metrics.registry.getMetricsAsJSON() as MetricObjectWithValues<MetricValue<string>>[];
    return new Map(list.map((m) => [m.name, m.values]));
  };
  // The sampler reads only the series it charts: the whole registry holds several series per
  // Raft group and per partition, and reading them every 2 s was most of an idle node's CPU.
  const sampled = async (): Promise<Metrics> => {
    const out: Metrics = new Map();
    for (const name of sampledMetricNames) {
      const metric = node.metrics.registry.getSingleMetric(name);
      if (metric !== undefined) out.set(name, (await metric.get()).values as MetricValue<string>[]);
    }
    return out;
  };
  const group0Term = (): number => Number(node.groupStatuses().find((g) => (g.group ?? 0) === 0)?.term ?? 0);
  let sampling = false;
  const timer = setInterval(() => {
    if (sampling) return;
    sampling = true;
    sampled().then((m) => {
      history.push(sampleOf(m, Date.now(), group0Term()));
      if (history.length > statusHistorySamplesMax) history.splice(0, history.length - statusHistorySamplesMax);
    }, (err: unknown) => node.log.warn('status page: sampling the metrics failed', { err: String(err) }))
      .finally(() => { sampling = false; });
  }, statusSampleIntervalMs);
  timer.unref();
  node.onStop(() => clearInterval(timer));

  // Peers' own status, asked at most once per statusPeerCacheMs however many pages poll.
  let peerViews: { atMs: number; views: Promise<Map<string, { reply: ReturnType<typeof schema.StatusReply.decode> } | { error: string }>> } | null = null;
  const askPeers = (): Promise<Map<string, { reply: ReturnType<typeof schema.StatusReply.decode> } | { error: string }>> => {
    const now = Date.now();
    if (peerViews !== null && now - peerViews.atMs < statusPeerCacheMs) return peerViews.views;
    const others = node.members().filter((m) => m.id !== node.nodeId);
    const views = Promise.all(others.map(async (m) => {
      const address = node.addressOf(m.id);
      if (address === '') return [m.id, { error: 'no known address' }] as const;
      try {
        const bytes = await exchange(address, Opcode.Status, new Uint8Array(0), `status-page@${node.nodeId}`, statusPeerTimeoutMs, node.config.security);
        return [m.id, { reply: schema.StatusReply.decode(bytes) }] as const;
      } catch (err) {
        return [m.id, { error: err instanceof DsyncError ? `${err.code}: ${err.message}` : String(err) }] as const;
      }
    })).then((pairs) => new Map<string, { reply: ReturnType<typeof schema.StatusReply.decode> } | { error: string }>(pairs));
    peerViews = { atMs: now, views };
    return views;
  };

  node.http.route('GET', '/status.json', async (_req, res) => {
    const [metrics, peers] = await Promise.all([snapshot(), askPeers()]);
    const self = node.statusReply();
    const members: MemberStatus[] = node.members().map((m) => {
      if (m.id === node.nodeId) {
        return { id: m.id, address: self.address, role: m.role, self: true, reachable: true, answered: true, error: '',
          uptimeMs: Number(self.uptimeMs), groups: self.groups.map((g) => groupView(g)) };
      }
      const v = peers.get(m.id);
      const answered = v !== undefined && 'reply' in v;
      return { id: m.id, address: node.addressOf(m.id), role: m.role, self: false, reachable: m.connected, answered,
        error: v === undefined ? 'not asked yet' : 'error' in v ? v.error : '',
        uptimeMs: answered ? Number(v.reply.uptimeMs) : null, groups: answered ? v.reply.groups.map((g) => groupView(g)) : [] };
    });
    const label = (v: MetricValue<string>, k: string): string => String(v.labels[k] ?? '');
    const body = {
      node: { id: node.nodeId, address: self.address, uptimeMs: Number(self.uptimeMs), timeMs: Date.now() },
      leaderId: self.leaderId,
      members,
      locks: {
        exclusive: sum(metrics, 'dsync_locks_held', (l) => l.mode === 'exclusive'),
        shared: sum(metrics, 'dsync_locks_held', (l) => l.mode === 'shared'),
        waiters: sum(metrics, 'dsync_lock_waiters'),
        sessions: sum(metrics, 'dsync_lock_sessions'),
      },
      queues: {
        partitions: values(metrics, 'dsync_queue_partition_info').map((v) => ({ topic: label(v, 'topic'), partition: Number(label(v, 'partition')),
          group: Number(label(v, 'group')), replicas: label(v, 'replicas').split(',').filter((r) => r !== ''), leader: label(v, 'leader') })),
        offsets: values(metrics, 'dsync_queue_log_end_offset').map((v) => ({ topic: label(v, 'topic'), partition: Number(label(v, 'partition')), logEnd: v.value })),
        lag: values(metrics, 'dsync_queue_lag').map((v) => ({ topic: label(v, 'topic'), partition: Number(label(v, 'partition')), group: label(v, 'group'), lag: v.value })),
      },
      ring: values(metrics, 'dsync_ring_share').map((v) => ({ member: label(v, 'member'), share: v.value })),
      cache: {
        hitRatio: sampleOf(metrics, 0, 0).cacheHitRatio,
        hits: sum(metrics, 'dsync_cache_events_total', (l) => l.event === 'node.hits'),
        misses: sum(metrics, 'dsync_cache_events_total', (l) => l.event === 'node.misses'),
        lines: sum(metrics, 'dsync_cache_lines'),
      },
      current: sampleOf(metrics, Date.now(), group0Term()),
      history,
      sampleIntervalMs: statusSampleIntervalMs,
    };
    res.setHeader('cache-control', 'no-store');
    sendJson(res, 200, body);
  });
}
