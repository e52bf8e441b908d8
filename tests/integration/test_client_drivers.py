"""The asyncio client end to end against an in-memory fake hub (WS on loopback, REST/SSE mocked)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from functools import partial
from typing import Any

import httpx
import orjson
import pytest
import wsutil
from wagerwire_fakehub import FakeHub

from wagerwire.client import (
    AuthError,
    Backoff,
    Client,
    ClientMessage,
    Closed,
    Connected,
    ForbiddenError,
    InvalidChannelError,
    State,
    stream,
)
from wagerwire.client.client import split_url
from wagerwire.core.messages import Position
from wagerwire.core.tokens import decode_token

FAST = Backoff(initial=0.01, maximum=0.05)
# The fake hub answers at once: wait 5 s, not the real server's 20.
take = partial(wsutil.take, timeout=5.0)
until_connected = partial(wsutil.until_connected, timeout=5.0)


@pytest.fixture
async def hub() -> AsyncIterator[FakeHub]:
    h = FakeHub()
    async with h.running():
        yield h


@pytest.fixture
async def http(hub: FakeHub) -> AsyncIterator[httpx.AsyncClient]:
    client = hub.http()
    yield client
    await client.aclose()


def make_client(hub: FakeHub, http: httpx.AsyncClient, **kwargs: Any) -> Client:
    kwargs.setdefault("backoff", FAST)
    return Client(hub.url, http=http, **kwargs)




def offsets(msgs: list[ClientMessage]) -> list[int]:
    return [m.offset for m in msgs]


# -- WebSocket ---------------------------------------------------------------------------------


async def test_split_url_accepts_every_form() -> None:
    assert split_url("http://h:1") == ("http://h:1", "ws://h:1/v1/ws")
    assert split_url("wss://h/base/v1/ws") == ("https://h/base", "wss://h/base/v1/ws")
    assert split_url("https://h/v1/") == ("https://h", "wss://h/v1/ws")
    with pytest.raises(ValueError):
        split_url("ftp://h")


async def test_subscribe_and_receive_in_order(hub: FakeHub, http: httpx.AsyncClient) -> None:
    async with make_client(hub, http, key="k1") as client:
        sub = client.subscribe(["game:crash"])
        await until_connected(sub)
        for n in range(5):
            await hub.publish("game:crash", {"n": n})
        msgs = await take(sub, 5)
    assert offsets(msgs) == [1, 2, 3, 4, 5]
    assert msgs[0].data == {"n": 0} and msgs[0].source == "live" and msgs[0].epoch == "e1"
    assert hub.subscribe_ops == [{"op": "subscribe", "channels": ["game:crash"]}]


async def test_resume_after_going_away_has_no_gap_and_no_duplicate(
    hub: FakeHub, http: httpx.AsyncClient
) -> None:
    async with make_client(hub, http) as client:
        sub = client.subscribe(["game:crash", "game:dice"])
        await until_connected(sub)
        await hub.publish("game:crash", 1)
        await hub.publish("game:crash", 2)
        assert offsets(await take(sub, 2)) == [1, 2]
        await hub.kick(1001)
        for n in (3, 4, 5):
            await hub.publish("game:crash", n)  # while nobody listens
        msgs = await take(sub, 3)
        await hub.wait_for_subscribers()
        await hub.publish("game:crash", 6)
        msgs += await take(sub, 1)
    assert offsets(msgs) == [3, 4, 5, 6]
    assert [m.source for m in msgs] == ["replay", "replay", "replay", "live"]
    since = hub.subscribe_ops[-1]["since"]
    assert decode_token(since)["game:crash"].offset == 2
    assert client.counters.reconnects == 1
    assert client.counters.messages_recovered == 3


async def test_recovered_false_backfills_over_rest(hub: FakeHub, http: httpx.AsyncClient) -> None:
    async with make_client(hub, http, page_size=2) as client:
        sub = client.subscribe(["game:crash"])
        await until_connected(sub)
        await hub.publish("game:crash", 1)
        assert offsets(await take(sub, 1)) == [1]
        await hub.kick(4000)  # slow consumer
        for n in range(2, 8):
            await hub.publish("game:crash", n)
        hub.channel("game:crash").replay_from = 5  # the hot history no longer reaches back
        msgs = await take(sub, 6)
        await hub.publish("game:crash", 8)
        msgs += await take(sub, 1)
    assert offsets(msgs) == [2, 3, 4, 5, 6, 7, 8]
    assert {m.source for m in msgs[:6]} == {"backfill"}
    assert client.counters.gaps_backfilled == 1
    paths = [r.url.path for r in hub.rest_requests]
    assert paths and all(p == "/v1/channels/game:crash/messages" for p in paths)
    assert len(paths) >= 3  # page_size 2 over 6 messages


async def test_epoch_change_backfills_the_new_epoch(hub: FakeHub, http: httpx.AsyncClient) -> None:
    async with make_client(hub, http) as client:
        sub = client.subscribe(["game:crash"])
        await until_connected(sub)
        await hub.publish("game:crash", "a")
        await take(sub, 1)
        await hub.kick(1011)
        hub.restart_epoch("game:crash", "e2")
        await hub.publish("game:crash", "b")
        await hub.publish("game:crash", "c")
        msgs = await take(sub, 2)
    assert [(m.epoch, m.offset, m.data) for m in msgs] == [("e2", 1, "b"), ("e2", 2, "c")]
    assert sub.positions["game:crash"].epoch == "e2"


async def test_backfill_failure_reports_a_gap_and_continues(
    hub: FakeHub, http: httpx.AsyncClient
) -> None:
    async with make_client(hub, http) as client:
        sub = client.subscribe(["game:crash"])
        await until_connected(sub)
        await hub.publish("game:crash", 1)
        await take(sub, 1)
        await hub.kick(1001)
        for n in range(2, 5):
            await hub.publish("game:crash", n)
        hub.channel("game:crash").replay_from = 4
        hub.history_fails = 10
        await hub.wait_for_subscribers()
        await until_connected(sub)
        await hub.publish("game:crash", 5)
        msgs = await take(sub, 1)
    assert offsets(msgs) == [5]
    assert client.counters.gaps_unrecovered == 1
    (gap,) = sub.gaps
    assert (gap.after_offset, gap.before_offset) == (1, 5)


async def test_pattern_subscription(hub: FakeHub, http: httpx.AsyncClient) -> None:
    async with make_client(hub, http) as client:
        sub = client.subscribe(["odds:football:*"], filter={"bookmaker": "x"})
        await until_connected(sub)
        await hub.publish("odds:football:epl", 1)
        await hub.publish("odds:tennis:atp", 1)
        await hub.publish("odds:football:liga", 1)
        msgs = await take(sub, 2)
    assert [m.channel for m in msgs] == ["odds:football:epl", "odds:football:liga"]
    assert hub.subscribe_ops[0]["filter"] == {"bookmaker": "x"}


@pytest.mark.parametrize(("status", "error"), [(401, AuthError), (403, ForbiddenError)])
async def test_refused_handshake_is_fatal(
    hub: FakeHub, http: httpx.AsyncClient, status: int, error: type[Exception]
) -> None:
    hub.reject_status = status
    async with make_client(hub, http) as client:
        sub = client.subscribe(["game:crash"])
        with pytest.raises(error):
            await take(sub, 1)
        assert isinstance(sub.state, Closed) and isinstance(sub.error, error)
    assert hub.ws_handshakes == 1


@pytest.mark.parametrize(("code", "error"), [(4001, AuthError), (4003, ForbiddenError)])
async def test_fatal_close_codes_end_the_iteration(
    hub: FakeHub, http: httpx.AsyncClient, code: int, error: type[Exception]
) -> None:
    async with make_client(hub, http) as client:
        sub = client.subscribe(["game:crash"])
        await until_connected(sub)
        await hub.kick(code, "nope")
        with pytest.raises(error):
            await take(sub, 1)
    assert hub.ws_handshakes == 1


async def test_unauthorized_refreshes_the_key_once(hub: FakeHub, http: httpx.AsyncClient) -> None:
    keys = iter(["fresh-1", "fresh-2"])

    async def refresh() -> str:
        return next(keys)

    async with make_client(hub, http, key="old", refresh_key=refresh) as client:
        sub = client.subscribe(["game:crash"])
        await until_connected(sub)
        await hub.kick(4001)
        await hub.wait_for_subscribers()
        await until_connected(sub)
        assert client.auth.key == "fresh-1"
        assert hub.ws_handshakes == 2


async def test_silent_link_is_detected_by_the_watchdog(
    hub: FakeHub, http: httpx.AsyncClient
) -> None:
    hub.silent = True
    async with make_client(hub, http, heartbeat_interval=0.05) as client:
        sub = client.subscribe(["game:crash"])
        await until_connected(sub)
        for _ in range(300):
            if client.counters.reconnects >= 1 and hub.ws_handshakes >= 2:
                break
            await asyncio.sleep(0.01)
    assert client.counters.reconnects >= 1
    assert hub.ws_handshakes >= 2


async def test_states_stream(hub: FakeHub, http: httpx.AsyncClient) -> None:
    seen: list[State] = []
    async with make_client(hub, http) as client:

        async def watch() -> None:
            async for state in client.states():
                seen.append(state)

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0)
        sub = client.subscribe(["game:crash"])
        await until_connected(sub)
    await asyncio.wait_for(watcher, 5)
    names = [type(s).__name__ for s in seen]
    assert names == ["Connecting", "Connected", "Closed"]


async def test_resume_token_counts_only_taken_messages(
    hub: FakeHub, http: httpx.AsyncClient
) -> None:
    async with make_client(hub, http) as client:
        sub = client.subscribe(["game:crash"])
        await until_connected(sub)
        for n in range(5):
            await hub.publish("game:crash", n)
        await take(sub, 2)
        while len(sub._queue) < 3:  # the rest are queued, not yet taken
            await asyncio.sleep(0.005)
        token = sub.resume_token
        assert token is not None
        assert decode_token(token)["game:crash"].offset == 2
        again = client.subscribe(["game:crash"], since=token)
        assert offsets(await take(again, 3)) == [3, 4, 5]


async def test_unsubscribe_and_local_validation(hub: FakeHub, http: httpx.AsyncClient) -> None:
    async with make_client(hub, http) as client:
        with pytest.raises(InvalidChannelError):
            client.subscribe(["Not Valid"])
        sub = client.subscribe(["game:crash", "game:dice"])
        await until_connected(sub)
        await sub.unsubscribe(["game:dice"])
        await asyncio.sleep(0.05)
        await hub.publish("game:dice", 1)
        await hub.publish("game:crash", 1)
        msgs = await take(sub, 1)
    assert [m.channel for m in msgs] == ["game:crash"]


async def test_publish_and_history(hub: FakeHub, http: httpx.AsyncClient) -> None:
    async with make_client(hub, http, key="pub") as client:
        first = await client.publish("game:crash", {"x": 1}, idempotency_key="k")
        again = await client.publish("game:crash", {"x": 1}, idempotency_key="k")
        page = await client.history("game:crash")
    assert (first.offset, first.duplicate, again.offset, again.duplicate) == (1, False, 1, True)
    assert [m.data for m in page.messages] == [{"x": 1}]
    assert page.next is None
    assert hub.rest_requests[0].headers["authorization"] == "Bearer pub"
    assert orjson.loads(hub.rest_requests[0].content)["idempotency_key"] == "k"


async def test_publish_retries_with_an_idempotency_key(
    hub: FakeHub, http: httpx.AsyncClient
) -> None:
    calls = 0

    async def flaky(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return httpx.Response(503, json={"error": {"code": "unavailable", "message": "x"}})
        return httpx.Response(200, json={"channel": "c", "epoch": "e1", "offset": 7})

    async with httpx.AsyncClient(transport=httpx.MockTransport(flaky), base_url=hub.url) as h:
        client = Client(hub.url, http=h)
        result = await client.publish("c", 1, idempotency_key="once")
        assert result.offset == 7 and calls == 2
        calls = 0
        with pytest.raises(Exception, match="x"):
            await client.publish("c", 1)  # no key: no retry
        assert calls == 1
        await client.aclose()


# -- SSE ---------------------------------------------------------------------------------------


async def test_sse_subscribe_resume_and_heartbeats(hub: FakeHub, http: httpx.AsyncClient) -> None:
    async with make_client(hub, http, transport="sse", key="tok", heartbeat_interval=0.2) as client:
        sub = client.subscribe(["game:crash"], filter={"game": "crash"})
        await until_connected(sub)
        await hub.publish("game:crash", 1)
        await hub.publish("game:crash", 2)
        assert offsets(await take(sub, 2)) == [1, 2]
        for _ in range(5):  # comments alone keep a quiet stream alive
            await hub.sse_comment()
            await asyncio.sleep(0.1)
        assert client.counters.reconnects == 0
        await hub.kick()
        await hub.publish("game:crash", 3)
        msgs = await take(sub, 1)
    assert offsets(msgs) == [3]
    first, last = hub.sse_requests[0].url.params, hub.sse_requests[-1].url.params
    assert first["channels"] == "game:crash" and "token" not in first  # never in the URL
    assert hub.sse_requests[0].headers["authorization"] == "Bearer tok"
    assert orjson.loads(first["filter"]) == {"game": "crash"}
    assert "since" not in first
    assert decode_token(last["since"])["game:crash"].offset == 2
    assert client.counters.reconnects >= 1


async def test_sse_refused_is_fatal(hub: FakeHub, http: httpx.AsyncClient) -> None:
    hub.reject_status = 401
    async with make_client(hub, http, transport="sse") as client:
        sub = client.subscribe(["game:crash"])
        with pytest.raises(AuthError):
            await take(sub, 1)


# -- sync facade -------------------------------------------------------------------------------


@pytest.fixture
def hub_thread() -> Iterator[tuple[FakeHub, asyncio.AbstractEventLoop]]:
    """A fake hub on its own loop, so a blocking iterator can run in the test's thread."""
    hub = FakeHub()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop = asyncio.Event()

    async def main() -> None:
        async with hub.running():
            started.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    started.wait(5)
    yield hub, loop
    loop.call_soon_threadsafe(stop.set)
    thread.join(5)
    loop.close()


