"""Fan-out: many clients, overlapping channels, every message exactly once and in order."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from wsutil import collect_messages, publish_many, subscribe

CHANNELS = ["t:a", "t:b", "t:c", "t:d"]


def _check_complete(frames: list[dict[str, Any]], expected: dict[str, int]) -> None:
    per_channel: dict[str, list[int]] = defaultdict(list)
    for f in frames:
        per_channel[f["channel"]].append(f["offset"])
    assert set(per_channel) == set(expected)
    for channel, count in expected.items():
        assert per_channel[channel] == list(range(1, count + 1)), channel


async def test_200_clients_overlapping_channels_get_everything_once_in_order(server: Any) -> None:
    clients = []
    wanted: list[list[str]] = []
    for k in range(200):
        if k % 10 == 0:
            chans = ["t:*", "t:a"]  # pattern plus an overlapping exact name: still once each
        else:
            chans = [CHANNELS[k % 4], CHANNELS[(k + 1) % 4]]
        ws, replies = await subscribe(server.ws_url, chans)
        assert all(r["recovered"] for r in replies)
        clients.append(ws)
        wanted.append(CHANNELS if "t:*" in chans else chans)
    items = [(CHANNELS[i % 4], {"i": i, "pad": "x" * 100}) for i in range(1000)]
    acks = await publish_many(server.ws_url, items)
    assert sorted(a["offset"] for a in acks if a["channel"] == "t:a") == list(range(1, 251))

    async def check(ws: Any, chans: list[str]) -> None:
        frames = await collect_messages(ws, 250 * len(chans), timeout=60)
        _check_complete(frames, {c: 250 for c in chans})
        for f in frames:
            assert f["data"]["i"] % 4 == CHANNELS.index(f["channel"])

    await asyncio.gather(*(check(ws, chans) for ws, chans in zip(clients, wanted, strict=True)))
    # Nothing extra arrives after the 1,000: no duplicates trickling in.
    extra = await asyncio.gather(*(_no_more(ws) for ws in clients[:20]))
    assert not any(extra)
    for ws in clients:
        await ws.close()


async def _no_more(ws: Any) -> bool:
    try:
        await asyncio.wait_for(ws.recv(), 0.3)
    except TimeoutError:
        return False
    return True


async def test_filter_on_message_attributes(server: Any) -> None:
    import json

    from websockets.asyncio.client import connect

    ws, _ = await subscribe(server.ws_url, ["odds:football:*"], filter={"bookmaker": "acme"})
    async with connect(server.ws_url + "/v1/ws") as pub:
        for i, book in enumerate(["acme", "other", "acme", "other"]):
            await pub.send(json.dumps({"op": "publish", "channel": "odds:football:epl",
                                       "data": {"i": i}, "attrs": {"bookmaker": book}}))
        for _ in range(4):
            await pub.recv()
    frames = await collect_messages(ws, 2)
    assert [f["data"]["i"] for f in frames] == [0, 2]
    assert not await _no_more(ws)
    await ws.close()
