# ruff: noqa
# Seed 001 (TrackerSino, /work/shared/seeds/001_8c71ec48c04c6868.txt): the "4. Working example >
# Python (websockets)" loop with the page's "3. Reconnect strategy" added as the page words it:
# "On reconnect, the last finalized_at you observed is the resume point — backfill the gap via
# GET /v1-beta/games/{slug}/rounds?since=<last>" (same Authorization header as the stream).
# The page gives no code for that step, so it is written here with the standard library; rounds
# are de-duplicated by round_id (since is inclusive: finalized_at has 1 s resolution).
# Host and key are placeholders the tests substitute; websockets 13.1 (extra_headers=).
# Prints every round (not only > 10x) so the tests can check that nothing was lost.
import asyncio, json, urllib.parse, urllib.request, websockets

URI = 'ws://127.0.0.1:8000/v1-beta/stream?games=stake-crash'
HEAD = [('Authorization', 'Bearer YOUR_KEY')]
REST = 'http://127.0.0.1:8000/v1-beta/games/{slug}/rounds?since={since}'

seen = set()
last = None  # the last finalized_at observed


def show(r, how):
    global last
    if r['round_id'] in seen:
        return
    seen.add(r['round_id'])
    last = r['finalized_at']
    print(f"{how} {r['game_id']} {r['round_index']} {r['multiplier']} {r['finalized_at']}", flush=True)


def backfill(slug, since):
    url = REST.format(slug=slug, since=urllib.parse.quote(since))
    req = urllib.request.Request(url, headers=dict(HEAD))
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


async def main():
    async for ws in websockets.connect(URI, extra_headers=HEAD, ping_interval=20):
        print("connected", flush=True)
        if last is not None:
            for r in await asyncio.to_thread(backfill, 'stake-crash', last):
                show(r, "backfill")
        try:
            async for msg in ws:
                r = json.loads(msg)
                show(r, "live")
        except websockets.ConnectionClosed:
            continue  # auto-reconnect via for-async

asyncio.run(main())
