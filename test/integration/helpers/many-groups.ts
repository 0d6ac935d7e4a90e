// A 3-node cluster of real processes hosting many Raft groups: queue topics of many
// partitions (each partition its own group on 3 replicas, plus the topic's .dlq topic of
// as many partitions), for the idle-CPU bench (bench/idle.ts) and the leader-crash test
// (test/integration/many-groups.test.ts). Also reads a process's CPU time from /proc.

import { readFileSync } from 'node:fs';
import { Client, DsyncError } from '../../../client/index.js';
import { sleep, type Teardown, TestCluster } from './cluster.js';

export interface ManyGroupCluster {
  readonly cluster: TestCluster;
  readonly control: Client;
  readonly topics: readonly string[];
  /** Every partition group id (topics and their .dlq topics). */
  readonly groups: readonly number[];
}

/**
 * Starts 3 nodes and creates `topics` topics of `partitions` partitions (x3 replicas); each
 * brings its .dlq topic, so 2 x topics x partitions groups besides group 0. Resolves once
 * every node sees a leader for every group it hosts.
 */
export async function startManyGroupCluster(t: Teardown, opts: { topics: number; partitions: number; ports?: readonly number[];
  dataRoot?: string; readyTimeoutMs?: number }): Promise<ManyGroupCluster> {
  const cluster = await TestCluster.start(t, { ...(opts.ports === undefined ? {} : { ports: opts.ports }),
    ...(opts.dataRoot === undefined ? {} : { dataRoot: opts.dataRoot }) });
  const control = await Client.connect({ seeds: cluster.seeds, name: 'many-groups-control', requestTimeoutMs: 30_000 });
  t.teardown(() => control.close());
  const topics = Array.from({ length: opts.topics }, (_, i) => `idle${i}`);
  const groups: number[] = [];
  for (const name of topics) {
    for (let attempt = 1; ; attempt++) {
      try {
        await control.topics.create(name, { partitions: opts.partitions, replicas: 3 });
        break;
      } catch (err) {
        if (attempt >= 50 || !(err instanceof DsyncError)) throw err;
        await sleep(200);
      }
    }
    for (const topic of [name, `${name}.dlq`]) {
      const info = await control.topics.info(topic);
      for (const p of info.partitionList) groups.push(p.groupId);
    }
  }
  await waitForLeaders(control, cluster, groups, opts.readyTimeoutMs ?? 60_000);
  return { cluster, control, topics, groups };
}

/** Per node (running ones only): the groups it hosts and the leader it sees for each. */
export async function leadersByNode(control: Client, cluster: TestCluster): Promise<Map<string, Map<number, string>>> {
  const out = new Map<string, Map<number, string>>();
  for (const n of cluster.nodes) {
    if (n.proc === null || !n.proc.running) continue;
    const s = await control.status(n.address);
    out.set(n.spec.id, new Map(s.groups.map((g) => [g.group, g.leaderId])));
  }
  return out;
}

/** Per running node: how many of the groups it hosts are quiesced. */
export async function quiescedByNode(control: Client, cluster: TestCluster): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const n of cluster.nodes) {
    if (n.proc === null || !n.proc.running) continue;
    const s = await control.status(n.address);
    out.set(n.spec.id, s.groups.filter((g) => g.quiesced).length);
  }
  return out;
}

/**
 * Waits until, on every running node, every group of `groups` has a leader that is a running
 * node, and all running nodes agree on it. Resolves with group -> leader.
 */
export async function waitForLeaders(control: Client, cluster: TestCluster, groups: readonly number[], timeoutMs: number,
  excluded: readonly string[] = []): Promise<Map<number, string>> {
  const deadline = Date.now() + timeoutMs;
  let missing = '';
  for (;;) {
    const views = await leadersByNode(control, cluster);
    const agreed = new Map<number, string>();
    missing = '';
    for (const g of groups) {
      let leader: string | null = null;
      let ok = true;
      for (const [, view] of views) {
        const l = view.get(g);
        if (l === undefined) continue;
        if (l === '' || excluded.includes(l) || (leader !== null && leader !== l)) ok = false;
        leader = l;
      }
      if (!ok || leader === null) {
        if (missing === '') missing = `group ${g}: ${[...views].map(([id, v]) => `${id} sees '${v.get(g) ?? '-'}'`).join(', ')}`;
        continue;
      }
      agreed.set(g, leader);
    }
    if (agreed.size === groups.length) return agreed;
    if (Date.now() > deadline) throw new Error(`${groups.length - agreed.size} of ${groups.length} groups without an agreed leader; e.g. ${missing}`);
    await sleep(200);
  }
}

/** Clock ticks per second of /proc/<pid>/stat's utime and stime (USER_HZ; 100 on Linux). */
const userHz = 100;

/** CPU seconds (user + system) `pid` has used so far, from /proc/<pid>/stat. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces: split after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 (utime, stime) are at 11 and 12 once pid and comm are cut.
  return (Number(fields[11]) + Number(fields[12])) / userHz;
}

/** CPU use of each pid over `seconds` of wall time, in percent of one core. */
export async function cpuPercentOver(pids: readonly number[], seconds: number): Promise<number[]> {
  const before = pids.map(cpuSeconds);
  const started = performance.now();
  await sleep(seconds * 1000);
  const wall = (performance.now() - started) / 1000;
  return pids.map((pid, i) => (100 * (cpuSeconds(pid) - (before[i] as number))) / wall);
}

/** The 1-, 5- and 15-minute load averages. */
export function loadAverage(): number[] {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number);
}
