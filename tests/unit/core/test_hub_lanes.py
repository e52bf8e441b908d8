"""The hub's shared lanes and images: one Lane and one timer per (channel, interval, delay)
whatever the number of subscribers, each key at most once per interval, lifecycle kept in
order; an image is the latest message per key and live data follows with no gap.

Recording sinks stand in for connections; the store (SQLite) and broker are the real ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from wagerwire.brokers.memory import MemoryBroker
from wagerwire.core.hub import Hub
from wagerwire.core.messages import Message
from wagerwire.errors import BadParameter
from wagerwire.stores.sqlite import SqliteStore
from wagerwire.types import now_ms

CH = "odds:f:l"


class Encoder:
    def encode(self, message: Message) -> bytes:
        return b"%d;" % message.offset

    def encode_image(self, message: Message) -> bytes:
        return b"i%d;" % message.offset


class Sink:
    encoder = Encoder()

    def __init__(self) -> None:
        self.got: list[tuple[bytes, Message]] = []
        self.at: list[int] = []  # when each came (ms, the hub's clock)

    def deliver(self, frame: bytes, message: Message) -> None:
        self.got.append((frame, message))
        self.at.append(now_ms())

    def deliver_many(self, frames: list[bytes], joined: bytes, messages: list[Message]) -> None:
        self.got += list(zip(frames, messages, strict=True))
        self.at += [now_ms()] * len(messages)

    async def drain(self) -> None:
        return None

    @property
    def offsets(self) -> list[int]:
        return [m.offset for _, m in self.got]


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    h = Hub(SqliteStore(str(tmp_path / "hub.db")), MemoryBroker())
    await h.start()
    yield h
    await h.close()


async def _price(hub: Hub, sel: str, odds: float) -> int:
    result = await hub.publish(CH, {"selection_id": sel, "odds": odds},
                               attrs={"event": "e", "bookmaker": "b", "market": "m"})
    return result.message.offset


async def _until(check: object, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():  # type: ignore[operator]
        assert loop.time() < deadline
        await asyncio.sleep(0.01)


async def test_one_lane_and_one_timer_for_every_subscriber_of_a_rate(hub: Hub) -> None:
    await _price(hub, "home", 1.0)
    sinks = [Sink() for _ in range(30)]
    for sink in sinks:
        await hub.subscribe(sink, [CH], rate=(200, 0))
    plain = Sink()
    await hub.subscribe(plain, [CH])
    # one loop turn: the lane sees them together, whatever the machine's speed
    await asyncio.gather(*(_price(hub, "home" if i % 2 else "away", 1.0 + i / 100)
                           for i in range(20)))
    last = await hub.publish(CH, {"type": "suspended"}, attrs={"lifecycle": "true"})
    assert len(hub._lanes) == 1 and len(hub._lane_timers) <= 1
    await _until(lambda: sinks[0].offsets and sinks[0].offsets[-1] == last.message.offset)
    assert len(plain.offsets) == 21
    for sink in sinks:
        assert sink.offsets == sinks[0].offsets  # the same batches for all
    got = sinks[0].got
    assert len(got) < 21
    # the newest price per key, and the lifecycle message, all in offset order
    assert sinks[0].offsets == sorted(sinks[0].offsets)
    assert got[-1][1].offset == last.message.offset


async def test_rate_is_checked(hub: Hub) -> None:
    with pytest.raises(BadParameter):
        await hub.subscribe(Sink(), [CH], rate=(120_001, 0))


async def test_image_then_live_without_gap(hub: Hub) -> None:
    for i in range(10):
        await _price(hub, f"s{i % 3}", 1.0 + i)
    sink = Sink()
    (reply,) = await hub.subscribe(sink, [CH], image=True)
    assert reply.image and reply.offset == 10
    assert [f for f, _ in sink.got] == [b"i8;", b"i9;", b"i10;"]
    nxt = await _price(hub, "s0", 99.0)
    await _until(lambda: len(sink.got) == 4)
    assert sink.got[-1][0] == b"%d;" % nxt
    offset, image = await hub.image(CH)
    assert offset == nxt and [m.offset for m in image] == [8, 9, 11]
    with pytest.raises(BadParameter):
        await hub.image("game:crash")


async def test_delayed_lane_reply_counts_only_what_it_let_through(hub: Hub) -> None:
    await _price(hub, "a", 1.0)
    sink = Sink()
    (reply,) = await hub.subscribe(sink, [CH], rate=(0, 300))
    assert reply.delay_ms == 300 and reply.offset == 1
    sent = await _price(hub, "a", 2.0)
    await _until(lambda: sink.offsets == [sent])
    frame, msg = sink.got[0]
    assert sink.at[0] >= msg.ts + 300  # held for the delay
    assert frame == b"%d;" % sent
