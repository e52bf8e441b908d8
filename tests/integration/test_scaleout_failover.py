"""Scale-out failures of the backing services: a Redis failover under Sentinel, a PostgreSQL
restart, and two writers of one channel (what a failover can cause) fenced by the store.

The nodes are real ``wagerwire serve`` processes; Redis (a primary, a replica and three
Sentinels) and PostgreSQL are real servers on loopback (``tests/servers.py``).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_scaleout import CHANNELS, Subscriber, check_consistent, dump, finish

from servers import (
    PostgresServer,
    RedisServer,
    SentinelGroup,
    own_postgres,
    postgres_server,
    redis_bin,
    redis_server,
)
from wagerwire.brokers.redis import RedisBroker
from wagerwire.brokers.redis_limits import RedisLimits
from wagerwire.core.messages import Message
from wagerwire.errors import StoreUnavailable, Unavailable
from wagerwire.stores.postgres import PostgresStore

__all__ = ["own_postgres", "postgres_server", "redis_server"]


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelGroup]:
    """A primary, a replica and three Sentinels (quorum 2, down after 1 s), for one test."""
    if redis_bin() is None:
        pytest.skip("redis-server is not installed (make system-deps)")
    group = SentinelGroup(tmp_path / "redis", count=3, down_after_ms=1000)
    try:
        yield group.start()
    finally:
        group.stop()


class Publishers:
    """HTTP publishers on several nodes, each retrying every publish until acknowledged
    (with its idempotency key, so a retry never stores a message twice)."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.acked: dict[str, dict[str, Any]] = {}
        self.refusals: dict[int, int] = defaultdict(int)  # HTTP status (0: no answer) -> n
        self.codes: set[str] = set()

    async def run(self, node: int, count: int, pace: float = 0.005) -> None:
        async with httpx.AsyncClient(base_url=self.urls[node], timeout=10) as client:
            for i in range(count):
                key = f"n{node}-{i}"
                body = {"channel": CHANNELS[i % 3], "data": {"k": key}, "idempotency_key": key}
                while True:
                    try:
                        resp = await client.post("/v1/publish", json=body)
                    except httpx.HTTPError:
                        resp = None
                    if resp is not None and resp.status_code == 200:
                        self.acked[key] = resp.json()
                        break
                    assert resp is None or resp.status_code == 503, resp.text
                    self.refusals[0 if resp is None else resp.status_code] += 1
                    if resp is not None:
                        self.codes.add(resp.json()["error"]["code"])
                    await asyncio.sleep(0.05)
                await asyncio.sleep(pace)

    def totals(self) -> dict[str, int]:
        last: dict[str, int] = defaultdict(int)
        for ack in self.acked.values():
            last[ack["channel"]] = max(last[ack["channel"]], ack["offset"])
        return dict(last)

    def check_delivered(self, subs: list[Subscriber]) -> None:
        """Every acknowledged message reached the subscribers at its acknowledged offset,
        and no message was delivered under two offsets."""
        delivered = {(m["channel"], m["offset"]): m["data"]["k"] for s in subs for m in s.got}
        for key, ack in self.acked.items():
            assert delivered[(ack["channel"], ack["offset"])] == key, (key, ack)
        keys = list(delivered.values())
        assert len(keys) == len(set(keys)), "a message was stored under two offsets"


