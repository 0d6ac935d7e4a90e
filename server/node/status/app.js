// dsync status page script: polls /status.json once a second and redraws the tables,
// figures and charts (inline SVG built here; no libraries, no network beyond this node).
// Every value from the node is put in the page as text (textContent), never as HTML.
'use strict';

const pollMs = 1000;
const chartWidth = 600;
const chartHeight = 90;
const svgNs = 'http://www.w3.org/2000/svg';

/** Builds an element: el('td', { class: 'ok' }, 'text', child...). */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(svgNs, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

function setText(id, text) {
  const node = document.getElementById(id);
  if (node.textContent !== String(text)) node.textContent = String(text);
}

function fillBody(tableId, rows) {
  document.querySelector(`#${tableId} tbody`).replaceChildren(...rows);
}

function duration(ms) {
  if (ms === null || ms === undefined) return '–';
  const s = Math.floor(ms / 1000);
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** A line chart of one or more series over the samples' times (missing values skip). */
function drawChart(id, samples, series) {
  const box = document.getElementById(id);
  const root = svg('svg', { viewBox: `0 0 ${chartWidth} ${chartHeight}`, preserveAspectRatio: 'none', role: 'img' });
  const points = series.map((s) => samples.map((x) => [x.atMs, s.pick(x)]).filter(([, v]) => v !== null && Number.isFinite(v)));
  const all = points.flat();
  let note = 'collecting samples…';
  if (all.length >= 2) {
    const t0 = Math.min(...all.map((p) => p[0]));
    const t1 = Math.max(...all.map((p) => p[0]));
    const vMax = Math.max(1e-9, ...all.map((p) => p[1]), ...series.map((s) => s.floor || 0));
    const x = (t) => (t1 === t0 ? 0 : ((t - t0) / (t1 - t0)) * (chartWidth - 4) + 2);
    const y = (v) => chartHeight - 6 - (v / vMax) * (chartHeight - 12);
    root.append(svg('line', { x1: 0, x2: chartWidth, y1: y(0), y2: y(0), stroke: '#dde2ea' }));
    series.forEach((s, i) => {
      if (points[i].length === 0) return;
      root.append(svg('polyline', { points: points[i].map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(' '),
        fill: 'none', stroke: s.color, 'stroke-width': 2, 'vector-effect': 'non-scaling-stroke' }));
    });
    note = `max ${formatNumber(vMax)} · last ${duration(t1 - t0)}`;
  }
  const legend = el('div', { class: 'legend' }, ...series.map((s) => el('span', { style: `color:${s.color};margin-right:12px` }, `■ ${s.name}`)), note);
  box.replaceChildren(root, legend);
}

function formatNumber(v) {
  if (v >= 100) return String(Math.round(v));
  return String(Math.round(v * 100) / 100);
}

/** The ring as a donut: each voter's share of the hash space. */
function drawRing(ring) {
  const box = document.getElementById('ring');
  if (ring.length === 0) {
    box.replaceChildren(el('span', { class: 'muted' }, 'no voters known'));
    return;
  }
  const colors = ['#2f6fd6', '#1f8a4c', '#b7791f', '#8e44ad', '#c2352b', '#16a2b8', '#6b7585'];
  const root = svg('svg', { viewBox: '0 0 120 120', width: 120, height: 120, role: 'img' });
  let angle = -Math.PI / 2;
  ring.forEach((r, i) => {
    const a1 = angle + r.share * 2 * Math.PI;
    const large = r.share > 0.5 ? 1 : 0;
    const p = (a, rad) => `${(60 + rad * Math.cos(a)).toFixed(2)},${(60 + rad * Math.sin(a)).toFixed(2)}`;
    const d = r.share >= 0.9999
      ? 'M60,8 A52,52 0 1,1 59.99,8 L59.99,32 A28,28 0 1,0 60,32 Z'
      : `M${p(angle, 52)} A52,52 0 ${large},1 ${p(a1, 52)} L${p(a1, 28)} A28,28 0 ${large},0 ${p(angle, 28)} Z`;
    root.append(svg('path', { d, fill: colors[i % colors.length], stroke: '#fff', 'stroke-width': 1 }));
    angle = a1;
  });
  const list = el('table', { id: 'ring-shares' }, el('tbody', {}, ...ring.map((r, i) =>
    el('tr', { 'data-member': r.member }, el('td', { style: `color:${colors[i % colors.length]}` }, '■ ' + r.member), el('td', {}, `${(r.share * 100).toFixed(1)}%`)))));
  box.replaceChildren(el('div', { style: 'display:flex;gap:16px;align-items:center' }, root, list));
}

function render(s) {
  setText('node-id', s.node.id);
  setText('leader', s.leaderId === '' ? 'none known' : s.leaderId);
  const self = s.members.find((m) => m.self);
  const g0 = self ? self.groups.find((g) => g.group === 0) : undefined;
  setText('term', g0 ? g0.term : '–');

  fillBody('members', s.members.map((m) => {
    const own = m.groups.find((g) => g.group === 0);
    const down = !m.self && !m.reachable && !m.answered;
    return el('tr', { 'data-member': m.id, 'data-reachable': m.reachable, 'data-answered': m.answered, class: down ? 'down' : '' },
      el('td', { class: own && own.role === 'leader' ? 'leader' : '' }, m.id + (m.self ? ' (this page)' : '')),
      el('td', {}, m.address || '–'),
      el('td', {}, m.role),
      el('td', { class: own && own.role === 'leader' ? 'leader' : '' }, own ? own.role : '–'),
      el('td', {}, own ? own.term : '–'),
      el('td', {}, own ? `${own.commit} / ${own.applied}` : '–'),
      el('td', { class: m.reachable ? 'ok' : 'bad' }, m.self ? 'self' : m.reachable ? 'up' : 'down'),
      el('td', { class: m.answered ? 'ok' : 'bad', title: m.error }, m.answered ? 'yes' : `no (${m.error.split(':')[0]})`),
      el('td', {}, duration(m.uptimeMs)));
  }));

  // Groups: every group any answering member hosts; leader and term as the members see them.
  const groups = new Map();
  for (const m of s.members) {
    for (const g of m.groups) {
      if (!groups.has(g.group)) groups.set(g.group, []);
      groups.get(g.group).push({ member: m.id, ...g });
    }
  }
  const partitionOf = new Map(s.queues.partitions.map((p) => [p.group, p]));
  fillBody('groups', [...groups.keys()].sort((a, b) => a - b).map((id) => {
    const views = groups.get(id);
    const leaders = [...new Set(views.map((v) => v.leaderId).filter((l) => l !== ''))];
    const terms = [...new Set(views.map((v) => v.term))];
    const p = partitionOf.get(id);
    const kind = id === 0 ? 'members, locks, topics' : p ? `${p.topic} p${p.partition}` : 'partition';
    return el('tr', { 'data-group': id },
      el('td', {}, id), el('td', {}, kind),
      el('td', { class: leaders.length === 1 ? '' : 'warn' }, leaders.length === 0 ? 'none' : leaders.join(' / ')),
      el('td', {}, terms.join(' / ')),
      el('td', {}, Math.max(...views.map((v) => v.commit))),
      el('td', {}, (views[0].voters || []).join(', ')),
      el('td', {}, views.map((v) => `${v.member}:${v.role}`).join(' ')));
  }));

  setText('locks-held', s.locks.exclusive + s.locks.shared);
  setText('lock-waiters', s.locks.waiters);
  setText('lock-sessions', s.locks.sessions);

  const published = s.queues.offsets.reduce((n, o) => n + o.logEnd, 0);
  setText('queue-messages', published);
  setText('queue-lag', s.queues.lag.reduce((n, l) => n + l.lag, 0));
  const byGroup = new Map();
  for (const l of s.queues.lag) {
    const k = `${l.topic}\u0000${l.group}`;
    const e = byGroup.get(k) || { topic: l.topic, group: l.group, lag: 0, partitions: 0 };
    e.lag += l.lag;
    e.partitions += 1;
    byGroup.set(k, e);
  }
  fillBody('lag', [...byGroup.values()].map((e) => el('tr', {}, el('td', {}, e.topic), el('td', {}, e.group), el('td', {}, e.lag), el('td', {}, e.partitions))));
  const offsetOf = new Map(s.queues.offsets.map((o) => [`${o.topic}\u0000${o.partition}`, o.logEnd]));
  fillBody('partitions', s.queues.partitions.map((p) => el('tr', { 'data-topic': p.topic, 'data-partition': p.partition },
    el('td', {}, p.topic), el('td', {}, p.partition), el('td', {}, p.group),
    el('td', {}, p.replicas.join(', ')), el('td', { class: p.leader === '' ? 'bad' : 'leader' }, p.leader || 'none'),
    el('td', {}, offsetOf.has(`${p.topic}\u0000${p.partition}`) ? offsetOf.get(`${p.topic}\u0000${p.partition}`) : 'not hosted here'))));

  setText('cache-hit-ratio', s.cache.hitRatio === null ? '–' : `${(s.cache.hitRatio * 100).toFixed(1)}%`);
  setText('cache-reads', `${s.cache.hits} / ${s.cache.misses}`);
  setText('cache-lines', s.cache.lines);
  drawRing(s.ring);

  const samples = [...s.history, s.current];
  drawChart('chart-locks', samples, [
    { name: 'held', color: '#2f6fd6', pick: (x) => x.locksHeld },
    { name: 'waiting', color: '#c2352b', pick: (x) => x.lockWaiters },
  ]);
  drawChart('chart-queues', samples, [
    { name: 'messages', color: '#1f8a4c', pick: (x) => x.queueMessages },
    { name: 'lag', color: '#b7791f', pick: (x) => x.queueLag },
  ]);
  drawChart('chart-cache', samples, [{ name: 'hit ratio', color: '#8e44ad', floor: 1, pick: (x) => x.cacheHitRatio }]);
  const rates = samples.map((x, i) => {
    const prev = samples[i - 1];
    return { atMs: x.atMs, rate: prev === undefined || x.atMs <= prev.atMs ? null : ((x.requests - prev.requests) * 1000) / (x.atMs - prev.atMs) };
  });
  drawChart('chart-requests', rates, [{ name: 'requests/s', color: '#16a2b8', pick: (x) => x.rate }]);

  const updated = document.getElementById('updated');
  updated.className = 'muted';
  updated.textContent = `updated ${new Date(s.node.timeMs).toLocaleTimeString()}`;
  document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
}

async function poll() {
  try {
    const res = await fetch('/status.json', { cache: 'no-store' });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    render(await res.json());
  } catch (err) {
    const updated = document.getElementById('updated');
    updated.className = 'bad';
    updated.textContent = `this node is not answering (${err.message}); retrying`;
  } finally {
    setTimeout(poll, pollMs);
  }
}

poll();
