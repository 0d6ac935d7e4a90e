// Checks compose.yaml against the node it runs, with a real YAML parser and the node's
// own config code (no container engine here): each of n1..n3, with the Dockerfile's ENV
// under its environment, is a configuration loadConfig accepts, naming the other two
// services as peers on the image's port; the `extra` service's entrypoint, run with sh
// (`exec node bin/dsync.js node` swapped for printing its argv), joins through a service
// that exists, with a command line the CLI parser and loadConfig accept.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { parse } from 'yaml';
import { parseArgs } from '../../../cli/args.js';
import { nodeCommand } from '../../../cli/commands/node.js';
import { loadConfig, type RawSettings, type SettingName } from '../../../server/node/config.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
interface ComposeService { readonly environment?: Record<string, string>; readonly entrypoint?: readonly string[]; readonly profiles?: readonly string[] }
const compose = parse(readFileSync(join(repoRoot, 'compose.yaml'), 'utf8')) as { services: Record<string, ComposeService> };

/** The runtime stage's ENV line of the Dockerfile, as NAME=value pairs. */
function imageEnv(): Record<string, string> {
  const docker = readFileSync(join(repoRoot, 'Dockerfile'), 'utf8');
  const runtime = docker.slice(docker.lastIndexOf('\nFROM '));
  const line = runtime.split('\n').find((l) => l.startsWith('ENV ')) ?? '';
  return Object.fromEntries(line.slice(4).trim().split(/\s+/).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
}

const dataRoot = mkdtempSync(join(tmpdir(), 'dsync-compose-'));
t.teardown(() => rmSync(dataRoot, { recursive: true, force: true }));
const members = ['n1', 'n2', 'n3'];

t.test('each bootstrap service is a configuration the node accepts', async (t) => {
  const base = imageEnv();
  t.equal(base.HOST, '0.0.0.0', 'the image binds every interface');
  for (const name of members) {
    const service = compose.services[name];
    t.ok(service, `service ${name}`);
    const env = { ...base, ...(service?.environment ?? {}), DATA_DIR: join(dataRoot, name) };
    const config = loadConfig({}, env);
    t.equal(config.nodeId, name, `${name}: NODE_ID is the service name`);
    t.same(config.peers.map((p) => `${p.id}@${p.host}:${p.port}`), members.filter((m) => m !== name).map((m) => `${m}@${m}:${base.PORT}`),
      `${name}: PEERS names the other services on the image's port`);
  }
});

t.test('the extra service joins through n1 with a command line the node accepts', async (t) => {
  const extra = compose.services.extra;
  t.same(extra?.profiles, ['scale'], 'only with --profile scale');
  const entry = extra?.entrypoint ?? [];
  t.same(entry.slice(0, 2), ['/bin/sh', '-c'], 'a shell entrypoint');
  // Compose turns $$ into $ before the shell sees it.
  const script = (entry[2] ?? '').replace(/\$\$/g, '$');
  t.ok(script.includes('exec node bin/dsync.js node'), 'it runs dsync node');
  const out = execFileSync('sh', ['-c', script.replace('exec node bin/dsync.js node', "exec printf '%s\\n'")], { encoding: 'utf8' });
  const args = parseArgs(out.split('\n').slice(0, -1), nodeCommand.valueFlags, nodeCommand.switchFlags);
  const raw: RawSettings = {};
  for (const [k, v] of args.flags) raw[k as SettingName] = v;
  const config = loadConfig(raw, { ...imageEnv(), DATA_DIR: join(dataRoot, 'extra') });
  t.match(config.nodeId, /^extra-/, `its id (${config.nodeId})`);
  const via = config.join ?? '';
  t.ok(members.includes(via.split(':')[0] ?? ''), `joins through a bootstrap service (${via})`);
  t.equal(via.split(':')[1], imageEnv().PORT, 'on the image\'s port');
  t.same(config.peers, [], 'no --peers');
});
