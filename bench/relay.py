"""Native hub-to-hub relay: throughput end to end and the latency one hop adds.

Two ``wagerwire serve`` processes on 127.0.0.1 (SQLite stores, no simulators): the upstream,
and the downstream with one native ``[[sources]]`` entry relaying ``bench:*`` from it.

* **throughput**: ``--count`` messages published as fast as one pipelined WebSocket allows
  into the upstream; a subscriber on the upstream and one on the downstream time the arrival
  of the last message from the first publish. The upstream subscriber is the same-run
  baseline (one hop); the relay figure is end to end through both hubs.
* **added latency**: ``--rate`` messages/s for ``--seconds``; each carries its send time;
  the same two subscribers measure publish → delivery, and the difference of the
  percentiles is what the relay hop adds (a publish into the downstream is durable in its
  store before delivery, like the upstream's).

Usage: ``.venv/bin/python bench/relay.py [--count 5000] [--rate 200] [--seconds 5]``.
Bounded (about half a minute); the machine is shared: read the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

BANNER = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")


def serve(work: Path, extra: list[str]) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "wagerwire", "serve", "--port", "0", "--no-demo",
           "--anonymous-publish", "--store", f"sqlite:///{work / 'hub.db'}",
           "--log-level", "warning", *extra]
    proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        match = BANNER.search(line)
        if match:
            url = f"http://127.0.0.1:{match.group(1)}"
            break
    else:
        raise RuntimeError("server did not start")
    for _ in range(100):
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/healthz").status_code == 200:
                return proc, url
        time.sleep(0.05)
    raise RuntimeError("server not healthy")


async def subscriber(url: str, channel: str) -> ClientConnection:
    ws = await connect(url.replace("http", "ws") + "/v1/ws", max_size=2**24)
    await ws.send(json.dumps({"op": "subscribe", "channels": [channel]}))
    while json.loads(await ws.recv())["op"] != "subscribed":
        pass
    return ws


async def read(ws: ClientConnection, count: int, sink: list[tuple[float, Any]]) -> None:
    while len(sink) < count:
        frame = json.loads(await ws.recv())
        if frame.get("op") == "message":
            sink.append((time.time(), frame["data"]))


async def publish(url: str, channels: list[str], count: int, rate: float | None) -> None:
    async with connect(url.replace("http", "ws") + "/v1/ws", max_size=2**24) as ws:
        async def acks() -> None:
            for _ in range(count):
                await ws.recv()

        ack_task = asyncio.create_task(acks())
        start = time.perf_counter()
        for i in range(count):
            if rate is not None:
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            data = {"i": i, "sent": time.time(), "pad": "x" * 200}
            channel = channels[i % len(channels)]
            await ws.send(json.dumps({"op": "publish", "channel": channel, "data": data}))
        await ack_task


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


async def phase(up: str, down: str, name: str, count: int, rate: float | None,
                lanes: int = 1) -> dict[str, Any]:
    channels = [f"bench:{name}:{n}" for n in range(lanes)]
    ws_up, ws_down = (await subscriber(up, f"bench:{name}:*"),
                      await subscriber(down, f"bench:{name}:*"))
    got_up: list[tuple[float, Any]] = []
    got_down: list[tuple[float, Any]] = []
    readers = [asyncio.create_task(read(ws_up, count, got_up)),
               asyncio.create_task(read(ws_down, count, got_down))]
    t0 = time.time()
    await publish(up, channels, count, rate)
    await asyncio.wait_for(asyncio.gather(*readers), 120)
    await ws_up.close()
    await ws_down.close()
    order = sorted(d["i"] for _, d in got_down)
    assert order == list(range(count)), "the relay lost or duplicated messages"
    for lane in range(lanes):
        mine = [d["i"] for _, d in got_down if d["i"] % lanes == lane]
        assert mine == sorted(mine), "the relay reordered a channel"
    lat_up = [(t - d["sent"]) * 1000 for t, d in got_up]
    lat_down = [(t - d["sent"]) * 1000 for t, d in got_down]
    return {
        "up_s": got_up[-1][0] - t0, "down_s": got_down[-1][0] - t0,
        "up_p50": statistics.median(lat_up), "up_p99": pct(lat_up, 99),
        "down_p50": statistics.median(lat_down), "down_p99": pct(lat_down, 99),
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        up_dir, down_dir = Path(tmp, "up"), Path(tmp, "down")
        up_dir.mkdir()
        down_dir.mkdir()
        up_proc, up = serve(up_dir, [])
        (down_dir / "sources.toml").write_text(
            'connector_checkpoint = 1.0\n[[sources]]\nname = "up"\n'
            f'url = "{up}"\ndialect = "native"\nsubscriptions = ["bench:*"]\n'
            'start = "earliest"\n')
        down_proc, down = serve(down_dir, ["--config", str(down_dir / "sources.toml")])
        try:
            await asyncio.sleep(1.0)
            await phase(up, down, "warm", 200, None, 8)
            single = await phase(up, down, "single", args.count // 2, None, 1)
            burst = await phase(up, down, "burst", args.count, None, 8)
            steady = await phase(up, down, "steady", int(args.rate * args.seconds),
                                 args.rate, 8)
        finally:
            for proc in (down_proc, up_proc):
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(10)
    for label, result, n in (("1 channel", single, args.count // 2),
                             ("8 channels", burst, args.count)):
        print(f"throughput, {n} messages on {label}, published as fast as possible:")
        print(f"  one hop (upstream subscriber):   {n / result['up_s']:8.0f} msgs/s")
        print(f"  relayed (downstream subscriber): {n / result['down_s']:8.0f} msgs/s "
              f"({result['up_s'] / result['down_s']:.2f} x one hop)")
    print(f"latency at {args.rate:.0f} msgs/s over 8 channels for {args.seconds:.0f} s "
          "(ms, publish -> delivery):")
    print(f"  one hop:  p50 {steady['up_p50']:6.2f}  p99 {steady['up_p99']:6.2f}")
    print(f"  relayed:  p50 {steady['down_p50']:6.2f}  p99 {steady['down_p99']:6.2f}")
    print(f"  added by the relay hop: p50 {steady['down_p50'] - steady['up_p50']:6.2f}  "
          f"p99 {steady['down_p99'] - steady['up_p99']:6.2f}")


if __name__ == "__main__":
    asyncio.run(main())
