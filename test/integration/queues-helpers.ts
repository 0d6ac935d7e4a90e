// Helpers for the real-process queue tests: the test port block (21000-21999, this
// suite's own), finding a partition's leader from the nodes' status, and a
// producer/consumer workload that records what was acknowledged and what was
// consumed (with duplicates) so a test can check "every acknowledged publish was
// consumed at least once".

import type { Client, Consumer, Producer, ReceivedMessage } from '../../client/index.js';
import { sleep } from './helpers/cluster.js';

/**
 * The queue tests' ports: each file takes its own slice of 21000-21999 (client, HTTP,
 * console ports per node). DSYNC_QUEUE_TEST_PORT_BASE moves the whole block (another
 * 1000 ports from there), so two checkouts can run these tests side by side.
 */
export function queuePorts(slot: number, nodes = 3): number[] {
  const block = Number(process.env.DSYNC_QUEUE_TEST_PORT_BASE ?? 21_000);
  if (!Number.isInteger(block) || block < 1024 || block > 64_000) throw new Error(`DSYNC_QUEUE_TEST_PORT_BASE=${process.env.DSYNC_QUEUE_TEST_PORT_BASE} is not a port block`);
  const base = block + slot * 50;
  return [...Array.from({ length: nodes }, (_, i) => base + i), ...Array.from({ length: nodes }, (_, i) => base + 10 + i),
    ...Array.from({ length: nodes }, (_, i) => base + 20 + i)];
}

/** The node id that leads Raft group `group` according to the nodes' own status (a leader claims it), polling up to timeoutMs. */
export async function leaderOfGroup(client: Client, addresses: readonly string[], group: number, timeoutMs = 15_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    for (const a of addresses) {
      try {
        const s = await client.status(a);
        const g = s.groups.find((x) => x.group === group);
        if (g !== undefined && g.role === 'leader') return s.nodeId;
      } catch {
        // that node is down or starting
      }
    }
    await sleep(100);
  }
  throw new Error(`no leader for group ${group} within ${timeoutMs} ms`);
}

const decoder = new TextDecoder();

/** Publishes `total` distinct values `${tag}-${i}` with `concurrency` in flight; remembers which were acknowledged. */
export class PublishLoad {
  readonly acked = new Set<string>();
  failed = 0;
  private next = 0;
  readonly done: Promise<void>;

  constructor(producer: Producer, readonly tag: string, readonly total: number, concurrency: number) {
    const worker = async (): Promise<void> => {
      while (this.next < total) {
        const id = `${tag}-${this.next++}`;
        try {
          await producer.publish(`key-${id}`, id, { headers: { origin: tag } });
          this.acked.add(id);
        } catch {
          this.failed++;
        }
      }
    };
    this.done = Promise.all(Array.from({ length: concurrency }, worker)).then(() => undefined);
  }

  async waitForAcked(n: number, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.acked.size < n && this.next < this.total && Date.now() < deadline) await sleep(20);
  }
}

/** Consumes and acks until stopped; counts every delivery per value. */
export class ConsumeLoad {
  readonly seen = new Map<string, number>();
  ackFailures = 0;
  /** What ended the iteration early (null: still running or closed). */
  error: unknown = null;
  private readonly done: Promise<void>;

  constructor(private readonly consumer: Consumer) {
    this.done = (async () => {
      for await (const m of consumer) this.take(m);
    })().catch((err: unknown) => { this.error = err; });
  }

  private take(m: ReceivedMessage): void {
    const v = decoder.decode(m.value);
    this.seen.set(v, (this.seen.get(v) ?? 0) + 1);
    m.ack().catch(() => { this.ackFailures++; });
  }

  /** Waits until every one of `ids` was seen (or the timeout); returns the ones never seen. */
  async waitForAll(ids: Iterable<string>, timeoutMs: number): Promise<string[]> {
    const want = [...ids];
    const deadline = Date.now() + timeoutMs;
    let missing = want.filter((id) => !this.seen.has(id));
    while (missing.length > 0 && Date.now() < deadline) {
      await sleep(50);
      missing = missing.filter((id) => !this.seen.has(id));
    }
    return missing;
  }

  async stop(): Promise<void> {
    await this.consumer.close();
    await this.done;
  }
}

/** Values delivered more than once across the loads, with their counts. */
export function duplicates(loads: readonly ConsumeLoad[]): Map<string, number> {
  const total = new Map<string, number>();
  for (const l of loads) for (const [v, n] of l.seen) total.set(v, (total.get(v) ?? 0) + n);
  return new Map([...total].filter(([, n]) => n > 1));
}
