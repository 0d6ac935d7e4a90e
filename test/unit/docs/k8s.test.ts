// Checks deploy/k8s against the node it deploys, with a real YAML parser and the node's
// own code: every manifest parses; Services, the PDB and the pod template agree on
// labels; every environment variable is a setting from settingSpecs or one the start
// script reads; the start script, run with sh for bootstrap and scaled-up pods (`exec
// node bin/dsync.js node` swapped for printing its argv), yields a command line that the
// CLI's parser and loadConfig accept, naming the other pods by their headless-Service DNS
// names; the container ports are the configured ones; and the probes' paths answer on a
// real DsyncNode's HTTP server (liveness 200, readiness 503 before group 0 exists).

import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { parseAllDocuments } from 'yaml';
import { parseArgs } from '../../../cli/args.js';
import { nodeCommand } from '../../../cli/commands/node.js';
import { envPrefix, loadConfig, type NodeConfig, type RawSettings, type SettingName, settingSpecs } from '../../../server/node/config.js';
import { DsyncNode } from '../../../server/node/node.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
const k8sDir = join(repoRoot, 'deploy', 'k8s');

type Obj = Record<string, unknown>;
const obj = (v: unknown, what: string): Obj => {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${what} is not a mapping`);
  return v as Obj;
};
const arr = (v: unknown, what: string): unknown[] => {
  if (!Array.isArray(v)) throw new Error(`${what} is not a list`);
  return v;
};
const str = (v: unknown, what: string): string => {
  if (typeof v !== 'string') throw new Error(`${what} is not a string`);
  return v;
};

const manifests: Obj[] = readdirSync(k8sDir).filter((f) => f.endsWith('.yaml')).flatMap((f) =>
  parseAllDocuments(readFileSync(join(k8sDir, f), 'utf8')).map((doc, i) => {
    if (doc.errors.length > 0) throw new Error(`${f} document ${i}: ${doc.errors.map((e) => e.message).join('; ')}`);
    return obj(doc.toJS(), `${f} document ${i}`);
  }));
const ofKind = (kind: string): Obj[] => manifests.filter((m) => m.kind === kind);
const nameOf = (m: Obj): string => str(obj(m.metadata, 'metadata').name, 'metadata.name');

const sts = ofKind('StatefulSet')[0];
const services = ofKind('Service');
const headless = services.find((s) => obj(s.spec, 'spec').clusterIP === 'None');
const client = services.find((s) => obj(s.spec, 'spec').clusterIP !== 'None');

t.test('the manifests parse and name what they need', async (t) => {
  t.equal(ofKind('StatefulSet').length, 1, 'one StatefulSet');
  t.ok(headless, 'a headless Service');
  t.ok(client, 'a client Service');
  t.equal(ofKind('PodDisruptionBudget').length, 1, 'a PodDisruptionBudget');
  const kustomization = ofKind('Kustomization')[0];
  t.ok(kustomization, 'a kustomization');
  t.same(arr(kustomization?.resources, 'resources').slice().sort(), readdirSync(k8sDir).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').sort(),
    'kustomization lists every manifest');
});

if (sts === undefined || headless === undefined || client === undefined) throw new Error('deploy/k8s lacks a StatefulSet or its Services');
const spec = obj(sts.spec, 'StatefulSet spec');
const template = obj(spec.template, 'template');
const podLabels = obj(obj(template.metadata, 'template metadata').labels, 'pod labels');
const podSpec = obj(template.spec, 'pod spec');
const container = obj(arr(podSpec.containers, 'containers')[0], 'container');
const envList = arr(container.env, 'env').map((e) => obj(e, 'env entry'));
const script = str(arr(container.args, 'args')[0], 'start script');
const containerPorts = new Map(arr(container.ports, 'ports').map((p) => [str(obj(p, 'port').name, 'port name'), Number(obj(p, 'port').containerPort)]));
const literalEnv = new Map(envList.filter((e) => typeof e.value === 'string').map((e) => [str(e.name, 'env name'), str(e.value, 'env value')]));

t.test('selectors match the pods and the StatefulSet uses the headless Service', async (t) => {
  const matches = (selector: Obj): boolean => Object.entries(selector).every(([k, v]) => podLabels[k] === v);
  t.ok(matches(obj(obj(spec.selector, 'selector').matchLabels, 'matchLabels')), 'StatefulSet selector');
  t.ok(matches(obj(obj(headless.spec, 'spec').selector, 'selector')), 'headless Service selector');
  t.ok(matches(obj(obj(client.spec, 'spec').selector, 'selector')), 'client Service selector');
  const pdb = obj(ofKind('PodDisruptionBudget')[0], 'pdb');
  t.ok(matches(obj(obj(obj(pdb.spec, 'spec').selector, 'selector').matchLabels, 'matchLabels')), 'PDB selector');
  t.equal(obj(pdb.spec, 'spec').maxUnavailable, 1, 'PDB: one pod down at most (a 3-voter quorum survives it)');
  t.equal(spec.serviceName, nameOf(headless), 'serviceName is the headless Service');
  t.equal(obj(headless.spec, 'spec').publishNotReadyAddresses, true, 'peers find each other before any is ready');
  const claims = arr(spec.volumeClaimTemplates, 'volumeClaimTemplates').map((c) => nameOf(obj(c, 'claim')));
  const mounts = arr(container.volumeMounts, 'volumeMounts').map((m) => obj(m, 'mount'));
  const dataMount = mounts.find((m) => claims.includes(str(m.name, 'mount name')));
  t.ok(dataMount, 'a volumeClaimTemplate is mounted');
  t.equal(dataMount?.mountPath, literalEnv.get('DATA_DIR'), 'at DATA_DIR');
});

t.test('every environment variable is a node setting or read by the start script', async (t) => {
  const settingEnv = new Set(settingSpecs.flatMap((s) => [s.env, `${envPrefix}${s.env}`]));
  for (const e of envList) {
    const name = str(e.name, 'env name');
    const inScript = new RegExp(`\\$\\{?${name}\\b`).test(script) || envList.some((o) => typeof o.value === 'string' && o.value.includes(`$(${name})`));
    t.ok(settingEnv.has(name) || inScript, `${name} is ${settingEnv.has(name) ? 'a setting' : 'read by the start script'}`);
  }
  t.equal(Number(literalEnv.get('PORT')), containerPorts.get('client'), 'containerPort client = PORT');
  t.equal(Number(literalEnv.get('HTTP_PORT')), containerPorts.get('http'), 'containerPort http = HTTP_PORT');
  t.equal(Number(literalEnv.get('CONSOLE_PORT')), containerPorts.get('console'), 'containerPort console = CONSOLE_PORT');
  const clientPort = arr(obj(client.spec, 'spec').ports, 'ports').map((p) => obj(p, 'port')).find((p) => p.name === 'client');
  t.equal(`${nameOf(client)}:${String(clientPort?.port)}`, literalEnv.get('JOIN_VIA'), 'pods added later join through the client Service');
});

/** The container's environment for one pod: fieldRef metadata.name, then $(VAR) expansion as the kubelet does. */
function podEnv(podName: string, dataDir: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of envList) {
    const name = str(e.name, 'env name');
    if (e.valueFrom !== undefined) {
      t.equal(obj(obj(e.valueFrom, 'valueFrom').fieldRef, 'fieldRef').fieldPath, 'metadata.name', `${name} is the pod name`);
      env[name] = podName;
    } else {
      env[name] = str(e.value, `env ${name}`).replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, v: string) => env[v] ?? m);
    }
  }
  env.DATA_DIR = dataDir;
  return env;
}

/** Runs the start script for one pod with `exec node bin/dsync.js node` printing its arguments instead. */
function startCommand(podName: string, dataDir: string): { argv: string[]; env: Record<string, string> } {
  const launcher = 'exec node bin/dsync.js node';
  const launches = script.split(launcher).length - 1;
  if (launches === 0) throw new Error(`the start script never runs "${launcher}"`);
  const env = podEnv(podName, dataDir);
  mkdirSync(dataDir, { recursive: true }); // the pod's volume, mounted before the container starts
  const out = execFileSync('sh', ['-c', script.split(launcher).join("exec printf '%s\\n'")], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, encoding: 'utf8' });
  return { argv: out.split('\n').slice(0, -1), env };
}

function configFor(argv: string[], env: Record<string, string>): NodeConfig {
  const args = parseArgs(argv, nodeCommand.valueFlags, nodeCommand.switchFlags);
  t.same(args.positionals, [], 'no positional arguments');
  const raw: RawSettings = {};
  for (const [k, v] of args.flags) raw[k as SettingName] = v;
  return loadConfig(raw, env);
}

t.test('the start script gives each pod a command line the node accepts', async (t) => {
  const replicas = Number(spec.replicas);
  const bootstrap = Number(literalEnv.get('BOOTSTRAP_MEMBERS'));
  t.equal(replicas, bootstrap, 'the StatefulSet starts with the bootstrap members');
  const set = nameOf(sts);
  const dataRoot = mkdtempSync(join(tmpdir(), 'dsync-k8s-'));
  t.teardown(() => rmSync(dataRoot, { recursive: true, force: true }));
  for (let i = 0; i < bootstrap; i++) {
    const pod = `${set}-${i}`;
    const { argv, env } = startCommand(pod, join(dataRoot, pod));
    const config = configFor(argv, env);
    t.equal(config.nodeId, pod, `${pod}: its id is the pod name`);
    t.same(config.peers.map((p) => `${p.id}@${p.host}:${p.port}`).sort(),
      Array.from({ length: bootstrap }, (_, j) => j).filter((j) => j !== i).map((j) => `${set}-${j}@${set}-${j}.${nameOf(headless)}:${config.port}`),
      `${pod}: --peers names the other pods by their headless-Service names`);
    t.equal(config.join, null, `${pod}: bootstraps, does not join`);
    t.equal(config.host, '0.0.0.0', `${pod}: binds every interface`);
    t.equal(config.advertise, `${pod}.${nameOf(headless)}:${config.port}`, `${pod}: advertises its stable DNS name`);
    t.equal(config.httpPort, containerPorts.get('http'), `${pod}: HTTP on the probed port`);
  }
  // Scaling up: dsync-3 joins with an id kept in its volume.
  const pod = `${set}-${bootstrap}`;
  const first = startCommand(pod, join(dataRoot, pod));
  const joined = configFor(first.argv, first.env);
  t.match(joined.nodeId, new RegExp(`^${pod}-\\d+$`), `${pod}: a fresh id (${joined.nodeId})`);
  t.equal(joined.join, literalEnv.get('JOIN_VIA'), `${pod}: joins through the client Service`);
  t.same(joined.peers, [], `${pod}: no --peers`);
  const again = configFor(startCommand(pod, join(dataRoot, pod)).argv, first.env);
  t.equal(again.nodeId, joined.nodeId, `${pod}: a restart keeps the id its volume holds`);
});

t.test('the probes ask paths the node answers, on its HTTP port', async (t) => {
  const readiness = obj(obj(container.readinessProbe, 'readinessProbe').httpGet, 'httpGet');
  const liveness = obj(obj(container.livenessProbe, 'livenessProbe').httpGet, 'httpGet');
  t.equal(readiness.port, 'http', 'readiness on the http port');
  t.equal(liveness.port, 'http', 'liveness on the http port');
  const dataDir = mkdtempSync(join(tmpdir(), 'dsync-k8s-probe-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const { argv, env } = startCommand(`${nameOf(sts)}-0`, dataDir);
  const node = new DsyncNode(configFor(argv, env));
  const port = await node.http.listen('127.0.0.1', 0);
  t.teardown(() => node.http.close());
  const ready = await fetch(`http://127.0.0.1:${port}${str(readiness.path, 'readiness path')}`);
  t.equal(ready.status, 503, `${String(readiness.path)}: 503 before group 0 has a leader (a route, not 404)`);
  t.match(await ready.json(), { status: 'not ready', reason: /group 0/ }, 'saying why');
  const live = await fetch(`http://127.0.0.1:${port}${str(liveness.path, 'liveness path')}`);
  t.equal(live.status, 200, `${String(liveness.path)}: 200 while the process serves`);
});

t.test('the pod runs as the image\'s non-root user from its working directory', async (t) => {
  const docker = readFileSync(join(repoRoot, 'Dockerfile'), 'utf8');
  const runtime = docker.slice(docker.lastIndexOf('\nFROM '));
  t.match(runtime, /\nUSER node\n/, 'the runtime image runs as node');
  t.match(runtime, /\nWORKDIR \/app\n/, 'from /app');
  t.match(runtime, /COPY --from=build \/app\/bin \.\/bin/, 'where bin/dsync.js is');
  t.match(runtime, /COPY --from=build \/app\/server\/node\/status \.\/server\/node\/status/, 'with the status page files');
  const security = obj(podSpec.securityContext, 'securityContext');
  t.equal(security.runAsNonRoot, true, 'runAsNonRoot');
  t.equal(security.runAsUser, 1000, 'uid 1000 (node in the node:20 images)');
  t.equal(security.fsGroup, 1000, 'the volume writable for it');
});
