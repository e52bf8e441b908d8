"""The observability layer: loop histograms, the hub observer (per publish, per turn, per
replay, never per subscriber), the per-format counts the hub keeps, and the registry's text.

A recording sink stands in for a connection; the store (SQLite) and broker are real.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from wagerwire.brokers.memory import MemoryBroker
from wagerwire.core.hub import Hub
from wagerwire.core.messages import Message, Position
from wagerwire.observability import LoopHistogram, NodeMetrics
from wagerwire.stores.sqlite import SqliteStore


class Encoder:
    def encode(self, message: Message) -> bytes:
        return b"%s#%d;" % (message.channel.encode(), message.offset)


class OtherEncoder(Encoder):
    pass


class Sink:
    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder
        self.got: list[int] = []

    def deliver(self, frame: bytes, message: Message) -> None:
        self.got.append(message.offset)

    def deliver_many(self, frames: list[bytes], joined: bytes, messages: list[Message]) -> None:
        self.got += [m.offset for m in messages]

    async def drain(self) -> None:
        return None


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    h = Hub(SqliteStore(str(tmp_path / "hub.db")), MemoryBroker())
    await h.start()
    yield h
    await h.close()


def test_loop_histogram_buckets_are_cumulative_and_le_inclusive() -> None:
    h = LoopHistogram((1, 2, 5))
    for v in (0.5, 1, 1.5, 2, 7):
        h.observe(v)
    assert h.buckets() == [("1.0", 2), ("2.0", 4), ("5.0", 4), ("+Inf", 5)]
    assert h.count == 5 and h.sum == 12


async def test_observer_hears_publishes_turns_and_replays_not_subscribers(hub: Hub) -> None:
    metrics = NodeMetrics(hub)
    hub.observer = metrics
    metrics.attach_store(hub.store)
    enc = Encoder()
    other = OtherEncoder()
    sinks = [Sink(enc) for _ in range(50)] + [Sink(other) for _ in range(10)]
    for sink in sinks:
        await hub.subscribe(sink, ["t:a"])
    for i in range(20):
        await hub.publish("t:a", {"i": i})
    await asyncio.sleep(0.01)
    assert all(s.got == list(range(1, 21)) for s in sinks)
    assert metrics.durable.count == 20
    assert metrics.channels == {"t:a": 20}
    # per format, counted per group of sinks: 50 and 10 subscribers x 20 messages
    size = sum(len(enc.encode(Message("t:a", i, "e", 0, b""))) for i in range(1, 21))
    assert hub.stats.by_encoder == {enc: [1000, 50 * size], other: [200, 10 * size]}
    late = Sink(enc)
    top = hub.broker.position("t:a")
    assert top is not None
    await hub.subscribe(late, ["t:a"], since={"t:a": Position(top.epoch, 5)})
    assert late.got == list(range(6, 21))
    assert metrics.replay_messages.count == 1 and metrics.replay_messages.sum == 15
    text = metrics.render().decode()
    assert re.search(r"^wagerwire_publish_durable_seconds_count 20(\.0)?$", text, re.M)
    assert re.search(r'^wagerwire_messages_delivered_total\{dialect="native",format="Encoder",transport="other"\} '
                     r"1000(\.0)?$", text, re.M)
    assert re.search(r'^wagerwire_channel_messages_total\{channel="t:a"\} 20(\.0)?$', text, re.M)
    assert re.search(r"^wagerwire_store_commit_batch_messages_sum 20(\.0)?$", text, re.M)
    assert re.search(r"^wagerwire_replay_messages_sum 15(\.0)?$", text, re.M)
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool missing (make system-deps installs Debian's prometheus)")
    check = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                           capture_output=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


async def test_channel_counts_are_capped(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    from wagerwire.observability import metrics as module

    monkeypatch.setattr(module, "MAX_CHANNELS", 2)
    metrics = NodeMetrics(hub)
    hub.observer = metrics
    for ch in ("c:1", "c:2", "c:3", "c:4", "c:1"):
        await hub.publish(ch, {})
    await asyncio.sleep(0.01)
    assert metrics.channels == {"c:1": 2, "c:2": 1, "_other": 2}


def test_dialect_labels_come_from_the_encoders() -> None:
    from wagerwire.dialects import stake, trackersino
    from wagerwire.dialects.datastream import SseRoundEncoder, WsRoundEncoder
    from wagerwire.transports.sse import NativeSseEncoder
    from wagerwire.transports.stream import dialect_of
    from wagerwire.transports.websocket import NATIVE_WS

    assert dialect_of(stake.ENCODER) == "stake"
    assert dialect_of(trackersino.ENCODER) == "trackersino"
    assert dialect_of(WsRoundEncoder(lambda: 0)) == "datastream"
    assert dialect_of(SseRoundEncoder(lambda: 0)) == "datastream"
    assert dialect_of(NATIVE_WS) == dialect_of(NativeSseEncoder()) == "native"