def test_sync_stream(hub_thread: tuple[FakeHub, asyncio.AbstractEventLoop]) -> None:
    hub, loop = hub_thread

    def publish(n: int) -> None:
        asyncio.run_coroutine_threadsafe(hub.publish("game:crash", n), loop).result(5)

    def wait_subscribed() -> None:
        asyncio.run_coroutine_threadsafe(
            asyncio.wait_for(hub.wait_for_subscribers(), 5), loop
        ).result(6)

    with stream(hub.url, ["game:crash"], backoff=FAST) as messages:
        wait_subscribed()
        for n in range(3):
            publish(n)
        got = [next(messages) for _ in range(3)]
        assert [m.offset for m in got] == [1, 2, 3]
        assert isinstance(messages.state, Connected)
        token = messages.resume_token
    assert token is not None and decode_token(token)["game:crash"].offset == 3
    assert messages.resume_token == token  # still readable after close
    assert list(messages) == []

    with pytest.raises(InvalidChannelError):
        stream(hub.url, ["NOPE"])


async def test_messages_missed_on_a_channel_that_was_empty_are_backfilled(
    hub: FakeHub, http: httpx.AsyncClient
) -> None:
    slow = Backoff(initial=0.2, maximum=0.2)
    async with make_client(hub, http, backoff=slow, rand=lambda: 0.999) as client:
        sub = client.subscribe(["game:crash"])
        await until_connected(sub)
        assert sub.resume_token is None  # empty channel: no epoch to resume from
        await hub.kick(1001)
        for n in range(3):
            await hub.publish("game:crash", n)  # before the client is back
        msgs = await take(sub, 3)
    assert [(m.offset, m.source) for m in msgs] == [
        (1, "backfill"),
        (2, "backfill"),
        (3, "backfill"),
    ]


