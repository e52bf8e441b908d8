// Seed 003 (OddsStream, /work/shared/seeds/003_227f31d8ae857af2.txt), "Step 6: Reconnect
// automatically": the OddsStreamClient class and its usage, verbatim except the hosts
// (https://oddsstream.io and wss://api.oddsstream.io become http:// and ws://127.0.0.1:8000;
// the tests substitute the live port). The key comes from ODDSSTREAM_API_KEY, as on the page.
import WebSocket from "ws";

class OddsStreamClient {
  constructor({ apiKey, filters = {}, onUpdate }) {
    this.apiKey = apiKey;
    this.filters = filters;
    this.onUpdate = onUpdate;
    this.reconnectDelay = 1000;
    this.keepaliveInterval = null;
    this.connect();
  }

  async getToken() {
    const res = await fetch("http://127.0.0.1:8000/api/stream/token", {
      method: "POST",
      headers: { "X-Api-Key": this.apiKey },
    });
    if (!res.ok) throw new Error(`Token request failed: ${res.status}`);
    const { token } = await res.json();
    return token;
  }

  async buildUrl() {
    const token = await this.getToken();
    const params = new URLSearchParams({ token, ...this.filters });
    return `ws://127.0.0.1:8000/api/stream?${params}`;
  }

  async connect() {
    let url;
    try {
      url = await this.buildUrl();
    } catch (e) {
      console.error("Failed to get token:", e.message);
      setTimeout(() => this.connect(), this.reconnectDelay);
      this.reconnectDelay = Math.min(this.reconnectDelay * 2, 30_000);
      return;
    }

    const ws = new WebSocket(url);

    ws.on("open", () => {
      console.log("OddsStream connected");
      this.reconnectDelay = 1000;
      this.keepaliveInterval = setInterval(
        () => ws.readyState === WebSocket.OPEN && ws.send("ping"),
        30_000
      );
    });

    ws.on("message", (data) => {
      const str = data.toString();
      if (str === "pong") return;
      try {
        this.onUpdate(JSON.parse(str));
      } catch (e) {
        console.error("Parse error:", e);
      }
    });

    ws.on("close", (code) => {
      clearInterval(this.keepaliveInterval);
      console.log(`Disconnected (${code}), retrying in ${this.reconnectDelay}ms`);
      setTimeout(() => this.connect(), this.reconnectDelay);
      this.reconnectDelay = Math.min(this.reconnectDelay * 2, 30_000);
    });

    ws.on("error", (err) => console.error("WS error:", err.message));
  }
}

// Usage
const client = new OddsStreamClient({
  apiKey: process.env.ODDSSTREAM_API_KEY,
  filters: { sport: "Football", competition: "EPL" },
  onUpdate: (update) => {
    console.log(`${update.match_name} | ${update.selection}: ${update.odds}`);
  }
});
