"""Soak: a hub under churn, slow consumers, restarts and Redis blips, watched for drift.

    .venv/bin/python bench/soak.py --minutes 30                  # Redis broker + SQLite
    .venv/bin/python bench/soak.py --minutes 2 --broker memory   # a quick look

One ``wagerwire serve`` (demo on, a publisher key) on 127.0.0.1 and, with ``--broker redis``, its
own ``redis-server``, both started here in a temporary directory and stopped by PID at the end.
While it runs:

- a publisher sends 1 KiB messages to ``soak:load`` at ``--rate`` per second over REST;
- a healthy SDK subscriber (``wagerwire.client``) follows ``soak:load`` and the demo's
  ``game:*``: its latency (receive time - hub ``ts``), gaps and duplicates are the ground truth;
- churn: WebSocket connects that subscribe, read ``subscribed`` and close, ``--churn`` per second;
- slow consumers: every 20 s a client subscribes to ``soak:load`` and stops reading until the
  hub cuts it (4000), then resumes from its token;
- every ``--restart-every`` minutes the hub gets SIGTERM and starts again on the same port;
- with Redis, every ``--blip-every`` minutes Redis is frozen (SIGSTOP) for 3 s.

Every ``--sample`` seconds it records the server's RSS, open fds, asyncio tasks (from
``/metrics``), connection counts and the window's latency percentiles into ``OUT/samples.csv``;
at the end it prints the trend (first fifth of the run against the last fifth). Every loop is
bounded by the run's deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from serverproc import WAGERWIRE, ServerProcess  # noqa: E402
from servers import RedisServer  # noqa: E402
from wagerwire.client import Client  # noqa: E402

LOAD = "soak:load"


@dataclass
class Figures:
    """What the load loops saw since the last sample (latencies) and in all (counts)."""

    latencies_ms: list[float] = field(default_factory=list)
    received: int = 0
    published: int = 0
    publish_errors: int = 0
    churned: int = 0
    churn_errors: int = 0
    cuts: int = 0
    cuts_without_close: int = 0
    restarts: int = 0
    blips: int = 0


def proc_figures(pid: int) -> tuple[int, int]:
    """(RSS in KiB, open fds) of ``pid`` and its children (the workers), from /proc."""
    rss = fds = 0
    pids = [pid]
    with contextlib.suppress(OSError):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    for p in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
            fds += len(os.listdir(f"/proc/{p}/fd"))
    return rss, fds


def metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def publisher(url: str, key: str, rate: float, deadline: float, fig: Figures) -> None:
    body = {"channel": LOAD, "data": {"pad": "x" * 1000}}
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=5) as http:
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                r = await http.post(url + "/v1/publish", json=body)
                if r.status_code == 200:
                    fig.published += 1
                else:
                    fig.publish_errors += 1
            except httpx.HTTPError:
                fig.publish_errors += 1
            await asyncio.sleep(max(0.0, 1 / rate - (time.monotonic() - started)))


async def watcher(url: str, key: str, deadline: float, fig: Figures, out: dict[str, int]) -> None:
    async with Client(url, key=key) as client:
        sub = client.subscribe([LOAD, "game:*"])
        seen: dict[str, int] = {}

        async def read() -> None:
            async for msg in sub:
                fig.received += 1
                fig.latencies_ms.append(time.time() * 1000 - msg.ts)
                last = seen.get(msg.channel, 0)
                if msg.offset <= last:
                    out["duplicates"] += 1
                elif last and msg.offset != last + 1:
                    out["holes"] += 1
                seen[msg.channel] = msg.offset
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(read(), max(0.0, deadline - time.monotonic()))
        c = client.counters
        out.update(reconnects=c.reconnects, gaps_backfilled=c.gaps_backfilled,
                   gaps_unrecovered=c.gaps_unrecovered, live_gaps=c.live_gaps,
                   duplicates_dropped=c.duplicates_dropped)


async def churn(ws_url: str, per_s: float, deadline: float, fig: Figures) -> None:
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            async with websockets.connect(ws_url + "/v1/ws?channels=game:crash",
                                          open_timeout=5, close_timeout=2) as ws:
                await asyncio.wait_for(ws.recv(), 5)
            fig.churned += 1
        except (TimeoutError, OSError, websockets.WebSocketException):
            fig.churn_errors += 1
        await asyncio.sleep(max(0.0, 1 / per_s - (time.monotonic() - started)))


async def slow_consumer(ws_url: str, deadline: float, fig: Figures) -> None:
    """Subscribe, stop reading until the hub cuts us, and note whether a close frame came."""
    while time.monotonic() + 20 < deadline:
        try:
            async with websockets.connect(ws_url + f"/v1/ws?channels={LOAD}", max_queue=1,
                                          open_timeout=5, close_timeout=2) as ws:
                await asyncio.sleep(15)  # not reading: the kernel buffers fill, the outbox grows
                try:
                    while True:
                        await asyncio.wait_for(ws.recv(), 5)
                except websockets.ConnectionClosed as exc:
                    fig.cuts += 1
                    if exc.rcvd is None:
                        fig.cuts_without_close += 1
                except TimeoutError:
                    pass  # not cut: the load was too light for this outbox limit
        except (TimeoutError, OSError, websockets.WebSocketException):
            pass
        await asyncio.sleep(5)


async def restarts(server: ServerProcess, every_s: float, deadline: float, fig: Figures) -> None:
    while time.monotonic() + every_s < deadline:
        await asyncio.sleep(every_s)
        port = server.port
        await asyncio.to_thread(server.signal, signal.SIGTERM)
        await asyncio.to_thread(server.start, port)
        fig.restarts += 1


async def blips(redis: RedisServer, every_s: float, deadline: float, fig: Figures) -> None:
    while time.monotonic() + every_s < deadline:
        await asyncio.sleep(every_s)
        assert redis.proc is not None
        redis.proc.send_signal(signal.SIGSTOP)
        await asyncio.sleep(3)
        redis.proc.send_signal(signal.SIGCONT)
        fig.blips += 1


async def sampler(server: ServerProcess, every_s: float, deadline: float, fig: Figures,
                  rows: list[dict[str, float]]) -> None:
    start = time.monotonic()
    async with httpx.AsyncClient(timeout=5) as http:
        while time.monotonic() < deadline:
            await asyncio.sleep(every_s)
            assert server.proc is not None
            rss, fds = proc_figures(server.proc.pid)
            tasks = connections = float("nan")
            with contextlib.suppress(httpx.HTTPError):
                text = (await http.get(server.url + "/metrics")).text
                tasks = metric(text, "wagerwire_asyncio_tasks")
                connections = metric(text, "wagerwire_connections{")
            lat, fig.latencies_ms = sorted(fig.latencies_ms), []
            rows.append({
                "t_s": round(time.monotonic() - start, 1), "rss_kib": rss, "fds": fds,
                "tasks": tasks, "connections": connections,
                "p50_ms": round(lat[len(lat) // 2], 2) if lat else float("nan"),
                "p99_ms": round(lat[int(len(lat) * 0.99)], 2) if lat else float("nan"),
                "received": fig.received, "published": fig.published, "churned": fig.churned,
                "cuts": fig.cuts, "restarts": fig.restarts, "blips": fig.blips,
            })
            print(json.dumps(rows[-1]), flush=True)


def trend(rows: list[dict[str, float]]) -> dict[str, tuple[float, float]]:
    """Median of each figure over the first and the last fifth of the run."""
    n = max(1, len(rows) // 5)
    out = {}
    for name in ("rss_kib", "fds", "tasks", "connections", "p50_ms", "p99_ms"):
        head = [r[name] for r in rows[:n] if r[name] == r[name]]
        tail = [r[name] for r in rows[-n:] if r[name] == r[name]]
        if head and tail:
            out[name] = (statistics.median(head), statistics.median(tail))
    return out


def create_key(server: ServerProcess) -> str:
    proc = subprocess.run(
        [*WAGERWIRE, "keys", "--store", f"sqlite:///{server.db}", "create", "--role",
         "publisher", "--plan", "internal", "--json"],
        capture_output=True, text=True, check=True, cwd=server.workdir, timeout=30)
    return str(json.loads(proc.stdout)["key"])


async def soak(args: argparse.Namespace, workdir: Path) -> int:
    redis = RedisServer(workdir / "redis").start() if args.broker == "redis" else None
    extra = ["--demo", "--outbox-limit", str(args.outbox_limit), "--log-level", "warning"]
    if redis is not None:
        extra += ["--broker", redis.url]
    server = ServerProcess(workdir, extra)
    key = create_key(server)
    server.start()
    fig, rows, seen = Figures(), [], {"duplicates": 0, "holes": 0}
    deadline = time.monotonic() + args.minutes * 60
    try:
        jobs = [
            publisher(server.url, key, args.rate, deadline, fig),
            watcher(server.url, key, deadline, fig, seen),
            churn(server.ws_url, args.churn, deadline, fig),
            sampler(server, args.sample, deadline, fig, rows),
            restarts(server, args.restart_every * 60, deadline, fig),
            *(slow_consumer(server.ws_url, deadline, fig) for _ in range(args.slow)),
        ]
        if redis is not None:
            jobs.append(blips(redis, args.blip_every * 60, deadline, fig))
        await asyncio.wait_for(asyncio.gather(*jobs), args.minutes * 60 + 120)
    finally:
        server.kill()
        if redis is not None:
            redis.kill()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if rows:
        with (out / "samples.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    summary = {
        "minutes": args.minutes, "broker": args.broker, "published": fig.published,
        "publish_errors": fig.publish_errors, "received": fig.received,
        "churned": fig.churned, "churn_errors": fig.churn_errors, "cuts": fig.cuts,
        "cuts_without_close_frame": fig.cuts_without_close, "restarts": fig.restarts,
        "redis_blips": fig.blips, **seen,
        "trend_first_vs_last_fifth": trend(rows),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--broker", choices=["redis", "memory"], default="redis")
    p.add_argument("--rate", type=float, default=50.0, help="publishes per second")
    p.add_argument("--churn", type=float, default=20.0, help="connects per second")
    p.add_argument("--slow", type=int, default=3, help="slow consumers at once")
    p.add_argument("--outbox-limit", type=int, default=262_144)
    p.add_argument("--restart-every", type=float, default=10.0, help="minutes")
    p.add_argument("--blip-every", type=float, default=7.0, help="minutes (Redis only)")
    p.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" /
                                       time.strftime("soak-%Y%m%d-%H%M%S")))
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="ww-soak-") as tmp:
        return asyncio.run(soak(args, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
