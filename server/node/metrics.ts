// The node's Prometheus metrics (`GET /metrics` on the HTTP port), through prom-client
// with a registry of the node's own (never the process-global one, so two nodes in one
// process, as in tests, do not mix). Two kinds:
// - counted as things happen: requests answered, by opcode and code, and their latency;
// - read at scrape time from the state that already exists (Raft groups, WAL counters,
//   connections, a service's tables): collectors registered with `collect()`, so the hot
//   path pays nothing for them.
// Services add their own through ServiceNode.metrics (the same registry).

import { Counter, Gauge, Histogram, type MetricObjectWithValues, type MetricType, type MetricValueWithName, Registry } from 'prom-client';
import { assert } from '../../core/assert.js';
import { isKnownOpcode, opcodeName } from '../../protocol/frame.js';

/** Request latency buckets, seconds: from a loopback round trip to a long lock wait. */
const requestSecondsBuckets = [0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export class NodeMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter<'opcode' | 'code'>;
  private readonly requestSeconds: Histogram<'opcode'>;
  /**
   * Per opcode (unknown ones share 'unknown'): its latency series and its counters by
   * answer code, bound once, so answering a request allocates no label objects.
   */
  private readonly perOpcode = new Map<string, { readonly seconds: { observe(v: number): void };
    readonly byCode: Map<string, { inc(): void }> }>();

  constructor(nodeId: string) {
    this.registry.setDefaultLabels({ node: nodeId });
    this.requests = new Counter({ name: 'dsync_requests_total', help: 'Client requests answered, by opcode and answer code (OK or the error code)',
      labelNames: ['opcode', 'code'], registers: [this.registry] });
    this.requestSeconds = new Histogram({ name: 'dsync_request_duration_seconds', help: 'Time from a request\'s arrival to its answer, by opcode',
      labelNames: ['opcode'], buckets: requestSecondsBuckets, registers: [this.registry] });
  }

  /** One answered request: `code` is 'OK' or the error code; `seconds` since it arrived. */
  answered(opcode: number, code: string, seconds: number): void {
    // Unknown opcodes (a fuzzer, a newer client) share one label: series stay bounded.
    const name = isKnownOpcode(opcode) ? opcodeName(opcode) : 'unknown';
    let series = this.perOpcode.get(name);
    if (series === undefined) {
      series = { seconds: this.requestSeconds.labels(name), byCode: new Map() };
      this.perOpcode.set(name, series);
    }
    let counter = series.byCode.get(code);
    if (counter === undefined) {
      counter = this.requests.labels(name, code);
      series.byCode.set(code, counter);
    }
    counter.inc();
    series.seconds.observe(seconds);
  }

  /** A gauge whose values are read at scrape time: `read` returns [labels, value] pairs. */
  gauge<L extends string>(name: string, help: string, labelNames: readonly L[], read: () => Iterable<[Partial<Record<L, string | number>>, number]>): void {
    new Gauge<L>({ name, help, labelNames: [...labelNames], registers: [this.registry],
      collect() {
        this.reset();
        for (const [labels, value] of read()) this.set(labels, value);
      } });
  }

  /**
   * A counter kept by someone else (e.g. the WAL's totals) exposed as a Prometheus counter
   * read at scrape time. Prometheus counters only go up; so do the sources given here.
   */
  counterFrom<L extends string>(name: string, help: string, labelNames: readonly L[], read: () => Iterable<[Partial<Record<L, string | number>>, number]>): void {
    new Counter<L>({ name, help, labelNames: [...labelNames], registers: [this.registry],
      collect() {
        this.reset();
        for (const [labels, value] of read()) this.inc(labels, value);
      } });
  }

  /**
   * A histogram kept by someone else (the WAL writer thread's fsync buckets) exposed as a
   * Prometheus histogram read at scrape time: `read` gives the count per bound (not
   * cumulative, same order as `boundsSeconds`), the total count (so +Inf) and the sum.
   */
  histogramFrom(name: string, help: string, boundsSeconds: readonly number[],
    read: () => { readonly perBound: readonly number[]; readonly count: number; readonly sumSeconds: number }): void {
    assert(boundsSeconds.every((b, i) => i === 0 || b > (boundsSeconds[i - 1] ?? 0)), `${name}: bounds ascend`);
    const registry = this.registry;
    class ReadHistogram extends Histogram<'le'> {
      /** What the registry's text output asks a histogram for (prom-client's typings leave it out). */
      getForPromString(): Promise<MetricObjectWithValues<MetricValueWithName<'le'>>> {
        return this.get();
      }

      override get(): Promise<MetricObjectWithValues<MetricValueWithName<'le'>>> {
        const r = read();
        assert(r.perBound.length === boundsSeconds.length, `${name}: one count per bound`);
        let cumulative = 0;
        const values: MetricValueWithName<'le'>[] = boundsSeconds.map((le, i) => {
          cumulative += r.perBound[i] ?? 0;
          return { labels: { le }, value: cumulative, metricName: `${name}_bucket` };
        });
        // The writer thread bumps the count, then a bucket; a read between the two (or of slots read at different
        // moments) may see a bucket ahead of the count: never let +Inf fall below the buckets.
        const count = Math.max(r.count, cumulative);
        values.push({ labels: { le: '+Inf' }, value: count, metricName: `${name}_bucket` },
          { labels: {}, value: r.sumSeconds, metricName: `${name}_sum` }, { labels: {}, value: count, metricName: `${name}_count` });
        // prom-client's typings declare MetricType a numeric enum; at run time (and in its own Histogram) it is the string.
        return Promise.resolve({ name, help, type: 'histogram' as unknown as MetricType, aggregator: 'sum', values, collect: () => undefined });
      }
    }
    new ReadHistogram({ name, help, buckets: [...boundsSeconds], registers: [registry] });
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
