"""The SDK under faults against real ``wagerwire serve`` processes.

Clients reach the server through :class:`CutProxy`, a small TCP relay on loopback that the test
can sever (every open connection aborted at once, both sides, no close frame) and that counts
the HTTP requests passing through it (to assert how many handshakes a client made). The
server itself is SIGKILLed and restarted on the same port and SQLite file; the publisher goes
to it directly and retries with idempotency keys while it is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from wsutil import until_connected

from serverproc import ServerProcess
from wagerwire.client import (
    AuthError,
    Backoff,
    Client,
    ClientMessage,
    Connected,
    ForbiddenError,
    SdkError,
    Subscription,
    stream,
)

WAGERWIRE = [sys.executable, "-m", "wagerwire"]
FAST = Backoff(initial=0.1, maximum=1.0)
REQUEST_LINE = re.compile(rb"(GET|POST|DELETE) (/[^ ?]*)[^ ]* HTTP/1\.1\r\n")


class CutProxy:
    """A TCP relay 127.0.0.1:port → 127.0.0.1:target that can cut every connection."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self.requests: list[tuple[str, str]] = []  # (method, path) seen client → server
        self.accepted = 0
        self.cuts = 0
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def count(self, path: str) -> int:
        return sum(1 for _, p in self.requests if p == path)

    async def __aenter__(self) -> CutProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def cut(self) -> int:
        """Abort every relayed connection (RST to both ends); returns how many."""
        links = list(self._links)
        for client, upstream in links:
            client.transport.abort()
            upstream.transport.abort()
        self._links.clear()
        self.cuts += 1
        return len(links)

    async def _accept(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            u_reader, u_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            c_writer.transport.abort()  # the server is down: refuse like it would
            return
        link = (c_writer, u_writer)
        self._links.add(link)
        up = asyncio.create_task(self._pipe(c_reader, u_writer, sniff=True))
        down = asyncio.create_task(self._pipe(u_reader, c_writer, sniff=False))
        for task in (up, down):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        self._links.discard(link)
        for w in link:
            w.transport.abort()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, sniff: bool
    ) -> None:
        tail = b""
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if sniff:
                    buf = tail + data
                    self.requests += [
                        (m.group(1).decode(), m.group(2).decode())
                        for m in REQUEST_LINE.finditer(buf)
                        if m.start() >= len(tail) or m.end() > len(tail)
                    ]
                    tail = buf[-200:]
                writer.write(data)
                await writer.drain()


@contextlib.asynccontextmanager
async def proxy_to(server: ServerProcess) -> AsyncIterator[CutProxy]:
    async with CutProxy(server.port) as proxy:
        yield proxy


