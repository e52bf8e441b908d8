// pusher-js's browser build in Debian's Chromium (headless, playwright-core), on a page of
// another origin (about:blank): connect to a wagerwire server, subscribe to a public and a
// private channel (the private one through /pusher/auth, a CORS preflight with X-Api-Key),
// and report every event as one JSON line on stdout.
//
//   node pusher.mjs     env: WW_PORT, WW_KEY (Pusher app key), WW_API_KEY (wagerwire key),
//                            PUSHER_JS (path of pusher-js's dist/web/pusher.js),
//                            CHROMIUM (default /usr/bin/chromium)
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const profile = mkdtempSync(join(tmpdir(), 'ww-chromium-pusher-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = context.pages()[0] || await context.newPage();
  page.on('pageerror', (e) => say({ pageerror: String(e) }));
  await page.exposeFunction('report', (obj) => say(obj));
  await page.addScriptTag({ path: process.env.PUSHER_JS });
  await page.evaluate(({ port, key, apiKey }) => {
    const pusher = new window.Pusher(key, {
      cluster: 'local', wsHost: '127.0.0.1', wsPort: port, forceTLS: false,
      enabledTransports: ['ws'], disableStats: true,
      channelAuthorization: { endpoint: `http://127.0.0.1:${port}/pusher/auth`,
                              transport: 'ajax', headers: { 'x-api-key': apiKey } },
    });
    pusher.connection.bind('state_change', (s) => window.report({ state: s.current }));
    for (const name of ['scores', 'private-desk']) {
      const ch = pusher.subscribe(name);
      ch.bind('pusher:subscription_succeeded', () => window.report({ subscribed: name }));
      ch.bind('pusher:subscription_error', (e) => window.report({ error: name, status: e.status }));
      ch.bind('goal', (d) => window.report({ channel: name, goal: d }));
    }
  }, { port: Number(process.env.WW_PORT), key: process.env.WW_KEY, apiKey: process.env.WW_API_KEY });
  await new Promise(() => {});  // the caller kills the process when it has seen enough
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