# -- stream tokens (issue 4) --------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["ws", "sse"])
async def test_an_api_key_streams_with_a_stream_token(
    hub: FakeHub, http: httpx.AsyncClient, transport: str
) -> None:
    hub.tokens, hub.keys, hub.accept = "issue", {"ww_k_secret"}, set()
    async with make_client(hub, http, key="ww_k_secret", transport=transport) as client:
        sub = client.subscribe(["game:crash"])
        await until_connected(sub)
        await client.publish("game:crash", 1)
        assert offsets(await take(sub, 1)) == [1]
        await hub.kick()  # a reconnect soon after reuses the token: no second exchange
        await client.publish("game:crash", 2)
        assert offsets(await take(sub, 1)) == [2]
        assert client.auth.tokens_fetched == 1 and hub.tokens_issued == ["wwt1.fake.1"]
    used = (
        hub.ws_auth if transport == "ws" else [r.headers["authorization"] for r in hub.sse_requests]
    )
    assert used == ["Bearer wwt1.fake.1"] * 2
    publishes = [r for r in hub.rest_requests if r.url.path == "/v1/publish"]
    assert all(r.headers["authorization"] == "Bearer ww_k_secret" for r in publishes)


async def test_an_old_token_is_replaced_before_connecting(
    hub: FakeHub, http: httpx.AsyncClient
) -> None:
    hub.tokens, hub.keys, hub.accept, hub.token_ttl = "issue", {"ww_k"}, set(), 1
    async with make_client(hub, http, key="ww_k") as client:
        sub = client.subscribe(["game:crash"])
        await until_connected(sub)
        await asyncio.sleep(0.8)  # past 3/4 of the 1 s lifetime
        hub.accept.discard("wwt1.fake.1")  # and the server no longer takes it
        await hub.kick()
        await hub.wait_for_subscribers()
        await until_connected(sub)
    assert hub.ws_auth == ["Bearer wwt1.fake.1", "Bearer wwt1.fake.2"]  # no refused attempt


