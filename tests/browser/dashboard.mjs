// Drives the wagerwire dashboard in Debian's Chromium (headless) with playwright-core.
//
//   node dashboard.mjs            env: WW_URL (http://127.0.0.1:PORT), WW_ARTIFACTS (dir),
//                                      CHROMIUM (default /usr/bin/chromium)
//
// Talks to its caller (tests/integration/test_dashboard.py) with one JSON object per line on
// stdout: {"step": "..."} progress lines, {"await": "killed"|"restarted"} when it needs the
// server killed or restarted (it then waits for that word on stdin), and a final
// {"result": {...}} with every check. Checks are reported, not thrown, so the caller sees all.
import { chromium } from 'playwright-core';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const URL_ = process.env.WW_URL;
const ART = process.env.WW_ARTIFACTS || 'test-artifacts';
const EXE = process.env.CHROMIUM || '/usr/bin/chromium';
if (!URL_) { console.error('WW_URL is required'); process.exit(2); }
mkdirSync(ART, { recursive: true });

const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const lines = createInterface({ input: process.stdin });
const waiting = [];
const received = [];
lines.on('line', (l) => { const w = waiting.shift(); if (w) w(l.trim()); else received.push(l.trim()); });
const nextLine = () => new Promise((res) => { const l = received.shift(); if (l !== undefined) res(l); else waiting.push(res); });
async function handshake(word) {
  say({ await: word });
  const got = await nextLine();
  if (got !== word) throw new Error(`expected "${word}" on stdin, got "${got}"`);
}

const result = { checks: {}, console: [], pageErrors: [], screenshots: [], info: {} };
const check = (name, ok, detail) => { result.checks[name] = { ok: Boolean(ok), detail }; say({ step: name, ok: Boolean(ok) }); };
let phase = 'load';

const profile = mkdtempSync(join(tmpdir(), 'ww-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: EXE,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
  viewport: { width: 1280, height: 800 },
});

