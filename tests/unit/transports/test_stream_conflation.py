"""A connection on a conflating channel falls behind instead of growing, and is caught up
from the hub's shared table: notice, newest per key and every lifecycle message in offset
order, then live with no duplicate. Real hub (SQLite, memory broker) and real connection
objects; the transport is an in-memory stand-in that pauses like asyncio's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from wagerwire.auth.identity import Gate
from wagerwire.brokers.memory import MemoryBroker
from wagerwire.core.hub import Hub
from wagerwire.core.messages import Message
from wagerwire.stores.sqlite import SqliteStore
from wagerwire.transports.stream import Flusher, StreamConfig, StreamRegistry
from wagerwire.transports.websocket import NativeWsConnection

CH = "odds:f:l"


class Transport:
    def __init__(self) -> None:
        self.data = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.data += data

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def frames(self) -> list[dict[str, Any]]:
        """The text frames written (server frames: unmasked)."""
        out, data, pos = [], self.data, 0
        while pos + 2 <= len(data):
            op, n = data[pos] & 0x0F, data[pos + 1] & 0x7F
            pos += 2
            if n == 126:
                n, pos = int.from_bytes(data[pos:pos + 2], "big"), pos + 2
            elif n == 127:
                n, pos = int.from_bytes(data[pos:pos + 8], "big"), pos + 8
            if op == 0x1:
                out.append(orjson.loads(data[pos:pos + n]))
            pos += n
        return out


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    h = Hub(SqliteStore(str(tmp_path / "hub.db")), MemoryBroker())
    await h.start()
    yield h
    await h.close()


def msg(offset: int, sel: str, lifecycle: bool = False) -> Message:
    attrs = {"event": "e", "bookmaker": "b", "market": "m"}
    if lifecycle:
        attrs["lifecycle"] = "true"
    data = {"selection_id": sel, "odds": offset, "pad": "x" * 200}
    return Message(CH, offset, "ep", offset, orjson.dumps(data), attrs)


async def _turns() -> None:
    for _ in range(4):
        await asyncio.sleep(0)


async def _connection(hub: Hub, limit: int) -> tuple[NativeWsConnection, Transport,
                                                      StreamRegistry]:
    loop = asyncio.get_running_loop()
    registry = StreamRegistry(hub, Flusher(loop), StreamConfig(outbox_limit=limit), Gate())
    conn = NativeWsConnection(registry)
    transport = Transport()
    conn.attach(transport, loop.time())  # type: ignore[arg-type]
    await hub.subscribe(conn, [CH])
    return conn, transport, registry


async def test_behind_then_caught_up_in_offset_order(hub: Hub) -> None:
    conn, transport, registry = await _connection(hub, 4096)
    hub.on_message(msg(1, "a"))
    await _turns()
    conn.pause_writing()
    offset = 1
    for i in range(60):  # 3 keys, a lifecycle message every 20th
        offset += 1
        hub.on_message(msg(offset, "abc"[i % 3], lifecycle=i % 20 == 19))
        await _turns()
    assert conn.queued_bytes <= 4096 and not transport.closed
    conn.resume_writing()
    await _turns()
    hub.on_message(msg(offset + 1, "a"))
    await _turns()
    frames = [f for f in transport.frames() if f["op"] in ("message", "superseded")]
    got = [f["offset"] for f in frames if f["op"] == "message"]
    notices = [f for f in frames if f["op"] == "superseded"]
    assert got[0] == 1 and got[-1] == offset + 1 and got == sorted(got)
    assert len(got) == len(set(got))  # no duplicate
    skipped = {o for n in notices for a, b in n["offsets"] for o in range(a, b + 1)}
    assert set(got) | skipped == set(range(1, offset + 2)) and not set(got) & skipped
    # every lifecycle message came, and the newest of each key before the live one
    assert {21, 41, 61} <= set(got)
    assert {offset - 2, offset - 1, offset} <= set(got)
    assert registry.slow_consumers == 0 and registry.conflated == len(skipped)


async def test_nothing_to_conflate_is_cut(hub: Hub) -> None:
    conn, transport, registry = await _connection(hub, 4096)
    conn.pause_writing()
    for offset in range(1, 80):  # every message its own key
        hub.on_message(msg(offset, f"s{offset}"))
        await _turns()
    assert registry.slow_consumers == 1 and conn.closed


async def test_one_burst_without_a_pause_is_caught_up_next_turn(hub: Hub) -> None:
    conn, transport, registry = await _connection(hub, 2048)
    for offset in range(1, 40):  # one turn, far past the limit
        hub.on_message(msg(offset, "ab"[offset % 2]))
    await _turns()
    got = [f["offset"] for f in transport.frames() if f["op"] == "message"]
    assert got == [38, 39] and registry.slow_consumers == 0
