// PoUW node dashboard: polls the node's JSON-RPC (same origin) and renders the chain, the
// node's health, its peers, tasks and live training curves. No framework, no external files.
// Amounts and other big integers arrive as decimal strings and are shown as they are.
(() => {
  'use strict';
  const POLL_MS = 1500;
  const TASK_EVERY = 3; // task records are refreshed every third poll
  const MAX_SERIES = 8; // most recent (miner, task) curves drawn
  const MAX_POINTS = 4000; // points kept per curve
  const ZERO = '0'.repeat(64);
  const COLORS = ['#4c9aff', '#f0883e', '#3fb950', '#d2a8ff', '#ff7b72', '#e3b341', '#56d4dd', '#db61a2'];

  const $ = (id) => document.getElementById(id);
  // State, readable from outside (tests, the console).
  const S = (window.__dashboard = {
    polls: 0, okPolls: 0, errors: 0, online: false, lastError: null,
    tip: null, heights: [], blocks: [], lastSeq: 0, points: 0, series: {},
    peers: [], health: null, ownTxs: [], tasks: {}, watched: [], seenTasks: [],
  });

  // ---------- helpers ----------
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const c of kids.flat(Infinity)) {
      if (c == null || c === false) continue;
      e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }
  const short = (h) => (typeof h === 'string' && h.length > 16 ? h.slice(0, 8) + '…' + h.slice(-4) : String(h ?? '–'));
  const hashEl = (h) => el('code', { title: h }, short(h));
  const isHash = (v) => typeof v === 'string' && /^(0x)?[0-9a-f]{64}$/i.test(v);
  const fix = (x, d) => (typeof x === 'number' && isFinite(x) ? x.toFixed(d) : '–');
  function bytes(n) {
    if (typeof n !== 'number') return '–';
    const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : Math.round(n)) + ' ' + u[i];
  }
  function ago(ms) {
    if (typeof ms !== 'number') return '–';
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 60) return s + 's ago';
    if (s < 3600) return Math.floor(s / 60) + 'm ' + (s % 60) + 's ago';
    if (s >= 172800) return Math.floor(s / 86400) + ' days ago';
    return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm ago';
  }
  function dur(secs) {
    if (typeof secs !== 'number') return '–';
    const h = Math.floor(secs / 3600), m = Math.floor((secs % 3600) / 60), s = secs % 60;
    return (h ? h + 'h ' : '') + (h || m ? m + 'm ' : '') + s + 's';
  }
  const kv = (pairs, cls) =>
    el('div', { class: 'kv' + (cls ? ' ' + cls : '') },
      pairs.filter(Boolean).map(([k, v]) => el('div', null, el('div', { class: 'k' }, k), el('div', { class: 'v' }, v))));
  const fill = (node, ...kids) => { node.replaceChildren(...kids.flat().filter((k) => k != null)); };

  // ---------- JSON-RPC ----------
  let rid = 0;
  async function batch(calls) {
    const body = calls.map(([method, params]) => ({ jsonrpc: '2.0', id: ++rid, method, params }));
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), 8000);
    try {
      const r = await fetch('/', {
        method: 'POST', cache: 'no-store', signal: ctl.signal,
        headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
      });
      if (!r.ok) throw new Error('HTTP ' + r.status + ' ' + r.statusText);
      const out = await r.json();
      const byId = new Map((Array.isArray(out) ? out : [out]).map((x) => [x.id, x]));
      return body.map((b) => byId.get(b.id) || { error: { message: 'no answer' } });
    } catch (e) {
      throw e.name === 'AbortError' ? new Error('no answer within 8 s') : e;
    } finally {
      clearTimeout(timer);
    }
  }
  async function call(method, params) {
    const [r] = await batch([[method, params]]);
    if (r.error) throw new Error(r.error.message || 'error ' + r.error.code);
    return r.result;
  }
  const errText = (r) => 'RPC error: ' + ((r.error && r.error.message) || 'unknown');

  // ---------- connection banner ----------
  let lastOk = null;
  function setOnline(ok, err) {
    S.online = ok;
    const badge = $('status');
    const banner = $('banner');
    if (ok) {
      lastOk = Date.now();
      document.querySelector('main').classList.remove('stale');
      S.lastError = null;
      banner.hidden = true;
      badge.textContent = 'live';
      badge.className = 'badge ok';
    } else {
      S.errors++;
      document.querySelector('main').classList.add('stale');
      S.lastError = String(err && err.message ? err.message : err);
      banner.hidden = false;
      banner.textContent = 'Node unreachable at ' + location.host + ': ' + S.lastError +
        (lastOk ? ' (last answer ' + ago(lastOk) + ')' : '') + '. Retrying…';
      badge.textContent = 'offline';
      badge.className = 'badge bad';
    }
  }

  // ---------- chain ----------
  function renderTip(tip) {
    S.tip = tip;
    if (S.heights[S.heights.length - 1] !== tip.height) {
      S.heights.push(tip.height);
      if (S.heights.length > 100) S.heights.shift();
    }
    const h = $('tip-height');
    h.textContent = tip.height;
    h.dataset.height = tip.height;
    const th = $('tip-hash');
    th.textContent = short(tip.hash);
    th.title = tip.hash;
    fill($('tip-kv'), kv([
      ['height', tip.height],
      ['tip hash', hashEl(tip.hash)],
      ['block time', new Date(tip.timestamp).toLocaleTimeString()],
      ['target', el('code', null, tip.target)],
      ['total work', el('span', { class: 'mono' }, tip.total_work)],
      ['state root', hashEl(tip.state_root)],
    ]));
    tickAge();
  }
  function tickAge() {
    $('tip-age').textContent = S.tip ? ago(S.tip.timestamp) : '';
  }

  let maxShown = -1;
  function renderBlocks(blocks) {
    S.blocks = blocks;
    const prevMax = maxShown;
    for (const b of blocks) {
      maxShown = Math.max(maxShown, b.height);
      for (const id of taskIdsOf(b)) noteTask(id, false);
    }
    fill($('blocks'), blocks.map((b) => {
      const p = b.proof;
      return el('tr', { class: 'click' + (prevMax >= 0 && b.height > prevMax ? ' new' : ''), onclick: () => openBlock(b.hash), 'data-height': b.height },
        el('td', { class: 'num' }, b.height),
        el('td', { class: 'hide-s' }, hashEl(b.hash)),
        el('td', null, b.height === 0 ? el('span', { class: 'muted' }, 'genesis') : hashEl(b.miner)),
        el('td', { class: 'hide-s' }, hashEl(p ? p.task_id : b.task_id)),
        el('td', { class: 'num' }, p ? p.iteration : '–'),
        el('td', { class: 'num' }, p ? fix(p.loss, 4) : '–'),
        el('td', { class: 'num hide-s' }, p ? fix(p.accuracy, 3) : '–'),
        el('td', { class: 'num' }, b.verification_ms != null ? fix(b.verification_ms, 1) + ' ms' : '–'),
        el('td', { class: 'num hide-s' }, b.transactions.length),
        el('td', { class: 'hide-s' }, ago(b.timestamp)));
    }));
  }
  function taskIdsOf(b) {
    const ids = [b.task_id];
    if (b.proof) ids.push(b.proof.task_id);
    for (const t of b.transactions || []) if (t.kind === 'pay_for_task') ids.push(t.hash);
    return ids.filter((id) => isHash(id) && id !== ZERO);
  }

  // ---------- block detail ----------
  async function openBlock(ref) {
    const body = $('detail-body');
    fill(body, el('p', { class: 'muted' }, 'loading block ' + short(String(ref)) + '…'));
    $('detail').hidden = false;
    try {
      const b = await call('pouw_block', [ref]);
      if (!b) { fill(body, el('p', null, 'unknown block ' + ref)); return; }
      const cached = S.blocks.find((x) => x.hash === b.hash);
      const vms = b.verification_ms != null ? b.verification_ms : cached && cached.verification_ms;
      const link = (h, text) => (h && h !== ZERO
        ? el('a', { href: '#', class: 'hash mono', onclick: (e) => { e.preventDefault(); openBlock(h); } }, text || h)
        : el('code', { class: 'hash' }, h));
      const watch = (id) => (isHash(id) && id !== ZERO
        ? el('span', null, el('code', { class: 'hash' }, id), ' ', el('a', { href: '#', onclick: (e) => { e.preventDefault(); noteTask(id, true); closeDetail(); $('tasks').scrollIntoView(); } }, 'watch'))
        : el('code', { class: 'hash' }, id));
      const p = b.proof;
      fill(body,
        el('h2', null, 'Block ', b.height, ' ', el('small', null, new Date(b.timestamp).toLocaleString())),
        el('h3', null, 'Header'),
        kv([
          ['hash', el('code', { class: 'hash' }, b.hash)],
          ['height', b.height],
          ['parent', link(b.prev_hash)],
          ['time', new Date(b.timestamp).toISOString() + ' (' + ago(b.timestamp) + ')'],
          ['target', el('code', null, b.target)],
          ['miner', el('code', { class: 'hash' }, b.miner)],
          ['task', watch(b.task_id)],
          ['message', el('code', { class: 'hash' }, b.msg_hash)],
          ['history root', el('code', { class: 'hash' }, b.msg_history_root)],
          ['nonce', el('code', { class: 'hash' }, b.nonce)],
          ['tx root', el('code', { class: 'hash' }, b.tx_root)],
          ['state root', el('code', { class: 'hash' }, b.state_root)],
          ['size', b.size + ' bytes'],
          ['verification', vms != null ? fix(vms, 2) + ' ms on this node' : 'not measured here'],
        ], 'wide'),
        el('h3', null, 'Proof'),
        p ? kv([
          ['task', watch(p.task_id)],
          ['miner', el('code', { class: 'hash' }, p.miner)],
          ['epoch', p.epoch],
          ['iteration', p.iteration],
          ['message', el('code', { class: 'hash' }, p.msg_hash)],
          ['loss', fix(p.loss, 6)],
          ['accuracy', fix(p.accuracy, 4)],
        ], 'wide') : el('p', { class: 'muted' }, 'no proof (genesis)'),
        el('h3', null, 'Transactions (', b.transactions.length, ')'),
        b.transactions.length ? el('div', { class: 'scroll' }, el('table', null,
          el('thead', null, el('tr', null, ['hash', 'kind', 'sender', 'nonce', 'fee'].map((h) => el('th', null, h)))),
          el('tbody', null, b.transactions.map((t) => el('tr', null,
            el('td', null, hashEl(t.hash)), el('td', null, t.kind), el('td', null, hashEl(t.sender)),
            el('td', { class: 'num' }, t.nonce), el('td', { class: 'num mono' }, t.fee)))))) : el('p', { class: 'muted' }, 'none'));
    } catch (e) {
      fill(body, el('p', { class: 'muted' }, 'could not load the block: ' + e.message));
    }
  }
  function closeDetail() { $('detail').hidden = true; }
  $('detail-close').addEventListener('click', closeDetail);
  $('detail').addEventListener('click', (e) => { if (e.target === $('detail')) closeDetail(); });
  document.addEventListener('keydown', (e) => { if (e.key === 'Escape') closeDetail(); });

  // ---------- health ----------
  function renderHealth(h) {
    const up = h.node && h.node.uptime_secs;
    const before = S.health && S.health.node && S.health.node.uptime_secs;
    if (typeof up === 'number' && typeof before === 'number' && up + 5 < before) {
      // The node restarted: its training sequence numbers start again.
      S.lastSeq = 0; S.points = 0; S.series = {};
      drawChart();
    }
    S.health = h;
    const p = h.process || {}, bw = h.bandwidth || {}, r = h.rpc || {}, n = h.node || {};
    const cls = h.status === 'ok' ? 'ok' : h.status === 'degraded' ? 'warn' : 'bad';
    fill($('health-kv'),
      el('p', null, el('span', { class: 'badge ' + cls }, h.status || '?'), ' ',
        el('span', { class: 'muted' }, (h.reasons || []).join(', '))),
      kv([
        ['height', h.height], ['peers', h.peers],
        ['cpu', p.cpu_percent != null ? fix(p.cpu_percent, 1) + ' %' : 'sampling…'],
        ['memory', bytes(p.memory_bytes)], ['threads', p.threads ?? '–'],
        ['bandwidth in', bw.in_bytes_per_sec != null ? bytes(bw.in_bytes_per_sec) + '/s' : '–'],
        ['bandwidth out', bw.out_bytes_per_sec != null ? bytes(bw.out_bytes_per_sec) + '/s' : '–'],
        ['iterations/s', fix(n.iterations_per_second, 2)],
        ['last verify', n.last_block_verification_ms != null ? fix(n.last_block_verification_ms, 1) + ' ms' : '–'],
        ['blocks mined', n.blocks_mined], ['blocks verified', n.blocks_verified],
        ['blocks rejected', n.blocks_rejected], ['tasks completed', n.tasks_completed],
        ['rewards earned', el('span', { class: 'mono' }, n.rewards_earned ?? '–')],
        ['security alerts', n.security_alerts], ['bans', n.bans], ['mempool', n.mempool_size],
        ['messages in/out', (n.messages_in ?? '–') + ' / ' + (n.messages_out ?? '–')],
        ['bytes in/out', bytes(n.bytes_in) + ' / ' + bytes(n.bytes_out)],
        ['rpc requests', (r.requests ?? '–') + ' (' + (r.errors ?? 0) + ' err)'],
        ['rpc success', r.success_rate != null ? fix(r.success_rate * 100, 1) + ' %' : '–'],
        ['rpc avg', fix(r.avg_response_ms, 2) + ' ms'],
        ['uptime', dur(n.uptime_secs)], ['syncing', n.syncing ? 'yes' : 'no'],
        ['own txs waiting', n.pending_own_txs ? el('span', { class: 'badge ' + (n.oldest_own_tx_secs >= 60 ? 'warn' : 'ok') },
          n.pending_own_txs + ', oldest ' + dur(n.oldest_own_tx_secs)) : '0'],
      ]));
  }

  // Our own transactions not in a block yet (re-announced meanwhile).
  function renderOwnTxs(txs) {
    S.ownTxs = txs;
    fill($('own-txs'), txs.length ? el('table', null,
      el('thead', null, el('tr', null, ['tx', 'kind', 'nonce', 'age', 'announced'].map((h) => el('th', null, h)))),
      el('tbody', null, txs.map((t) => el('tr', null,
        el('td', null, el('code', { title: t.hash }, short(t.hash))), el('td', null, t.kind),
        el('td', { class: 'num' }, t.nonce), el('td', { class: 'num' }, dur(t.age_secs)),
        el('td', { class: 'num' }, t.announces + '×'))))) : null);
  }

  // ---------- peers ----------
  function renderPeers(peers) {
    S.peers = peers;
    const connected = peers.filter((p) => p.connected).length;
    $('peer-count').textContent = connected + ' connected' + (peers.length > connected ? ', ' + peers.length + ' known' : '');
    const sorted = peers.slice().sort((a, b) => (b.connected - a.connected) || ((b.score || 0) - (a.score || 0)));
    fill($('peer-rows'), sorted.length ? sorted.map((p) => el('tr', { title: p.agent || '' },
      el('td', null, el('code', { title: p.peer_id }, short(p.peer_id))),
      el('td', { class: 'hide-s mono' }, p.address || '–'),
      el('td', { class: 'num' }, fix(p.score, 2)),
      el('td', { class: 'num' }, p.rtt_ms != null ? fix(p.rtt_ms, 1) + ' ms' : '–'),
      el('td', null, p.banned_for_secs ? el('span', { class: 'badge bad' }, 'banned ' + p.banned_for_secs + 's')
        : p.connected ? el('span', { class: 'badge ok' }, 'connected') : el('span', { class: 'badge' }, 'gone'))))
      : el('tr', null, el('td', { colspan: 5, class: 'muted' }, 'no peers (a solo node)')));
  }

  // ---------- tasks ----------
  function noteTask(id, byUser) {
    id = id.toLowerCase().replace(/^0x/, '');
    if (byUser) {
      if (!S.watched.includes(id)) S.watched.unshift(id);
      refreshTasks([id]);
    } else if (!S.seenTasks.includes(id)) {
      S.seenTasks.push(id);
      if (S.seenTasks.length > 50) S.seenTasks.shift();
    }
  }
  $('task-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const v = $('task-input').value.trim();
    if (!isHash(v)) { $('task-input').setCustomValidity('64 hex characters'); $('task-input').reportValidity(); return; }
    $('task-input').setCustomValidity('');
    $('task-input').value = '';
    noteTask(v, true);
  });
  $('task-input').addEventListener('input', () => $('task-input').setCustomValidity(''));

  async function refreshTasks(ids) {
    ids = ids || [...new Set([...S.watched, ...S.seenTasks])];
    if (!ids.length) { renderTasks(); return; }
    try {
      const res = await batch(ids.map((id) => ['pouw_task', [id]]));
      ids.forEach((id, i) => { S.tasks[id] = res[i].error ? { error: errText(res[i]) } : { task: res[i].result }; });
    } catch (e) { /* the banner reports the connection */ }
    renderTasks();
  }
  function phaseOf(ph) {
    if (typeof ph === 'string') return [ph, null];
    if (ph && typeof ph === 'object') {
      const [k] = Object.keys(ph);
      return [k, ph[k]];
    }
    return ['?', null];
  }
  // Who first, then what (JSON objects arrive with their keys sorted).
  const COLS = ['to', 'miner', 'worker', 'evaluator', 'address', 'ticket', 'amount'];
  const colRank = (c) => (COLS.includes(c) ? COLS.indexOf(c) : COLS.length);
  const ROLES = ['miners', 'supervisors', 'evaluators', 'verifiers'];
  const roleRank = (r) => (ROLES.includes(r) ? ROLES.indexOf(r) : ROLES.length);
  // Any JSON value, readably: hashes short, arrays of objects as tables, objects as key/values.
  function generic(v) {
    if (v == null) return el('span', { class: 'muted' }, '–');
    if (isHash(v)) return hashEl(v);
    if (typeof v !== 'object') return el('span', { class: typeof v === 'string' ? 'mono' : null }, String(v));
    if (Array.isArray(v)) {
      if (!v.length) return el('span', { class: 'muted' }, 'none');
      if (v.every((x) => x && typeof x === 'object' && !Array.isArray(x))) {
        const cols = [...new Set(v.flatMap((x) => Object.keys(x)))]
          .sort((a, b) => colRank(a) - colRank(b));
        return el('div', { class: 'scroll' }, el('table', null,
          el('thead', null, el('tr', null, cols.map((c) => el('th', null, c)))),
          el('tbody', null, v.map((x) => el('tr', null, cols.map((c) => el('td', null, generic(x[c]))))))));
      }
      return el('span', null, v.map((x, i) => [i ? ', ' : '', generic(x)]));
    }
    const keys = Object.keys(v);
    if (!keys.length) return el('span', { class: 'muted' }, '{}');
    return kv(keys.map((k) => [k, generic(v[k])]), 'wide');
  }
  function renderTasks() {
    const list = $('task-list');
    const cards = [];
    let filler = 0;
    const ids = [...new Set([...S.watched, ...S.seenTasks.slice().reverse()])];
    for (const id of ids) {
      const entry = S.tasks[id];
      const user = S.watched.includes(id);
      if (!entry) { if (user) cards.push(el('div', { class: 'task' }, hashEl(id), ' ', el('span', { class: 'muted' }, 'loading…'))); continue; }
      if (entry.error) { cards.push(el('div', { class: 'task' }, hashEl(id), ' ', el('span', { class: 'muted' }, entry.error))); continue; }
      const t = entry.task;
      if (!t) {
        if (user) cards.push(el('div', { class: 'task' }, el('h4', null, el('code', null, id)), el('span', { class: 'muted' }, 'no such task record (unknown id, or a filler task)')));
        else filler++;
        continue;
      }
      cards.push(taskCard(id, t));
    }
    if (filler) cards.push(el('p', { class: 'muted' }, filler + ' task id(s) seen in recent blocks are filler tasks (no client, no record): the chain mines them when no client task is running.'));
    if (!cards.length) cards.push(el('p', { class: 'muted' }, 'No client tasks in recent blocks. Enter a task id (the PayForTask transaction hash) to follow one.'));
    fill(list, cards);
  }
  function taskCard(id, t) {
    const [phase, detail] = phaseOf(t.phase);
    const cls = { Training: 'ok', Registered: '', Finalising: 'warn', Completed: 'ok', Expired: 'bad', Refused: 'bad' }[phase] || '';
    const parts = t.participants || {};
    const known = ['id', 'phase', 'client', 'fee', 'escrow', 'created_at', 'training_deadline', 'finalisation_deadline', 'participants', 'settlement', 'models', 'verdicts'];
    const rest = Object.keys(t).filter((k) => !known.includes(k));
    const s = t.settlement;
    return el('div', { class: 'task', 'data-task': id },
      el('h4', null, el('code', null, id), el('span', { class: 'badge ' + cls }, phase),
        detail ? el('span', { class: 'muted' }, Object.entries(detail).map(([k, v]) => k + ' ' + (isHash(v) ? short(v) : v)).join(', ')) : null),
      kv([
        ['client', hashEl(t.client)],
        ['fee', el('span', { class: 'mono' }, t.fee ?? '–')],
        ['escrow', el('span', { class: 'mono' }, t.escrow ?? '–')],
        ['created at', t.created_at],
        ['training until', t.training_deadline],
        ['final by', t.finalisation_deadline],
      ]),
      el('h3', null, 'Participants'),
      Object.keys(parts).length ? kv(Object.entries(parts).sort((a, b) => roleRank(a[0]) - roleRank(b[0])).map(([role, seats]) => [role + ' (' + (seats || []).length + ')',
        (seats || []).length ? el('span', null, seats.map((x, i) => [i ? ', ' : '', hashEl(x && x.worker ? x.worker : x)])) : el('span', { class: 'muted' }, 'none')]), 'wide')
        : el('p', { class: 'muted' }, 'not selected yet'),
      t.models && t.models.length ? [el('h3', null, 'Models'), generic(t.models)] : null,
      t.verdicts && t.verdicts.length ? [el('h3', null, 'Verdicts'), generic(t.verdicts)] : null,
      el('h3', null, 'Payouts'),
      s ? [generic(s.payouts), kv([
        ['refund', el('span', { class: 'mono' }, s.refund ?? '–')],
        ['confiscated', el('span', { class: 'mono' }, s.confiscated_stake ?? '–')],
      ]), s.penalties && s.penalties.length ? [el('h3', null, 'Penalties'), generic(s.penalties)] : null]
        : el('p', { class: 'muted' }, 'not settled yet'),
      rest.length ? el('details', null, el('summary', { class: 'muted' }, 'more fields'),
        generic(Object.fromEntries(rest.map((k) => [k, t[k]])))) : null);
  }

  // Shows a task record as if the node had returned it (for the console and tests).
  S.showTask = (id, task) => {
    id = id.toLowerCase();
    S.tasks[id] = { task };
    if (!S.watched.includes(id)) S.watched.unshift(id);
    renderTasks();
  };

  // ---------- training curves ----------
  function addPoints(points) {
    for (const p of points) {
      const key = p.miner + '/' + p.task_id;
      let s = S.series[key];
      if (!s) s = S.series[key] = { miner: p.miner, task: p.task_id, pts: [], last: 0 };
      s.pts.push([p.iteration, p.loss, p.accuracy]);
      if (s.pts.length > MAX_POINTS) s.pts.shift();
      s.last = p.seq;
      S.lastSeq = Math.max(S.lastSeq, p.seq);
      S.points++;
    }
    if (points.length) drawChart();
  }
  function shown() {
    return Object.values(S.series).sort((a, b) => b.last - a.last).slice(0, MAX_SERIES);
  }
  function drawChart() {
    const c = $('chart');
    const dpr = window.devicePixelRatio || 1;
    const W = c.clientWidth, H = c.clientHeight;
    if (!W || !H) return;
    if (c.width !== Math.round(W * dpr) || c.height !== Math.round(H * dpr)) {
      c.width = Math.round(W * dpr);
      c.height = Math.round(H * dpr);
    }
    const g = c.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, W, H);
    const series = shown();
    c.dataset.points = S.points;
    c.dataset.series = series.length;
    $('train-info').textContent = S.points + ' points, ' + Object.keys(S.series).length + ' curves';
    g.font = '11px system-ui, sans-serif';
    if (!series.length) {
      g.fillStyle = '#8593a3';
      g.fillText('waiting for training iterations…', 14, H / 2);
      fill($('legend'));
      return;
    }
    let x0 = Infinity, x1 = -Infinity, l0 = Infinity, l1 = -Infinity;
    for (const s of series) for (const [it, loss] of s.pts) {
      x0 = Math.min(x0, it); x1 = Math.max(x1, it);
      if (isFinite(loss)) { l0 = Math.min(l0, loss); l1 = Math.max(l1, loss); }
    }
    if (x1 === x0) x1 = x0 + 1;
    if (!isFinite(l0)) { l0 = 0; l1 = 1; }
    if (l1 - l0 < 1e-9) { l0 -= 0.5; l1 += 0.5; }
    const pad = (l1 - l0) * 0.06;
    l0 = Math.max(0, l0 - pad); l1 += pad;
    const L = 46, R = 10, gap = 26, top = 16, bottom = 22;
    const ph = (H - top - bottom - gap) / 2;
    const panes = [
      { name: 'loss', y: top, lo: l0, hi: l1, idx: 1, fmt: (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2)) },
      { name: 'accuracy', y: top + ph + gap, lo: 0, hi: 1, idx: 2, fmt: (v) => v.toFixed(1) },
    ];
    const X = (it) => L + ((it - x0) / (x1 - x0)) * (W - L - R);
    for (const p of panes) {
      const Y = (v) => p.y + ph - ((v - p.lo) / (p.hi - p.lo)) * ph;
      g.strokeStyle = '#2a3340'; g.fillStyle = '#8593a3'; g.lineWidth = 1;
      g.textAlign = 'right'; g.textBaseline = 'middle';
      for (let i = 0; i <= 4; i++) {
        const v = p.lo + ((p.hi - p.lo) * i) / 4;
        const y = Math.round(Y(v)) + 0.5;
        g.beginPath(); g.moveTo(L, y); g.lineTo(W - R, y); g.stroke();
        g.fillText(p.fmt(v), L - 5, y);
      }
      g.textAlign = 'left'; g.textBaseline = 'bottom';
      g.fillStyle = '#d8dee6';
      g.fillText(p.name, L + 4, p.y - 2);
      g.save();
      g.beginPath(); g.rect(L, p.y - 2, W - L - R, ph + 4); g.clip();
      series.forEach((s, si) => {
        g.strokeStyle = g.fillStyle = COLORS[si % COLORS.length];
        g.lineWidth = 1.6;
        const pts = s.pts.filter((q) => isFinite(q[p.idx]));
        if (pts.length === 1) {
          g.beginPath(); g.arc(X(pts[0][0]), Y(pts[0][p.idx]), 2.5, 0, 7); g.fill();
          return;
        }
        g.beginPath();
        pts.forEach((q, i) => (i ? g.lineTo(X(q[0]), Y(q[p.idx])) : g.moveTo(X(q[0]), Y(q[p.idx]))));
        g.stroke();
      });
      g.restore();
    }
    // iteration axis
    g.fillStyle = '#8593a3'; g.textBaseline = 'top';
    const ticks = Math.max(2, Math.min(6, Math.floor((W - L) / 90)));
    for (let i = 0; i <= ticks; i++) {
      const it = x0 + ((x1 - x0) * i) / ticks;
      g.textAlign = i === 0 ? 'left' : i === ticks ? 'right' : 'center';
      g.fillText(Math.round(it), X(it), H - bottom + 6);
    }
    g.textAlign = 'right';
    g.fillText('iteration', W - R, top + ph + 4);
    fill($('legend'), series.map((s, si) => {
      const last = s.pts[s.pts.length - 1];
      return el('span', { title: 'miner ' + s.miner + '\ntask ' + s.task },
        el('i', { style: 'background:' + COLORS[si % COLORS.length] }),
        'miner ', el('code', null, short(s.miner)), ' · task ', el('code', null, short(s.task)),
        el('span', { class: 'muted' }, ' it ' + last[0] + ', loss ' + fix(last[1], 3) + ', acc ' + fix(last[2], 3)));
    }));
  }
  let resizeTimer = null;
  window.addEventListener('resize', () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(drawChart, 100); });

  // ---------- polling ----------
  async function poll() {
    let again = POLL_MS;
    try {
      const [tip, blocks, train, health, peers, own] = await batch([
        ['pouw_tip', []], ['pouw_recentBlocks', [12]], ['pouw_training', [S.lastSeq]],
        ['pouw_health', []], ['pouw_peers', []], ['pouw_pendingOwnTransactions', []],
      ]);
      setOnline(true);
      S.okPolls++;
      if (tip.result) renderTip(tip.result);
      if (blocks.result) renderBlocks(blocks.result);
      else if (blocks.error) fill($('blocks'), el('tr', null, el('td', { colspan: 10 }, errText(blocks))));
      if (train.result) {
        addPoints(train.result);
        if (train.result.length >= 1000) again = 50; // catching up
      }
      if (health.result) renderHealth(health.result);
      else if (health.error) fill($('health-kv'), el('p', null, errText(health)));
      if (own.result) renderOwnTxs(own.result);
      if (peers.result) renderPeers(peers.result);
      else if (peers.error) fill($('peer-rows'), el('tr', null, el('td', { colspan: 5 }, errText(peers))));
      if (S.polls % TASK_EVERY === 0) refreshTasks();
    } catch (e) {
      setOnline(false, e);
    }
    S.polls++;
    setTimeout(poll, again);
  }
  setInterval(tickAge, 1000);
  drawChart();
  poll();
})();