async def test_a_refused_token_is_refreshed_once(hub: FakeHub, http: httpx.AsyncClient) -> None:
    hub.tokens, hub.keys, hub.accept = "issue", {"ww_k"}, set()
    async with make_client(hub, http, key="ww_k") as client:
        sub = client.subscribe(["game:crash"])
        await until_connected(sub)
        hub.accept.clear()  # e.g. the server lost its signing keys: every token is refused
        await hub.kick()
        await hub.wait_for_subscribers()
        await until_connected(sub)
        assert client.counters.reconnects == 2  # refused once (401), then a fresh token
    assert hub.ws_auth == ["Bearer wwt1.fake.1", "Bearer wwt1.fake.1", "Bearer wwt1.fake.2"]


async def test_a_bad_key_is_an_auth_error_without_any_connection(
    hub: FakeHub, http: httpx.AsyncClient
) -> None:
    hub.tokens, hub.keys = "issue", {"ww_good"}
    async with make_client(hub, http, key="ww_bad") as client:
        sub = client.subscribe(["game:crash"])
        with pytest.raises(AuthError):
            await take(sub, 1)
        await asyncio.sleep(0.2)  # no retry loop
    assert hub.ws_handshakes == 0
    assert [r.url.path for r in hub.rest_requests] == ["/v1/tokens"]


