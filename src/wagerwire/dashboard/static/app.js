// wagerwire live dashboard. Hand-written, no framework, no build step; public API only:
// the native WebSocket /v1/ws (resumed with the native resume tokens after a drop) and REST.
// Every string that comes from the hub is put into the page with textContent, never as HTML.
'use strict';

(() => {
  // -- small helpers ------------------------------------------------------------------------

  const $ = (id) => document.getElementById(id);

  function h(tag, props, ...children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v === undefined || v === null || v === false) continue;
        if (k === 'class') node.className = v;
        else if (k === 'text') node.textContent = v;
        else if (k === 'dataset') Object.assign(node.dataset, v);
        else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
        else node.setAttribute(k, v === true ? '' : String(v));
      }
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  const num = (v) => {
    const n = typeof v === 'number' ? v : typeof v === 'string' ? parseFloat(v) : NaN;
    return Number.isFinite(n) ? n : null;
  };
  const fmtX = (m) => (m >= 100 ? m.toFixed(0) : m.toFixed(2)) + '×';
  const pct = (x) => (x * 100).toFixed(1) + '%';
  const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;
  const clockTime = (ms) => new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });

  // -- state --------------------------------------------------------------------------------

  const MAX_ROUNDS = 600;
  const TICKER_CHIPS = 16;
  const BACKOFF_S = [0.5, 1, 2, 4, 8, 10];
  const EVENT_STALE_MS = 180_000;
  const FINISHED_LINGER_MS = 60_000;
  const RESTART_GRACE_MS = 20_000;

  const S = {
    key: sessionStorage.getItem('wagerwire.key') || '',
    games: new Map(), // slug -> {slug, name, type, rounds: Map(key -> round), sorted, loaded}
    events: new Map(), // event_id -> Event object (the latest)
    tokens: new Map(), // channel -> resume token of the last message seen on it
    selectedGame: null,
    selectedEvent: null,
    sportFilter: '',
    windowN: 100,
    ws: null,
    conn: 'connecting', // connecting | connected | reconnecting | failed
    attempt: 0,
    retryAt: 0,
    retryTimer: null,
    everConnected: false,
    subscribeAt: 0, // local ms when the current subscribe was sent
    pendingSubs: 0,
    resuming: false, // the current subscription was sent with since=
    resume: null, // {at, count, recovered, channels}
    superseded: 0, // offsets the hub conflated away for this page (op superseded): no gap
    images: 0, // snapshot-image messages received (latest per key, not replayed history)
    skew: Infinity, // min(receive time - message ts): clock offset + minimum latency
    recvThisSecond: 0,
    recvRate: 0,
    latBucket: [],
    latSeries: [], // [{t, p50, p95, max, n}]
    metrics: null, // last parsed /metrics sample {t, published, delivered, ...}
    serverSamples: [], // [{t, durable, fanout, channels, transports}] of the last minute
    hubStartedAt: null, // server ms when the hub process started (from its uptime)
    rates: { published: null, delivered: null },
    channels: [],
    sources: [], // /v1/sources/health rows (upstream connectors)
    arbitrage: null,
    dirty: new Set(['tickers', 'detail', 'events', 'board', 'hub', 'conn']),
    dirtyGames: new Set(),
    fresh: new Map(), // slug -> round key that just arrived live (for a short highlight)
    prices: new Map(), // "event|market|sel|book" -> last odds (for up/down marks)
    moves: new Map(), // same key -> {dir, until}
  };

  const mark = (...parts) => parts.forEach((p) => S.dirty.add(p));

  // -- REST ---------------------------------------------------------------------------------

  async function api(path, init) {
    const headers = Object.assign({ Accept: 'application/json' }, init && init.headers);
    if (S.key) headers.Authorization = 'Bearer ' + S.key;
    const r = await fetch(path, Object.assign({ cache: 'no-store' }, init, { headers }));
    if (r.status === 401) {
      showAuth();
      const err = new Error('unauthorized: an API key is needed');
      err.unauthorized = true;
      throw err;
    }
    if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
    const type = r.headers.get('content-type') || '';
    return type.includes('json') ? r.json() : r.text();
  }

  function showAuth() {
    $('auth-form').hidden = false;
    if (S.conn !== 'connected') {
      if (S.retryTimer) { clearTimeout(S.retryTimer); S.retryTimer = null; }
      setConn('auth');
    }
  }

  $('auth-form').addEventListener('submit', (e) => {
    e.preventDefault();
    S.key = $('auth-key').value.trim();
    sessionStorage.setItem('wagerwire.key', S.key);
    $('auth-form').hidden = true;
    loadSnapshots().catch(() => {});
    reconnectNow();
  });

  // -- casino -------------------------------------------------------------------------------

  function ensureGame(slug, info) {
    let g = S.games.get(slug);
    if (!g) {
      g = { slug, name: slug, type: null, rounds: new Map(), sorted: [], loaded: 0 };
      S.games.set(slug, g);
      mark('tickers', 'gamelist');
    }
    if (info) {
      if (typeof info.name === 'string') g.name = info.name;
      if (typeof info.game_type === 'string') g.type = info.game_type;
    }
    if (S.selectedGame === null) S.selectedGame = slug;
    return g;
  }

  function roundKey(r) {
    return Number.isInteger(r.index) ? r.index : num(r.timestamp);
  }

  function addRound(slug, data, live) {
    if (!data || typeof data !== 'object' || !data.result || typeof data.result !== 'object') return;
    const g = ensureGame(slug, { name: data.game_name, game_type: data.game_type });
    const key = roundKey(data);
    if (key === null || g.rounds.has(key)) return;
    g.rounds.set(key, {
      key,
      id: data.round_id === undefined ? null : String(data.round_id),
      index: Number.isInteger(data.index) ? data.index : null,
      ts: num(data.timestamp),
      result: data.result,
    });
    g.sorted = null;
    if (live) S.fresh.set(slug, key);
    S.dirtyGames.add(slug);
    mark('tickers');
    if (slug === S.selectedGame) mark('detail');
  }

  function sortedRounds(g) {
    if (!g.sorted) {
      const all = Array.from(g.rounds.values()).sort((a, b) => a.key - b.key);
      if (all.length > MAX_ROUNDS) {
        for (const r of all.splice(0, all.length - MAX_ROUNDS)) g.rounds.delete(r.key);
      }
      g.sorted = all;
    }
    return g.sorted;
  }

  function multiplierOf(result) {
    return num(result.crash_point) ?? num(result.multiplier);
  }

  function kindOf(g, r) {
    const res = r.result;
    if (g.type === 'double' || typeof res.color === 'string') return 'double';
    if (g.type === 'slot' || Array.isArray(res.reels)) return 'slot';
    if (g.type === 'wallstreet' || typeof res.direction === 'string') return 'wallstreet';
    return 'multiplier';
  }

  function multClass(m) {
    if (m < 2) return 'm-low';
    if (m < 10) return 'm-mid';
    if (m < 50) return 'm-high';
    return 'm-huge';
  }

  const SYMBOLS = new Set(['cherry', 'lemon', 'orange', 'plum', 'seven', 'bell', 'bar']);

  function describeRound(g, r) {
    const res = r.result;
    switch (kindOf(g, r)) {
      case 'double': return `${res.color} ${res.number ?? ''}`.trim();
      case 'slot': {
        const m = multiplierOf(res);
        return `${(res.reels || []).join(' · ')}${m !== null ? ' pays ' + fmtX(m) : ''}`;
      }
      case 'wallstreet': {
        const m = multiplierOf(res);
        return `${res.direction}${m !== null ? ' ' + fmtX(m) : ''}`;
      }
      default: {
        const m = multiplierOf(res);
        return m === null ? '?' : fmtX(m);
      }
    }
  }

  function chip(g, r) {
    const res = r.result;
    const kind = kindOf(g, r);
    const label = `${g.name} round ${r.id ?? r.key}: ${describeRound(g, r)}. Verify`;
    const b = h('button', { type: 'button', class: 'chip', 'aria-label': label, title: label, dataset: { key: String(r.key) } });
    if (kind === 'double') {
      const color = ['red', 'black', 'white'].includes(res.color) ? res.color : 'black';
      b.classList.add('c-' + color);
      b.textContent = res.number === undefined ? color[0].toUpperCase() : String(res.number);
    } else if (kind === 'slot') {
      b.classList.add('slot');
      const reels = h('span', { class: 'reels', 'aria-hidden': 'true' });
      for (const s of (Array.isArray(res.reels) ? res.reels : []).slice(0, 5)) {
        const name = String(s);
        reels.append(h('span', { class: 'reel s-' + (SYMBOLS.has(name) ? name : 'other'), text: name === 'seven' ? '7' : name.slice(0, 1).toUpperCase() }));
      }
      b.append(reels);
      const m = multiplierOf(res);
      if (m !== null && m > 0) b.append(h('span', { class: 'pay', 'aria-hidden': 'true', text: fmtX(m) }));
    } else if (kind === 'wallstreet') {
      const up = res.direction === 'up';
      b.classList.add(up ? 'dir-up' : 'dir-down');
      const m = multiplierOf(res);
      b.textContent = (up ? '▲ ' : '▼ ') + (m !== null ? fmtX(m) : '');
    } else {
      const m = multiplierOf(res);
      b.classList.add(m === null ? 'm-low' : multClass(m));
      b.textContent = m === null ? '?' : fmtX(m);
    }
    return b;
  }

  function renderTickers() {
    const box = $('tickers');
    for (const g of orderedGames()) {
      let row = box.querySelector(`[data-game="${CSS.escape(g.slug)}"]`);
      if (!row) {
        const name = h('button', { type: 'button', class: 'name', 'aria-pressed': 'false', title: `Show ${g.slug} statistics`, onclick: () => selectGame(g.slug) });
        const list = h('ol', { 'aria-label': `latest ${g.slug} rounds, newest first` });
        list.addEventListener('keydown', chipKeys);
        row = h('div', { class: 'ticker', dataset: { game: g.slug } }, name, list);
        box.append(row);
        S.dirtyGames.add(g.slug);
      }
      const nameBtn = row.firstChild;
      nameBtn.textContent = g.name;
      nameBtn.setAttribute('aria-pressed', String(g.slug === S.selectedGame));
      if (!S.dirtyGames.has(g.slug)) continue;
      const list = row.lastChild;
      const focused = list.contains(document.activeElement) ? document.activeElement.dataset.key : null;
      const rounds = sortedRounds(g).slice(-TICKER_CHIPS).reverse();
      const items = rounds.map((r, i) => {
        const b = chip(g, r);
        b.tabIndex = i === 0 ? 0 : -1;
        if (S.fresh.get(g.slug) === r.key) b.classList.add('fresh');
        b.addEventListener('click', () => { selectGame(g.slug); verifyRound(g, r); });
        return h('li', null, b);
      });
      list.replaceChildren(...items);
      if (focused !== null) {
        const again = list.querySelector(`[data-key="${CSS.escape(focused)}"]`) || list.querySelector('button');
        if (again) { list.querySelectorAll('button').forEach((x) => { x.tabIndex = -1; }); again.tabIndex = 0; again.focus(); }
      }
    }
    S.fresh.clear();
    S.dirtyGames.clear();
  }

  // Roving focus inside one ticker: arrows move between chips, one tab stop per ticker.
  function chipKeys(e) {
    const keys = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1, Home: -Infinity, End: Infinity };
    if (!(e.key in keys)) return;
    const chips = Array.from(e.currentTarget.querySelectorAll('button'));
    let i = chips.indexOf(document.activeElement);
    if (i < 0) return;
    e.preventDefault();
    const step = keys[e.key];
    i = step === -Infinity ? 0 : step === Infinity ? chips.length - 1 : Math.max(0, Math.min(chips.length - 1, i + step));
    chips.forEach((c) => { c.tabIndex = -1; });
    chips[i].tabIndex = 0;
    chips[i].focus();
  }

  const TYPE_ORDER = { crash: 0, multiplier: 0, double: 1, slot: 2, wallstreet: 3 };

  function orderedGames() {
    return Array.from(S.games.values()).sort((a, b) =>
      (TYPE_ORDER[a.type] ?? 4) - (TYPE_ORDER[b.type] ?? 4) || a.slug.localeCompare(b.slug));
  }

  function renderGameList() {
    const sel = $('game-select');
    const games = orderedGames();
    const have = Array.from(sel.options).map((o) => o.value).join('|');
    if (have !== games.map((g) => g.slug).join('|')) {
      sel.replaceChildren(...games.map((g) => h('option', { value: g.slug, text: g.name })));
    } else {
      games.forEach((g, i) => { sel.options[i].textContent = g.name; });
    }
    if (S.selectedGame) sel.value = S.selectedGame;
  }

  function selectGame(slug) {
    if (S.selectedGame === slug) return;
    S.selectedGame = slug;
    $('verify-result').replaceChildren();
    mark('detail', 'tickers', 'gamelist');
    ensureWindowLoaded();
  }

  $('game-select').addEventListener('change', (e) => selectGame(e.target.value));
  $('window-select').addEventListener('change', (e) => {
    S.windowN = parseInt(e.target.value, 10) || 100;
    mark('detail');
    ensureWindowLoaded();
  });

  async function ensureWindowLoaded() {
    const g = S.games.get(S.selectedGame);
    if (!g || g.loaded >= S.windowN) return;
    await loadRounds(g.slug, S.windowN);
    mark('detail');
  }

  async function loadRounds(slug, limit) {
    const page = await api(`/v1/games/${encodeURIComponent(slug)}/rounds?limit=${limit}`);
    const g = ensureGame(slug);
    for (const r of page.rounds || []) addRound(slug, r, false);
    g.loaded = Math.max(g.loaded, limit);
  }

  const BUCKETS = [
    { lo: -Infinity, hi: 1, label: '<1×', cls: 'm-low' },
    { lo: 1, hi: 1.5, label: '1–1.5', cls: 'm-low' },
    { lo: 1.5, hi: 2, label: '1.5–2', cls: 'm-low' },
    { lo: 2, hi: 3, label: '2–3', cls: 'm-mid' },
    { lo: 3, hi: 5, label: '3–5', cls: 'm-mid' },
    { lo: 5, hi: 10, label: '5–10', cls: 'm-mid' },
    { lo: 10, hi: 50, label: '10–50', cls: 'm-high' },
    { lo: 50, hi: Infinity, label: '≥50', cls: 'm-huge' },
  ];

  function streaks(values, pred) {
    // current run (length and side) at the newest end, longest run of pred true and false
    let longestTrue = 0, longestFalse = 0, run = 0, side = null;
    for (const v of values) {
      const p = pred(v);
      if (p === side) run += 1; else { side = p; run = 1; }
      if (p) longestTrue = Math.max(longestTrue, run); else longestFalse = Math.max(longestFalse, run);
    }
    return { current: run, side, longestTrue, longestFalse };
  }

  function stat(value, label) {
    return h('div', { class: 'stat' }, h('b', { text: value }), h('span', { text: label }));
  }

  function renderDetail() {
    renderGameList();
    const g = S.games.get(S.selectedGame);
    const statsBox = $('game-stats');
    const bars = $('histogram');
    if (!g) { statsBox.replaceChildren(); bars.replaceChildren(); return; }
    const rounds = sortedRounds(g).slice(-S.windowN);
    const last = rounds[rounds.length - 1];
    $('latest-result').textContent = last
      ? `${g.name} · round ${last.id ?? last.key}: ${describeRound(g, last)}` : `${g.name}: waiting for a round…`;
    const kind = last ? kindOf(g, last) : 'multiplier';
    const counts = [];
    const cards = [stat(String(rounds.length), 'rounds in window')];
    if (kind === 'double' || kind === 'wallstreet') {
      const field = kind === 'double' ? 'color' : 'direction';
      const names = kind === 'double' ? ['red', 'black', 'white'] : ['up', 'down'];
      const values = rounds.map((r) => String(r.result[field]));
      for (const n of names) {
        const c = values.filter((v) => v === n).length;
        counts.push({ label: n, n: c, cls: kind === 'double' ? 'c-' + n : (n === 'up' ? 'dir-up' : 'dir-down') });
        cards.push(stat(rounds.length ? pct(c / rounds.length) : '—', n));
      }
      let run = 0;
      for (let i = values.length - 1; i >= 0 && values[i] === values[values.length - 1]; i--) run++;
      let longest = 0, cur = 0;
      values.forEach((v, i) => { cur = i && v === values[i - 1] ? cur + 1 : 1; longest = Math.max(longest, cur); });
      if (values.length) cards.push(stat(`${run} × ${values[values.length - 1]}`, 'current streak'));
      cards.push(stat(String(longest), 'longest same-' + field + ' streak'));
      $('histo-caption').textContent = `${g.name}: ${field} counts over the last ${plural(rounds.length, 'round')}`;
    } else {
      const ms = rounds.map((r) => multiplierOf(r.result)).filter((m) => m !== null);
      for (const b of BUCKETS) {
        const n = ms.filter((m) => m >= b.lo && m < b.hi).length;
        if (b.lo === -Infinity && n === 0) continue;
        counts.push({ label: b.label, n, cls: b.cls });
      }
      const above = ms.filter((m) => m >= 2).length;
      const st = streaks(ms, (m) => m >= 2);
      const sortedMs = ms.slice().sort((a, b) => a - b);
      cards.push(stat(ms.length ? pct(above / ms.length) : '—', 'at or above 2×'));
      if (ms.length) {
        cards.push(stat(fmtX(sortedMs[Math.floor((sortedMs.length - 1) / 2)]), 'median'));
        cards.push(stat(fmtX(sortedMs[sortedMs.length - 1]), 'max'));
        cards.push(stat(`${st.current} ${st.side ? '≥' : '<'} 2×`, 'current streak'));
      }
      cards.push(stat(String(st.longestFalse), 'longest run < 2×'));
      cards.push(stat(String(st.longestTrue), 'longest run ≥ 2×'));
      $('histo-caption').textContent = `${g.name}: multipliers over the last ${plural(ms.length, 'round')}`;
    }
    statsBox.replaceChildren(...cards);
    const max = Math.max(1, ...counts.map((c) => c.n));
    const total = counts.reduce((a, c) => a + c.n, 0);
    bars.setAttribute('aria-label', counts.map((c) => `${c.label}: ${c.n}`).join(', '));
    bars.replaceChildren(...counts.map((c) => {
      const fill = h('div', { class: 'fill ' + c.cls });
      fill.style.height = `${(c.n / max) * 100}%`;
      return h('div', { class: 'bar', title: `${c.label}: ${c.n} (${total ? pct(c.n / total) : '—'})` },
        h('span', { class: 'n', text: String(c.n) }), fill);
    }));
    let labels = bars.nextElementSibling;
    if (!labels || !labels.classList.contains('bar-labels')) {
      labels = h('div', { class: 'bar-labels', 'aria-hidden': 'true' });
      bars.after(labels);
    }
    labels.replaceChildren(...counts.map((c) => h('span', { text: c.label })));
  }

  async function verifyRound(g, r) {
    const out = $('verify-result');
    const id = r.id ?? `${g.slug}-${r.key}`;
    out.replaceChildren(h('span', { text: `Verifying ${id}…` }));
    out.dataset.state = 'pending';
    try {
      const v = await api(`/v1/rounds/${encodeURIComponent(id)}/verify`);
      const link = v.previous_round ? ` Hash chain: ${v.previous_round.linked ? 'linked to' : 'NOT linked to'} ${v.previous_round.round_id}.` : '';
      const shown = v.computed && typeof v.computed === 'object' ? JSON.stringify(v.computed) : String(v.computed);
      out.dataset.state = v.valid ? 'valid' : 'invalid';
      out.dataset.round = String(v.round_id);
      out.replaceChildren(
        h('span', { class: v.valid ? 'ok' : 'ko', text: v.valid ? '✓ valid' : '✗ invalid' }),
        ` — round ${v.round_id}`,
        h('span', { class: 'detail', text: (v.valid ? `Recomputed from the revealed seeds: ${shown}.` : `Reason: ${v.reason ?? 'unknown'}.`) + link }),
      );
    } catch (err) {
      out.dataset.state = 'error';
      out.replaceChildren(h('span', { class: 'ko', text: `Could not verify ${id}: ${err.message}` }));
    }
  }

  $('verify-latest').addEventListener('click', () => {
    const g = S.games.get(S.selectedGame);
    const rounds = g ? sortedRounds(g) : [];
    if (rounds.length) verifyRound(g, rounds[rounds.length - 1]);
    else $('verify-result').textContent = 'No round yet.';
  });

  // -- sports -------------------------------------------------------------------------------

  function upsertEvent(ev) {
    if (!ev || typeof ev !== 'object' || typeof ev.event_id !== 'string') return;
    const old = S.events.get(ev.event_id);
    if (old && num(old.seq) !== null && num(ev.seq) !== null && ev.seq < old.seq && old.updated_at >= ev.updated_at) return;
    S.events.set(ev.event_id, ev);
    mark('events');
    if (ev.event_id === S.selectedEvent || S.selectedEvent === null) mark('board');
  }

  const serverNow = () => Date.now() - (Number.isFinite(S.skew) ? S.skew : 0);

  function pruneEvents() {
    const now = serverNow();
    // An event the running hub has not updated since it started (a restart) is left over
    // from a previous run of its source: dropped once the hub had time to refresh it.
    const restartedLongAgo = S.hubStartedAt !== null && now - S.hubStartedAt > RESTART_GRACE_MS;
    for (const [id, ev] of S.events) {
      const updated = num(ev.updated_at) ?? now;
      const age = now - updated;
      if ((ev.status === 'finished' && age > FINISHED_LINGER_MS) || age > EVENT_STALE_MS
        || (restartedLongAgo && updated < S.hubStartedAt)) {
        S.events.delete(id);
        S.tokens.delete('sports:event:' + id);
        for (const map of [S.prices, S.moves]) {
          for (const k of map.keys()) if (k.startsWith(id + '|')) map.delete(k);
        }
        mark('events', 'board');
      }
    }
  }

  const STATUS_ORDER = { live: 0, upcoming: 1, finished: 2 };

  function visibleEvents() {
    return Array.from(S.events.values())
      .filter((e) => !S.sportFilter || e.sport === S.sportFilter)
      .sort((a, b) => (STATUS_ORDER[a.status] ?? 3) - (STATUS_ORDER[b.status] ?? 3)
        || (num(a.starts_at_ms) ?? 0) - (num(b.starts_at_ms) ?? 0) || a.event_id.localeCompare(b.event_id));
  }

  function renderEvents() {
    const sel = $('sport-filter');
    const sports = new Map();
    for (const e of S.events.values()) if (typeof e.sport === 'string') sports.set(e.sport, e.sport_name || e.sport);
    const want = ['', ...Array.from(sports.keys()).sort()];
    if (Array.from(sel.options).map((o) => o.value).join('|') !== want.join('|')) {
      sel.replaceChildren(...want.map((s) => h('option', { value: s, text: s ? sports.get(s) : 'all sports' })));
      sel.value = S.sportFilter;
    }
    const events = visibleEvents();
    if (!S.selectedEvent || !S.events.has(S.selectedEvent)) {
      const pick = events.find((e) => e.status === 'live') || events[0];
      const next = pick ? pick.event_id : null;
      if (next !== S.selectedEvent) { S.selectedEvent = next; mark('board'); }
    }
    // Rows are kept and updated in place (keyed by event), so a click or the keyboard focus
    // is never lost to a re-render while prices stream in.
    const body = $('events').tBodies[0];
    const keep = new Set(events.map((e) => e.event_id));
    for (const [id, row] of eventRows) if (!keep.has(id)) { row.tr.remove(); eventRows.delete(id); }
    events.forEach((e, i) => {
      let row = eventRows.get(e.event_id);
      if (!row) {
        const name = h('span');
        const comp = h('span', { class: 'comp' });
        const btn = h('button', {
          type: 'button', class: 'ev', dataset: { event: e.event_id },
          onclick: () => { S.selectedEvent = e.event_id; mark('events', 'board'); },
        }, name, comp);
        const badge = h('span', { class: 'badge' });
        const clock = h('span', { class: 'clock' });
        const scoreCell = h('td', { class: 'num' });
        const tr = h('tr', { dataset: { event: e.event_id } }, h('td', null, btn), h('td', null, badge, clock), scoreCell);
        row = { tr, btn, name, comp, badge, clock, scoreCell };
        eventRows.set(e.event_id, row);
      }
      const selected = e.event_id === S.selectedEvent;
      const status = ['live', 'upcoming', 'finished'].includes(e.status) ? e.status : 'upcoming';
      const when = num(e.starts_at_ms);
      const score = e.score && typeof e.score === 'object' ? `${e.score.home ?? 0}–${e.score.away ?? 0}` : '';
      let clock = '';
      if (status === 'live') clock = [e.period_name, e.clock].filter(Boolean).join(' ');
      else if (status === 'upcoming' && when !== null) clock = clockTime(when);
      setText(row.name, String(e.name ?? e.event_id));
      setText(row.comp, `${e.sport_name ?? e.sport ?? ''} · ${e.competition_name ?? e.competition ?? ''}`);
      setText(row.badge, status);
      row.badge.className = 'badge ' + status;
      setText(row.clock, clock);
      setText(row.scoreCell, status === 'upcoming' ? '' : score);
      row.btn.setAttribute('aria-pressed', String(selected));
      row.tr.className = selected ? 'selected' : '';
      row.tr.dataset.status = status;
      if (body.children[i] !== row.tr) body.insertBefore(row.tr, body.children[i] || null);
    });
  }

  const eventRows = new Map();

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  $('sport-filter').addEventListener('change', (e) => {
    S.sportFilter = e.target.value;
    S.selectedEvent = null;
    mark('events', 'board');
  });

  function marketTitle(m) {
    const line = m.line === null || m.line === undefined ? '' : ` ${m.line}`;
    return `${m.name || m.market_type || m.market_id}${m.name && String(m.name).includes(String(m.line)) ? '' : line}`;
  }

  function renderBoard() {
    const ev = S.events.get(S.selectedEvent);
    const box = $('board-markets');
    if (!ev) {
      $('board-h').textContent = 'Odds board';
      $('board-hint').textContent = S.events.size ? 'Choose an event above.' : 'Waiting for events…';
      box.replaceChildren();
      return;
    }
    const score = ev.status !== 'upcoming' && ev.score ? ` ${ev.score.home ?? 0}–${ev.score.away ?? 0}` : '';
    $('board-h').textContent = `Odds board: ${ev.name ?? ev.event_id}${score}`;
    $('board-hint').textContent = 'Every bookmaker’s decimal price; the best takeable price per selection is highlighted. Implied probability = 1 / best price.';
    const now = Date.now();
    const markets = Array.isArray(ev.markets) ? ev.markets : [];
    box.replaceChildren(...markets.map((m) => renderMarket(ev, m, now)));
  }

  function renderMarket(ev, m, now) {
    const sels = Array.isArray(m.selections) ? m.selections : [];
    const books = new Set();
    sels.forEach((s) => Object.keys(s.prices || {}).forEach((b) => books.add(b)));
    const bookList = Array.from(books).sort();
    const best = sels.map((s) => {
      let top = null;
      const who = [];
      for (const [b, p] of Object.entries(s.prices || {})) {
        const o = num(p && p.odds);
        if (o === null || o <= 1 || (p && p.suspended) || m.suspended) continue;
        if (top === null || o > top) { top = o; who.length = 0; who.push(b); } else if (o === top) who.push(b);
      }
      return { odds: top, books: who };
    });
    const complete = sels.length > 1 && best.every((b) => b.odds !== null);
    const implied = complete ? best.reduce((a, b) => a + 1 / b.odds, 0) : null;
    const arb = implied !== null && implied < 1;
    const head = h('div', { class: 'market-head' },
      h('h4', { text: marketTitle(m) }),
      implied !== null ? h('span', { class: 'meta', text: `implied sum ${pct(implied)} · ${arb ? 'edge' : 'margin'} ${pct(Math.abs(1 - implied))}` }) : null,
      m.suspended ? h('span', { class: 'susp', text: 'suspended' }) : null,
      arb ? h('span', { class: 'arb', role: 'note', text: `ARBITRAGE ${pct(1 - implied)}`, title: 'Backing every selection at its best price returns more than the stake' }) : null,
    );
    const thead = h('thead', null, h('tr', null, h('th', { scope: 'col', text: 'Bookmaker' }),
      ...sels.map((s) => h('th', { scope: 'col', class: 'num', text: String(s.name ?? s.selection_id) }))));
    const rows = bookList.map((book) => h('tr', null, h('th', { scope: 'row', text: book }),
      ...sels.map((s, i) => {
        const p = (s.prices || {})[book];
        const o = num(p && p.odds);
        const suspended = Boolean((p && p.suspended) || m.suspended);
        const isBest = !suspended && o !== null && best[i].odds !== null && o === best[i].odds;
        const key = `${ev.event_id}|${m.market_id}|${s.selection_id}|${book}`;
        const prev = S.prices.get(key);
        if (o !== null && prev !== undefined && prev !== o) S.moves.set(key, { dir: o > prev ? 'up' : 'down', until: now + 3000 });
        if (o !== null) S.prices.set(key, o);
        const move = S.moves.get(key);
        const arrow = move && move.until > now ? (move.dir === 'up' ? ' ▲' : ' ▼') : '';
        const cell = h('td', {
          class: ['price', isBest ? 'best' : '', suspended ? 'suspended' : '', arrow ? move.dir : ''].filter(Boolean).join(' '),
          dataset: { sel: String(s.selection_id), book, odds: o === null ? '' : String(o), suspended: String(suspended) },
          'aria-label': o === null ? `${book}: no price` : `${book} ${s.name ?? ''}: ${o.toFixed(3)}${isBest ? ', best price' : ''}${suspended ? ', suspended' : ''}`,
        }, o === null ? '—' : o.toFixed(3));
        if (arrow) cell.append(h('span', { 'aria-hidden': 'true', text: arrow }));
        return cell;
      })));
    const foot = h('tfoot', null,
      h('tr', { class: 'best-row' }, h('th', { scope: 'row', text: 'Best' }),
        ...best.map((b) => h('td', { class: 'num', text: b.odds === null ? '—' : `${b.odds.toFixed(3)} (${b.books.join(', ')})` }))),
      h('tr', null, h('th', { scope: 'row', text: 'Implied' }),
        ...best.map((b) => h('td', { class: 'num', dataset: { implied: b.odds === null ? '' : String(1 / b.odds) }, text: b.odds === null ? '—' : pct(1 / b.odds) }))));
    const table = h('table', { class: 'odds', dataset: { market: String(m.market_id), arbitrage: String(arb) } },
      h('caption', { class: 'sr-only', text: `${marketTitle(m)} prices by bookmaker` }), thead, h('tbody', null, ...rows), foot);
    return h('section', { class: 'market', 'aria-label': marketTitle(m) }, head, table);
  }

  async function pollArbitrage() {
    try {
      const a = await api('/v1/arbitrage');
      S.arbitrage = a;
      const n = num(a.count) ?? 0;
      const el = $('arb-summary');
      el.replaceChildren('Arbitrage scan: ', n ? h('span', { class: 'arb', text: `${n} open` }) : 'none open right now');
      if (n) {
        const names = Array.from(new Set((a.arbitrages || []).map((x) => x.name || x.event_id).filter(Boolean))).slice(0, 3);
        if (names.length) el.append(' — ' + names.join(', '));
      }
    } catch { /* shown as stale; retried */ }
  }

  // -- hub ----------------------------------------------------------------------------------

  function parseMetrics(text) {
    const out = { connections: 0 };
    for (const line of text.split('\n')) {
      if (!line || line.startsWith('#')) continue;
      const m = /^([a-z_]+)(\{[^}]*\})?\s+([0-9.eE+-]+)$/.exec(line.trim());
      if (!m) continue;
      const v = parseFloat(m[3]);
      if (m[1] === 'wagerwire_connections') out.connections += v;
      else out[m[1].replace(/^wagerwire_/, '')] = v;
    }
    return out;
  }

  // Server-side histograms and counters, as Prometheus would read them: every series with
  // its labels. Buckets are summed over labels (all transports and dialects together).
  function parseSeries(text) {
    const out = { durable: {}, fanout: {}, channels: {}, transports: {}, dialects: {}, nodes: {}, self: null };
    const add = (o, k, v) => { o[k] = (o[k] || 0) + v; };
    const node = (id) => (out.nodes[id] = out.nodes[id] || { id });
    for (const line of text.split('\n')) {
      if (!line || line.startsWith('#')) continue;
      const m = /^([a-z_]+)(?:\{(.*)\})?\s+(\S+)$/.exec(line.trim());
      if (!m) continue;
      const labels = {};
      for (const pair of (m[2] || '').matchAll(/([a-z_]+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2];
      const v = parseFloat(m[3]);
      if (m[1] === 'wagerwire_publish_durable_seconds_bucket') add(out.durable, labels.le, v);
      else if (m[1] === 'wagerwire_fanout_latency_seconds_bucket') add(out.fanout, labels.le, v);
      else if (m[1] === 'wagerwire_channel_messages_total') out.channels[labels.channel] = v;
      else if (m[1] === 'wagerwire_connections') out.transports[labels.transport] = v;
      else if (m[1] === 'wagerwire_stream_connections' && labels.dialect !== 'native' && v > 0) {
        add(out.dialects, `${labels.dialect} (${labels.transport})`, v);
      } else if (m[1] === 'wagerwire_node_info') out.self = labels.node_id;
      else if (m[1] === 'wagerwire_cluster_node_up') {
        Object.assign(node(labels.node_id), { address: labels.address, broker: labels.broker, store: labels.store, up: v === 1 });
      } else if (m[1] === 'wagerwire_cluster_node_broker_up') node(labels.node_id).brokerUp = v === 1;
      else if (m[1] === 'wagerwire_cluster_node_store_up') node(labels.node_id).storeUp = v === 1;
      else if (m[1] === 'wagerwire_cluster_node_streams') node(labels.node_id).streams = v;
      else if (m[1] === 'wagerwire_cluster_node_seen_age_seconds') node(labels.node_id).age = v;
    }
    return out;
  }

  // histogram_quantile over bucket deltas: linear inside the bucket holding the rank.
  function bucketQuantile(now, base, q) {
    const les = Object.keys(now).sort((a, b) => parseFloat(a) - parseFloat(b));
    const total = (now['+Inf'] || 0) - ((base && base['+Inf']) || 0);
    if (total <= 0) return null;
    const rank = q * total;
    let lower = 0, prevCum = 0;
    for (const le of les) {
      const cum = (now[le] || 0) - ((base && base[le]) || 0);
      const upper = parseFloat(le);
      if (cum >= rank) {
        if (!isFinite(upper)) return lower;
        return lower + (upper - lower) * (cum > prevCum ? (rank - prevCum) / (cum - prevCum) : 1);
      }
      lower = upper; prevCum = cum;
    }
    return lower;
  }

  function windowFigures() {
    const samples = S.serverSamples;
    if (!samples.length) return null;
    const now = samples[samples.length - 1];
    const base = samples.length > 1 ? samples[0] : null; // the oldest kept: up to 60 s back
    const dt = base ? (now.t - base.t) / 1000 : 0;
    const fig = (key) => {
      const total = (now[key]['+Inf'] || 0) - ((base && base[key]['+Inf']) || 0);
      return { n: total, p50: bucketQuantile(now[key], base && base[key], 0.5), p99: bucketQuantile(now[key], base && base[key], 0.99) };
    };
    const rates = [];
    if (base && dt > 0) {
      for (const [ch, v] of Object.entries(now.channels)) {
        const r = (v - (base.channels[ch] || 0)) / dt;
        if (r > 0) rates.push([ch, r]);
      }
      rates.sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
    }
    return { durable: fig('durable'), fanout: fig('fanout'), rates: rates.slice(0, 8), transports: now.transports, dialects: now.dialects, seconds: dt };
  }

  function fmtFig(f) {
    if (!f || !f.n || f.p50 === null) return 'no traffic';
    const ms = (x) => (x * 1000 < 10 ? (x * 1000).toFixed(2) : (x * 1000).toFixed(0));
    return `p50 ${ms(f.p50)} ms · p99 ${ms(f.p99)} ms (${f.n})`;
  }

  function renderServer() {
    const w = windowFigures();
    if (!w) return;
    $('srv-durable').textContent = fmtFig(w.durable);
    $('srv-fanout').textContent = fmtFig(w.fanout);
    const parts = Object.entries(w.transports).sort().map(([t, n]) => `${t} ${n}`);
    for (const [d, n] of Object.entries(w.dialects).sort()) parts.push(`${d} ${n}`);
    $('srv-transports').textContent = parts.length ? parts.join(' · ') : '—';
    const body = $('channel-rates').tBodies[0];
    body.replaceChildren(...w.rates.map(([ch, r]) => h('tr', { dataset: { channel: ch } },
      h('td', { text: ch }), h('td', { class: 'num', text: r.toFixed(1) }))));
    renderNodes();
  }

  // Every node of the hub, from the heartbeats this node reads (wagerwire_cluster_node_*).
  function renderNodes() {
    const last = S.serverSamples[S.serverSamples.length - 1];
    if (!last) return;
    const ok = (up, what) => `${what || '?'} ${up ? 'ok' : 'DOWN'}`;
    const rows = Object.values(last.nodes).sort((a, b) => a.id.localeCompare(b.id));
    $('nodes').tBodies[0].replaceChildren(...rows.map((n) => h('tr', {
      dataset: { node: n.id, state: n.up ? 'up' : 'down' },
      class: n.up && n.brokerUp && n.storeUp ? '' : 'bad',
    },
      h('td', { text: n.id + (n.id === last.self ? ' (this page)' : '') }),
      h('td', { text: n.address || '' }),
      h('td', { text: n.up ? 'up' : 'down' }),
      h('td', { text: ok(n.brokerUp, n.broker) }),
      h('td', { text: ok(n.storeUp, n.store) }),
      h('td', { class: 'num', text: String(n.streams ?? '') }),
      h('td', { class: 'num', text: n.age === undefined ? '' : `${n.age.toFixed(0)} s` }))));
  }

  async function pollMetrics() {
    try {
      const text = await api('/metrics', { headers: { Accept: 'text/plain' } });
      const t = performance.now();
      const series = Object.assign(parseSeries(String(text)), { t });
      let kept = S.serverSamples.filter((x) => t - x.t <= 60000);
      const last = kept[kept.length - 1];
      if (last && (series.durable['+Inf'] || 0) < (last.durable['+Inf'] || 0)) kept = []; // a restart
      kept.push(series);
      S.serverSamples = kept;
      const sample = Object.assign(parseMetrics(String(text)), { t });
      const prev = S.metrics;
      if (prev && sample.t > prev.t && (sample.published_total ?? 0) >= (prev.published_total ?? 0)) {
        const dt = (sample.t - prev.t) / 1000;
        S.rates.published = ((sample.published_total ?? 0) - (prev.published_total ?? 0)) / dt;
        S.rates.delivered = ((sample.delivered_total ?? 0) - (prev.delivered_total ?? 0)) / dt;
      } else {
        S.rates.published = S.rates.delivered = null;
      }
      S.metrics = sample;
      if (sample.uptime_seconds !== undefined) {
        const started = serverNow() - sample.uptime_seconds * 1000;
        if (S.hubStartedAt === null || Math.abs(started - S.hubStartedAt) > 5000) S.hubStartedAt = started;
      }
      mark('hub');
    } catch { /* retried */ }
  }

  async function pollChannels() {
    try {
      const c = await api('/v1/channels');
      S.channels = Array.isArray(c.channels) ? c.channels : [];
      mark('channels');
    } catch { /* retried */ }
  }

  function renderHub() {
    const m = S.metrics;
    $('kpi-clients').textContent = m ? String(m.connections) : '—';
    $('kpi-pub').textContent = S.rates.published === null ? '—' : S.rates.published.toFixed(0);
    $('kpi-del').textContent = S.rates.delivered === null ? '—' : S.rates.delivered.toFixed(0);
    $('kpi-recv').textContent = S.conn === 'connected' || S.recvRate ? String(S.recvRate) : '—';
    $('hub-uptime').textContent = m && m.uptime_seconds !== undefined ? `up ${fmtDuration(m.uptime_seconds)}` : '';
    const recent = S.latSeries.slice(-5).filter((p) => p.n);
    if (recent.length) {
      const p50 = median(recent.map((p) => p.p50));
      const p95 = Math.max(...recent.map((p) => p.p95));
      const max = Math.max(...recent.map((p) => p.max));
      $('lat-text').textContent = `p50 ${p50.toFixed(0)} ms · p95 ${p95.toFixed(0)} ms · max ${max.toFixed(0)} ms (last 5 s)`;
    } else {
      $('lat-text').textContent = 'no live message in the last 5 s';
    }
    drawLatency();
    renderServer();
  }

  async function pollSources() {
    try {
      const r = await api('/v1/sources/health');
      S.sources = Array.isArray(r.sources) ? r.sources : [];
      mark('sources');
    } catch { /* a node without connectors answers 404: keep the empty table */ }
  }

  function renderSources() {
    const body = $('sources').tBodies[0];
    const rows = (S.sources || []).slice().sort((a, b) => String(a.name).localeCompare(String(b.name)));
    if (!rows.length) return;
    const num = (v, digits) => (v === null || v === undefined ? '—' : Number(v).toFixed(digits));
    body.replaceChildren(...rows.map((src) => h('tr', { dataset: { source: String(src.name), state: String(src.state) } },
      h('td', { text: String(src.name) }),
      h('td', { text: String(src.dialect) }),
      h('td', { text: src.error ? `${src.state}: ${src.error}` : String(src.state) }),
      h('td', { class: 'num', text: num(src.last_message_age_s, 1) }),
      h('td', { class: 'num', text: num(src.lag_ms, 0) }),
      h('td', { class: 'num', text: String(src.messages ?? '') }),
      h('td', { class: 'num', text: String(src.reconnects ?? '') }),
      h('td', { class: 'num', text: `${src.gaps_found}/${src.gaps_filled}/${src.gaps_unfillable}` }))));
  }

  function renderChannels() {
    const body = $('channels').tBodies[0];
    const rows = S.channels.slice().sort((a, b) => String(a.name).localeCompare(String(b.name)));
    body.replaceChildren(...rows.map((c) => h('tr', { dataset: { channel: String(c.name) } },
      h('td', { text: String(c.name) }),
      h('td', { class: 'num', text: String(c.last_offset ?? '') }),
      h('td', { class: 'num', text: String(c.count ?? '') }),
      h('td', { class: 'num', text: String(c.subscribers ?? '') }))));
  }

  function fmtDuration(s) {
    s = Math.floor(s);
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  }

  function median(xs) {
    const s = xs.slice().sort((a, b) => a - b);
    return s.length ? s[Math.floor((s.length - 1) / 2)] : 0;
  }

  function quantile(sorted, q) {
    return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : 0;
  }

  function everySecond() {
    const lat = S.latBucket.sort((a, b) => a - b);
    S.latSeries.push({ n: lat.length, p50: quantile(lat, 0.5), p95: quantile(lat, 0.95), max: lat.length ? lat[lat.length - 1] : 0 });
    if (S.latSeries.length > 60) S.latSeries.shift();
    S.latBucket = [];
    S.recvRate = S.recvThisSecond;
    S.recvThisSecond = 0;
    pruneEvents();
    mark('hub');
  }

  function drawLatency() {
    const canvas = $('lat-chart');
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(100, canvas.clientWidth), hgt = Math.max(60, canvas.clientHeight);
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(hgt * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(hgt * dpr);
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, hgt);
    const pts = S.latSeries;
    const top = Math.max(5, ...pts.map((p) => p.p95)) * 1.25;
    const pad = { l: 34, r: 6, t: 8, b: 14 };
    const x = (i) => pad.l + (i + 60 - pts.length) * (w - pad.l - pad.r) / 59;
    const y = (v) => hgt - pad.b - (Math.min(v, top) / top) * (hgt - pad.t - pad.b);
    ctx.font = '10px system-ui, sans-serif';
    ctx.fillStyle = '#9fb0c9';
    ctx.strokeStyle = '#24324f';
    ctx.lineWidth = 1;
    for (const f of [0, 0.5, 1]) {
      const v = top * f;
      ctx.beginPath(); ctx.moveTo(pad.l, y(v)); ctx.lineTo(w - pad.r, y(v)); ctx.stroke();
      ctx.fillText(`${v.toFixed(0)}ms`, 2, y(v) + 3);
    }
    ctx.fillText('−60 s', pad.l, hgt - 2);
    ctx.fillText('now', w - pad.r - 20, hgt - 2);
    const line = (key, color) => {
      ctx.strokeStyle = color; ctx.lineWidth = 2; ctx.beginPath();
      let started = false;
      pts.forEach((p, i) => {
        if (!p.n) { started = false; return; }
        if (!started) { ctx.moveTo(x(i), y(p[key])); started = true; } else ctx.lineTo(x(i), y(p[key]));
      });
      ctx.stroke();
    };
    line('p95', '#eab308');
    line('p50', '#38bdf8');
    ctx.fillStyle = '#38bdf8'; ctx.fillText('p50', w - 60, 12);
    ctx.fillStyle = '#eab308'; ctx.fillText('p95', w - 34, 12);
    canvas.setAttribute('aria-label', `latency over the last 60 seconds; ${$('lat-text').textContent}`);
  }

  // -- connection ---------------------------------------------------------------------------

  const CHANNELS = ['game:*', 'sports:event:*'];

  function setConn(state) {
    S.conn = state;
    mark('conn');
  }

  function renderConn() {
    const box = $('conn');
    box.dataset.state = S.conn;
    let text;
    if (S.conn === 'connected') text = 'connected';
    else if (S.conn === 'reconnecting') {
      const left = Math.max(0, Math.ceil((S.retryAt - Date.now()) / 1000));
      text = S.retryTimer ? `reconnecting in ${left} s (attempt ${S.attempt})` : `reconnecting (attempt ${S.attempt})…`;
    } else if (S.conn === 'failed') text = 'disconnected: the hub refused this stream';
    else if (S.conn === 'auth') text = 'waiting for an API key';
    else text = 'connecting…';
    if ($('conn-text').textContent !== text) $('conn-text').textContent = text;
    $('reconnect-now').hidden = !(S.conn === 'reconnecting' && S.retryTimer) && S.conn !== 'failed';
    const note = $('resume-note');
    if (S.resume) {
      note.hidden = false;
      note.dataset.count = String(S.resume.count);
      note.dataset.recovered = String(S.resume.recovered);
      note.replaceChildren(
        `Resumed at ${clockTime(S.resume.at)}: `,
        h('strong', { id: 'resume-count', text: String(S.resume.count) }),
        ` missed ${S.resume.count === 1 ? 'message' : 'messages'} replayed`,
        S.resume.recovered ? ' (no gap).' : ' — history did not reach back; backfilled over REST.',
      );
    }
    const conflated = $('conflation-note');
    if (conflated) {
      conflated.hidden = S.superseded === 0 && S.images === 0;
      conflated.dataset.superseded = String(S.superseded);
      conflated.textContent = `Conflated: ${S.superseded} superseded ${S.superseded === 1 ? 'price' : 'prices'} skipped`
        + (S.images ? `, ${S.images} from a snapshot image` : '') + ' (latest per key kept; no gap).';
    }
  }

  async function wsUrl() {
    const base = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/ws`;
    if (!S.key) return base;
    const t = await api('/v1/tokens', { method: 'POST' });
    return `${base}?token=${encodeURIComponent(t.token)}`;
  }

  async function connect() {
    S.retryTimer = null;
    setConn(S.everConnected ? 'reconnecting' : 'connecting');
    let url;
    try {
      url = await wsUrl();
    } catch (err) {
      if (!err.unauthorized) scheduleReconnect();
      return;
    }
    const ws = new WebSocket(url);
    S.ws = ws;
    ws.addEventListener('open', () => subscribe(ws, S.everConnected && S.tokens.size > 0));
    ws.addEventListener('message', (e) => {
      let frame;
      try { frame = JSON.parse(e.data); } catch { return; }
      if (frame && typeof frame === 'object') onFrame(ws, frame);
    });
    ws.addEventListener('close', (e) => {
      if (S.ws !== ws) return;
      S.ws = null;
      S.metrics = null;
      S.rates.published = S.rates.delivered = null;
      S.pendingSubs = 0;
      mark('hub');
      if (e.code === 4003 || e.code === 1008) { setConn('failed'); return; }
      if (e.code === 4001) { showAuth(); return; }
      scheduleReconnect();
    });
  }

  function subscribe(ws, resume) {
    const frame = { op: 'subscribe', channels: CHANNELS };
    if (resume) frame.since = Array.from(S.tokens.values()).join('.');
    S.resuming = Boolean(resume);
    S.pendingSubs = CHANNELS.length;
    S.subscribeAt = Date.now();
    S.subRecovered = true;
    if (resume) S.resume = { at: Date.now(), count: 0, recovered: true };
    ws.send(JSON.stringify(frame));
  }

  function onFrame(ws, f) {
    if (f.op === 'message' && typeof f.channel === 'string') onMessage(f);
    else if (f.op === 'superseded' && Array.isArray(f.offsets)) {
      // A conflating channel: these offsets were replaced by newer prices of the same key.
      for (const r of f.offsets) if (Array.isArray(r) && r.length === 2) S.superseded += Math.max(0, r[1] - r[0] + 1);
      mark('conn');
    } else if (f.op === 'subscribed') {
      // An image stands for the history it does not replay: nothing to backfill.
      if (f.recovered === false && !f.image) S.subRecovered = false;
      S.pendingSubs -= 1;
      if (S.pendingSubs <= 0) onSubscribed();
    } else if (f.op === 'error') {
      if (S.pendingSubs > 0 && S.resuming && ['bad_resume_token', 'bad_parameter'].includes(f.code)) {
        // The position could not be used at all: start live and backfill over REST.
        S.tokens.clear();
        subscribe(ws, false);
        S.resume = { at: Date.now(), count: 0, recovered: false };
        loadSnapshots().catch(() => {});
      }
    }
  }

  function onSubscribed() {
    const first = !S.everConnected;
    S.everConnected = true;
    S.attempt = 0;
    setConn('connected');
    if (S.resume && S.resuming) {
      S.resume.recovered = S.subRecovered;
      mark('conn');
    }
    // Snapshots fill what the stream does not carry (history before this page, new events,
    // and everything when a resume could not be honoured); merging is idempotent.
    if (first || !S.subRecovered || S.resuming) loadSnapshots().catch(() => {});
    pollMetrics();
    pollChannels();
    pollSources();
    pollArbitrage();
  }

  function onMessage(m) {
    const now = Date.now();
    if (typeof m.token === 'string') S.tokens.set(m.channel, m.token);
    const ts = num(m.ts);
    const skew = Number.isFinite(S.skew) ? S.skew : 0;
    if (m.image === true) { S.images += 1; mark('conn'); }
    const replayed = !m.image && S.resuming && ts !== null && ts + skew < S.subscribeAt;
    if (replayed) {
      S.resume.count += 1;
      mark('conn');
    } else if (ts !== null) {
      S.latBucket.push(Math.max(0, now - ts));
      S.skew = Math.min(S.skew, now - ts);
    }
    S.recvThisSecond += 1;
    if (m.channel.startsWith('game:')) addRound(m.channel.slice(5), m.data, !replayed);
    else if (m.channel.startsWith('sports:event:')) upsertEvent(m.data);
  }

  function scheduleReconnect() {
    if (S.retryTimer) return;
    S.attempt += 1;
    const base = BACKOFF_S[Math.min(S.attempt - 1, BACKOFF_S.length - 1)];
    const delay = base * 1000 * (0.8 + Math.random() * 0.4);
    S.retryAt = Date.now() + delay;
    S.retryTimer = setTimeout(connect, delay);
    setConn(S.everConnected ? 'reconnecting' : 'connecting');
  }

  function reconnectNow() {
    if (S.retryTimer) { clearTimeout(S.retryTimer); S.retryTimer = null; }
    if (S.ws) { const ws = S.ws; S.ws = null; ws.close(1000); }
    connect();
  }

  $('reconnect-now').addEventListener('click', reconnectNow);

  async function loadSnapshots() {
    const games = await api('/v1/games');
    for (const g of games.games || []) if (typeof g.slug === 'string') ensureGame(g.slug, g);
    const events = api('/v1/events').then((e) => (e.events || []).forEach(upsertEvent));
    await Promise.all([...Array.from(S.games.values()).map((g) =>
      loadRounds(g.slug, Math.max(g.slug === S.selectedGame ? S.windowN : 100, 100))), events]);
    mark('tickers', 'detail', 'events', 'board', 'gamelist');
  }

  // -- render loop --------------------------------------------------------------------------

  function render() {
    const d = S.dirty;
    if (!d.size) return;
    S.dirty = new Set();
    if (d.has('tickers') || d.has('gamelist')) renderTickers();
    if (d.has('detail') || d.has('gamelist')) renderDetail();
    if (d.has('events')) renderEvents();
    if (d.has('board') || d.has('events')) renderBoard();
    if (d.has('hub')) renderHub();
    if (d.has('channels')) renderChannels();
    if (d.has('sources')) renderSources();
    if (d.has('conn')) renderConn();
    document.body.dataset.ready = S.everConnected ? 'true' : 'false';
    document.body.classList.toggle('offline', S.conn !== 'connected');
  }

  setInterval(render, 250);
  setInterval(everySecond, 1000);
  setInterval(() => { if (S.conn === 'connected') { pollMetrics(); pollChannels(); pollSources(); } }, 2000);
  setInterval(() => { if (S.conn === 'connected') pollArbitrage(); }, 5000);
  setInterval(() => { if (S.conn === 'reconnecting') mark('conn'); mark('board'); }, 1000);
  window.addEventListener('resize', () => mark('hub'));

  // One REST call first: a hub that requires keys answers 401, and the page asks for one
  // instead of opening streams that would be refused.
  api('/v1/games').then(() => connect(), (err) => { if (!err.unauthorized) connect(); });
  // Expose read-only state for debugging from the console (no behaviour depends on it).
  window.wagerwire = { state: S };
})();
