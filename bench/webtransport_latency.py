"""Publish → receipt latency at a fixed rate: WebTransport datagrams vs the native WebTransport
stream vs WebSocket, same server, same run, 100 and 1,000 subscribers.

    .venv/bin/python bench/webtransport_latency.py [--sizes 100,1000] [--seconds 4] [--rate 20]
        [--transports wt-datagram,wt-stream,ws,sdk-wt-datagram,sdk-wt-stream,sdk-ws]

One ``wagerwire serve --tls-dev --webtransport --no-demo`` child process; this process holds
every subscriber (one QUIC or TCP connection each) and the publisher. Every subscriber reads
``odds:bench`` in the native format: over ``/v1/wt`` with ``"lane":"datagram"`` (each message
one datagram), over ``/v1/wt`` on its bidirectional stream (NDJSON), and over ``/v1/ws``. A
publish carries its send time (``time.time()``); latency = receipt time - send time, for every
copy received. Datagrams may be lost: the table gives the share received. Short and bounded
(seconds per row); the CPU is shared with the clients (and on this VM with other work), so
read the ratios between rows of one run, not the absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from aioquic.asyncio.client import connect as quic_connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, FrameType, H3Connection, H3Stream
from aioquic.h3.events import (
    DatagramReceived,
    H3Event,
    HeadersReceived,
    WebTransportStreamDataReceived,
)
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import QuicEvent
from websockets.asyncio.client import connect as ws_connect

CHANNEL = "odds:bench"


class Receipts:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.count = 0

    def add(self, data: Any) -> None:
        now = time.time()
        if isinstance(data, dict) and isinstance(data.get("t"), float):
            self.latencies.append((now - data["t"]) * 1000)
            self.count += 1


class Subscriber(QuicConnectionProtocol):
    """One WebTransport session on its own QUIC connection, counting native messages."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic, enable_webtransport=True)
        self.session = -1
        self.stream = -1
        self.ready = asyncio.Event()
        self.subscribed = asyncio.Event()
        self.buf = b""
        self.receipts: Receipts | None = None

    def quic_event_received(self, event: QuicEvent) -> None:
        for h3_event in self.h3.handle_event(event):
            self._h3(h3_event)

    def _h3(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived) and event.stream_id == self.session:
            self.ready.set()
        elif isinstance(event, DatagramReceived):
            if self.receipts is not None:
                self.receipts.add(orjson.loads(event.data).get("data"))
        elif isinstance(event, WebTransportStreamDataReceived) and event.stream_id == self.stream:
            self.buf += event.data
            *lines, self.buf = self.buf.split(b"\n")
            for line in lines:
                obj = orjson.loads(line)
                if obj.get("op") == "subscribed":
                    self.subscribed.set()
                elif obj.get("op") == "message" and self.receipts is not None:
                    self.receipts.add(obj.get("data"))

    async def open(self, port: int, lane: str | None) -> None:
        sid = self.session = self._quic.get_next_available_stream_id()
        self.h3.send_headers(sid, [
            (b":method", b"CONNECT"), (b":protocol", b"webtransport"), (b":scheme", b"https"),
            (b":authority", f"127.0.0.1:{port}".encode()), (b":path", b"/v1/wt"),
            (b"origin", b"http://127.0.0.1")])
        self.transmit()
        await self.ready.wait()
        stream = self.stream = self.h3.create_webtransport_stream(sid)
        h3_stream = self.h3._stream.setdefault(stream, H3Stream(stream))
        h3_stream.frame_type = FrameType.WEBTRANSPORT_STREAM
        h3_stream.session_id = sid
        op: dict[str, Any] = {"op": "subscribe", "channels": [CHANNEL]}
        if lane:
            op["lane"] = lane
        self._quic.send_stream_data(stream, orjson.dumps(op) + b"\n")
        self.transmit()
        await self.subscribed.wait()


async def wt_subscribers(port: int, n: int, lane: str | None, receipts: Receipts,
                         stack: contextlib.AsyncExitStack) -> None:
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN,
                               max_datagram_frame_size=65536, verify_mode=ssl.CERT_NONE)

    async def one() -> None:
        conn = await stack.enter_async_context(quic_connect(
            "127.0.0.1", port, configuration=config, create_protocol=Subscriber))
        assert isinstance(conn, Subscriber)
        await conn.open(port, lane)
        conn.receipts = receipts

    for start in range(0, n, 50):
        await asyncio.gather(*(one() for _ in range(min(50, n - start))))


async def ws_subscribers(port: int, n: int, receipts: Receipts,
                         stack: contextlib.AsyncExitStack) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    async def reader(ws: Any) -> None:
        with contextlib.suppress(Exception):
            async for frame in ws:
                obj = orjson.loads(frame)
                if obj.get("op") == "message":
                    receipts.add(obj.get("data"))

    async def one() -> None:
        ws = await stack.enter_async_context(ws_connect(
            f"wss://127.0.0.1:{port}/v1/ws", ssl=ctx, max_queue=None))
        await ws.send(orjson.dumps({"op": "subscribe", "channels": [CHANNEL]}).decode())
        assert orjson.loads(await ws.recv())["op"] == "subscribed"
        task = asyncio.get_running_loop().create_task(reader(ws))
        stack.callback(task.cancel)

    for start in range(0, n, 50):
        await asyncio.gather(*(one() for _ in range(min(50, n - start))))


