// Starting one node from a validated config: build the node, plug in its
// services, start listening, and stop gracefully on SIGTERM/SIGINT.

import type { NodeConfig } from './config.js';
import { DsyncNode } from './node.js';

export interface RunningNode {
  readonly node: DsyncNode;
  readonly ports: { port: number; httpPort: number; consolePort: number };
}

/** Builds and starts a node with every service wired in. */
export async function startNode(config: NodeConfig): Promise<RunningNode> {
  const node = new DsyncNode(config);
  const ports = await node.start();
  return { node, ports };
}

/** Stops the node on the first SIGTERM/SIGINT; a second signal exits at once. */
export function stopOnSignals(node: DsyncNode): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) process.exit(1);
    stopping = true;
    node.log.info('signal received, shutting down', { signal });
    node.stop().then(() => process.exit(0), (err: unknown) => {
      node.log.error('shutdown failed', { err: String(err) });
      process.exit(1);
    });
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}