def create_key(db: Path, role: str, plan: str) -> str:
    out = subprocess.run(
        [
            *WAGERWIRE,
            "keys",
            "--store",
            f"sqlite:///{db}",
            "create",
            "--role",
            role,
            "--plan",
            plan,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return str(json.loads(out.stdout)["key"])



async def publish_all(
    client: Client,
    channels: list[str],
    total: int,
    seconds: float,
    progress: list[int],
    prefix: str = "m",
) -> int:
    """Publish ``{"i": i}`` for i < total to ``channels[i % len(channels)]``, over ``seconds``.

    One sequential lane per channel (so each channel's order is the order of ``i``). Each
    message has its own idempotency key and is retried until the server takes it, also while
    the server is down. Returns how many times a publish failed and was tried again.
    """
    failures = 0
    start = time.monotonic()

    async def lane(first: int) -> None:
        nonlocal failures
        for i in range(first, total, len(channels)):
            ahead = start + seconds * i / total - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
            while True:
                try:
                    await client.publish(channels[first], {"i": i}, f"{prefix}-{i}")
                    break
                except SdkError as exc:
                    if not exc.retryable:
                        raise
                    failures += 1
                    await asyncio.sleep(0.05)
            progress[0] += 1

    await asyncio.gather(*(lane(k) for k in range(len(channels))))
    return failures


def check_complete(name: str, got: list[ClientMessage], total: int, channels: list[str]) -> None:
    """All ``total`` messages, each once, in publish order within each channel."""
    values = [m.data["i"] for m in got]  # type: ignore[index,call-overload]
    assert len(values) == len(set(values)), f"{name}: {len(values) - len(set(values))} duplicates"
    assert sorted(values) == list(range(total)), (
        f"{name}: missing {set(range(total)) - set(values)}"
    )
    for ch in channels:
        mine = [m for m in got if m.channel == ch]
        assert [m.offset for m in mine] == list(range(1, len(mine) + 1)), f"{name}: {ch} order"
        order = [m.data["i"] for m in mine]  # type: ignore[index,call-overload]
        assert order == sorted(order), f"{name}: {ch} data out of order"


async def collect(sub: Subscription, total: int, sink: list[ClientMessage]) -> None:
    async for msg in sub:
        sink.append(msg)
        if len(sink) >= total:
            return


# -- the fault test ------------------------------------------------------------------------------


@pytest.mark.timeout(240)
async def test_three_clients_get_every_message_through_kills_restarts_and_cuts(
    server: ServerProcess,
) -> None:
    total = 5000
    channels = ["game:fault-a", "game:fault-b", "game:fault-c", "game:fault-d"]
    figures: dict[str, Any] = {}
    async with proxy_to(server) as proxy, Client(server.url) as publisher:
        ws_client = Client(proxy.url, backoff=FAST)
        sse_client = Client(proxy.url, transport="sse", backoff=FAST)
        ws_sub = ws_client.subscribe(["game:fault-*"])  # a pattern over both channels
        sse_sub = sse_client.subscribe(channels)
        await until_connected(ws_sub)
        await until_connected(sse_sub)
        sync = await asyncio.to_thread(stream, proxy.url, channels, backoff=FAST)
        for _ in range(200):
            if isinstance(sync.state, Connected):
                break
            await asyncio.sleep(0.05)

        got: dict[str, list[ClientMessage]] = {"ws": [], "sse": [], "sync": []}

        def read_sync() -> None:
            while len(got["sync"]) < total:
                got["sync"].append(next(sync))

        readers = [
            asyncio.create_task(collect(ws_sub, total, got["ws"])),
            asyncio.create_task(collect(sse_sub, total, got["sse"])),
            asyncio.create_task(asyncio.to_thread(read_sync)),
        ]
        progress = [0]
        started = time.monotonic()
        pub = asyncio.create_task(publish_all(publisher, channels, total, 8.0, progress))

        async def at(n: int) -> None:
            while progress[0] < n and not pub.done():
                await asyncio.sleep(0.01)

        downtime: list[float] = []

        async def kill_and_restart() -> None:
            t = time.monotonic()
            await asyncio.to_thread(server.kill)
            await asyncio.sleep(0.3)  # stay down a moment: the publisher must retry
            await asyncio.to_thread(server.restart)
            downtime.append(time.monotonic() - t)

        await at(total * 15 // 100)
        figures["cut_links"] = proxy.cut()  # every client socket, once
        await at(total * 40 // 100)
        await kill_and_restart()
        await at(total * 70 // 100)
        await kill_and_restart()
        failures = await pub
        published_in = time.monotonic() - started
        done, _ = await asyncio.wait(readers, timeout=90)
        if len(done) < len(readers):
            detail = {
                "ws": (len(got["ws"]), ws_sub.state, ws_sub.counters, list(ws_sub.gaps)),
                "sse": (len(got["sse"]), sse_sub.state, sse_sub.counters, list(sse_sub.gaps)),
                "sync": (len(got["sync"]), sync.state, sync.counters),
            }
            for name, msgs in got.items():
                seen = {m.data["i"] for m in msgs}  # type: ignore[index,call-overload]
                print(name, "missing", sorted(set(range(total)) - seen)[:20])
            raise AssertionError(f"stuck: {detail}")
        elapsed = time.monotonic() - started

        figures.update(
            published_in=round(published_in, 2),
            all_delivered_in=round(elapsed, 2),
            publish_retries=failures,
            server_down_s=[round(d, 2) for d in downtime],
            reconnects={
                "ws": ws_client.counters.reconnects,
                "sse": sse_client.counters.reconnects,
                "sync": sync.counters.reconnects,
            },
            recovered={
                "ws": ws_client.counters.messages_recovered,
                "sse": sse_client.counters.messages_recovered,
                "sync": sync.counters.messages_recovered,
            },
            live_gaps={  # holes the server left in a live stream, repaired over REST
                "ws": ws_client.counters.live_gaps,
                "sse": sse_client.counters.live_gaps,
                "sync": sync.counters.live_gaps,
            },
            handshakes={"ws": proxy.count("/v1/ws"), "sse": proxy.count("/v1/sse")},
        )
        sync.close()
        await ws_client.aclose()
        await sse_client.aclose()
    print("\nfault test figures:", json.dumps(figures))
    for name, msgs in got.items():
        check_complete(name, msgs, total, channels)
    for name, n in figures["reconnects"].items():
        assert n >= 3, f"{name} reconnected only {n} times"  # one cut, two kills
    assert figures["cut_links"] >= 3


# -- auth ----------------------------------------------------------------------------------------


@pytest.fixture
def auth_server(tmp_path: Path) -> Any:
    """A ``--auth required --token-ttl 2`` server with keys created before it starts."""
    servers: list[ServerProcess] = []

    def make(*extra: str) -> tuple[ServerProcess, Callable[[str, str], str]]:
        srv = ServerProcess(tmp_path, ["--auth", "required", "--no-demo-keys", *extra])
        servers.append(srv)
        return srv, lambda role, plan: create_key(srv.db, role, plan)

    yield make
    for srv in servers:
        srv.kill()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("transport", ["ws", "sse"])
async def test_stream_outlives_its_tokens_across_forced_reconnects(
    auth_server: Any, transport: str
) -> None:
    server, create = auth_server("--token-ttl", "2")
    reader, publisher_key = create("reader", "allstar"), create("publisher", "internal")
    server.start(0)
    total, channels = 400, ["game:auth-a", "game:auth-b"]
    async with proxy_to(server) as proxy, Client(server.url, key=publisher_key) as publisher:
        client = Client(proxy.url, key=reader, transport=transport, backoff=FAST)  # type: ignore[arg-type]
        sub = client.subscribe(channels)
        await until_connected(sub)
        got: list[ClientMessage] = []
        reader_task = asyncio.create_task(collect(sub, total, got))
        progress = [0]
        pub = asyncio.create_task(publish_all(publisher, channels, total, 10.0, progress))
        await asyncio.sleep(2.5)  # past the first token's lifetime on a live stream
        proxy.cut()
        await asyncio.sleep(2.5)
        await asyncio.to_thread(server.signal, signal.SIGTERM)  # 1001 / shutdown event
        await asyncio.to_thread(server.restart)
        await asyncio.sleep(2.5)
        proxy.cut()
        await pub
        await asyncio.wait_for(reader_task, 30)
        assert sub.error is None
        tokens, reconnects = client.auth.tokens_fetched, client.counters.reconnects
        await client.aclose()
    print(f"\n{transport}: {tokens} stream tokens, {reconnects} reconnects")
    check_complete(transport, got, total, channels)
    assert reconnects >= 3
    assert tokens >= 3  # each reconnect came after the previous token's reuse window


@pytest.mark.timeout(60)
@pytest.mark.parametrize("transport", ["ws", "sse"])
async def test_forbidden_channel_is_a_typed_error_with_one_attempt(
    auth_server: Any, transport: str
) -> None:
    server, create = auth_server()
    free = create("reader", "free")
    server.start(0)
    path = f"/v1/{transport}"
    async with proxy_to(server) as proxy:
        async with Client(proxy.url, key=free, transport=transport) as client:  # type: ignore[arg-type]
            sub = client.subscribe(["game:crash", "game:slot"])
            with pytest.raises(ForbiddenError, match="game:slot"):
                async for _ in sub:
                    pass
            await asyncio.sleep(1.5)  # would a retry loop have come back by now? (backoff ≤ 1 s)
        # refused at once: one stream attempt, no retry (counted, not timed)
        assert proxy.count(path) == 1
        assert proxy.count("/v1/tokens") == 1
        assert client.counters.reconnects == 0


@pytest.mark.timeout(60)
async def test_bad_key_is_an_auth_error_before_any_stream(auth_server: Any) -> None:
    server, _ = auth_server()
    server.start(0)
    async with proxy_to(server) as proxy:
        async with Client(proxy.url, key="ww_0000_not-a-key") as client:
            sub = client.subscribe(["game:crash"])
            with pytest.raises(AuthError):
                async for _ in sub:
                    pass
            await asyncio.sleep(1.0)
        assert proxy.count("/v1/tokens") == 1 and proxy.count("/v1/ws") == 0


@pytest.mark.timeout(60)
async def test_revoked_key_ends_the_stream_after_one_refresh(auth_server: Any) -> None:
    server, create = auth_server()
    reader = create("reader", "allstar")
    server.start(0)
    key_id = reader.split("_")[1]
    async with proxy_to(server) as proxy:
        async with Client(proxy.url, key=reader, backoff=FAST) as client:
            sub = client.subscribe(["game:crash"])
            await until_connected(sub)
            subprocess.run(
                [*WAGERWIRE, "keys", "--store", f"sqlite:///{server.db}", "revoke", key_id],
                check=True,
                capture_output=True,
                timeout=30,
            )
            with pytest.raises(AuthError):  # 4001 within the server's poll, then a refused refresh
                await asyncio.wait_for(anext(sub), 15)
            await asyncio.sleep(1.0)
        assert proxy.count("/v1/ws") == 1 and proxy.count("/v1/tokens") == 2


# -- wagerwire tail -------------------------------------------------------------------------------


class Tail:
    """``wagerwire tail`` as a child process with line queues for stdout and stderr."""

    def __init__(self, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WAGERWIRE_")}
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            [*WAGERWIRE, "tail", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.out: queue.Queue[str] = queue.Queue()
        self.err: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._pumps = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.out.put), daemon=True),
            threading.Thread(
                target=self._pump, args=(self.proc.stderr, self.err.append), daemon=True
            ),
        ]
        for t in self._pumps:
            t.start()

    @staticmethod
    def _pump(pipe: Any, put: Callable[[str], None]) -> None:
        for line in pipe:
            put(line.rstrip("\n"))

    def lines(self, n: int, timeout: float = 20.0) -> list[str]:
        deadline = time.monotonic() + timeout
        out = []
        while len(out) < n:
            try:
                out.append(self.out.get(timeout=max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"got {out}; stderr: {self.err}") from None
        return out

    def wait_err(self, text: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.err):
            assert time.monotonic() < deadline, f"no {text!r} in stderr: {self.err}"
            time.sleep(0.02)

    def interrupt(self) -> tuple[int, str]:
        """Ctrl-C; returns the exit code and the resume token printed on stderr."""
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=15)
        for t in self._pumps:  # the last lines
            t.join(timeout=5)
        resume = [line for line in self.err if line.startswith("resume with: ")]
        assert resume, self.err
        token = resume[-1].split("--since ")[1]
        return code, token

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for t in self._pumps:
            t.join(timeout=5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.mark.timeout(120)
def test_tail_prints_resumes_and_continues_with_no_gap(server: ServerProcess) -> None:
    import httpx

    def publish(channel: str, i: int) -> None:
        r = httpx.post(server.url + "/v1/publish", json={"channel": channel, "data": {"i": i}})
        r.raise_for_status()

    for i in range(5):
        publish("game:tail", i)
    first = Tail("game:tail", "game:tail-*", "--from-start", "--json", "--url", server.url)
    try:
        lines = [json.loads(x) for x in first.lines(5)]
        assert [(m["offset"], m["data"]["i"], m["source"]) for m in lines] == [
            (n + 1, n, "replay") for n in range(5)
        ]
        for i in range(5, 8):
            publish("game:tail", i)
        publish("game:tail-x", 100)
        lines = [json.loads(x) for x in first.lines(4)]
        assert [(m["channel"], m["data"]["i"]) for m in lines] == [
            ("game:tail", 5),
            ("game:tail", 6),
            ("game:tail", 7),
            ("game:tail-x", 100),
        ]
        server.signal(signal.SIGTERM)  # a server restart: a status line, then it goes on
        server.restart()
        publish("game:tail", 8)
        (line,) = first.lines(1)
        assert json.loads(line)["data"]["i"] == 8
        first.wait_err("reconnecting in")
        first.wait_err("reconnected; resumed from")
        code, token = first.interrupt()
        assert code == 0
    finally:
        first.kill()
    for i in range(9, 12):  # published while nobody tails
        publish("game:tail", i)
    second = Tail("game:tail", "game:tail-*", "--url", server.url, "--since", token)
    try:
        lines = second.lines(3)
        assert [re.search(r"game:tail #(\d+) \(replay\) (.*)$", x).groups() for x in lines] == [  # type: ignore[union-attr]
            (str(i + 1), json.dumps({"i": i}, separators=(",", ":"))) for i in range(9, 12)
        ]
        publish("game:tail-x", 101)
        (line,) = second.lines(1)
        assert "game:tail-x #2 " in line and "(replay)" not in line
        code, token2 = second.interrupt()
        assert code == 0 and token2 != token
    finally:
        second.kill()
