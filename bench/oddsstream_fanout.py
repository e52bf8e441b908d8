"""OddsStream fan-out against native unfiltered, in one process and one run (no sockets).

The shared kit (bench/run.sh) cannot drive OddsStream: every connection needs its own
single-use token from ``POST /api/stream/token``. This bench measures the part the dialect
changes, the hub's fan-out: the sports simulator's real price updates are fed to
:meth:`Hub.on_message` (the broker's delivery call) a loop turn at a time, and every
subscriber is a sink that queues the frames it is handed, as a connection does, without
writing them.

* **native unfiltered**: N subscribers on ``odds:*`` with the native WebSocket encoder, no
  filter (every subscriber gets every message);
* **oddsstream**: N subscribers spread over 100 different filter combinations (sport,
  competition, bookmaker), subscribed exactly as ``/api/stream`` subscribes them (channels
  narrowed by sport/competition, the bookmaker as an interned hub filter), OddsStream
  encoder.

Reported per case: deliveries (non-empty frames handed to subscribers) per second, CPU µs
per delivery and per published message, and how many times a filter was evaluated (``Filter.matches`` calls), which must not
grow with N. Usage: ``.venv/bin/python bench/oddsstream_fanout.py [--ns 1000,10000] [--reps 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from wagerwire.brokers.memory import MemoryBroker
from wagerwire.core.channels import Filter
from wagerwire.core.hub import FrameEncoder, Hub
from wagerwire.core.messages import Message
from wagerwire.dialects.oddsstream import ENCODER, OddsFilters, default_catalog
from wagerwire.sources.sports import SportsConfig, SportsSimulator
from wagerwire.stores.sqlite import SqliteStore
from wagerwire.transports.websocket import NATIVE_WS

COMBOS = 100


class QueueSink:
    """Queues what it is handed, like a connection's outbox (never written)."""

    __slots__ = ("encoder", "frames", "queued")

    def __init__(self, encoder: FrameEncoder) -> None:
        self.encoder = encoder
        self.frames = 0
        self.queued: list[bytes] = []

    def deliver(self, frame: bytes, message: Message) -> None:
        if frame:
            self.queued.append(frame)
            self.frames += 1

    def deliver_many(self, frames: list[bytes], joined: bytes, messages: list[Message]) -> None:
        if joined:
            self.queued.append(joined)
            self.frames += sum(1 for f in frames if f)
            if len(self.queued) > 64:
                self.queued.clear()

    async def drain(self) -> None:
        return None


def price_turns(turns: int, per_turn: int) -> list[list[Message]]:
    """Loop turns of ``per_turn`` real simulator price updates each (after the first
    steps' opening prices)."""
    sim = SportsSimulator(SportsConfig(seed=7, max_events=24, live_update_chance=0.5,
                                       prematch_update_chance=0.3, start_delay_ms=(0, 5000)))
    now = 1_780_000_000_000
    offsets: dict[str, int] = {}
    flat: list[Message] = []
    for _ in range(5):  # the opening prices: not what a running feed looks like
        now += 1000
        sim.step(now)
    while len(flat) < turns * per_turn:
        now += 1000
        for channel, data, attrs in sim.step(now):
            if not channel.startswith("odds:"):
                continue
            offsets[channel] = offsets.get(channel, 0) + 1
            flat.append(Message(channel, offsets[channel], "e", now, orjson.dumps(data),
                                attrs))
    flat = flat[:turns * per_turn]
    return [flat[i:i + per_turn] for i in range(0, len(flat), per_turn)]


def combos() -> list[OddsFilters]:
    """100 different filter combinations, deterministic."""
    cat = default_catalog()
    every: list[OddsFilters] = []
    for sport in [None, *cat.sports]:
        comps = [c for c, v in cat.competitions.items() if sport is None or v[0] == sport]
        for comp in [None, *comps]:
            for book in [None, *cat.bookmakers]:
                every.append(OddsFilters(sport, comp, book))
    random.Random(3).shuffle(every)
    return every[:COMBOS]


async def run_case(case: str, n: int, turns: list[list[Message]]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        hub = Hub(SqliteStore(str(Path(tmp) / "b.db")), MemoryBroker())
        await hub.start()
        sinks = []
        cat = default_catalog()
        filters = combos()
        for i in range(n):
            if case == "native":
                sink = QueueSink(NATIVE_WS)
                await hub.subscribe(sink, ["odds:*"])
            else:
                f = filters[i % COMBOS]
                sink = QueueSink(ENCODER)
                await hub.subscribe(sink, list(f.channels(cat)), filter=f.hub_filter())
            sinks.append(sink)
        calls = 0
        original = Filter.matches

        def counting(self: Filter, channel: str, attrs: Any) -> bool:
            nonlocal calls
            calls += 1
            return original(self, channel, attrs)

        Filter.matches = counting  # type: ignore[method-assign]
        try:
            start = time.perf_counter()
            cpu = time.process_time()
            for batch in turns:
                for message in batch:
                    hub.on_message(message)
                await asyncio.sleep(0)  # the turn's fan-out runs
            await asyncio.sleep(0)
            cpu = time.process_time() - cpu
            wall = time.perf_counter() - start
        finally:
            Filter.matches = original  # type: ignore[method-assign]
        await hub.close()
    delivered = sum(s.frames for s in sinks)
    return {"case": case, "n": n, "messages": sum(map(len, turns)), "deliveries": delivered,
            "per_s": delivered / wall, "us": cpu * 1e6 / max(1, delivered),
            "us_msg": cpu * 1e6 / max(1, sum(map(len, turns))),
            "filter_calls": calls}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ns", default="1000,10000")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--turns", type=int, default=2000)
    ap.add_argument("--per-turn", type=int, default=1,
                    help="messages per loop turn (1: each publish fans out alone)")
    args = ap.parse_args()
    turns = price_turns(args.turns, args.per_turn)
    print(f"{sum(map(len, turns))} price updates in {len(turns)} loop turns; "
          f"{COMBOS} filter combinations")
    print("| N | case | deliveries/s (median) | µs CPU/delivery | µs CPU/message | deliveries |"
          " filter evals | deliveries/s vs native |")
    print("|---|---|---|---|---|---|---|---|")
    for n in (int(x) for x in args.ns.split(",")):
        results: dict[str, list[dict[str, Any]]] = {"native": [], "oddsstream": []}
        for _ in range(args.reps):  # interleaved
            for case in results:
                results[case].append(await run_case(case, n, turns))
        native = statistics.median(r["per_s"] for r in results["native"])
        for case, runs in results.items():
            rate = statistics.median(r["per_s"] for r in runs)
            us = statistics.median(r["us"] for r in runs)
            us_msg = statistics.median(r["us_msg"] for r in runs)
            print(f"| {n:,} | {case} | {rate:,.0f} | {us:.3f} | {us_msg:.1f} | "
                  f"{runs[0]['deliveries']:,} | {runs[0]['filter_calls']:,} | "
                  f"{rate / native:.2f}× |")


if __name__ == "__main__":
    asyncio.run(main())
