// The published package as a user gets it: `npm pack` of this checkout, installed
// into an empty project (dependencies from the npm cache where possible), then the
// README's client example run with plain Node against a real 1-node cluster, the
// `dsync` bin run from node_modules/.bin, and a TypeScript file compiled against the
// published declarations. Packing uses the dist/ the test itself runs from.

import { execFile } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { repoRoot, TestCluster, tempDir } from './helpers/cluster.js';

const run = promisify(execFile);
/** Long enough for a cold npm install from the cache on a loaded machine. */
const npmTimeoutMs = 120_000;

/** The environment minus what an outer `npm test` exports, which would point npm at this checkout. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  const keep = new Set(['npm_config_cache', 'npm_config_registry', 'npm_config_userconfig']);
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && (!k.toLowerCase().startsWith('npm_') || keep.has(k.toLowerCase()))) env[k] = v;
  }
  return env;
}

/** The first ```js block of the README's "Client library" section: the example Node 20 runs as written. */
export function readmeClientExample(readme: string): string {
  const section = readme.split(/^### Client library$/m)[1];
  if (section === undefined) throw new Error('README has no "### Client library" section');
  const m = /```js\n([\s\S]*?)```/.exec(section);
  if (m === null || m[1] === undefined) throw new Error('README "Client library" section has no ```js example');
  return m[1];
}

const packDir = tempDir(t, 'dsync-pack-');
const projectDir = tempDir(t, 'dsync-user-');
const env = cleanEnv();
const npmFlags = ['--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'];

// Scripts off: dist/ is already built (this test runs from it); `prepare` builds on a real pack.
await run('npm', ['pack', '--ignore-scripts', '--pack-destination', packDir, ...npmFlags], { cwd: repoRoot, env, timeout: npmTimeoutMs });
const tarball = readdirSync(packDir).find((f) => /^dsync-.*\.tgz$/.test(f));
if (tarball === undefined) throw new Error(`npm pack wrote no dsync-*.tgz into ${packDir}`);

t.test('the tarball ships the runtime, not tests, benchmarks or sources', async (t) => {
  const { stdout } = await run('tar', ['-tzf', join(packDir, tarball)], { env });
  const files = stdout.split('\n').filter((f) => f !== '').map((f) => f.replace(/^package\//, ''));
  for (const wanted of ['package.json', 'README.md', 'bin/dsync.js', 'dist/client/index.js', 'dist/client/index.d.ts',
    'dist/cli/dsync.js', 'dist/protocol/generated/dsync.js', 'server/node/status/index.html', 'server/node/status/app.js',
    'server/node/status/style.css']) {
    t.ok(files.includes(wanted), `ships ${wanted}`);
  }
  t.same(files.filter((f) => /^(dist\/(test|bench)\/|test\/|bench\/|\.ci\/|client\/|core\/)/.test(f) || f.endsWith('.map')), [],
    'no tests, benchmarks, TypeScript sources or source maps');
  const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { scripts?: Record<string, string> };
  t.match(pkg.scripts?.['prepare'] ?? '', /npm run build/, 'installing from a git URL builds dist/ (prepare)');
});

t.test('installed into an empty project, the README example runs against a 1-node cluster', async (t) => {
  writeFileSync(join(projectDir, 'package.json'), JSON.stringify({ name: 'dsync-user', version: '1.0.0', private: true, type: 'module' }));
  await run('npm', ['install', ...npmFlags, join(packDir, tarball)], { cwd: projectDir, env, timeout: npmTimeoutMs });

  const cluster = await TestCluster.start(t, { nodes: 1 });
  const address = cluster.seeds[0]!;
  const example = readmeClientExample(readFileSync(join(repoRoot, 'README.md'), 'utf8'));
  t.match(example, /127\.0\.0\.1:7401/, 'the example connects to the quick start\'s first node');
  writeFileSync(join(projectDir, 'example.js'), example.replaceAll('127.0.0.1:7401', address));
  const { stdout, stderr } = await run(process.execPath, ['example.js'], { cwd: projectDir, env, timeout: 30_000 });
  t.match(stdout, /fencing token \d+/, 'the example took the lock and printed its token');
  t.notMatch(stderr, /lock lost/, 'no lock was lost');

  const bin = await run(process.execPath, [join(projectDir, 'node_modules', '.bin', 'dsync'), 'ping', '--seeds', address],
    { cwd: projectDir, env, timeout: 30_000 });
  t.match(bin.stdout, /ms|pong/i, 'the installed dsync bin pings the node');
});

t.test('the published declarations type-check a TypeScript user and hide the internals', async (t) => {
  const tsc = join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc');
  writeFileSync(join(projectDir, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', lib: ['ES2023', 'ESNext.Disposable'],
      strict: true, noEmit: true, skipLibCheck: false, types: ['node'], typeRoots: [join(repoRoot, 'node_modules', '@types')] },
    files: ['use.ts'],
  }));
  writeFileSync(join(projectDir, 'use.ts'), [
    "import { Client, DsyncError, ErrorCode, type HeldLock } from 'dsync';",
    'export async function use(): Promise<number> {',
    "  const client = await Client.connect({ seeds: ['127.0.0.1:7401'], requestTimeoutMs: 2000 });",
    '  try {',
    "    const lock: HeldLock = await client.lock('a', { mode: 'shared', waitMs: 10 });",
    '    await lock.release();',
    "    const err = new DsyncError(ErrorCode.CANCELLED, 'x');",
    '    return err.code.length + lock.token;',
    '  } finally {',
    '    await client.close();',
    '  }',
    '}',
    "// @ts-expect-error the router is internal (tests reach it through client/client.js, not the package)",
    "export { routerOf } from 'dsync';",
    'export function internals(client: Client): unknown {',
    '  // @ts-expect-error no transport, connection or push hooks on the public Client',
    '  return client.connection ?? client.leaderRequest ?? client.onPush ?? client.router;',
    '}',
    "// @ts-expect-error deep imports are not part of the package's exports",
    "export type Router = import('dsync/dist/client/transport/router.js').Router;",
    '',
  ].join('\n'));
  const result = await run(process.execPath, [tsc, '-p', projectDir], { cwd: projectDir, env, timeout: npmTimeoutMs })
    .then(() => ({ ok: true, out: '' }), (err: { stdout?: string }) => ({ ok: false, out: err.stdout ?? String(err) }));
  t.ok(result.ok, `tsc accepts the user's file against the published .d.ts\n${result.out}`);
});
