"""The Python SDK against a real ``wagerwire serve``: resume across restarts, SSE, sync facade."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import httpx
import pytest
from sdkservers import sdk_target, wt_process  # noqa: F401  (wt_process: a fixture)
from wsutil import take, until_connected

from wagerwire.client import Backoff, Client, ClientMessage, Connected, stream
from wagerwire.core.tokens import decode_token

FAST = Backoff(initial=0.05, maximum=0.5)




def keyed(msgs: list[ClientMessage]) -> list[tuple[str, int]]:
    return [(m.channel, m.offset) for m in msgs]


@pytest.mark.parametrize("transport", ["ws", "sse", "wt"])
async def test_live_messages_in_order(request: pytest.FixtureRequest, transport: str) -> None:
    server, extra = sdk_target(request, transport)
    async with Client(server.url, transport=transport, backoff=FAST, **extra) as client:  # type: ignore[arg-type]
        sub = client.subscribe(["game:crash", "odds:football:*"])
        await until_connected(sub)
        for i in range(5):
            await client.publish("game:crash", {"i": i})
        await client.publish("odds:football:epl", {"price": 2.1})
        await client.publish("odds:tennis:atp", {"price": 1.1})  # not subscribed
        msgs = await take(sub, 6)
    assert keyed(msgs) == [("game:crash", n) for n in range(1, 6)] + [("odds:football:epl", 1)]
    assert msgs[0].data == {"i": 0} and all(m.source == "live" for m in msgs)
    # the SDK's end-to-end latency: one observation per live message, same host so < 5 s
    seen = client.latency.snapshot()[transport]
    assert seen["count"] == 6 and 0 <= seen["sum"] < 5 * 6


@pytest.mark.parametrize("transport", ["ws", "sse", "wt"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
async def test_server_restart_resumes_without_gap_or_duplicate(
    request: pytest.FixtureRequest, transport: str, sig: int
) -> None:
    server, extra = sdk_target(request, transport)
    async with Client(server.url, transport=transport, backoff=FAST, **extra) as client:  # type: ignore[arg-type]
        sub = client.subscribe(["game:crash", "game:dice"])
        await until_connected(sub)
        for i in range(4):
            await client.publish("game:crash" if i % 2 else "game:dice", i)
        first = await take(sub, 4)
        await asyncio.to_thread(server.signal, sig)
        await asyncio.to_thread(server.restart)
        for i in range(4, 10):
            await client.publish("game:crash" if i % 2 else "game:dice", i)
        rest = await take(sub, 6, timeout=60)
        assert client.counters.reconnects >= 1
    got = keyed(first + rest)
    assert sorted(got) == sorted(set(got))  # no duplicate
    for ch in ("game:crash", "game:dice"):
        assert [o for c, o in got if c == ch] == [1, 2, 3, 4, 5]  # no gap, in order


@pytest.mark.parametrize("transport", ["ws", "wt"])
async def test_fresh_store_means_new_epochs_and_a_rest_backfill(
    request: pytest.FixtureRequest, transport: str
) -> None:
    server, extra = sdk_target(request, transport)
    async with Client(server.url, transport=transport, backoff=FAST, **extra) as client:  # type: ignore[arg-type]
        sub = client.subscribe(["game:crash"])
        await until_connected(sub)
        await client.publish("game:crash", "old")
        (old,) = await take(sub, 1)
        await asyncio.to_thread(server.signal, signal.SIGKILL)
        server.db.unlink()  # history lost: the channel restarts in a new epoch
        await asyncio.to_thread(server.restart)
        for word in ("a", "b", "c"):
            await client.publish("game:crash", word)
        msgs = await take(sub, 3, timeout=60)
    assert [(m.offset, m.data) for m in msgs] == [(1, "a"), (2, "b"), (3, "c")]
    assert {m.epoch for m in msgs} != {old.epoch}
    token = sub.resume_token
    assert token is not None and decode_token(token)["game:crash"].epoch == msgs[0].epoch


@pytest.mark.parametrize("transport", ["ws", "wt"])
async def test_resume_token_round_trip(request: pytest.FixtureRequest, transport: str) -> None:
    server, extra = sdk_target(request, transport)
    async with Client(server.url, transport=transport, backoff=FAST, **extra) as client:  # type: ignore[arg-type]
        sub = client.subscribe(["game:crash"])
        await until_connected(sub)
        for i in range(6):
            await client.publish("game:crash", i)
        await take(sub, 3)
        token = sub.resume_token
        await sub.aclose()
        again = client.subscribe(["game:crash"], since=token)
        msgs = await take(again, 3)
    assert [m.offset for m in msgs] == [4, 5, 6]
    assert all(m.source == "replay" for m in msgs)


async def test_history_and_idempotent_publish(server: Any) -> None:
    async with Client(server.url) as client:
        a = await client.publish("game:crash", {"x": 1}, idempotency_key="once")
        b = await client.publish("game:crash", {"x": 1}, idempotency_key="once")
        page = await client.history("game:crash")
    assert a.offset == b.offset and b.duplicate and not a.duplicate
    assert [m.offset for m in page.messages] == [a.offset]


def test_sync_stream(server: Any) -> None:
    with stream(server.url, ["game:crash"], backoff=FAST) as messages:
        for _ in range(100):
            if isinstance(messages.state, Connected):
                break
            time.sleep(0.05)
        for i in range(3):
            httpx.post(server.url + "/v1/publish", json={"channel": "game:crash", "data": i})
        got = [next(messages) for _ in range(3)]
    assert [m.data for m in got] == [0, 1, 2]
    assert messages.resume_token is not None
