"""Scale-out across machines: three nodes, each in a network namespace of its own.

The layout (``tests/netns.py``): hosts ``a``, ``b`` and ``c`` at ``10.77.<n>.11-13``, each a
namespace with one veth on a bridge; Redis and PostgreSQL in the root namespace bound to the
bridge address ``10.77.<n>.1``. Every node listens on port 8000 of its own address (three
machines, one port). The test process (the root namespace) plays the clients, and a
load balancer on 127.0.0.1 that spreads connections over the nodes and skips a node that
refuses. Where namespaces cannot be made the test warns (``NetnsUnavailable``) and runs the
same on 127.0.0.1 ports.

One scenario, in steps: keys made with ``wagerwire keys create`` on machine A (the CLI run in
A's namespace, knowing only the store URL) work on B and C, and a stream token from A opens
a stream on C; 300 subscribers (100 per node) and 9 SDK clients behind the load balancer
follow 4 channels; a key with 10 streams on every node is revoked through the admin REST of
B and all 30 close within 5 s while nobody else is cut; publishers on A and B publish while
C is killed: the subscribers of C resume on A, the SDK clients fail over through the load
balancer, and every receiver ends with every acknowledged message exactly once, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from wsutil import join_tokens

from netns import NetnsUnavailable, Network
from serverproc import WAGERWIRE, ServerProcess
from servers import PostgresServer, RedisServer, postgres_bin, redis_bin
from wagerwire.client import Client, Connected

log = logging.getLogger("tests.scaleout_machines")

# The loopback fallback warns (shown in the warnings summary) instead of failing the run.
pytestmark = pytest.mark.filterwarnings("default::netns.NetnsUnavailable")

CHANNELS = [f"mach:c{n}" for n in range(4)]
SUBSCRIBERS = 300
SDK_CLIENTS = 9
VICTIM_STREAMS_PER_NODE = 10
PER_PUBLISHER = 80


@pytest.fixture
def network() -> Iterator[Network]:
    net = Network.create(["a", "b", "c"])
    yield net
    net.close()
    assert net.leftovers() == [], "namespaces or links of this run were left behind"


@pytest.fixture
def databases(network: Network, tmp_path: Path) -> Iterator[tuple[RedisServer, PostgresServer]]:
    """Redis and PostgreSQL on the database host (the bridge address)."""
    if redis_bin() is None or postgres_bin() is None:
        pytest.skip("redis-server and PostgreSQL are needed (make system-deps)")
    redis = RedisServer(tmp_path / "redis", host=network.db_address).start()
    pg = PostgresServer(tmp_path / "pg", host=network.db_address)
    try:
        pg.start()
        yield redis, pg
    finally:
        pg.stop()
        redis.kill()


class LoadBalancer:
    """A TCP balancer on 127.0.0.1: WebSocket upgrades and other requests each go round-robin
    over the backends; a backend that refuses is skipped (the next one is tried)."""

    def __init__(self, backends: list[tuple[str, int]]) -> None:
        self.backends = backends
        self.turn = {"ws": 0, "http": 0}
        self.streams_to: dict[int, int] = defaultdict(int)  # WebSocket connections per backend
        self.skipped = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.read(65536), 30)
        except (TimeoutError, OSError):
            writer.close()
            return
        kind = "ws" if b"upgrade: websocket" in head.lower() else "http"
        start = self.turn[kind]
        self.turn[kind] += 1
        for i in range(len(self.backends)):
            index = (start + i) % len(self.backends)
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(*self.backends[index]), 2)
            except (OSError, TimeoutError):
                self.skipped += 1
                continue
            if kind == "ws":
                self.streams_to[index] += 1
            up_writer.write(head)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            return
        writer.close()  # no backend: the client sees the connection close

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            dst.close()


class Follower:
    """A raw WebSocket subscriber with an API key; when its node dies it resumes on the
    next live node from the last message it got."""

    def __init__(self, urls: list[str], home: int, key: str) -> None:
        self.urls = urls
        self.node = home
        self.headers = {"Authorization": f"Bearer {key}"}
        self.got: list[dict[str, Any]] = []
        self.drops = 0
        self.ready = asyncio.Event()
        self.done = False

    async def run(self, totals: dict[str, int], dead: set[int]) -> None:
        since: str | None = None
        while True:
            try:
                async with connect(self.urls[self.node] + "/v1/ws", max_size=2**22,
                                   additional_headers=self.headers, open_timeout=20) as ws:
                    op: dict[str, Any] = {"op": "subscribe", "channels": CHANNELS}
                    if since:
                        op["since"] = since
                    await ws.send(json.dumps(op))
                    await self._read(ws, totals)
                    return
            except (ConnectionClosed, OSError, TimeoutError):
                pass
            if self._complete(totals):
                return
            self.drops += 1
            self.node = next(n % len(self.urls) for n in range(self.node + 1, self.node + 4)
                             if n % len(self.urls) not in dead)
            since = join_tokens(self.got) if self.got else None
            await asyncio.sleep(0.05)

    async def _read(self, ws: ClientConnection, totals: dict[str, int]) -> None:
        subscribed: set[str] = set()
        while not self._complete(totals):
            try:
                raw = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            frame = json.loads(raw)
            if frame["op"] == "subscribed":  # one per channel: ready once all are live
                subscribed.add(frame["channel"])
                if subscribed.issuperset(CHANNELS):
                    self.ready.set()
            elif frame["op"] == "message":
                self.got.append(frame)

    def _complete(self, totals: dict[str, int]) -> bool:
        if not totals:
            return False
        counts: dict[str, int] = defaultdict(int)
        for m in self.got:
            counts[m["channel"]] += 1
        return all(counts[c] >= totals[c] for c in CHANNELS)


def cli_key(host: Any, store: str, role: str) -> tuple[str, str]:
    """``wagerwire keys create`` run on ``host`` (in its namespace): (id, key)."""
    done = subprocess.run(
        [*host.wrap, *WAGERWIRE, "keys", "--store", store, "create", "--role", role,
         "--plan", "internal", "--json"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    made = json.loads(done.stdout)
    return str(made["id"]), str(made["key"])


async def publish(url: str, key: str, tag: str, count: int, halfway: asyncio.Event
                  ) -> list[dict[str, Any]]:
    acks: list[dict[str, Any]] = []
    async with connect(url + "/v1/ws", additional_headers={"Authorization": f"Bearer {key}"}
                       ) as ws:
        for start in range(0, count, 8):
            batch = range(start, min(start + 8, count))
            for i in batch:
                await ws.send(json.dumps({"op": "publish", "channel": CHANNELS[i % 4],
                                          "data": {"p": tag, "i": i}}))
            for _ in batch:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
                assert frame["op"] == "published", frame
                acks.append(frame)
            if len(acks) >= count // 2:
                halfway.set()
            await asyncio.sleep(0.1)
    return acks


def check_received(name: str, got: list[tuple[str, int, Any]], acked: dict[tuple[str, int], Any]
                   ) -> None:
    """Every acknowledged message exactly once, in offset order per channel, same data."""
    per: dict[str, list[int]] = defaultdict(list)
    for channel, offset, data in got:
        per[channel].append(offset)
        assert acked.get((channel, offset)) == data, (name, channel, offset, data)
    for channel in CHANNELS:
        want = sorted(o for c, o in acked if c == channel)
        assert per[channel] == want, (name, channel, per[channel][:20], len(want))


class SdkReceiver:
    """An SDK client behind the load balancer, following the channels."""

    def __init__(self, url: str, key: str) -> None:
        self.client = Client(url, key=key, open_timeout=10)
        self.sub = self.client.subscribe(CHANNELS)
        self.got: list[tuple[str, int, Any]] = []
        self.task = asyncio.create_task(self._take())

    async def _take(self) -> None:
        async for msg in self.sub:
            self.got.append((msg.channel, msg.offset, msg.data))

    async def connected(self) -> None:
        async for state in self.sub.states():
            if isinstance(state, Connected):
                return

    def complete(self, totals: dict[str, int]) -> bool:
        counts: dict[str, int] = defaultdict(int)
        for channel, _, _ in self.got:
            counts[channel] += 1
        return bool(totals) and all(counts[c] >= totals[c] for c in CHANNELS)

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(Exception):
            await self.client.aclose()


def start_nodes(network: Network, args: list[str], tmp_path: Path) -> list[ServerProcess]:
    nodes: list[ServerProcess] = []
    port = 8000 if network.isolated else 0  # machines of their own: the same port each
    for name in ("a", "b", "c"):
        host = network.hosts[name]
        (tmp_path / name).mkdir()
        nodes.append(ServerProcess(tmp_path / name, args, host=host.address,
                                   wrap=host.wrap).start(port))
    return nodes


async def keys_work_everywhere(nodes: list[ServerProcess], reader: str) -> None:
    """The key made on A works on every node; a stream token from A opens a stream on C."""
    a, b, c = nodes
    async with httpx.AsyncClient(timeout=20, trust_env=False) as http:
        for node in nodes:
            res = await http.get(node.url + "/v1/channels",
                                 headers={"Authorization": f"Bearer {reader}"})
            assert res.status_code == 200, res.text
        res = await http.get(b.url + "/v1/channels",
                             headers={"Authorization": f"Bearer {reader}x"})
        assert res.status_code == 401
        res = await http.post(a.url + "/v1/tokens", headers={"Authorization": f"Bearer {reader}"})
        token = res.json()["token"]
    async with connect(f"{c.ws_url}/v1/ws?token={token}") as ws:
        await ws.send(json.dumps({"op": "subscribe", "channels": CHANNELS[:1]}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 20))["op"] == "subscribed"


async def revoke_everywhere(nodes: list[ServerProcess], victim_id: str, victim: str,
                            admin: str) -> list[float]:
    """Streams of ``victim`` on every node; revoked through B's admin REST: the seconds each
    stream took to close (every one within 5 s, close code 4001)."""
    victims = []
    for node in nodes:
        for _ in range(VICTIM_STREAMS_PER_NODE):
            ws = await connect(node.ws_url + "/v1/ws",
                               additional_headers={"Authorization": f"Bearer {victim}"})
            await ws.send(json.dumps({"op": "subscribe", "channels": CHANNELS[:1]}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 20))["op"] == "subscribed"
            victims.append(ws)
    closed_after: list[float] = []

    async def closes(ws: ClientConnection, started: float) -> None:
        await ws.wait_closed()
        closed_after.append(time.monotonic() - started)

    async with httpx.AsyncClient(timeout=20, trust_env=False) as http:
        started = time.monotonic()
        watching = asyncio.gather(*(closes(ws, started) for ws in victims))
        res = await http.delete(f"{nodes[1].url}/v1/keys/{victim_id}",
                                headers={"Authorization": f"Bearer {admin}"})
        assert res.status_code == 200, res.text
        await asyncio.wait_for(watching, 5)
        for node in nodes:  # and the key is refused everywhere
            res = await http.get(node.url + "/v1/channels",
                                 headers={"Authorization": f"Bearer {victim}"})
            assert res.status_code == 401
    assert {ws.close_code for ws in victims} == {4001}
    return closed_after


async def cluster_seen(url: str, want: dict[str, int], timeout: float = 30.0
                       ) -> dict[str, dict[str, str]]:
    """``wagerwire_cluster_node_*`` of one node's /metrics once the nodes' up values (by
    address) are ``want``: {address: {"up", "broker", "store", "broker_up", "store_up"}}."""
    deadline = time.monotonic() + timeout
    seen: dict[str, dict[str, str]] = {}
    async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
        while time.monotonic() < deadline:
            seen, ids = {}, {}
            for line in (await http.get(url + "/metrics")).text.splitlines():
                if not line.startswith("wagerwire_cluster_node_"):
                    continue
                name, _, value = line.rpartition(" ")
                metric, _, rest = name.partition("{")
                labels = dict(p.split("=", 1) for p in rest.rstrip("}").split(",") if p)
                labels = {k: v.strip('"') for k, v in labels.items()}
                if metric == "wagerwire_cluster_node_up":
                    ids[labels["node_id"]] = labels["address"]
                    seen[labels["address"]] = {"up": value, "broker": labels["broker"],
                                               "store": labels["store"]}
                elif metric in ("wagerwire_cluster_node_broker_up",
                                "wagerwire_cluster_node_store_up") and labels["node_id"] in ids:
                    key = metric.removeprefix("wagerwire_cluster_node_")
                    seen[ids[labels["node_id"]]][key] = value
            if {a: int(float(v["up"])) for a, v in seen.items()} == want:
                return seen
            await asyncio.sleep(0.5)
    raise AssertionError(f"cluster seen by {url}: {seen}, wanted {want}")


async def wait_complete(followers: list[Follower], follow_tasks: list[asyncio.Task[Any]],
                        sdks: list[SdkReceiver], totals: dict[str, int]) -> None:
    done, pending = await asyncio.wait(follow_tasks, timeout=120)
    for task in done:
        task.result()
    deadline = time.monotonic() + (120 if not pending else 0)
    while not all(r.complete(totals) for r in sdks) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert not pending and all(r.complete(totals) for r in sdks), (
        f"{len(pending)} subscribers incomplete; follower counts "
        f"{sorted({len(f.got) for f in followers})}, SDK {[len(r.got) for r in sdks]}")


@pytest.mark.timeout(420)
async def test_three_machines_share_keys_fan_out_revoke_and_fail_over(
    network: Network, databases: tuple[RedisServer, PostgresServer], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    redis, pg = databases
    store = pg.url(host=network.db_address) + f"?schema=m{uuid.uuid4().hex[:8]}"
    broker = f"redis://{network.db_address}:{redis.port}/0?prefix=m{uuid.uuid4().hex[:8]}"
    nodes = start_nodes(network, ["--broker", broker, "--store", store, "--auth", "required",
                                  "--no-demo-keys"], tmp_path)
    a, b, c = nodes
    lb = LoadBalancer([(n.host, n.port) for n in nodes])
    tasks: list[asyncio.Task[Any]] = []
    sdks: list[SdkReceiver] = []
    where = "namespaces" if network.isolated else "loopback fallback"
    addresses = [f"{n.host}:{n.port}" for n in nodes]
    try:
        # -- every node lists the three, with their broker and store -----------------------
        seen = await cluster_seen(b.url, dict.fromkeys(addresses, 1))
        assert all(v == {"up": "1.0", "broker": "redis", "store": "postgresql",
                         "broker_up": "1.0", "store_up": "1.0"} for v in seen.values()), seen

        # -- keys made on machine A (the CLI in A's namespace) work on B and C -------------
        _, reader = cli_key(network.hosts["a"], store, "reader")
        _, publisher_key = cli_key(network.hosts["a"], store, "publisher")
        _, admin = cli_key(network.hosts["a"], store, "admin")
        victim_id, victim = cli_key(network.hosts["a"], store, "reader")
        await keys_work_everywhere(nodes, reader)

        # -- 300 subscribers, 100 per node, and SDK clients behind the load balancer --------
        totals: dict[str, int] = {}
        dead: set[int] = set()
        followers = [Follower([n.ws_url for n in nodes], i % 3, reader)
                     for i in range(SUBSCRIBERS)]
        gate = asyncio.Semaphore(50)

        async def follow(f: Follower) -> None:
            async with gate:
                task = asyncio.create_task(f.run(totals, dead))
                await asyncio.wait_for(f.ready.wait(), 60)
            await task

        tasks += [asyncio.create_task(follow(f)) for f in followers]
        await lb.start()
        for _ in range(SDK_CLIENTS):
            sdks.append(SdkReceiver(lb.url, reader))
            await asyncio.wait_for(sdks[-1].connected(), 30)
        await asyncio.wait_for(asyncio.gather(*(f.ready.wait() for f in followers)), 120)
        assert sorted(lb.streams_to.values()) == [3, 3, 3], lb.streams_to

        # -- a key with streams on every node, revoked through B ---------------------------
        closed_after = sorted(await revoke_everywhere(nodes, victim_id, victim, admin))
        assert sum(f.drops for f in followers) == 0  # nobody else was cut
        with capsys.disabled():
            print(f"\nrevocation on B closed {len(closed_after)} streams on 3 nodes: slowest "
                  f"{closed_after[-1] * 1000:.0f} ms, median "
                  f"{closed_after[len(closed_after) // 2] * 1000:.0f} ms ({where})")

        # -- publishers on A and B; C dies halfway -----------------------------------------
        halfway = asyncio.Event()
        pubs = [asyncio.create_task(publish(n.ws_url, publisher_key, tag, PER_PUBLISHER,
                                            halfway)) for n, tag in ((a, "A"), (b, "B"))]
        await asyncio.wait_for(halfway.wait(), 60)
        c.kill()
        dead.add(2)
        acks = [ack for result in await asyncio.gather(*pubs) for ack in result]
        for ack in acks:
            totals[ack["channel"]] = totals.get(ack["channel"], 0) + 1
        await wait_complete(followers, tasks, sdks, totals)

        # -- every receiver: every acknowledged message once, in order ---------------------
        data_of: dict[tuple[str, int], Any] = {}
        for f in followers:
            for m in f.got:
                data_of.setdefault((m["channel"], m["offset"]), m["data"])
        assert set(data_of) == {(ack["channel"], ack["offset"]) for ack in acks}
        for n, f in enumerate(followers):
            check_received(f"follower {n}",
                           [(m["channel"], m["offset"], m["data"]) for m in f.got], data_of)
        for n, r in enumerate(sdks):
            check_received(f"sdk {n}", r.got, data_of)
        await cluster_seen(a.url, {addresses[0]: 1, addresses[1]: 1, addresses[2]: 0})
        resumed = sum(1 for f in followers if f.drops)
        reconnects = sum(r.client.counters.reconnects for r in sdks)
        assert resumed == SUBSCRIBERS // 3  # the followers of C, each once
        assert reconnects >= SDK_CLIENTS // 3, reconnects  # C's SDK clients came back via A/B
        with capsys.disabled():
            print(f"{len(acks)} messages to {SUBSCRIBERS} subscribers and {SDK_CLIENTS} SDK "
                  f"clients; node C killed halfway: {resumed} subscribers resumed on A, SDK "
                  f"reconnects {reconnects}, load balancer skipped C {lb.skipped} time(s); "
                  f"nothing lost ({where})")
    finally:
        for task in tasks:
            task.cancel()
        for r in sdks:
            await r.close()
        await lb.close()
        for node in nodes:
            node.kill()


def test_without_namespaces_the_harness_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loopback fallback is announced (a pytest warning and a log line), never silent."""
    monkeypatch.setenv("WAGERWIRE_TEST_NO_NETNS", "1")
    with pytest.warns(NetnsUnavailable, match="127.0.0.1"):
        net = Network.create(["a", "b"])
    assert not net.isolated and net.db_address == "127.0.0.1"
    assert {h.address for h in net.hosts.values()} == {"127.0.0.1"}
    assert all(h.wrap == [] for h in net.hosts.values())
    net.close()