async def mid_stream(pubs: Publishers, acked: int = 30, timeout: float = 30) -> None:
    """Wait until ``acked`` publishes were acknowledged (the machine may be slow to start)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(pubs.acked) < acked:
        assert loop.time() < deadline, "the publishers did not start"
        await asyncio.sleep(0.02)


async def metric(url: str, name: str) -> float:
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(url + "/metrics")).text
    found = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    assert found is not None, f"{name} not in /metrics"
    return float(found[1])


async def wait_ready(urls: list[str], timeout: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with httpx.AsyncClient(timeout=2) as client:
        for url in urls:
            while True:
                try:
                    if (await client.get(url + "/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert loop.time() < deadline, f"{url} not ready again"
                await asyncio.sleep(0.1)


@pytest.mark.timeout(240)
async def test_sentinel_failover_mid_stream_loses_no_acknowledged_message(
    server_factory: Any, sentinels: SentinelGroup, postgres_server: PostgresServer,
    request: pytest.FixtureRequest,
) -> None:
    """kill -9 of the primary while two nodes publish and 20 subscribers listen: Sentinel
    promotes the replica, the nodes follow it, every acknowledged message reaches every
    subscriber in order at its acknowledged offset (what the asynchronous replica missed is
    filled from PostgreSQL), and no offset carries two messages."""
    args = ["--broker", f"{sentinels.url}?prefix=ww",
            "--store", f"{postgres_server.url()}?schema=f{uuid.uuid4().hex[:8]}"]
    nodes = [server_factory(args) for _ in range(2)]
    request.addfinalizer(lambda: dump(nodes))
    urls = [n.url for n in nodes]
    subs = [Subscriber([n.ws_url for n in nodes], i % 2, [CHANNELS[i % 3]]) for i in range(20)]
    totals: dict[str, int] | None = None
    tasks = [asyncio.create_task(s.run(lambda: totals)) for s in subs]
    await asyncio.wait_for(asyncio.gather(*(s.ready.wait() for s in subs)), 30)
    assert sentinels.primary_port() == sentinels.primary.port

    pubs = Publishers(urls)
    running = [asyncio.create_task(pubs.run(n, 250)) for n in (0, 1)]
    await mid_stream(pubs)
    acked_before = len(pubs.acked)
    await asyncio.to_thread(sentinels.kill_primary)
    await asyncio.to_thread(sentinels.wait_promoted, 60)
    await asyncio.gather(*running)
    print(f"acked before the kill {acked_before}, refusals {dict(pubs.refusals)}, "
          f"codes {pubs.codes}, totals {pubs.totals()}")
    assert 0 < acked_before < 500, "the primary was not killed mid-stream"
    assert sum(pubs.refusals.values()) > 0, "no publish was refused during the failover"
    await wait_ready(urls)
    for url in urls:  # each node followed the promoted replica, and says so
        assert await metric(url, "wagerwire_broker_failovers_total") >= 1
        assert await metric(url, "wagerwire_broker_up") == 1
    totals = pubs.totals()
    await finish(tasks, subs, totals, 90)
    check_consistent(subs, totals)
    pubs.check_delivered(subs)


@pytest.mark.timeout(240)
async def test_postgres_restart_mid_stream_refuses_then_resumes(
    server_factory: Any, redis_server: RedisServer, own_postgres: PostgresServer,
    request: pytest.FixtureRequest,
) -> None:
    """PostgreSQL stopped for two seconds mid-stream: publishes are refused with 503
    ``store_unavailable`` (nothing acknowledged), the nodes resume by themselves, and every
    acknowledged message reaches every subscriber in order."""
    args = ["--broker", f"{redis_server.url}?prefix=p{uuid.uuid4().hex[:8]}",
            "--store", f"{own_postgres.url()}?schema=r{uuid.uuid4().hex[:8]}"]
    nodes = [server_factory(args) for _ in range(2)]
    request.addfinalizer(lambda: dump(nodes))
    urls = [n.url for n in nodes]
    subs = [Subscriber([n.ws_url for n in nodes], i % 2, [CHANNELS[i % 3]]) for i in range(20)]
    totals: dict[str, int] | None = None
    tasks = [asyncio.create_task(s.run(lambda: totals)) for s in subs]
    await asyncio.wait_for(asyncio.gather(*(s.ready.wait() for s in subs)), 30)

    pubs = Publishers(urls)
    running = [asyncio.create_task(pubs.run(n, 250)) for n in (0, 1)]
    await mid_stream(pubs)
    await asyncio.to_thread(own_postgres.stop)
    store_down = False
    for _ in range(100):
        try:
            store_down = await metric(urls[0], "wagerwire_store_up") == 0
        except httpx.HTTPError:
            pass
        if store_down:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(2.0)
    await asyncio.to_thread(own_postgres.start)
    await asyncio.gather(*running)
    print(f"refusals {dict(pubs.refusals)}, codes {pubs.codes}, totals {pubs.totals()}")
    assert store_down, "wagerwire_store_up never went to 0 while PostgreSQL was down"
    assert pubs.refusals[503] > 0, "no publish was refused while PostgreSQL was down"
    assert "store_unavailable" in pubs.codes, pubs.codes
    for url in urls:
        assert await metric(url, "wagerwire_store_up") == 1
    totals = pubs.totals()
    await finish(tasks, subs, totals, 90)
    check_consistent(subs, totals)
    pubs.check_delivered(subs)


# -- the broker alone ------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.resets: list[str] = []

    def on_message(self, message: Message) -> None:
        self.messages.append(message)

    def on_reset(self, channel: str) -> None:
        self.resets.append(channel)

    def of(self, channel: str) -> list[tuple[int, bytes]]:
        return [(m.offset, m.data) for m in self.messages if m.channel == channel]


Node = tuple[RedisBroker, Recorder, PostgresStore]


@pytest.fixture
async def nodes(postgres_server: PostgresServer) -> AsyncIterator[list[Node]]:
    made: list[Node] = []
    yield made
    for broker, _, store in made:
        await broker.close()
        await store.close()


async def make_node(made: list[Node], pg: PostgresServer, url: str, schema: str,
                    **kw: Any) -> Node:
    store = PostgresStore(pg.url(), schema=schema)
    await store.open()
    recorder = Recorder()
    broker = RedisBroker(url, store=store, **kw)
    await broker.start(recorder, await store.positions())
    made.append((broker, recorder, store))
    return broker, recorder, store


async def settle_equal(nodes: list[Node], channel: str, timeout: float = 20) -> list[Message]:
    """Wait until every node delivered exactly the store's history of ``channel``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        stored = await nodes[0][2].read(channel, 0, 100_000)
        want = [(m.offset, m.data) for m in stored]
        if all(rec.of(channel) == want for _, rec, _ in nodes):
            assert [m.offset for m in stored] == list(range(1, len(stored) + 1))
            return stored
        if loop.time() > deadline:
            got = [rec.of(channel)[-3:] for _, rec, _ in nodes]
            raise AssertionError(f"{channel}: store {want[-3:]}, nodes {got}")
        await asyncio.sleep(0.05)


