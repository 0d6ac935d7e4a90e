// Checks the container files a new user runs as they are: the Dockerfile's
// HEALTHCHECK asks /readyz (a node without a leader is not healthy), and
// compose.yaml publishes every port on the host's loopback unless the user opts
// in through DSYNC_PUBLISH_ADDRESS, which the README documents.

import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

/** The checkout root (this file runs from dist/test/unit/docs/). */
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
const read = (name: string): string => readFileSync(join(repoRoot, name), 'utf8');

t.test('the Dockerfile health check is readiness', async (t) => {
  const checks = read('Dockerfile').split('\n').filter((l) => l.startsWith('HEALTHCHECK'));
  t.equal(checks.length, 1, 'one HEALTHCHECK');
  t.match(checks[0] ?? '', /\/readyz'/, 'asking /readyz');
  t.notMatch(checks[0] ?? '', /\/healthz/, 'not /healthz (200 without a leader)');
});

t.test('compose publishes on loopback unless opted in', async (t) => {
  const ports = [...read('compose.yaml').matchAll(/^\s*ports: \[(.*)\]$/gm)].flatMap((m) => (m[1] ?? '').split(',').map((p) => p.trim()));
  t.equal(ports.length, 11, 'three ports for each of three nodes, and Prometheus and Grafana (monitoring profile)');
  for (const p of ports) t.match(p, /^"\$\{DSYNC_PUBLISH_ADDRESS:-127\.0\.0\.1\}:\d+:\d+"$/, `${p} binds the host's 127.0.0.1 by default`);
  t.match(read('README.md'), /DSYNC_PUBLISH_ADDRESS=0\.0\.0\.0 docker compose up/, 'the README says how to opt in');
});