try {
  const page = context.pages()[0] || await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') result.console.push({ phase, type: m.type(), text: m.text() });
  });
  page.on('pageerror', (e) => result.pageErrors.push({ phase, text: String(e) }));
  page.on('requestfailed', (r) => {
    if (phase === 'load') result.console.push({ phase, type: 'requestfailed', text: `${r.url()} ${r.failure()?.errorText}` });
  });
  // Every request the page makes must stay on the hub (no internet at run time).
  const foreign = [];
  page.on('request', (r) => { if (!r.url().startsWith(URL_) && !r.url().startsWith(URL_.replace('http', 'ws'))) foreign.push(r.url()); });
  // The `since` of every resuming subscribe the page sends: where the hub replays from.
  const resumes = [];
  page.on('websocket', (ws) => ws.on('framesent', (e) => {
    try {
      const f = JSON.parse(String(e.payload));
      if (f.op === 'subscribe' && f.since) resumes.push(f.since);
    } catch { /* not JSON: not ours to check here */ }
  }));

  const response = await page.goto(URL_ + '/', { waitUntil: 'load' });
  check('page_served', response && response.status() === 200, response && response.status());

  await page.waitForSelector('#conn[data-state="connected"]', { timeout: 15000 });
  check('connected', true, await page.textContent('#conn-text'));

  // -- casino: rounds appear and update within seconds -------------------------------------
  const crashChips = '.ticker[data-game="crash"] ol button';
  await page.waitForSelector(crashChips, { timeout: 15000 });
  const firstKey = await page.getAttribute(crashChips, 'data-key');
  const firstCount = await page.locator('#tickers .chip').count();
  await page.waitForFunction(([sel, key]) => {
    const b = document.querySelector(sel);
    return b && b.dataset.key !== key;
  }, [crashChips, firstKey], { timeout: 15000 });
  const secondKey = await page.getAttribute(crashChips, 'data-key');
  const tickers = await page.$$eval('.ticker', (rows) => rows.map((r) => ({ game: r.dataset.game, chips: r.querySelectorAll('.chip').length })));
  check('rounds_update', Number(secondKey) > Number(firstKey) && firstCount > 0,
    { first: firstKey, next: secondKey, tickers });
  const chipClasses = await page.$$eval(crashChips, (bs) => bs.map((b) => [b.textContent, b.className]));
  check('crash_chips_coloured', chipClasses.every(([t, c]) => {
    const m = parseFloat(t);
    const want = m < 2 ? 'm-low' : m < 10 ? 'm-mid' : m < 50 ? 'm-high' : 'm-huge';
    return c.includes(want);
  }), chipClasses.slice(0, 5));
  const doubleChip = await page.$eval('.ticker[data-game="double"] .chip', (b) => b.className).catch(() => '');
  check('double_colours', /c-(red|black|white)/.test(doubleChip), doubleChip);
  const slotReels = await page.$$eval('.ticker[data-game="slot"] .chip .reel', (r) => r.length).catch(() => 0);
  check('slot_reels', slotReels >= 3, slotReels);

  // Statistics and histogram of the selected (crash) game.
  await page.selectOption('#game-select', 'crash');
  await page.waitForFunction(() => document.querySelectorAll('#histogram .bar').length >= 5, null, { timeout: 5000 });
  const stats = await page.$$eval('#game-stats .stat', (s) => s.map((x) => x.textContent));
  check('histogram_and_stats', stats.some((t) => t.includes('at or above 2×')) && stats.some((t) => t.includes('streak')), stats);

  // -- verify action -----------------------------------------------------------------------
  await page.click('#verify-latest');
  await page.waitForSelector('#verify-result[data-state="valid"], #verify-result[data-state="invalid"], #verify-result[data-state="error"]', { timeout: 10000 });
  const verify = { state: await page.getAttribute('#verify-result', 'data-state'), text: await page.textContent('#verify-result') };
  check('verify_valid', verify.state === 'valid' && verify.text.includes('valid'), verify);

  // -- sports: events and the odds board ---------------------------------------------------
  await page.waitForSelector('#events tbody tr', { timeout: 15000 });
  const events = await page.$$eval('#events tbody tr', (rows) => rows.map((r) => r.dataset.status));
  check('events_listed', events.length > 0 && events.every((s) => ['live', 'upcoming', 'finished'].includes(s)), events);
  await page.waitForSelector('#board-markets table.odds td.best', { timeout: 15000 });
  // One synchronous pass over the board: the highlighted cells must be the best price.
  const board = await page.$$eval('#board-markets table.odds', (tables) => tables.map((t) => {
    const cols = {};
    for (const td of t.querySelectorAll('tbody td')) {
      const sel = td.dataset.sel;
      (cols[sel] ||= []).push({ odds: td.dataset.odds === '' ? null : Number(td.dataset.odds), suspended: td.dataset.suspended === 'true', best: td.classList.contains('best') });
    }
    const problems = [];
    let bests = 0;
    for (const [sel, cells] of Object.entries(cols)) {
      const takeable = cells.filter((c) => c.odds !== null && !c.suspended).map((c) => c.odds);
      const max = takeable.length ? Math.max(...takeable) : null;
      for (const c of cells) {
        if (c.best) bests += 1;
        if (c.best && c.odds !== max) problems.push(`${sel}: highlighted ${c.odds} but max is ${max}`);
        if (!c.best && max !== null && c.odds === max && !c.suspended) problems.push(`${sel}: ${c.odds} is the max but not highlighted`);
      }
      if (max !== null && !cells.some((c) => c.best)) problems.push(`${sel}: no highlighted cell`);
    }
    const books = t.querySelectorAll('tbody tr').length;
    const implied = Array.from(t.querySelectorAll('tfoot td[data-implied]')).map((td) => td.textContent);
    return { market: t.dataset.market, arbitrage: t.dataset.arbitrage, books, bests, problems, implied };
  }));
  const boardProblems = board.flatMap((m) => m.problems);
  check('odds_best_highlighted', board.length > 0 && board.some((m) => m.bests > 0) && boardProblems.length === 0,
    { markets: board.length, books: board.map((m) => m.books), problems: boardProblems.slice(0, 5) });
  check('implied_probabilities', board.some((m) => m.implied.some((x) => x.endsWith('%'))), board[0] && board[0].implied);
  const arbFlagConsistent = await page.$$eval('#board-markets .market', (ms) => ms.every((m) => {
    const t = m.querySelector('table');
    return (t.dataset.arbitrage === 'true') === Boolean(m.querySelector('.arb'));
  }));
  check('arbitrage_flag_consistent', arbFlagConsistent, null);

  // Choosing another event from the keyboard switches the board.
  const evButtons = page.locator('#events button.ev');
  if (await evButtons.count() > 1) {
    const id = await evButtons.nth(1).getAttribute('data-event');
    const target = page.locator(`#events button.ev[data-event="${id}"]`);
    let selected = false;
    // Live updates re-sort the rows, and a moved row loses focus: a press that landed
    // elsewhere is tried again (at most three times) on the same event.
    for (let attempt = 0; attempt < 3 && !selected; attempt += 1) {
      await target.focus();
      await page.keyboard.press('Enter');
      selected = await page.waitForFunction((eid) => document.querySelector(`#events tr[data-event="${eid}"]`)?.classList.contains('selected'), id, { timeout: 3000 })
        .then(() => true, () => false);
    }
    check('keyboard_select_event', selected, id);
  }

  // -- hub panel ---------------------------------------------------------------------------
  // Rates and the latency chart fill in from live traffic; on a loaded machine that can
  // take a while, so wait for the panel's figures rather than sampling it once.
  await page.waitForFunction(() => document.querySelector('#kpi-clients').textContent !== '—'
    && document.querySelectorAll('#channels tbody tr').length > 0
    && document.querySelector('#lat-text').textContent.includes('p50'), null, { timeout: 30000 });
  const hub = await page.evaluate(() => ({
    clients: document.querySelector('#kpi-clients').textContent,
    published: document.querySelector('#kpi-pub').textContent,
    recv: document.querySelector('#kpi-recv').textContent,
    latency: document.querySelector('#lat-text').textContent,
    channels: document.querySelectorAll('#channels tbody tr').length,
  }));
  check('hub_panel', Number(hub.clients) >= 1 && hub.channels > 0 && hub.latency.includes('p50'), hub);

  // The server-side figures: histograms and counters of /metrics over the last minute.
  await page.waitForFunction(() => document.querySelector('#srv-fanout').textContent.includes('p99')
    && document.querySelector('#srv-durable').textContent.includes('p99')
    && document.querySelector('#srv-transports').textContent.includes('ws')
    && document.querySelectorAll('#channel-rates tbody tr').length > 0, null, { timeout: 30000 });
  const server = await page.evaluate(() => ({
    durable: document.querySelector('#srv-durable').textContent,
    fanout: document.querySelector('#srv-fanout').textContent,
    transports: document.querySelector('#srv-transports').textContent,
    rates: Array.from(document.querySelectorAll('#channel-rates tbody tr')).map((r) => [r.cells[0].textContent, Number(r.cells[1].textContent)]),
  }));
  const p99 = (text) => Number((/p99 ([0-9.]+) ms/.exec(text) || [])[1]);
  check('hub_server_panel', p99(server.fanout) > 0 && p99(server.fanout) < 1000
    && p99(server.durable) > 0 && p99(server.durable) < 5000
    && /ws [1-9]/.test(server.transports) && server.rates.every(([, r]) => r > 0), server);

  // The nodes of the hub (one here), from the heartbeats in the store: id, state, backends.
  await page.waitForFunction(() => document.querySelectorAll('#nodes tbody tr').length > 0, null, { timeout: 30000 });
  const nodes = await page.evaluate(() => Array.from(document.querySelectorAll('#nodes tbody tr')).map((r) => ({
    state: r.dataset.state, cells: Array.from(r.cells).map((c) => c.textContent),
  })));
  check('hub_nodes', nodes.length === 1 && nodes[0].state === 'up' && nodes[0].cells[0].includes('(this page)')
    && nodes[0].cells[3] === 'memory ok' && nodes[0].cells[4] === 'sqlite ok', nodes);

  // The Sources table: the configured upstream source (the hub relaying a quiet channel of
  // itself) shows with its dialect and state, from /v1/sources/health (polled every 2 s).
  await page.waitForSelector('#sources tbody tr[data-source="self"][data-state="connected"]', { timeout: 20000 })
    .catch(() => null);
  const sources = await page.evaluate(() => Array.from(document.querySelectorAll('#sources tbody tr')).map((r) => ({
    source: r.dataset.source, state: r.dataset.state, cells: Array.from(r.cells).map((c) => c.textContent),
  })));
  check('sources_table', sources.length === 1 && sources[0].source === 'self' && sources[0].state === 'connected'
    && sources[0].cells[0] === 'self' && sources[0].cells[1] === 'native' && sources[0].cells[2] === 'connected', sources);

  // -- keyboard: every control is reachable with Tab and shows a focus ring -----------------
  await page.focus('a.skip');
  const tabbed = [];
  // two tab stops per game card, then the game select and verify: up to 80 presses (the demo
  // catalog has 12 games), stopping once the last control was reached
  for (let i = 0; i < 80 && !tabbed.some((t) => t.startsWith('button#verify-latest')); i++) {
    await page.keyboard.press('Tab');
    tabbed.push(await page.evaluate(() => {
      const a = document.activeElement;
      const outline = a ? getComputedStyle(a).outlineStyle : 'none';
      return a ? `${a.tagName.toLowerCase()}${a.id ? '#' + a.id : ''}${a.className ? '.' + String(a.className).split(' ')[0] : ''}|${outline}` : 'none';
    }));
  }
  const reached = tabbed.map((t) => t.split('|')[0]);
  check('keyboard_navigation', reached.some((t) => t.startsWith('button.chip')) && reached.includes('select#game-select')
    && reached.includes('button#verify-latest') && tabbed.every((t) => !t.endsWith('|none') || t.startsWith('body')), tabbed);

  // -- layout at both viewports ------------------------------------------------------------
  const shot = async (name, opts = {}) => {
    const path = join(ART, name);
    await page.screenshot({ path, ...opts });
    result.screenshots.push(path);
  };
  await page.evaluate(() => document.activeElement && document.activeElement.blur());
  await page.waitForTimeout(500);
  await shot('dashboard-1280x800.png');
  await shot('dashboard-1280x800-full.png', { fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(800);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check('phone_no_horizontal_scroll', overflow <= 1, overflow);
  await shot('dashboard-390x844.png');
  await shot('dashboard-390x844-full.png', { fullPage: true });
  await page.setViewportSize({ width: 1280, height: 800 });

  const loadErrors = result.console.filter((c) => c.phase === 'load');
  check('no_console_errors', loadErrors.length === 0 && result.pageErrors.length === 0, loadErrors.concat(result.pageErrors));
  check('no_foreign_requests', foreign.length === 0, foreign);

  // -- kill, restart, recover --------------------------------------------------------------
  phase = 'outage';
  const before = Number(await page.getAttribute(crashChips, 'data-key'));
  await handshake('killed');
  await page.waitForSelector('#conn[data-state="reconnecting"]', { timeout: 10000 });
  check('shows_reconnecting', true, await page.textContent('#conn-text'));
  // Let the backoff grow past the restart time, so the hub publishes rounds this page misses.
  await page.waitForFunction(() => window.wagerwire.state.attempt >= 4, null, { timeout: 30000 });
  // Between two waits the label says "reconnecting (attempt n)…" while a connect is tried;
  // the countdown shows during the back-off wait, so read it once the page is waiting.
  await page.waitForFunction(
    () => /reconnecting in \d+ s \(attempt \d+\)/.test(document.querySelector('#conn-text')?.textContent || ''),
    null, { timeout: 30000 }).catch(() => {});
  const countdown = await page.textContent('#conn-text');
  check('reconnect_countdown', /reconnecting in \d+ s \(attempt \d+\)/.test(countdown), countdown);
  await shot('dashboard-reconnecting-1280x800.png');
  await handshake('restarted');
  phase = 'recovery';
  await page.waitForSelector('#conn[data-state="connected"]', { timeout: 30000 });
  await page.waitForFunction(() => Number(document.querySelector('#resume-note')?.dataset.count || 0) > 0, null, { timeout: 15000 });
  const note = await page.evaluate(() => {
    const n = document.querySelector('#resume-note');
    return { hidden: n.hidden, count: Number(n.dataset.count), recovered: n.dataset.recovered, text: n.textContent };
  });
  check('resumed_after_restart', !note.hidden && note.count > 0 && note.recovered === 'true', note);
  await page.waitForFunction(([sel, key]) => Number(document.querySelector(sel)?.dataset.key) > key + 1, [crashChips, before], { timeout: 15000 });
  const keys = await page.$$eval(crashChips, (bs) => bs.map((b) => Number(b.dataset.key)));
  const gapless = keys.every((k, i) => i === 0 || keys[i - 1] - k === 1);
  check('rounds_continue_without_gap', gapless && keys[0] > before, { before, keys });
  // The page counts a message as missed when the hub accepted it before this page's resuming
  // subscribe (ts + skew < subscribeAt). The exact figure comes from the hub's own history:
  // every message after the resume position (the `since` the page sent) accepted before that
  // instant. (The hub's replay counter is no reference: it also replays what arrives while
  // the subscribe is being served, and the page counts those as live.) The page's count is
  // read until it stops moving (three identical readings in a row), within a bounded wait,
  // and must then equal the history's; the last readings are reported.
  const expectedMissed = (since) => page.evaluate(async (since) => {
    const S = window.wagerwire.state;
    const skew = Number.isFinite(S.skew) ? S.skew : 0;
    let missed = 0;
    for (const segment of since.split('.')) {
      const [channel, , offset] = atob(segment.replace(/-/g, '+').replace(/_/g, '/')).split(',');
      let after = Number(offset);
      for (;;) {
        const url = `/v1/channels/${encodeURIComponent(channel)}/messages?since=${after}&limit=1000`;
        const r = await fetch(url, { cache: 'no-store' });
        if (!r.ok) throw new Error(`${url}: ${r.status} ${await r.text()}`);
        const body = await r.json();
        missed += body.messages.filter((m) => m.ts + skew < S.subscribeAt).length;
        if (body.next === null) break;
        after = body.next;
      }
    }
    return missed;
  }, since);
  const readCounts = () => page.evaluate(async () => {
    const text = await (await fetch('/metrics', { cache: 'no-store' })).text();
    return {
      replayed: Number(/^wagerwire_replayed_total (\d+)/m.exec(text)[1]),
      shown: Number(document.querySelector('#resume-note')?.dataset.count || 0),
    };
  });
  const settleBy = Date.now() + 30000;
  let counts = await readCounts();
  let same = 0;
  let agreed = false;
  while (resumes.length && Date.now() < settleBy) {
    await page.waitForTimeout(250);
    const next = await readCounts();
    same = next.shown === counts.shown ? same + 1 : 0;
    counts = next;
    if (same < 2) continue;
    counts.expected = await expectedMissed(resumes[resumes.length - 1]);
    agreed = counts.shown === counts.expected && counts.shown > 0;
    if (agreed) break;
  }
  check('resume_count_matches_hub', agreed, { ...counts, resumes: resumes.length, stable_readings: same + 1 });
  await page.waitForTimeout(500);
  await shot('dashboard-resumed-1280x800.png');
  // While the hub was down, only the refused connections themselves may be logged.
  const unexpected = result.console.filter((c) => c.phase !== 'load'
    && !/ERR_CONNECTION_REFUSED|WebSocket connection to .* failed|Failed to load resource/.test(c.text));
  check('no_unexpected_errors_in_outage', unexpected.length === 0 && result.pageErrors.length === 0, unexpected.concat(result.pageErrors));
} catch (err) {
  check('script', false, String(err && err.stack || err));
} finally {
  await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
  say({ result });
  lines.close();
}
