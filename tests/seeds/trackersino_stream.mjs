// Seed 001 (TrackerSino, /work/shared/seeds/001_8c71ec48c04c6868.txt), section
// "4. Working example > Node.js (ws)", verbatim except the URL's host
// (wss://api.trackersino.com becomes ws://127.0.0.1:8000; the tests substitute the live port)
// and YOUR_KEY (the tests substitute a key).
import WebSocket from 'ws';

function connect() {
  const ws = new WebSocket(
    'ws://127.0.0.1:8000/v1-beta/stream?games=stake-crash',
    { headers: { Authorization: 'Bearer YOUR_KEY' } },
  );
  ws.on('message', (data) => {
    const r = JSON.parse(data);
    if (parseFloat(r.multiplier) > 10) {
      console.log(`🚀 ${r.game_id} ${r.multiplier}x at ${r.finalized_at}`);
    }
  });
  ws.on('close', () => setTimeout(connect, 1000));
  ws.on('error', () => ws.terminate());
}
connect();
