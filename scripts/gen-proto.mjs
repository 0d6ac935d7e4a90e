// Build step: generate the static protobufjs module and its .d.ts from
// protocol/*.proto into protocol/generated/, and copy them next to the
// compiled output (tsc does not copy .js inputs). Skips work when up to date.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync, copyFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const proto = join(root, 'protocol', 'dsync.proto');
const outDir = join(root, 'protocol', 'generated');
const outJs = join(outDir, 'dsync.js');
const outDts = join(outDir, 'dsync.d.ts');
const bin = (name) => join(root, 'node_modules', '.bin', name);

mkdirSync(outDir, { recursive: true });
const fresh = existsSync(outJs) && existsSync(outDts) && statSync(outJs).mtimeMs >= statSync(proto).mtimeMs;
if (!fresh) {
  execFileSync(bin('pbjs'), ['-t', 'static-module', '-w', 'es6', '--es6', '--force-number', '--no-verify', '--no-convert',
    '--no-delimited', '--no-typeurl', '--no-service', '-o', outJs, proto], { stdio: 'inherit' });
  // ESM resolution needs the file extension on the runtime import.
  const js = readFileSync(outJs, 'utf8').replace(/from "protobufjs\/minimal"/, 'from "protobufjs/minimal.js"');
  writeFileSync(outJs, js);
  execFileSync(bin('pbts'), ['--no-comments', '-o', outDts, outJs], { stdio: 'inherit' });
}
const distDir = join(root, 'dist', 'protocol', 'generated');
mkdirSync(distDir, { recursive: true });
copyFileSync(outJs, join(distDir, 'dsync.js'));
copyFileSync(outDts, join(distDir, 'dsync.d.ts'));
