"""Scale-out: several nodes sharing one Redis and one PostgreSQL, with nodes and Redis failing.

Every node is a real ``wagerwire serve`` process (``tests/conftest.py``); Redis and
PostgreSQL are real servers on loopback (``tests/servers.py``). Each test gets its own
PostgreSQL schema and Redis key prefix.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from dialect_harness import wait_until
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from wsutil import join_tokens

from servers import PostgresServer, RedisServer, own_redis, postgres_server, redis_server

__all__ = ["own_redis", "postgres_server", "redis_server"]

CHANNELS = [f"so:c{n}" for n in range(6)]


def node_args(
    redis: RedisServer, pg: PostgresServer, schema: str, prefix: str, listen: str = "all"
) -> list[str]:
    return ["--broker", f"{redis.url}?prefix={prefix}&listen={listen}",
            "--store", f"{pg.url()}?schema={schema}"]


class Subscriber:
    """One WebSocket subscriber that follows its node, and resumes elsewhere when it dies."""

    def __init__(self, urls: list[str], home: int, channels: list[str]) -> None:
        self.urls = urls
        self.node = home
        self.channels = channels
        self.got: list[dict[str, Any]] = []
        self.resumes = 0
        self.recovered: list[bool] = []
        self.ws: ClientConnection | None = None
        self.ready = asyncio.Event()  # every channel answered ``subscribed`` (one frame each)
        self._subscribed: set[str] = set()

    async def _connect(self, since: str | None) -> ClientConnection:
        ws = await connect(self.urls[self.node] + "/v1/ws", max_size=2**22)
        op: dict[str, Any] = {"op": "subscribe", "channels": self.channels}
        if since:
            op["since"] = since
        await ws.send(json.dumps(op))
        return ws

    async def run(self, want: Callable[[], dict[str, int] | None]) -> None:
        since: str | None = None
        while True:
            ws: ClientConnection | None = None
            try:
                ws = self.ws = await self._connect(since)
                while True:
                    try:
                        raw = await asyncio.wait_for(ws.recv(), 0.5)
                    except TimeoutError:
                        if self._complete(want()):
                            await ws.close()
                            return
                        continue
                    frame = json.loads(raw)
                    if frame["op"] == "subscribed":
                        self.recovered.append(frame["recovered"])
                        # Each channel answers on its own, possibly after publishing began
                        # (then from a later offset): ready means all of them are live.
                        self._subscribed.add(frame["channel"])
                        if self._subscribed.issuperset(self.channels):
                            self.ready.set()
                    elif frame["op"] == "message":
                        self.got.append(frame)
                        if self._complete(want()):
                            await ws.close()
                            return
                    elif frame["op"] == "error":  # e.g. a refused resume: fail, never hang
                        raise AssertionError(
                            f"node {self.node} (resumes {self.resumes}) sent {frame}"
                        )
            except (ConnectionClosed, OSError):
                pass
            finally:
                # Whatever ended this connection (done, node gone, an error frame, the test
                # cancelling us): its socket is closed now, not reported by the gc later.
                if ws is not None:
                    ws.transport.abort()
            if self._complete(want()):
                return
            # The node went away: resume on the next node with our position.
            self.node = (self.node + 1) % len(self.urls)
            self.resumes += 1
            since = join_tokens(self.got) if self.got else None
            await asyncio.sleep(0.05)

    def _complete(self, totals: dict[str, int] | None) -> bool:
        if totals is None:
            return False
        counts: dict[str, int] = defaultdict(int)
        for m in self.got:
            counts[m["channel"]] += 1
        return all(counts[c] >= totals[c] for c in self.channels)


async def publisher(url: str, tag: str, count: int, pace: float) -> list[dict[str, Any]]:
    """Publish ``count`` messages round-robin over the channels, a few in flight at a time."""
    acks: list[dict[str, Any]] = []
    async with connect(url + "/v1/ws") as ws:
        for start in range(0, count, 10):
            batch = range(start, min(start + 10, count))
            for i in batch:
                data = {"p": tag, "i": i}
                await ws.send(json.dumps({"op": "publish", "channel": CHANNELS[i % 6],
                                          "data": data}))
            for _ in batch:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
                assert frame["op"] == "published", frame
                acks.append(frame)
            await asyncio.sleep(pace)
    return acks


def dump(nodes: list[Any]) -> None:
    """Print the nodes' output (shown by pytest when the test failed)."""
    for n, node in enumerate(nodes):
        print(f"--- node {n} ---\n" + "".join(node.output[-60:]))


