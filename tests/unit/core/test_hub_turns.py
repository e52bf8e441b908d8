"""The hub fans a loop turn's messages out together: per run of one channel, one shared buffer
per (filter, format); order is kept across channels; a subscriber that joins while a turn is
pending never gets that turn's messages (its reply already counts them).

A recording sink stands in for a connection; the store (SQLite) and broker are the real ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from wagerwire.brokers.memory import MemoryBroker
from wagerwire.core.channels import Filter
from wagerwire.core.hub import Hub
from wagerwire.core.messages import Message
from wagerwire.stores.sqlite import SqliteStore


class Encoder:
    def encode(self, message: Message) -> bytes:
        return b"%s#%d;" % (message.channel.encode(), message.offset)


ENCODER = Encoder()


class RecordingSink:
    def __init__(self) -> None:
        self.encoder = ENCODER
        self.received: list[tuple[str, int]] = []
        self.calls: list[bytes] = []

    def deliver(self, frame: bytes, message: Message) -> None:
        self.received.append((message.channel, message.offset))

    def deliver_many(self, frames: list[bytes], joined: bytes, messages: list[Message]) -> None:
        assert joined == b"".join(frames)
        assert frames == [ENCODER.encode(m) for m in messages]
        self.calls.append(joined)
        self.received += [(m.channel, m.offset) for m in messages]

    async def drain(self) -> None:
        return None


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    h = Hub(SqliteStore(str(tmp_path / "hub.db")), MemoryBroker())
    await h.start()
    yield h
    await h.close()


async def _settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_a_busy_channel_reaches_each_subscriber_as_few_shared_buffers(hub: Hub) -> None:
    sinks = [RecordingSink() for _ in range(20)]
    await hub.publish("t:a", 0)
    for sink in sinks:
        await hub.subscribe(sink, ["t:a"])
    await asyncio.gather(*(hub.publish("t:a", i) for i in range(1, 41)))
    await _settle()
    for sink in sinks:
        assert sink.received == [("t:a", o) for o in range(2, 42)]
        assert len(sink.calls) < 40  # many messages per call: the group commit batched them
    shared = {id(c) for s in sinks for c in s.calls}
    assert len(shared) == len(sinks[0].calls)  # every subscriber got the very same buffers


async def test_filters_pick_per_group_and_order_holds_across_channels(hub: Hub) -> None:
    both, only_b = RecordingSink(), RecordingSink()
    await hub.subscribe(both, ["t:x", "t:y"])
    await hub.subscribe(only_b, ["t:*"], filter=Filter.parse({"side": "b"}))
    order = [("t:x", "a"), ("t:y", "b"), ("t:x", "b"), ("t:x", "b"), ("t:y", "a")]
    await asyncio.gather(*(hub.publish(c, i, attrs={"side": s})
                           for i, (c, s) in enumerate(order)))
    await _settle()
    assert both.received == [("t:x", 1), ("t:y", 1), ("t:x", 2), ("t:x", 3), ("t:y", 2)]
    assert only_b.received == [("t:y", 1), ("t:x", 2), ("t:x", 3)]


async def test_a_subscriber_joining_mid_turn_starts_after_the_pending_messages(hub: Hub) -> None:
    early, late, late_pattern = RecordingSink(), RecordingSink(), RecordingSink()
    await hub.subscribe(early, ["t:m"])
    replies = []

    def join_now(message: Message) -> None:
        # Runs inside on_message: the message is pending, its turn not yet fanned out.
        if not replies:
            replies.extend(hub.subscribe_live(late, ["t:m"]) or [])
            replies.extend(hub.subscribe_live(late_pattern, ["t:*"]) or [])

    hub.add_listener(join_now)
    first = await hub.publish("t:m", "first")
    await _settle()
    assert replies[0].offset == first.message.offset  # "you start after this one"
    assert early.received == [("t:m", first.message.offset)]
    assert late.received == [] and late_pattern.received == []
    after = await hub.publish("t:m", "after")
    await _settle()
    assert late.received == [("t:m", after.message.offset)]
    assert late_pattern.received == [("t:m", after.message.offset)]
