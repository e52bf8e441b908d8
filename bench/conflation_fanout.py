"""Conflation under load: slow readers on a conflating channel against an all-fast run, and
``conflate_ms=500`` subscribers against plain ones, in one process and one run.

The hub, its fan-out, the native WebSocket connections (outbox, flusher, conflation) are the
real ones; only the kernel is left out: each connection is attached to an in-memory transport
that counts what it is given. A *fast* transport takes everything at once; a *slow* one is
drained at a tenth of what each subscriber is sent per loop turn, pauses the connection past
64 KiB (as asyncio does at its high-water mark) and resumes it below 16 KiB, so its connection
falls behind, reaches its outbox limit and conflates.

Cases (interleaved, ``--reps`` times, medians reported):

* **all fast**: N subscribers, all fast;
* **all fast, not conflating**: the same on a channel with the disconnect policy (what the
  conflation bookkeeping costs fast subscribers: nothing is tracked there);
* **10 % slow**: the same N, one in ten slow. Reported: the fast subscribers' deliveries per
  second each (target ≥ 0.9 × the all-fast run), messages the slow ones got and dropped,
  cuts (must be 0), RSS before the connections, after them, and at the end;
* **plain** vs **conflate_ms=500**: N subscribers at a fixed publish rate for ``--seconds``;
  CPU seconds of the process per published message (target: rated ≤ plain).

Usage: ``.venv/bin/python bench/conflation_fanout.py [--n 10000] [--reps 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from wagerwire.auth.identity import Gate
from wagerwire.brokers.memory import MemoryBroker
from wagerwire.core.hub import Hub
from wagerwire.core.messages import Message
from wagerwire.stores.sqlite import SqliteStore
from wagerwire.transports.stream import Flusher, StreamConfig, StreamRegistry
from wagerwire.transports.websocket import NativeWsConnection

CH = "odds:bench:conflation"
HIGH, LOW = 64 * 1024, 16 * 1024
MARK = b'"op":"message"'


class MemTransport:
    """What a connection writes to, without a kernel: fast (takes all) or slow (drained)."""

    __slots__ = ("proto", "drain", "buffered", "messages", "paused", "closed")

    def __init__(self, drain: int | None) -> None:
        self.proto: NativeWsConnection | None = None
        self.drain = drain
        self.buffered = 0
        self.messages = 0
        self.paused = False
        self.closed = False

    def write(self, data: bytes) -> None:
        self.messages += data.count(MARK)
        if self.drain is None:
            return
        self.buffered += len(data)
        if self.buffered > HIGH and not self.paused and self.proto is not None:
            self.paused = True
            self.proto.pause_writing()

    def tick(self) -> None:
        if self.drain is None or self.proto is None:
            return
        self.buffered = max(0, self.buffered - self.drain)
        if self.paused and self.buffered < LOW:
            self.paused = False
            self.proto.resume_writing()

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def prices(count: int, keys: int, channel: str = CH) -> list[Message]:
    out = []
    for i in range(count):
        k = i % keys
        data = {"event_id": f"ev{k // 12}", "bookmaker": f"bk{k % 4}", "market_id": "ml",
                "selection_id": f"s{k % 3}", "odds": round(1.5 + (i % 97) / 100, 3),
                "suspended": False, "scraped_at": "2026-12-07T04:00:00Z",
                "match_name": "Home United v Away City", "pad": "x" * 120}
        attrs = {"event": f"ev{k // 12}", "bookmaker": f"bk{k % 4}", "market": f"m{k % 12 // 3}"}
        out.append(Message(channel, i + 1, "e", 1_780_000_000_000 + i, orjson.dumps(data),
                           attrs))
    return out


async def _setup(tmp: str, n: int, slow_every: int, per_turn_bytes: int, limit: int,
                 rate: tuple[int, int] = (0, 0), channel: str = CH
                 ) -> tuple[Hub, StreamRegistry, list[MemTransport]]:
    hub = Hub(SqliteStore(str(Path(tmp) / "b.db")), MemoryBroker())
    await hub.start()
    loop = asyncio.get_running_loop()
    registry = StreamRegistry(hub, Flusher(loop), StreamConfig(outbox_limit=limit), Gate())
    transports = []
    for i in range(n):
        slow = slow_every and i % slow_every == slow_every - 1
        tr = MemTransport(per_turn_bytes // 10 if slow else None)
        conn = NativeWsConnection(registry)
        tr.proto = conn
        conn.attach(tr, loop.time())  # type: ignore[arg-type]
        if hub.subscribe_live(conn, [channel], rate=rate) is None:
            await hub.subscribe(conn, [channel], rate=rate)
        transports.append(tr)
    return hub, registry, transports


async def slow_case(n: int, slow_every: int, turns: list[list[Message]], limit: int,
                    frame_bytes: int) -> dict[str, Any]:
    gc.collect()
    before = rss_mib()
    with tempfile.TemporaryDirectory() as tmp:
        per_turn = len(turns[0]) * frame_bytes
        channel = turns[0][0].channel
        hub, registry, transports = await _setup(tmp, n, slow_every, per_turn, limit,
                                                 channel=channel)
        start_rss = rss_mib()
        peak_slow = 0
        wall = time.perf_counter()
        cpu = time.process_time()
        for batch in turns:
            for message in batch:
                hub.on_message(message)
            await asyncio.sleep(0)  # the hub's fan-out turn
            await asyncio.sleep(0)  # the flusher's writes
            for tr in transports:
                if tr.drain is not None:
                    tr.tick()
                    if tr.proto is not None:
                        peak_slow = max(peak_slow, tr.proto.queued_bytes + tr.buffered)
        wall = time.perf_counter() - wall
        cpu = time.process_time() - cpu
        end_rss = rss_mib()
        fast = [t for t in transports if t.drain is None]
        slow = [t for t in transports if t.drain is not None]
        result = {
            "wall": wall, "cpu": cpu, "fast": len(fast),
            "fast_each_per_s": statistics.fmean(t.messages for t in fast) / wall,
            "fast_each_per_cpu_s": statistics.fmean(t.messages for t in fast) / cpu,
            "fast_min": min(t.messages for t in fast),
            "slow_got": statistics.fmean(t.messages for t in slow) if slow else 0.0,
            "conflated": registry.conflated, "cuts": registry.slow_consumers,
            "rss": (before, start_rss, end_rss), "peak_slow_bytes": peak_slow,
        }
        for tr in transports:
            if tr.proto is not None:
                tr.proto.connection_lost(None)
        await hub.close()
    return result


async def rate_case(n: int, interval: int, msgs: list[Message], seconds: float,
                    per_tick: int) -> dict[str, Any]:
    gc.collect()
    with tempfile.TemporaryDirectory() as tmp:
        hub, registry, transports = await _setup(tmp, n, 0, 0, 4 * 1024 * 1024,
                                                 rate=(interval, 0))
        ticks = int(seconds / 0.01)
        cpu = time.process_time()
        start = time.perf_counter()
        sent = 0
        for t in range(ticks):
            for message in msgs[sent:sent + per_tick]:
                message.ts = int(time.time() * 1000)
                hub.on_message(message)
            sent += per_tick
            await asyncio.sleep(max(0.0, start + (t + 1) * 0.01 - time.perf_counter()))
        await asyncio.sleep(interval / 1000 + 0.05)  # the lane's last beat
        cpu = time.process_time() - cpu
        got = sum(t.messages for t in transports)
        for tr in transports:
            if tr.proto is not None:
                tr.proto.connection_lost(None)
        await hub.close()
    return {"cpu": cpu, "published": sent, "delivered": got,
            "cpu_us_per_published": cpu * 1e6 / sent}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--turns", type=int, default=60)
    ap.add_argument("--per-turn", type=int, default=20)
    ap.add_argument("--keys", type=int, default=48)
    ap.add_argument("--limit", type=int, default=32 * 1024, help="outbox limit, bytes")
    ap.add_argument("--seconds", type=float, default=3.0, help="rate cases: publishing time")
    ap.add_argument("--rate", type=int, default=1000, help="rate cases: messages per second")
    args = ap.parse_args()
    msgs = prices(args.turns * args.per_turn, args.keys)
    frame_bytes = len(msgs[0].data) + 200
    turns = [msgs[i:i + args.per_turn] for i in range(0, len(msgs), args.per_turn)]
    print(f"N={args.n:,}; {len(msgs)} prices over {args.keys} keys in {len(turns)} turns "
          f"of {args.per_turn}; outbox limit {args.limit:,} B; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    plain_msgs = prices(len(msgs), args.keys, "prices:bench:plain")
    plain_turns = [plain_msgs[i:i + args.per_turn] for i in range(0, len(msgs), args.per_turn)]
    runs: dict[str, list[dict[str, Any]]] = {"all fast": [], "all fast, not conflating": [],
                                             "10 % slow": []}
    for _ in range(args.reps):
        runs["all fast"].append(await slow_case(args.n, 0, turns, args.limit, frame_bytes))
        runs["all fast, not conflating"].append(
            await slow_case(args.n, 0, plain_turns, args.limit, frame_bytes))
        runs["10 % slow"].append(await slow_case(args.n, 10, turns, args.limit, frame_bytes))
    base = statistics.median(r["fast_each_per_s"] for r in runs["all fast"])
    base_cpu = statistics.median(r["fast_each_per_cpu_s"] for r in runs["all fast"])
    print("\n| case | fast subscribers | deliveries per fast subscriber per wall s / per CPU s"
          " (medians) | vs all fast (wall / CPU) | fast min delivered | slow: got / published"
          " | conflated | cuts | RSS MiB before → with conns → end | peak slow outbox+buffer B |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for case, rs in runs.items():
        rate = statistics.median(r["fast_each_per_s"] for r in rs)
        per_cpu = statistics.median(r["fast_each_per_cpu_s"] for r in rs)
        last = rs[-1]
        b, s, e = last["rss"]
        print(f"| {case} | {last['fast']:,} | {rate:,.0f} / {per_cpu:,.0f} | "
              f"{rate / base:.2f}× / {per_cpu / base_cpu:.2f}× | "
              f"{last['fast_min']}/{len(msgs)} | {last['slow_got']:.0f}/{len(msgs)} | "
              f"{last['conflated']:,} | {last['cuts']} | {b:.0f} → {s:.0f} → {e:.0f} | "
              f"{last['peak_slow_bytes']:,} |")
    per_tick = max(1, args.rate // 100)
    stream = prices(int(args.seconds * 100) * per_tick, args.keys)
    rates: dict[str, list[dict[str, Any]]] = {"plain": [], "conflate_ms=500": []}
    for _ in range(args.reps):
        rates["plain"].append(await rate_case(args.n, 0, stream, args.seconds, per_tick))
        rates["conflate_ms=500"].append(await rate_case(args.n, 500, stream, args.seconds,
                                                        per_tick))
    plain = statistics.median(r["cpu_us_per_published"] for r in rates["plain"])
    print(f"\n{args.rate} msgs/s for {args.seconds} s to {args.n:,} subscribers:\n")
    print("| case | CPU µs per published message (median) | vs plain | deliveries |")
    print("|---|---|---|---|")
    for case, rs in rates.items():
        us = statistics.median(r["cpu_us_per_published"] for r in rs)
        print(f"| {case} | {us:,.0f} | {us / plain:.2f}× | {rs[-1]['delivered']:,} |")


if __name__ == "__main__":
    asyncio.run(main())
