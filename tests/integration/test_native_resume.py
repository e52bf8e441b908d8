"""Resume: WebSocket tokens, SSE Last-Event-ID, SIGKILL + restart on the same SQLite file."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

import httpx
from wsutil import collect_messages, join_tokens, publish_many, subscribe

from wagerwire.wire.sse_parser import SseMessage, SseParser


async def test_ws_drop_and_resume_gets_exactly_what_was_missed(server: Any) -> None:
    chans = ["r:a", "r:b"]
    await publish_many(server.ws_url, [(chans[i % 2], {"i": i}) for i in range(20)])
    ws, replies = await subscribe(server.ws_url, chans)
    assert {r["offset"] for r in replies} == {10}
    await publish_many(server.ws_url, [(chans[i % 2], {"i": i}) for i in range(20, 40)])
    seen = await collect_messages(ws, 12)  # read part of it, then drop the connection
    await ws.close()
    token = join_tokens(seen)
    last = {c: max(m["offset"] for m in seen if m["channel"] == c) for c in chans}
    await publish_many(server.ws_url, [(chans[i % 2], {"i": i}) for i in range(40, 60)])
    ws2, replies2 = await subscribe(server.ws_url, chans, since=token)
    assert all(r["recovered"] for r in replies2)
    missed = 20 - (last["r:a"] - 10) + 20 - (last["r:b"] - 10)
    got = await collect_messages(ws2, missed)
    for c in chans:
        offsets = [m["offset"] for m in got if m["channel"] == c]
        assert offsets == list(range(last[c] + 1, 31)), c
    # and it is live afterwards, with no duplicate in between
    await publish_many(server.ws_url, [("r:a", {"live": True})])
    (live,) = await collect_messages(ws2, 1)
    assert (live["channel"], live["offset"]) == ("r:a", 31)
    await ws2.close()


async def test_resume_under_concurrent_publishing_has_no_gap_or_duplicate(server: Any) -> None:
    await publish_many(server.ws_url, [("r:live", {"i": i}) for i in range(50)])
    pub_task = asyncio.create_task(
        publish_many(server.ws_url, [("r:live", {"i": i}) for i in range(50, 550)])
    )
    await asyncio.sleep(0.01)
    token = join_tokens([{"channel": "r:live", "token": _token("r:live", server, 25)}])
    ws, replies = await subscribe(server.ws_url, ["r:live"], since=token)
    assert replies[0]["recovered"] is True
    await pub_task
    got = await collect_messages(ws, 525, timeout=60)
    assert [m["offset"] for m in got] == list(range(26, 551))
    await ws.close()


def _token(channel: str, server: Any, offset: int) -> str:
    from wagerwire.core.tokens import encode_position

    page = httpx.get(f"{server.url}/v1/channels/{channel}/messages?limit=1").json()
    return encode_position(channel, page["epoch"], offset)


async def _sse_events(
    url: str, count: int, headers: dict[str, str] | None = None,
    ready: tuple[asyncio.Event, int] | None = None,
) -> tuple[list[SseMessage], list[SseMessage]]:
    """Read ``count`` data events; returns (data events, subscribed events). ``ready``: an
    event set once that many ``subscribed`` events came (every channel is live)."""
    parser = SseParser()
    data: list[SseMessage] = []
    control: list[SseMessage] = []
    async with httpx.AsyncClient(timeout=30) as client:
        async with client.stream("GET", url, headers=headers) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            async for chunk in resp.aiter_bytes():
                for ev in parser.feed(chunk):
                    (data if ev.event == "message" else control).append(ev)
                    if ready is not None and len(control) == ready[1]:
                        ready[0].set()
                    if len(data) == count:
                        return data, control
    raise AssertionError("stream ended early")


async def test_sse_reconnect_with_last_event_id(server: Any) -> None:
    chans = ["s:a", "s:b"]
    url = f"{server.url}/v1/sse?channels={','.join(chans)}"
    live = asyncio.Event()
    first_task = asyncio.create_task(_sse_events(url, 10, ready=(live, len(chans))))
    await asyncio.wait_for(live.wait(), 10)  # no `since`: what came before is not replayed
    await publish_many(server.ws_url, [(chans[i % 2], {"i": i}) for i in range(30)])
    first, control = await first_task
    assert [json.loads(e.data)["op"] for e in control] == ["subscribed", "subscribed"]
    last_id = first[-1].id
    assert [json.loads(e.data)["data"]["i"] for e in first] == list(range(10))
    second, _ = await _sse_events(url, 20, headers={"Last-Event-ID": last_id})
    frames = [json.loads(e.data) for e in second]
    # order is per channel (replay goes channel by channel), and nothing is missing
    for parity, channel in enumerate(chans):
        got = [f["data"]["i"] for f in frames if f["channel"] == channel]
        assert got == list(range(10 + parity, 30, 2)), channel


async def test_sigkill_restart_same_sqlite_resume_has_no_gap_and_same_epoch(server: Any) -> None:
    acks = await publish_many(server.ws_url, [("k:a", {"i": i}) for i in range(100)])
    epoch = acks[0]["epoch"]
    assert [a["offset"] for a in acks] == list(range(1, 101))
    ws, _ = await subscribe(server.ws_url, ["k:a"], since=_token("k:a", server, 40))
    seen = await collect_messages(ws, 60)
    assert seen[-1]["offset"] == 100
    token = join_tokens(seen[:30])  # as if the client had processed up to offset 70
    server.kill()  # SIGKILL: no shutdown, nothing flushed beyond what was acknowledged
    server.restart()
    acks2 = await publish_many(server.ws_url, [("k:a", {"i": i}) for i in range(100, 110)])
    assert [a["offset"] for a in acks2] == list(range(101, 111))
    assert {a["epoch"] for a in acks2} == {epoch}
    ws2, replies = await subscribe(server.ws_url, ["k:a"], since=token)
    assert replies[0]["epoch"] == epoch and replies[0]["recovered"] is True
    got = await collect_messages(ws2, 40)
    assert [m["offset"] for m in got] == list(range(71, 111))
    assert [m["data"]["i"] for m in got] == list(range(70, 110))
    await ws2.close()


async def test_sigterm_closes_with_1001_and_exit_0(server: Any) -> None:
    from websockets.exceptions import ConnectionClosed

    ws, _ = await subscribe(server.ws_url, ["g:a"])
    await publish_many(server.ws_url, [("g:a", {"i": 1})])
    code = await asyncio.to_thread(server.signal, signal.SIGTERM)
    assert code == 0
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 5)
    except ConnectionClosed as exc:
        assert exc.rcvd is not None and exc.rcvd.code == 1001
        assert "resume" in exc.rcvd.reason


async def test_pattern_resume_over_three_channels_under_publishing_has_no_gap(
    server: Any,
) -> None:
    """While one channel of a pattern is replayed, the others keep receiving: nothing is lost
    between a channel's replay and the pattern going live."""
    chans = ["pr:a", "pr:b", "pr:c"]
    await publish_many(server.ws_url, [(chans[i % 3], {"i": i}) for i in range(6000)])
    token = ".".join(_token(c, server, 10) for c in chans)

    async def trickle() -> None:  # live traffic on every channel throughout the replay
        for n in range(60):
            await publish_many(server.ws_url, [(c, {"live": n}) for c in chans])
            await asyncio.sleep(0.01)

    pub = asyncio.create_task(trickle())
    await asyncio.sleep(0.05)
    ws, replies = await subscribe(server.ws_url, ["pr:*"], since=token)
    assert replies[0]["recovered"] is True
    await pub
    got = await collect_messages(ws, 3 * (2060 - 10), timeout=60)
    for channel in chans:
        offsets = [m["offset"] for m in got if m["channel"] == channel]
        assert offsets == list(range(11, 2061)), (channel, len(offsets))
    await ws.close()
