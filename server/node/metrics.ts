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
/** The key every unknown opcode's answers are counted under (no opcode has this number). */
const unknownOpcodeKey = -1;

/** One opcode's answered requests: counts by answer code, and its latency histogram (counts per bound, not cumulative). */
interface OpcodeSeries {
  readonly name: string;
  readonly byCode: Map<string, number>;
  readonly perBound: Float64Array;
  count: number;
  sumSeconds: number;
}

export class NodeMetrics {
  readonly registry = new Registry();
  /**
   * Per opcode (unknown ones share 'unknown'), indexed by opcode number: counted in plain
   * numbers as requests are answered and turned into Prometheus series only at scrape time.
   * prom-client's labelled observe() builds a label object and hashes it on every call, which
   * the cache's hit path (one answer per get) paid on every operation.
   */
  private readonly perOpcode = new Map<number, OpcodeSeries>();

  constructor(nodeId: string) {
    this.registry.setDefaultLabels({ node: nodeId });
    this.counterFrom('dsync_requests_total', 'Client requests answered, by opcode and answer code (OK or the error code)', ['opcode', 'code'],
      () => [...this.perOpcode.values()].flatMap((s) => [...s.byCode].map(([code, n]): [{ opcode: string; code: string }, number] => [{ opcode: s.name, code }, n])));
    this.histogramFromLabelled('dsync_request_duration_seconds', 'Time from a request\'s arrival to its answer, by opcode', 'opcode', requestSecondsBuckets,
      () => [...this.perOpcode.values()].map((s) => ({ label: s.name, perBound: [...s.perBound], count: s.count, sumSeconds: s.sumSeconds })));
  }

  /** One answered request: `code` is 'OK' or the error code; `seconds` since it arrived. */
  answered(opcode: number, code: string, seconds: number): void {
    let series = this.perOpcode.get(opcode);
    if (series === undefined) {
      // Unknown opcodes (a fuzzer, a newer client) share one series: series stay bounded.
      const known = isKnownOpcode(opcode);
      const key = known ? opcode : unknownOpcodeKey;
      series = this.perOpcode.get(key);
      if (series === undefined) {
        series = { name: known ? opcodeName(opcode) : 'unknown', byCode: new Map(), perBound: new Float64Array(requestSecondsBuckets.length), count: 0, sumSeconds: 0 };
        this.perOpcode.set(key, series);
      }
    }
    series.byCode.set(code, (series.byCode.get(code) ?? 0) + 1);
    series.count++;
    series.sumSeconds += seconds;
    for (let i = 0; i < requestSecondsBuckets.length; i++) {
      if (seconds <= (requestSecondsBuckets[i] as number)) {
        (series.perBound[i] as number)++;
        break;
      }
    }
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
    this.histogramSeries(name, help, null, boundsSeconds, () => [{ label: '', ...read() }]);
  }

  /** histogramFrom with one label: one series per value of `labelName`. */
  histogramFromLabelled(name: string, help: string, labelName: string, boundsSeconds: readonly number[],
    read: () => Iterable<{ readonly label: string; readonly perBound: readonly number[]; readonly count: number; readonly sumSeconds: number }>): void {
    this.histogramSeries(name, help, labelName, boundsSeconds, read);
  }

  private histogramSeries(name: string, help: string, labelName: string | null, boundsSeconds: readonly number[],
    read: () => Iterable<{ readonly label: string; readonly perBound: readonly number[]; readonly count: number; readonly sumSeconds: number }>): void {
    assert(boundsSeconds.every((b, i) => i === 0 || b > (boundsSeconds[i - 1] ?? 0)), `${name}: bounds ascend`);
    const registry = this.registry;
    class ReadHistogram extends Histogram<string> {
      /** What the registry's text output asks a histogram for (prom-client's typings leave it out). */
      getForPromString(): Promise<MetricObjectWithValues<MetricValueWithName<string>>> {
        return this.get();
      }

      override get(): Promise<MetricObjectWithValues<MetricValueWithName<string>>> {
        const values: MetricValueWithName<string>[] = [];
        for (const r of read()) {
          assert(r.perBound.length === boundsSeconds.length, `${name}: one count per bound`);
          const own: Record<string, string> = labelName === null ? {} : { [labelName]: r.label };
          let cumulative = 0;
          for (let i = 0; i < boundsSeconds.length; i++) {
            cumulative += r.perBound[i] ?? 0;
            values.push({ labels: { ...own, le: boundsSeconds[i] as number }, value: cumulative, metricName: `${name}_bucket` });
          }
          // The writer thread bumps the count, then a bucket; a read between the two (or of slots read at different
          // moments) may see a bucket ahead of the count: never let +Inf fall below the buckets.
          const count = Math.max(r.count, cumulative);
          values.push({ labels: { ...own, le: '+Inf' }, value: count, metricName: `${name}_bucket` },
            { labels: own, value: r.sumSeconds, metricName: `${name}_sum` }, { labels: own, value: count, metricName: `${name}_count` });
        }
        // prom-client's typings declare MetricType a numeric enum; at run time (and in its own Histogram) it is the string.
        return Promise.resolve({ name, help, type: 'histogram' as unknown as MetricType, aggregator: 'sum', values, collect: () => undefined });
      }
    }
    new ReadHistogram({ name, help, buckets: [...boundsSeconds], labelNames: labelName === null ? [] : [labelName], registers: [registry] });
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