async def finish(
    tasks: list[asyncio.Task[None]], subs: list[Subscriber], totals: dict[str, int],
    timeout: float,
) -> None:
    """Wait for every subscriber to complete; on timeout, say who is missing what."""
    # FIRST_EXCEPTION: a subscriber that failed (an error frame) fails the test at once.
    done, pending = await asyncio.wait(tasks, timeout=timeout,
                                       return_when=asyncio.FIRST_EXCEPTION)
    failed = [task for task in done if task.exception() is not None]
    if failed or pending:
        for task in pending:
            task.cancel()
        # Let the cancelled subscribers close their sockets before the test fails.
        await asyncio.gather(*pending, return_exceptions=True)
    if failed:
        failed[0].result()
    if pending:
        lines = []
        for sub in subs:
            for channel in sub.channels:
                offsets = [m["offset"] for m in sub.got if m["channel"] == channel]
                if len(offsets) < totals[channel]:
                    gaps = sorted(set(range(1, totals[channel] + 1)) - set(offsets))
                    lines.append(f"node {sub.node} resumes {sub.resumes} {channel}: "
                                 f"{len(offsets)}/{totals[channel]} missing {gaps[:8]}")
        raise AssertionError(f"{len(pending)} subscribers incomplete:\n" + "\n".join(lines[:30]))


def check_consistent(subs: list[Subscriber], totals: dict[str, int]) -> None:
    """Everyone got every message of its channels, offsets 1..n, same data per offset."""
    canonical: dict[tuple[str, int], Any] = {}
    for sub in subs:
        for channel in sub.channels:
            mine = [m for m in sub.got if m["channel"] == channel]
            offsets = [m["offset"] for m in mine]
            assert offsets == list(range(1, totals[channel] + 1)), (
                f"subscriber on node {sub.node} channel {channel}: {offsets[:5]}…"
                f" ({len(offsets)} of {totals[channel]})"
            )
            for m in mine:
                seen = canonical.setdefault((channel, m["offset"]), m["data"])
                assert seen == m["data"], (channel, m["offset"])
            assert len({m["epoch"] for m in mine}) == 1


@pytest.mark.timeout(180)
@pytest.mark.parametrize("listen", ["all", "local"])
async def test_three_nodes_300_subscribers_and_a_node_killed(
    server_factory: Any, redis_server: RedisServer, postgres_server: PostgresServer,
    request: pytest.FixtureRequest, listen: str,
) -> None:
    """``listen=all``: one PSUBSCRIBE per node; ``local``: SUBSCRIBE per channel with local
    subscribers (the hub subscribes the broker before it replays)."""
    args = node_args(redis_server, postgres_server, f"s{uuid.uuid4().hex[:8]}",
                     f"p{uuid.uuid4().hex[:8]}", listen)
    nodes = [server_factory(args) for _ in range(3)]
    request.addfinalizer(lambda: dump(nodes))
    urls = [n.ws_url for n in nodes]
    subs = [Subscriber(urls, i % 3, [CHANNELS[i % 6], CHANNELS[(i + 1) % 6]])
            for i in range(300)]
    totals: dict[str, int] | None = None
    tasks = [asyncio.create_task(s.run(lambda: totals)) for s in subs]
    await asyncio.wait_for(asyncio.gather(*(s.ready.wait() for s in subs)), 60)

    per_publisher = 600
    pubs = [asyncio.create_task(publisher(nodes[n].ws_url, f"n{n}", per_publisher, 0.01))
            for n in (0, 1)]
    await asyncio.sleep(1.0)  # mid-stream
    nodes[2].kill()  # SIGKILL: its 100 subscribers resume on node 0
    acks = [a for p in await asyncio.gather(*pubs) for a in p]
    assert len(acks) == 2 * per_publisher
    by_channel: dict[str, list[int]] = defaultdict(list)
    for ack in acks:
        by_channel[ack["channel"]].append(ack["offset"])
    for channel, offsets in by_channel.items():  # offsets shared by both publishing nodes
        assert sorted(offsets) == list(range(1, len(offsets) + 1)), channel
    totals = {c: len(o) for c, o in by_channel.items()}
    await finish(tasks, subs, totals, 60)
    check_consistent(subs, totals)
    moved = [s for s in subs if s.resumes]
    assert len(moved) >= 100  # every subscriber of the killed node
    assert all(all(s.recovered) for s in moved)


