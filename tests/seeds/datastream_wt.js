// Seed 004 (Hypetech "Data Stream", /work/shared/seeds/004_eb12ae610af3d355.txt), the
// WebTransport sections, verbatim except the host (datastream.hypetech.games:4433 becomes
// 127.0.0.1:4433; the tests substitute the live UDP port) and the one change a self-signed
// development certificate needs: the tests add {serverCertificateHashes: [...]} to
// `new WebTransport(...)`. Browser code: tests/browser/webtransport.mjs runs it in Chromium.
// The sections are cut at the "// ---" lines by tests/integration/test_webtransport_browser.py.

// --- WebTransport > Connection
const wt = new WebTransport('https://127.0.0.1:4433/wt');
await wt.ready;
// --- WebTransport > Datagrams
const reader = wt.datagrams.readable.getReader();
while (true) {
const { value, done } = await reader.read();
if (done) break;
const text = new TextDecoder().decode(value);
const round = JSON.parse(text);
console.log('Datagram:', round);
}
// --- Best Practices > 5. Graceful Degradation
async function connect() {
// Try best protocol first
if (typeof WebTransport !== 'undefined') {
try {
return await connectWebTransport();
} catch (e) {}
}
try {
return await connectWebSocket();
} catch (e) {}
// Fallback to SSE
return connectSSE();
}
// --- end
