// Seed 004 (Hypetech "Data Stream", /work/shared/seeds/004_eb12ae610af3d355.txt), section
// "WebSocket > Example", verbatim except the host (wss://datastream.hypetech.games becomes
// ws://127.0.0.1:8000; the tests substitute the live port).
// Smallest documented change: the page is browser code using the global WebSocket, which
// Node 20 lacks, so the two prelude lines below provide it from npm `ws` (tests/node).
import WebSocket from 'ws';
globalThis.WebSocket = WebSocket;

const ws = new WebSocket('ws://127.0.0.1:8000/ws/crash');
ws.onopen = () => {
console.log('Connected');
};
ws.onmessage = (event) => {
const round = JSON.parse(event.data);
console.log(`Round ${round.round_id}: ${round.extras}`);
};
ws.onclose = (event) => {
console.log(`Closed: ${event.code}`);
// Implement reconnection
};
ws.onerror = (error) => {
console.error('Error:', error);
};