@pytest.mark.timeout(120)
async def test_brokers_and_limits_follow_a_sentinel_failover(
    nodes: list[Node], postgres_server: PostgresServer, sentinels: SentinelGroup
) -> None:
    schema = f"b{uuid.uuid4().hex[:8]}"
    a = await make_node(nodes, postgres_server, sentinels.url, schema, retry_max_s=0.2)
    b = await make_node(nodes, postgres_server, sentinels.url, schema, retry_max_s=0.2)
    limits = RedisLimits.from_url(sentinels.url, prefix="lim")
    try:
        assert await limits.acquire_stream("user:1", 5) is not None
        acked: dict[str, list[Message]] = defaultdict(list)
        stop = asyncio.Event()

        async def publish_loop(node: Node, channel: str, tag: str) -> None:
            broker, _, store = node
            i = 0
            while not stop.is_set():
                try:
                    result = await broker.publish(channel, f"{tag}{i}".encode(), ts=i,
                                                  attrs=None, idempotency_key=None,
                                                  persist=store.append)
                except Unavailable:
                    await asyncio.sleep(0.02)
                    continue
                acked[channel].append(result.message)
                i += 1

        loops = [asyncio.create_task(publish_loop(n, ch, f"{t}{ch}"))
                 for n, t in ((a, "a"), (b, "b")) for ch in ("x", "y")]
        await asyncio.sleep(0.5)
        await asyncio.to_thread(sentinels.kill_primary)
        await asyncio.to_thread(sentinels.wait_promoted, 60)
        before = {ch: len(v) for ch, v in acked.items()}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while any(len(acked[ch]) < before.get(ch, 0) + 50 for ch in ("x", "y")):
            assert loop.time() < deadline, "publishing did not resume after the failover"
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*loops)
        for channel in ("x", "y"):
            stored = await settle_equal([a, b], channel)
            by_offset = {m.offset: m.data for m in stored}
            offsets = [m.offset for m in acked[channel]]
            assert len(offsets) == len(set(offsets)), "an offset was acknowledged twice"
            for m in acked[channel]:  # every acknowledged message is there, never forked
                assert by_offset[m.offset] == m.data
        assert a[1].resets == b[1].resets == []
        assert a[0].failovers >= 1 and b[0].failovers >= 1
        # The limits follow the new primary too.
        assert await limits.acquire_stream("user:1", 5) is not None
    finally:
        await limits.aclose()


