// The service seam's peer messages in the simulator: a tiny service on every SimNode sends
// a numbered payload to every other node over ctx.peers every 20 ms and records what it
// receives. Over a clean network every payload arrives, from the right sender, under the
// service's opcode; with a link blocked, nothing crosses it and members() reports that
// peer unreachable; after a crash, the restarted incarnation's handler receives again.
// Seeded: the run replays exactly (the second run's log equals the first's).

import t from 'tap';
import type { NodeId } from '../../core/ids.js';
import type { Service, ServiceContext } from '../../server/services/service.js';
import { SimCluster, type SimNode } from './sim-cluster.js';

const opcode = 950;

class EchoService implements Service {
  readonly name = 'echo';
  readonly opcodes = { min: 950, max: 959 };
  readonly received: string[] = [];
  private n = 0;
  constructor(private readonly self: SimNode, private readonly log: string[]) {}
  start(ctx: ServiceContext): void {
    ctx.peers.handle(opcode, (from, payload) => {
      const text = `${this.self.id}<-${from}:${new TextDecoder().decode(payload)}`;
      this.received.push(text);
      this.log.push(text);
      return null;
    });
    ctx.scheduler.every(20, () => {
      this.n++;
      for (const m of ctx.node.members()) {
        if (m.id !== this.self.id) ctx.peers.send(m.id, opcode, new TextEncoder().encode(`${this.self.incarnation}.${this.n}`));
      }
    });
  }
  stop(): void {}
}

async function run(seed: number): Promise<{ cluster: SimCluster; echo: Map<NodeId, EchoService>; log: string[] }> {
  const log: string[] = [];
  const echo = new Map<NodeId, EchoService>();
  const cluster = new SimCluster({
    seed, nodeCount: 3, fsyncMsMax: 2, diskVariant: 'correct', clockSkew: 0, snapshotEntries: undefined, checkAckDurability: false,
    network: { delayMsMin: 1, delayMsMax: 5, longDelayProb: 0, longDelayMsMax: 0, dropProb: 0, dupProb: 0 },
    services: (node) => {
      const s = new EchoService(node, log);
      echo.set(node.id, s);
      return [s];
    },
  });
  await cluster.world.runMs(200);
  return { cluster, echo, log };
}

t.test('peer messages arrive from the right sender; blocked links carry nothing; a restarted node receives again', async (t) => {
  const { cluster, echo, log } = await run(7);
  const [n1, n2, n3] = cluster.nodes as [SimNode, SimNode, SimNode];
  for (const n of cluster.nodes) {
    const got = echo.get(n.id)?.received ?? [];
    t.ok(got.length >= 2 * 8, `${n.id} heard both peers many times (${got.length})`);
    t.ok(got.every((r) => r.startsWith(`${n.id}<-`) && !r.startsWith(`${n.id}<-${n.id}`)), 'never from itself');
  }
  cluster.net.blocked[n1.idx]![n2.idx] = true;
  t.same(n1.members().map((m) => [m.id, m.connected]), [[n1.id, true], [n2.id, false], [n3.id, true]], 'members() reports the blocked peer unreachable');
  const before = (echo.get(n2.id)?.received ?? []).filter((r) => r.includes(`<-${n1.id}`)).length;
  await cluster.world.runMs(200);
  const after = (echo.get(n2.id)?.received ?? []).filter((r) => r.includes(`<-${n1.id}`)).length;
  t.ok(after - before <= 1, 'nothing crosses a blocked link (at most one already in flight)');
  cluster.net.blocked[n1.idx]![n2.idx] = false;
  n3.crash();
  n3.start();
  await cluster.world.runMs(200);
  const fresh = echo.get(n3.id)?.received ?? [];
  t.ok(fresh.length > 0, 'the restarted incarnation registered its handler and receives');
  t.ok((echo.get(n1.id)?.received ?? []).some((r) => r.startsWith(`${n1.id}<-${n3.id}:2.`)), 'and its peers hear the new incarnation');
  const replay = await run(7);
  t.same(replay.log.slice(0, 50), log.slice(0, 50), 'the same seed replays the same deliveries');
});