@pytest.mark.timeout(180)
async def test_redis_restart_mid_stream_loses_no_acknowledged_message(
    server_factory: Any, own_redis: RedisServer, postgres_server: PostgresServer
) -> None:
    args = node_args(own_redis, postgres_server, f"s{uuid.uuid4().hex[:8]}", "ww")
    nodes = [server_factory(args) for _ in range(2)]
    urls = [n.ws_url for n in nodes]
    subs = [Subscriber(urls, i % 2, [CHANNELS[i % 3]]) for i in range(20)]
    totals: dict[str, int] | None = None
    tasks = [asyncio.create_task(s.run(lambda: totals)) for s in subs]
    await asyncio.wait_for(asyncio.gather(*(s.ready.wait() for s in subs)), 30)

    acked: dict[str, dict[str, Any]] = {}
    refused = 0
    not_ready_seen = False

    async def publish_all(node: int, count: int) -> None:
        nonlocal refused
        async with httpx.AsyncClient(base_url=nodes[node].url, timeout=10) as client:
            for i in range(count):
                key = f"n{node}-{i}"
                body = {"channel": CHANNELS[i % 3], "data": {"k": key}, "idempotency_key": key}
                while True:  # retry until acknowledged: Redis may be down meanwhile
                    try:
                        resp = await client.post("/v1/publish", json=body)
                    except httpx.HTTPError:
                        resp = None
                    if resp is not None and resp.status_code == 200:
                        acked[key] = resp.json()
                        break
                    assert resp is None or resp.status_code == 503, resp.text
                    refused += 1
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.005)

    async def watch_readiness() -> None:
        nonlocal not_ready_seen
        async with httpx.AsyncClient(timeout=2) as client:
            for _ in range(400):
                try:
                    resp = await client.get(nodes[0].url + "/readyz")
                    if resp.status_code == 503:
                        not_ready_seen = True
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.01)

    pubs = [asyncio.create_task(publish_all(n, 150)) for n in (0, 1)]
    await asyncio.sleep(0.5)
    watcher = asyncio.create_task(watch_readiness())
    await asyncio.to_thread(own_redis.restart, 1.0)  # Redis down for a second, data lost
    await watcher
    await asyncio.gather(*pubs)
    assert not_ready_seen, "/readyz never reported the broker down"
    assert refused > 0, "no publish was refused while Redis was down"
    async with httpx.AsyncClient(timeout=5) as client:
        for node in nodes:
            assert (await client.get(node.url + "/readyz")).status_code == 200
        metrics = (await client.get(nodes[0].url + "/metrics")).text
        outages = re.search(r"^wagerwire_broker_outages_total (\d+)", metrics, re.M)
        assert outages is not None and int(outages.group(1)) >= 1, metrics
    # Totals: every channel's last offset (acknowledged or persisted before a refusal).
    last: dict[str, int] = defaultdict(int)
    for ack in acked.values():
        last[ack["channel"]] = max(last[ack["channel"]], ack["offset"])
    totals = dict(last)
    await finish(tasks, subs, totals, 60)
    check_consistent(subs, totals)
    delivered = {(m["channel"], m["offset"]): m["data"]["k"] for s in subs for m in s.got}
    for key, ack in acked.items():  # every acknowledged message, at its acknowledged offset
        assert delivered[(ack["channel"], ack["offset"])] == key
    keys = list(delivered.values())
    assert len(keys) == len(set(keys)), "a message was delivered twice"


async def test_workers_above_one_need_redis(server_factory: Any, tmp_path: Any) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "wagerwire", "serve", "--workers", "2", "--no-demo",
         "--port", "0", "--store", f"sqlite:///{tmp_path}/x.db"],
        capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 2
    assert "--workers 2 needs --broker redis://" in done.stderr


@pytest.mark.timeout(120)
async def test_two_workers_share_one_port(
    server_factory: Any, redis_server: RedisServer, postgres_server: PostgresServer
) -> None:
    args = [*node_args(redis_server, postgres_server, f"s{uuid.uuid4().hex[:8]}",
                       f"p{uuid.uuid4().hex[:8]}"), "--workers", "2"]
    node = server_factory(args)
    # the second worker listens a moment after the first (start() waits for one banner)
    await wait_until(lambda: sum("listening on" in line for line in node.output) >= 2, 30,
                     "both workers listening")
    counts: set[int] = set()
    subs = []
    for _ in range(13):  # connections land on both workers (SO_REUSEPORT)
        ws = await connect(node.ws_url + "/v1/ws")
        await ws.send(json.dumps({"op": "subscribe", "channels": ["so:w"]}))
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert frame["op"] == "subscribed"
        subs.append(ws)
    # Each worker counts its own subscribers; 13 split over two workers gives two counts.
    fresh = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=5, limits=fresh) as client:
        for _ in range(40):
            metrics = (await client.get(node.url + "/metrics")).text
            found = re.search(r"^wagerwire_subscribers (\d+)(?:\.0)?$", metrics, re.M)
            assert found is not None, metrics
            counts.add(int(found[1]))
        for i in range(20):
            resp = await client.post(node.url + "/v1/publish",
                                     json={"channel": "so:w", "data": {"i": i}})
            assert resp.status_code == 200, resp.text
    for ws in subs:  # every subscriber, whatever its worker, gets all 20 in order
        got = []
        while len(got) < 20:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if frame["op"] == "message":
                got.append(frame["offset"])
        assert got == list(range(1, 21))
        await ws.close()
    assert len(counts) >= 2, f"every request reached the same worker: {counts}"
    assert node.proc is not None
    assert node.signal(signal.SIGTERM) == 0
