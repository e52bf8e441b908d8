"""Micro-benchmark of one node's fan-out per loop turn, without sockets or clients.

N WebSocket connections (the real ``WsConnection`` with a transport that only counts bytes)
subscribe to one channel; each turn the broker hands the hub M messages, the hub fans them
out and the flusher writes each connection once. Reports CPU microseconds per turn (median of
``--reps`` runs of ``--turns`` turns). ``--observe`` wires the observability layer the way
the server does (``NodeMetrics`` as hub observer and flusher hook); run it against another
tree to compare: ``PYTHONPATH=/other/src python bench/fanout_micro.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from typing import Any

from wagerwire.brokers.memory import MemoryBroker
from wagerwire.core.hub import Hub
from wagerwire.core.messages import Message
from wagerwire.stores.sqlite import SqliteStore
from wagerwire.transports.stream import Flusher, StreamConfig, StreamRegistry
from wagerwire.transports.websocket import NATIVE_WS, WsConnection


class CountingTransport:
    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data: bytes) -> None:
        self.bytes += len(data)

    def get_write_buffer_size(self) -> int:
        return 0


async def run(n: int, per_turn: int, turns: int, observe: bool) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        hub = Hub(SqliteStore(f"{tmp}/b.db"), MemoryBroker())
        await hub.start()
        loop = asyncio.get_running_loop()
        flusher = Flusher(loop)
        registry = StreamRegistry(hub, flusher, StreamConfig())
        if observe:
            from wagerwire.observability.metrics import NodeMetrics

            metrics = NodeMetrics(hub)
            hub.observer = metrics
            flusher.observe = metrics.flushing
        conns: list[Any] = []
        for _ in range(n):
            conn = WsConnection(registry, NATIVE_WS)
            conn.attach(CountingTransport(), loop.time())  # type: ignore[arg-type]
            conns.append(conn)
            await hub.subscribe(conn, ["bench"])
        data = b'{"kind":"bench","payload":"' + b"x" * 100 + b'"}'
        offset = 0
        started = time.process_time()  # CPU time: steadier than wall time on a shared box
        for _ in range(turns):
            for _ in range(per_turn):
                offset += 1
                hub.on_message(Message("bench", offset, "e", 0, data))
            await asyncio.sleep(0)  # the hub's fan-out
            await asyncio.sleep(0)  # the flush
        elapsed = time.process_time() - started
        assert conns[0].transport.bytes > 0
        await hub.close()
        return elapsed / turns * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--per-turn", type=int, default=4)
    parser.add_argument("--turns", type=int, default=500)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--observe", action="store_true")
    args = parser.parse_args()
    results = [asyncio.run(run(args.n, args.per_turn, args.turns, args.observe))
               for _ in range(args.reps)]
    print(f"n={args.n} per_turn={args.per_turn} observe={args.observe}: "
          f"{statistics.median(results):.0f} us/turn (min {min(results):.0f}, "
          f"max {max(results):.0f})")


if __name__ == "__main__":
    main()
