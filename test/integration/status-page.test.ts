// The status page (`/` on the HTTP port) in real headless Chromium (Debian's `chromium`,
// driven with puppeteer-core) against a real 3-node cluster: the page renders every
// member answering, then shows a lock taken, messages published (topic placement and
// offsets) and a node killed with kill -9 (unreachable, not answering), each read back
// from the page's DOM; screenshots are taken before and after. Without chromium the test
// fails saying how to install it (CI's .ci/run does): it never skips.

import { accessSync, constants as fsConstants, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import t from 'tap';
import { Client } from '../../client/index.js';
import { TestCluster } from './helpers/cluster.js';

/** The page's document as the functions run inside Chromium see it (tsconfig has no DOM lib; only what they touch). */
declare const document: {
  querySelectorAll(selector: string): { readonly length: number };
  querySelector(selector: string): { getAttribute(name: string): string | null } | null;
  getElementById(id: string): { readonly textContent: string | null } | null;
};

/** How long the page may take to show a change (it polls every second; an election can take ~1 s). */
const pageChangeTimeoutMs = 8_000;

/** The system chromium on PATH (Debian installs /usr/bin/chromium), or null. */
function findChromium(): string | null {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    for (const name of ['chromium', 'chromium-browser']) {
      const path = join(dir, name);
      try {
        accessSync(path, fsConstants.X_OK);
        return path;
      } catch {
        // not here
      }
    }
  }
  return null;
}

async function text(page: Page, selector: string): Promise<string> {
  return page.$eval(selector, (e) => e.textContent ?? '');
}

t.test('the status page shows the live cluster and follows it', async (t) => {
  const chromium = findChromium();
  if (chromium === null) {
    t.fail('chromium is not installed: this test needs a real headless browser. Install Debian\'s package: '
      + 'apt-get update && apt-get install -y chromium (.ci/run does this in CI)');
    return;
  }
  const shots = mkdtempSync(join(tmpdir(), 'dsync-status-page-'));
  t.teardown(() => {
    // Kept when the test failed (or DSYNC_KEEP_SCREENSHOTS=1), so the picture can be looked at.
    if (t.passing() && process.env.DSYNC_KEEP_SCREENSHOTS !== '1') rmSync(shots, { recursive: true, force: true });
  });

  const cluster = await TestCluster.start(t, { nodes: 3 });
  const n1 = cluster.node('n1');
  const browser: Browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    // As root Chromium refuses to start without --no-sandbox; the page is our own.
    args: [...(process.getuid?.() === 0 ? ['--no-sandbox'] : []), '--disable-gpu', '--disable-dev-shm-usage'],
    userDataDir: join(shots, 'profile'),
  });
  t.teardown(() => browser.close());
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 1000 });
  const pageErrors: string[] = [];
  page.on('pageerror', (err) => pageErrors.push(String(err)));
  const requestsOutside: string[] = [];
  page.on('request', (r) => { if (!r.url().startsWith(`http://127.0.0.1:${n1.spec.httpPort}/`)) requestsOutside.push(r.url()); });

  const response = await page.goto(`http://127.0.0.1:${n1.spec.httpPort}/`, { waitUntil: 'load' });
  t.equal(response?.status(), 200, '/ answers 200');
  t.match(response?.headers()['content-type'] ?? '', /text\/html/, 'as HTML');

  // Every member answers, and one of them leads group 0.
  await page.waitForFunction(() => document.querySelectorAll('#members tr[data-answered="true"]').length === 3, { timeout: pageChangeTimeoutMs });
  t.equal(await text(page, '#node-id'), 'n1', 'the page names the node serving it');
  const leader = await text(page, '#leader');
  t.match(leader, /^n[123]$/, `group 0's leader is shown (${leader})`);
  t.equal(await page.$$eval('#members tr[data-reachable="true"]', (rows) => rows.length), 3, 'all three reachable');
  t.ok(await page.$('#groups tr[data-group="0"]'), 'group 0 is listed');
  t.equal(await page.$$eval('#ring-shares tr', (rows) => rows.length), 3, 'the ring has three voters');
  t.equal(await text(page, '#locks-held'), '0', 'no lock held yet');
  t.equal(await text(page, '#queue-messages'), '0', 'no message yet');
  const before = join(shots, 'status-before.png');
  await page.screenshot({ path: before, fullPage: true });
  t.comment(`screenshot (3 nodes, idle): ${before}`);

  // A lock taken shows as held.
  const client = await Client.connect({ seeds: cluster.seeds });
  t.teardown(() => client.close());
  const lock = await client.lock('status/page', { mode: 'exclusive' });
  await page.waitForFunction(() => document.getElementById('locks-held')?.textContent === '1', { timeout: pageChangeTimeoutMs });
  t.pass('the page shows the lock held');
  t.equal(await text(page, '#lock-sessions'), '1', 'and one session');

  // Messages published: the topic's partitions appear with their placement, and the count moves.
  await client.topics.create('orders', { partitions: 2, replicas: 3 });
  const producer = client.producer('orders');
  for (let i = 0; i < 5; i++) await producer.publish(`user-${i}`, `order ${i}`);
  await page.waitForFunction(() => document.getElementById('queue-messages')?.textContent === '5', { timeout: pageChangeTimeoutMs });
  t.pass('the page counts the five published messages');
  const placement = await page.$$eval('#partitions tr[data-topic="orders"]', (rows) => rows.map((r) => [...r.querySelectorAll('td')].map((c) => c.textContent)));
  t.equal(placement.length, 2, 'both partitions of orders are placed');
  for (const row of placement) t.match(row[3] ?? '', /^n\d, n\d, n\d$/, `partition ${row[1]} has three replicas (${row[3]})`);
  await lock.release();
  await page.waitForFunction(() => document.getElementById('locks-held')?.textContent === '0', { timeout: pageChangeTimeoutMs });
  t.pass('the released lock is gone from the page');

  // kill -9 of n3 (a process this test started): the page shows it down.
  const pid = cluster.node('n3').process.pid;
  process.kill(pid, 'SIGKILL');
  const exit = await cluster.node('n3').process.exited;
  t.equal(exit.signal, 'SIGKILL', `n3 (pid ${pid}) was killed`);
  await page.waitForFunction(() => {
    const row = document.querySelector('#members tr[data-member="n3"]');
    return row?.getAttribute('data-reachable') === 'false' && row.getAttribute('data-answered') === 'false';
  }, { timeout: pageChangeTimeoutMs });
  t.pass('n3 shows as unreachable and not answering');
  await page.waitForFunction(() => /^n[12]$/.test(document.getElementById('leader')?.textContent ?? ''), { timeout: pageChangeTimeoutMs });
  t.equal(await page.$$eval('#members tr[data-answered="true"]', (rows) => rows.length), 2, 'the two others still answer');
  t.match(await text(page, '#members tr[data-member="n3"]'), /down/, 'the row says down');
  const charts = await page.$$eval('.chart svg polyline', (lines) => lines.length);
  t.ok(charts >= 1, `the charts draw lines (${charts})`);

  const after = join(shots, 'status-after-kill.png');
  await page.screenshot({ path: after, fullPage: true });
  t.comment(`screenshot (lock released, 5 messages, n3 killed): ${after}`);
  t.same([...readFileSync(after).subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'the screenshot is a PNG');
  t.same(pageErrors, [], 'no script errors on the page');
  t.same(requestsOutside, [], 'the page loads nothing from anywhere but its node');
});