async def sdk_subscribers(base: str, wt_port: int, n: int, transport: str,
                          receipts: Receipts, stack: contextlib.AsyncExitStack) -> None:
    """``n`` subscriptions of the Python SDK (``wagerwire.client``), each its own connection:
    ``sdk-ws`` (WebSocket), ``sdk-wt-stream`` (``transport="wt"``), ``sdk-wt-datagram``
    (``lane="datagram"``). Receipt = the message handed to the application."""
    from wagerwire.client import Client, Connected

    insecure = ssl.create_default_context()  # loopback bench: REST/wss trust nothing in
    insecure.check_hostname = False          # particular; WebTransport pins the served hash
    insecure.verify_mode = ssl.CERT_NONE
    wire = "ws" if transport == "sdk-ws" else "wt"
    client = Client(base, transport=wire, ca=insecure, cert_hashes="served",  # type: ignore[arg-type]
                    webtransport_url=f"https://127.0.0.1:{wt_port}/v1/wt", open_timeout=60.0)
    await stack.enter_async_context(client)
    lane = "datagram" if transport == "sdk-wt-datagram" else "stream"

    async def reader(sub: Any) -> None:
        with contextlib.suppress(Exception):
            async for msg in sub:
                receipts.add(msg.data)

    subs: list[Any] = []
    for start in range(0, n, 50):  # in batches of 50, like the raw clients
        for _ in range(min(50, n - start)):
            sub = client.subscribe([CHANNEL], lane=lane)  # type: ignore[arg-type]
            subs.append(sub)
            task = asyncio.get_running_loop().create_task(reader(sub))
            stack.callback(task.cancel)
        deadline = time.monotonic() + 60
        while not all(isinstance(s.state, Connected) for s in subs):
            if time.monotonic() > deadline:
                states: dict[str, int] = {}
                for s in subs:
                    states[repr(s.state)[:80]] = states.get(repr(s.state)[:80], 0) + 1
                raise RuntimeError(f"SDK subscriptions not connected after 60 s: {states}")
            await asyncio.sleep(0.1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_row(http: httpx.AsyncClient, base: str, wt_port: int, tcp_port: int,
                  transport: str, n: int, seconds: float, rate: float, pid: int
                  ) -> dict[str, Any]:
    receipts = Receipts()
    async with contextlib.AsyncExitStack() as stack:
        if transport.startswith("sdk-"):
            await sdk_subscribers(base, wt_port, n, transport, receipts, stack)
        elif transport == "ws":
            await ws_subscribers(tcp_port, n, receipts, stack)
        else:
            await wt_subscribers(wt_port, n, "datagram" if transport == "wt-datagram" else None,
                                 receipts, stack)
        await asyncio.sleep(0.5)
        server_cpu = cpu_seconds(pid)
        client_cpu = time.process_time()
        sent = 0
        interval = 1.0 / rate
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            await http.post(f"{base}/v1/publish", json={
                "channel": CHANNEL, "data": {"t": time.time(), "pad": "x" * 200}})
            sent += 1
            next_at = start + sent * interval
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        await asyncio.sleep(1.0)  # stragglers
        server_cpu = cpu_seconds(pid) - server_cpu
        client_cpu = time.process_time() - client_cpu
    lat = sorted(receipts.latencies)
    return {
        "transport": transport, "n": n, "rate": rate, "sent": sent,
        "received": round(receipts.count / max(1, sent * n), 4),
        "server_us": round(server_cpu * 1e6 / max(1, receipts.count), 1),
        "client_us": round(client_cpu * 1e6 / max(1, receipts.count), 1),
        "p50": round(statistics.median(lat), 2) if lat else float("nan"),
        "p99": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 2) if lat else float("nan"),
    }


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rate", type=float, default=10.0,
                        help="publishes per second at 100 subscribers (scaled down by N/100, "
                        "so every size delivers the same copies per second)")
    parser.add_argument("--transports", default="wt-datagram,wt-stream,ws",
                        help="rows per size, in order: wt-datagram, wt-stream, ws (raw "
                        "clients) and sdk-wt-datagram, sdk-wt-stream, sdk-ws (the Python SDK)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "wagerwire", "serve", "--port", "0", "--no-demo",
            "--store", f"sqlite:///{Path(tmp) / 'hub.db'}", "--tls-dev", "--tls-dev-dir",
            str(Path(tmp) / "tls"), "--webtransport", "--webtransport-port", "0",
            "--anonymous-publish", stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        assert proc.stdout is not None
        tcp_port = wt_port = 0
        while not wt_port:
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            if m := re.search(r"listening on https://127\.0\.0\.1:(\d+)", line):
                tcp_port = int(m.group(1))
            if m := re.search(r"WebTransport https://127\.0\.0\.1:(\d+)/wt", line):
                wt_port = int(m.group(1))
        base = f"https://127.0.0.1:{tcp_port}"
        rows = []
        try:
            async with httpx.AsyncClient(verify=False) as http:
                for n in (int(s) for s in args.sizes.split(",")):
                    for transport in args.transports.split(","):
                        row = await run_row(http, base, wt_port, tcp_port, transport, n,
                                            args.seconds, args.rate / (n / 100), proc.pid)
                        rows.append(row)
                        print(row, flush=True)
        finally:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
    print("\n| subscribers | transport | publishes/s | received | p50 ms | p99 ms "
          "| server CPU µs/copy | client CPU µs/copy |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['n']:,} | {r['transport']} | {r['rate']:g} | {r['received']:.1%} | "
              f"{r['p50']} | {r['p99']} | {r['server_us']} | {r['client_us']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
