# ruff: noqa
# Seed 001 (TrackerSino "How to stream Crash rounds in real time",
# /work/shared/seeds/001_8c71ec48c04c6868.txt), section "4. Working example > Python
# (websockets)", verbatim except the URI's host (wss://api.trackersino.com becomes
# ws://127.0.0.1:8000; the tests substitute the live port) and YOUR_KEY (the tests substitute
# a key). It passes `extra_headers=`, which websockets >= 14 renamed to `additional_headers`,
# so the tests run it unchanged with websockets 13.1 (installed by the tests on first use).
import asyncio, json, websockets

URI = 'ws://127.0.0.1:8000/v1-beta/stream?games=stake-crash'
HEAD = [('Authorization', 'Bearer YOUR_KEY')]

async def main():
    async for ws in websockets.connect(URI, extra_headers=HEAD, ping_interval=20):
        try:
            async for msg in ws:
                r = json.loads(msg)
                if float(r['multiplier']) > 10:
                    print(f"🚀 {r['game_id']} {r['multiplier']}x at {r['finalized_at']}")
        except websockets.ConnectionClosed:
            continue  # auto-reconnect via for-async

asyncio.run(main())
