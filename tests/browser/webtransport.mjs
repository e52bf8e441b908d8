// WebTransport in Debian's Chromium (headless, playwright-core), on a page of the hub's own
// origin (http://127.0.0.1:PORT, a secure context). Every console message and report goes to
// stdout as one JSON line; the caller publishes and kills the process when it has seen enough.
//
//   node webtransport.mjs MODE    env: WW_PORT (HTTP), WW_WT_PORT (UDP), WW_CERT_HASH (hex
//                                 SHA-256 of the certificate's DER), WW_SCRIPT (the page code
//                                 for MODE "seed"), CHROMIUM (default /usr/bin/chromium)
//
// MODE "seed": WW_SCRIPT (the seed's own code, prepared by the test) is run in the page.
// MODE "native": a /v1/wt session subscribes to game:crash, closes after 3 messages, and on a
// line "resume" on stdin opens a new session that resumes with the last token.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const mode = process.argv[2];
const profile = mkdtempSync(join(tmpdir(), 'ww-chromium-wt-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = context.pages()[0] || await context.newPage();
  page.on('pageerror', (e) => say({ pageerror: String(e) }));
  page.on('console', async (msg) => {
    const args = [];
    for (const a of msg.args()) {
      try { args.push(await a.jsonValue()); } catch (e) { args.push(String(a)); }
    }
    say({ console: msg.type(), args });
  });
  await page.exposeFunction('report', (obj) => say(obj));
  await page.goto(`http://127.0.0.1:${process.env.WW_PORT}/healthz`);
  const hash = process.env.WW_CERT_HASH;
  await page.evaluate((hex) => {
    window.CERT_HASH = new Uint8Array(hex.match(/../g).map((h) => parseInt(h, 16)));
  }, hash);
  if (mode === 'seed') {
    page.evaluate(process.env.WW_SCRIPT).catch((e) => say({ evalerror: String(e) }));
  } else if (mode === 'native') {
    await page.evaluate((wtPort) => {
      const url = `https://127.0.0.1:${wtPort}/v1/wt`;
      const opts = { serverCertificateHashes: [{ algorithm: 'sha-256', value: window.CERT_HASH }] };
      async function session(first) {
        const wt = new WebTransport(url, opts);
        await wt.ready;
        wt.closed.then((info) => window.report({ closed: info, session: first ? 1 : 2 }))
          .catch((e) => window.report({ closedWithError: String(e), session: first ? 1 : 2 }));
        const stream = await wt.createBidirectionalStream();
        const writer = stream.writable.getWriter();
        const op = { op: 'subscribe', channels: ['game:crash'] };
        if (window.lastToken) op.since = window.lastToken;
        await writer.write(new TextEncoder().encode(JSON.stringify(op) + '\n'));
        const reader = stream.readable.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        let count = 0;
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let nl;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const msg = JSON.parse(buf.slice(0, nl));
            buf = buf.slice(nl + 1);
            if (msg.op === 'message') {
              window.lastToken = msg.token;
              count += 1;
              window.report({ message: msg.data, offset: msg.offset, session: first ? 1 : 2 });
              if (first && count === 3) {
                wt.close({ closeCode: 0, reason: 'dropping on purpose' });
                window.report({ dropped: true });
                return;
              }
            } else {
              window.report({ reply: msg, session: first ? 1 : 2 });
            }
          }
        }
      }
      window.resume = () => session(false).catch((e) => window.report({ error: String(e) }));
      session(true).catch((e) => window.report({ error: String(e) }));
    }, Number(process.env.WW_WT_PORT));
    const lines = createInterface({ input: process.stdin });
    for await (const line of lines) {
      if (line.trim() === 'resume') await page.evaluate(() => window.resume());
    }
  }
  await new Promise(() => {});  // the caller kills the process when it has seen enough
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