@pytest.mark.timeout(60)
async def test_the_store_fences_two_writers_of_one_channel(
    nodes: list[Node], postgres_server: PostgresServer, redis_server: RedisServer
) -> None:
    """A failover can promote a replica that missed a lease: two nodes then both believe
    they write a channel. The store takes the offset only from one (``ww_append`` accepts
    offset n only after n - 1, under the channel's advisory lock), the loser's publishes are
    refused (never acknowledged), it reconciles, and every node delivers the store's one
    history: offsets never fork."""
    schema, prefix = f"w{uuid.uuid4().hex[:8]}", f"w{uuid.uuid4().hex[:8]}"
    a = await make_node(nodes, postgres_server, redis_server.url, schema, prefix=prefix)
    b = await make_node(nodes, postgres_server, redis_server.url, schema, prefix=prefix)

    async def publish(node: Node, data: bytes) -> Message | None:
        broker, _, store = node
        try:
            result = await broker.publish("f", data, ts=1, attrs=None, idempotency_key=None,
                                          persist=store.append)
        except Unavailable:
            return None
        return result.message

    for n in range(5):
        assert await publish(a, b"a%d" % n) is not None
    # B is made to believe it holds the lease too, at the same position (a split brain).
    mine = a[0].writer._channels["f"]
    theirs = b[0].writer._state("f")
    theirs.lease, theirs.lease_epoch = True, mine.lease_epoch
    theirs.next_offset, theirs.checked = mine.next_offset, b[0].link.generation
    results = await asyncio.gather(*(publish((a, b)[i % 2], b"%s%d" % (b"ab"[i % 2:i % 2 + 1],
                                                                         i))
                                     for i in range(40)))
    acked = [m for m in results if m is not None]
    refused = sum(1 for m in results if m is None)
    assert refused > 0, "both writers were acknowledged: nothing fenced them"
    offsets = [m.offset for m in acked]
    assert len(offsets) == len(set(offsets)), "two publishes were acknowledged at one offset"
    # After the conflict, both nodes publish normally again and agree with the store.
    for n in range(5):
        assert await publish((a, b)[n % 2], b"after%d" % n) is not None
    stored = await settle_equal([a, b], "f")
    by_offset = {m.offset: m.data for m in stored}
    for m in acked:
        assert by_offset[m.offset] == m.data


async def test_a_store_outage_is_store_unavailable(
    nodes: list[Node], own_postgres: PostgresServer, redis_server: RedisServer
) -> None:
    """The broker level of the PostgreSQL restart: StoreUnavailable while down, then the
    same store object appends again, with no hole."""
    schema, prefix = f"o{uuid.uuid4().hex[:8]}", f"o{uuid.uuid4().hex[:8]}"
    node = await make_node(nodes, own_postgres, redis_server.url, schema, prefix=prefix)
    broker, _, store = node

    async def publish(data: bytes) -> Message:
        result = await broker.publish("s", data, ts=1, attrs=None, idempotency_key=None,
                                      persist=store.append)
        return result.message

    assert (await publish(b"1")).offset == 1
    await asyncio.to_thread(own_postgres.stop)
    with pytest.raises(StoreUnavailable):
        await publish(b"lost")
    assert store.healthy is False
    await asyncio.to_thread(own_postgres.start)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        try:
            message = await publish(b"2")
            break
        except Unavailable:
            assert loop.time() < deadline, "the store did not come back"
            await asyncio.sleep(0.1)
    assert message.offset == 2 and store.healthy
    await settle_equal([node], "s")


async def test_a_new_channels_first_message_lost_by_redis_is_filled_from_the_store(
    nodes: list[Node], postgres_server: PostgresServer, redis_server: RedisServer
) -> None:
    """A subscriber listens to a channel nobody has written yet; its first message is made
    durable but Redis loses it before the commit (a restart or a failover to a replica that
    never saw it). The next message, at offset 2, must not start the channel there: offset 1
    is filled from the store first (it was acknowledged, e.g. to a retry by its key)."""
    schema, prefix = f"n{uuid.uuid4().hex[:8]}", f"n{uuid.uuid4().hex[:8]}"
    a = await make_node(nodes, postgres_server, redis_server.url, schema, prefix=prefix)
    b = await make_node(nodes, postgres_server, redis_server.url, schema, prefix=prefix,
                        subscribe_all=False)
    await b[0].subscribe("new")  # nowhere yet
    await a[2].append(Message("new", 1, "epoch1", 1, b"first"))  # durable, never committed
    result = await a[0].publish("new", b"second", ts=2, attrs=None, idempotency_key=None,
                                persist=a[2].append)
    assert (result.message.offset, result.message.epoch) == (2, "epoch1")
    await settle_equal([b], "new")
    assert b[1].of("new") == [(1, b"first"), (2, b"second")]
