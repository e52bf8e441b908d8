// Seed 004 (Hypetech "Data Stream", /work/shared/seeds/004_eb12ae610af3d355.txt), section
// "Server-Sent Events (SSE) > Example", verbatim except the URL: the page's relative
// '/sse/crash' (resolved against the page's origin in a browser) becomes the absolute
// http://127.0.0.1:8000/sse/crash, which Node needs (the tests substitute the live port).
// Smallest documented change: the page is browser code using the global EventSource, which
// Node lacks, so the two prelude lines below provide it from npm `eventsource` (tests/node).
// Its own reconnect ("SSE reconnects automatically") is the resume path the tests exercise.
import { EventSource } from 'eventsource';
globalThis.EventSource = EventSource;

const sse = new EventSource('http://127.0.0.1:8000/sse/crash');
// Initial data
sse.addEventListener('initial', (e) => {
const round = JSON.parse(e.data);
console.log('Initial:', round);
});
// New messages
sse.addEventListener('message', (e) => {
const round = JSON.parse(e.data);
console.log('New round:', round);
});
// Connection events
sse.onopen = () => console.log('Connected');
sse.onerror = () => console.log('Reconnecting...');