async def test_a_revoked_key_ends_the_stream_after_one_refresh(
    hub: FakeHub, http: httpx.AsyncClient
) -> None:
    hub.tokens, hub.keys, hub.accept = "issue", {"ww_k"}, set()
    async with make_client(hub, http, key="ww_k") as client:
        sub = client.subscribe(["game:crash"])
        await until_connected(sub)
        hub.keys.clear()
        await hub.kick(4001, "API key revoked")
        with pytest.raises(AuthError):
            await take(sub, 1)
        await asyncio.sleep(0.2)
    assert hub.ws_handshakes == 1
    assert [r.url.path for r in hub.rest_requests] == ["/v1/tokens"] * 2


async def test_a_server_without_keys_gets_the_key_itself(
    hub: FakeHub, http: httpx.AsyncClient
) -> None:
    hub.tokens = "unconfigured"
    async with make_client(hub, http, key="ww_k") as client:
        sub = client.subscribe(["game:crash"])
        await until_connected(sub)
        await hub.kick()
        await hub.wait_for_subscribers()
        await until_connected(sub)
    assert hub.ws_auth == ["Bearer ww_k"] * 2
    assert [r.url.path for r in hub.rest_requests] == ["/v1/tokens"]  # asked once only


async def test_a_forbidden_channel_is_a_forbidden_error_without_retry(
    hub: FakeHub, http: httpx.AsyncClient
) -> None:
    hub.forbidden = {"game:slot"}
    async with make_client(hub, http) as client:
        sub = client.subscribe(["game:crash", "game:slot"])
        with pytest.raises(ForbiddenError, match="game:slot"):
            await take(sub, 1)
        await asyncio.sleep(0.2)
    assert hub.ws_handshakes == 1 and len(hub.subscribe_ops) == 1


async def test_start_token_points_at_offset_zero_of_existing_channels(
    hub: FakeHub, http: httpx.AsyncClient
) -> None:
    async def channels(request: httpx.Request) -> httpx.Response:
        rows = [
            {"name": n, "epoch": c.epoch, "first_offset": 1, "last_offset": c.last}
            for n, c in hub.channels.items()
        ]
        return httpx.Response(200, json={"channels": rows})

    for name in ("game:crash", "odds:football:epl", "odds:tennis:atp"):
        await hub.publish(name, 1)
    mock = httpx.AsyncClient(transport=httpx.MockTransport(channels), base_url=hub.url)
    async with Client(hub.url, http=mock) as client:
        token = await client.start_token(["game:crash", "odds:football:*", "game:none"])
    await mock.aclose()
    assert token is not None
    assert decode_token(token) == {
        "game:crash": Position("e1", 0),
        "odds:football:epl": Position("e1", 0),
    }
