// `dsync node`: run one node in the foreground from flags, environment and an
// optional config file (server/node/config.ts validates them).

import { environmentWithEnvFile, loadConfig, type RawSettings, type SettingName, settingSpecs } from '../../server/node/config.js';
import { type Command, positionalsAtMost } from '../command.js';
import type { NodeListening } from './cluster.js';

// Every setting's flag comes from settingSpecs, so a new setting cannot be left out here.
const nodeFlags: readonly SettingName[] = [...settingSpecs.map((s) => s.name), 'config'];

export const nodeCommand: Command = {
  usage: 'dsync node --id n1 [--port 7401] [--peers n2@127.0.0.1:7402,... | --join 127.0.0.1:7401] [--data-dir ./data/n1]',
  summary: 'run one node in the foreground',
  help: `Options (flags override environment, which overrides the config file):
  --id ID              node id (env NODE_ID)                           required
  --host HOST          interface to bind (env HOST)                    127.0.0.1
  --port N             binary protocol port, clients and peers (PORT)  7401
  --http-port N        HTTP port: /healthz (HTTP_PORT)                 port+1000
  --console-port N     text console port (CONSOLE_PORT)                port+2000
  --peers LIST         other members: id@host:port,... (PEERS)
  --join H:P           join a running cluster through this member instead of
                       bootstrapping one (JOIN); added as a learner, promoted to voter once caught up
  --data-dir DIR       where the node keeps its log (DATA_DIR)         ./data/ID
  --log-level LEVEL    debug|info|warn|error (LOG_LEVEL)               info
  --advertise H:P      address clients should use for this node (ADVERTISE)   host:port
  --election-timeout-min MS, --election-timeout-max MS, --heartbeat-interval MS
                       Raft timing (ELECTION_TIMEOUT_MIN, ...)         300, 600, 50
  --config FILE        JSON file with the same settings (DSYNC_CONFIG)
  --env-file FILE      NAME=value lines read as environment variables  ./.env when present
                       (variables already set, and flags, win)
Every environment variable is also read with a DSYNC_ prefix, which wins (DSYNC_PORT over PORT).
Reference: docs/configuration.md`,
  valueFlags: [...nodeFlags, 'env-file'],
  switchFlags: [],
  async run(args) {
    positionalsAtMost(args, 0);
    const raw: RawSettings = {};
    for (const name of nodeFlags) {
      const v = args.flags.get(name);
      if (v !== undefined) raw[name] = v;
    }
    const config = loadConfig(raw, environmentWithEnvFile(args.flags.get('env-file')).env);
    // Loaded here, not at the top: every other dsync command would pay for loading the node.
    const { startNode, stopOnSignals } = await import('../../server/main.js');
    const { node, ports } = await startNode(config);
    const stop = stopOnSignals(node);
    process.stdout.write(`dsync node ${config.nodeId} listening on ${config.host}:${ports.port} (http ${ports.httpPort}, console ${ports.consolePort})\n`);
    // Started by `dsync cluster` (an IPC channel): report listening to the supervisor, and stop when it is gone.
    if (process.send !== undefined) {
      const listening: NodeListening = { kind: 'listening', nodeId: config.nodeId, ports };
      process.send(listening);
      process.once('disconnect', () => {
        // Its stdout and stderr went to the supervisor: writes to them may fail now, and must not stop the shutdown.
        process.stdout.on('error', () => {});
        process.stderr.on('error', () => {});
        stop('the supervisor (dsync cluster) is gone');
      });
      process.channel?.unref();
    }
    return -1; // keep running
  },
};
