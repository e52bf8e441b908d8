"""What TLS costs the server's fan-out: plain ``ws://`` against ``wss://`` in one run.

Starts ``wagerwire serve`` (plain, then ``--tls-dev``, alternating for ``--reps`` rounds) as a
child process on 127.0.0.1, connects ``--subs`` native WebSocket subscribers to one channel
from this process, publishes ``--messages`` messages of ``--size`` bytes over REST, waits until
every subscriber has every message, and reports the server process's CPU time (user + system,
from /proc) per delivery and the wall time of the burst. Frames are encoded once per message
either way; with TLS each connection then encrypts its own copy, which is the difference
measured. Linux only (/proc); the CPU is shared, so only the ratio in one run means anything.

    .venv/bin/python bench/tls_fanout.py --subs 200 --messages 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from websockets.asyncio.client import ClientConnection, connect

CHANNEL = "bench:tls"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def start(tls: bool, directory: Path) -> tuple[subprocess.Popen[str], int]:
    args = [sys.executable, "-m", "wagerwire", "serve", "--port", "0", "--no-demo",
            "--anonymous-publish", "--no-demo-keys", "--outbox-limit", str(64 * 1024 * 1024),
            "--store", f"sqlite:///{directory / 'bench.db'}"]
    if tls:
        args.append("--tls-dev")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=directory)
    assert proc.stdout is not None
    for line in proc.stdout:
        m = re.search(r"listening on https?://127\.0\.0\.1:(\d+)", line)
        if m:
            return proc, int(m.group(1))
    raise RuntimeError("the server did not start")


async def reader(ws: ClientConnection, count: int, done: asyncio.Event,
                 remaining: list[int]) -> None:
    got = 0
    async for raw in ws:
        if '"op":"message"' in str(raw):
            got += 1
            if got == count:
                break
    remaining[0] -= 1
    if remaining[0] == 0:
        done.set()


async def one_run(tls: bool, subs: int, messages: int, size: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start(tls, Path(tmp))
        scheme = "s" if tls else ""
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            conns = []
            for _ in range(subs):
                ws = await connect(f"ws{scheme}://127.0.0.1:{port}/v1/ws",
                                   ssl=ctx if tls else None, compression=None,
                                   max_queue=None, ping_interval=None)
                await ws.send(json.dumps({"op": "subscribe", "channels": [CHANNEL]}))
                while '"subscribed"' not in str(await ws.recv()):
                    pass
                conns.append(ws)
            done = asyncio.Event()
            remaining = [subs]
            tasks = [asyncio.create_task(reader(ws, messages, done, remaining)) for ws in conns]
            payload = {"pad": "x" * size}
            async with httpx.AsyncClient(base_url=f"http{scheme}://127.0.0.1:{port}",
                                         verify=ctx) as http:
                await http.get("/healthz")
                cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
                for i in range(messages):
                    r = await http.post("/v1/publish",
                                        json={"channel": CHANNEL, "data": {"i": i, **payload}})
                    r.raise_for_status()
                await asyncio.wait_for(done.wait(), 300)
                cpu1, t1 = cpu_seconds(proc.pid), time.perf_counter()
            await asyncio.gather(*tasks)
            for ws in conns:
                await ws.close()
            return (cpu1 - cpu0) / (subs * messages) * 1e6, t1 - t0
        finally:
            proc.terminate()
            proc.wait(30)
            if proc.stdout is not None:
                proc.stdout.close()


async def handshakes(tls: bool, count: int) -> float:
    """Server CPU milliseconds per new connection answering one ``GET /healthz``."""
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start(tls, Path(tmp))
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            await asyncio.sleep(0.5)
            cpu0 = cpu_seconds(proc.pid)
            for _ in range(count):
                r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx if tls else None)
                w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                await r.read()
                w.close()
            return (cpu_seconds(proc.pid) - cpu0) / count * 1e3
        finally:
            proc.terminate()
            proc.wait(30)
            if proc.stdout is not None:
                proc.stdout.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subs", type=int, default=200)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--size", type=int, default=250, help="payload bytes per message")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float]]] = {"ws://": [], "wss://": []}
    for _ in range(args.reps):
        for tls in (False, True):
            results["wss://" if tls else "ws://"].append(
                await one_run(tls, args.subs, args.messages, args.size))
    print(f"{args.subs} subscribers x {args.messages} messages of {args.size} payload bytes, "
          f"median of {args.reps}")
    print("| transport | server CPU µs/delivery | burst wall s |")
    print("|---|---|---|")
    medians = {}
    for name, runs in results.items():
        cpu = statistics.median(r[0] for r in runs)
        wall = statistics.median(r[1] for r in runs)
        medians[name] = cpu
        print(f"| {name} | {cpu:.2f} | {wall:.2f} |")
    print(f"wss:// / ws:// CPU per delivery: {medians['wss://'] / medians['ws://']:.2f}x")
    plain, tls = await handshakes(False, 300), await handshakes(True, 300)
    print(f"new connection + GET /healthz, server CPU: plain {plain:.2f} ms, "
          f"TLS {tls:.2f} ms (handshake ≈ {tls - plain:.2f} ms)")


if __name__ == "__main__":
    asyncio.run(main())
