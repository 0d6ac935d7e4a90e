// Checks the monitoring files against the code: every dsync_* metric the Grafana
// dashboard (docker/grafana/dashboards) and the Prometheus alert rules
// (docker/prometheus/alerts.yml) query is one the nodes export (a name registered in
// server/; histograms also as _bucket/_count/_sum), so a renamed metric cannot leave a
// silent panel or an alert that never fires. Also: the dashboard is valid JSON with
// unique panel ids, every alert has an expression, and Prometheus scrapes /metrics.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
const read = (name: string): string => readFileSync(join(repoRoot, name), 'utf8');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? sourceFiles(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** Metric names registered in server/ (string literals 'dsync_...'), with histogram series. */
function exported(): Set<string> {
  const names = new Set<string>();
  for (const file of sourceFiles(join(repoRoot, 'server'))) {
    for (const m of readFileSync(file, 'utf8').matchAll(/'(dsync_[a-z0-9_]+)'/g)) {
      const name = m[1] ?? '';
      names.add(name);
      for (const suffix of ['_bucket', '_count', '_sum']) names.add(name + suffix);
    }
  }
  return names;
}

const used = (text: string): string[] => [...new Set([...text.matchAll(/\b(dsync_[a-z0-9_]+)/g)].map((m) => m[1] ?? ''))];

t.test('every metric the dashboard and the alerts use is exported', async (t) => {
  const have = exported();
  t.ok(have.has('dsync_requests_total') && have.has('dsync_raft_is_leader'), `found the exported names in server/ (${have.size})`);
  const dashboard = read('docker/grafana/dashboards/dsync.json');
  const alerts = read('docker/prometheus/alerts.yml');
  for (const [what, text] of [['dashboard', dashboard], ['alerts', alerts]] as const) {
    const names = used(text);
    t.ok(names.length >= 5, `${what} queries ${names.length} metrics`);
    t.same(names.filter((n) => !have.has(n)), [], `${what}: every metric exists`);
  }
});

t.test('the dashboard, the alerts and the scrape config are well formed', async (t) => {
  const dash = JSON.parse(read('docker/grafana/dashboards/dsync.json')) as { uid: string; panels: { id: number; targets: { expr: string }[] }[] };
  t.equal(dash.uid, 'dsync');
  t.equal(new Set(dash.panels.map((p) => p.id)).size, dash.panels.length, 'panel ids are unique');
  t.ok(dash.panels.every((p) => p.targets.length > 0 && p.targets.every((x) => x.expr.length > 0)), 'every panel queries something');
  const alerts = read('docker/prometheus/alerts.yml');
  const alertCount = [...alerts.matchAll(/^\s+- alert: /gm)].length;
  const exprCount = [...alerts.matchAll(/^\s+expr: \S/gm)].length;
  t.ok(alertCount >= 5 && alertCount === exprCount, `${alertCount} alerts, each with an expression`);
  t.match(read('docker/prometheus/prometheus.yml'), /metrics_path: \/metrics/);
  t.match(read('compose.yaml'), /profiles: \[monitoring\]/, 'compose runs them under the monitoring profile');
});
