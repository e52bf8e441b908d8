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


class CountingSink(RecordingSink):
    """Counts how often the fan-out looks at it (reads its encoder)."""

    def __init__(self) -> None:
        super().__init__()
        self.looked = 0

    @property  # type: ignore[override]
    def encoder(self) -> Encoder:
        self.looked += 1
        return ENCODER

    @encoder.setter
    def encoder(self, value: Encoder) -> None:
        pass


async def test_subscribers_whose_filter_rejects_a_run_are_not_visited(hub: Hub) -> None:
    wants_b = [CountingSink() for _ in range(5)]
    wants_a = [CountingSink() for _ in range(5)]
    for sink in wants_b:
        await hub.subscribe(sink, ["t:g"], filter=Filter.parse({"side": "b"}))
    for sink in wants_a:
        await hub.subscribe(sink, ["t:*"], filter=Filter.parse({"side": "a"}))
    for i in range(10):
        await hub.publish("t:g", i, attrs={"side": "a"})
        await _settle()
    assert all(s.received == [("t:g", o) for o in range(1, 11)] for s in wants_a)
    assert all(s.received == [] for s in wants_b)
    assert all(s.looked <= 1 for s in wants_a + wants_b)  # grouped once, then never looked at


async def test_groups_follow_subscription_changes(hub: Hub) -> None:
    exact_and_pattern, pattern_only, leaving = RecordingSink(), RecordingSink(), RecordingSink()
    await hub.subscribe(exact_and_pattern, ["t:c"], filter=Filter.parse({"side": "a"}))
    await hub.subscribe(exact_and_pattern, ["t:*"])  # also by pattern: served once, exact's
    await hub.subscribe(pattern_only, ["t:*"], filter=Filter.parse({"side": "b"}))
    await hub.subscribe(leaving, ["t:c"])
    await hub.publish("t:c", 0, attrs={"side": "a"})
    await hub.publish("t:c", 1, attrs={"side": "b"})
    await _settle()
    assert exact_and_pattern.received == [("t:c", 1)]
    assert pattern_only.received == [("t:c", 2)]
    assert leaving.received == [("t:c", 1), ("t:c", 2)]
    await hub.unsubscribe(leaving, ["t:c"])
    await hub.unsubscribe(exact_and_pattern, ["t:c"])  # now only its pattern, unfiltered
    hub.remove_sink(pattern_only)
    await hub.publish("t:c", 2, attrs={"side": "b"})
    await _settle()
    assert leaving.received == [("t:c", 1), ("t:c", 2)]
    assert exact_and_pattern.received == [("t:c", 1), ("t:c", 3)]
    assert pattern_only.received == [("t:c", 2)]
