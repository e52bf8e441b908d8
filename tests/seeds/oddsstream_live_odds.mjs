// Seed 003 (OddsStream, /work/shared/seeds/003_227f31d8ae857af2.txt), "Complete working
// example", verbatim except the hosts (https://oddsstream.io and wss://api.oddsstream.io
// become http:// and ws://127.0.0.1:8000; the tests substitute the live port).
// live-odds.mjs
// Usage: ODDSSTREAM_API_KEY=os_live_... node live-odds.mjs
import WebSocket from "ws";

const API_KEY = process.env.ODDSSTREAM_API_KEY;
if (!API_KEY) throw new Error("ODDSSTREAM_API_KEY not set");

async function getToken() {
  const res = await fetch("http://127.0.0.1:8000/api/stream/token", {
    method: "POST",
    headers: { "X-Api-Key": API_KEY },
  });
  if (!res.ok) throw new Error(`Token failed: ${res.status}`);
  const { token } = await res.json();
  return token;
}

// prices[match][selection] = { odds, bookmaker }
const prices = {};

function printBest(matchName) {
  const match = prices[matchName];
  if (!match) return;
  console.log(`\n=== ${matchName} ===`);
  for (const [sel, { odds, bookmaker }] of Object.entries(match)) {
    console.log(`  ${sel.padEnd(25)} ${odds.toFixed(2)} @ ${bookmaker}`);
  }
}

let reconnectDelay = 1000;

async function connect() {
  const token = await getToken();
  const ws = new WebSocket(
    `ws://127.0.0.1:8000/api/stream?token=${token}&sport=Football&competition=EPL`
  );

  ws.on("open", () => {
    reconnectDelay = 1000;
    console.log("Connected to OddsStream EPL feed");
    setInterval(() => ws.readyState === WebSocket.OPEN && ws.send("ping"), 30_000);
  });

  ws.on("message", (raw) => {
    const str = raw.toString();
    if (str === "pong") return;

    const u = JSON.parse(str);
    if (!prices[u.match_name]) prices[u.match_name] = {};

    const current = prices[u.match_name][u.selection];
    if (!current || u.odds > current.odds) {
      prices[u.match_name][u.selection] = { odds: u.odds, bookmaker: u.bookmaker };
      printBest(u.match_name);
    }
  });

  ws.on("close", (code) => {
    console.log(`Disconnected (${code}), retrying in ${reconnectDelay}ms`);
    setTimeout(connect, reconnectDelay);
    reconnectDelay = Math.min(reconnectDelay * 2, 30_000);
  });

  ws.on("error", (e) => console.error("Error:", e.message));
}

connect();
