"""MemoryBroker specifics, and the broker driving a real SqliteStore as its persist."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path

import pytest

from wagerwire.brokers.memory import MemoryBroker, new_epoch
from wagerwire.core.messages import Message, PublishResult
from wagerwire.errors import Unavailable
from wagerwire.stores.sqlite import SqliteStore


class Recorder:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    def on_message(self, message: Message) -> None:
        self.messages.append(message)

    def offsets(self, channel: str) -> list[int]:
        return [m.offset for m in self.messages if m.channel == channel]


async def persisted(message: Message) -> None:
    await asyncio.sleep(0)


async def started(handler: Recorder | None = None, **kw: float) -> MemoryBroker:
    broker = MemoryBroker(**kw)
    await broker.start(handler or Recorder(), {})
    return broker


def test_epochs_are_eight_base36_characters() -> None:
    epochs = {new_epoch() for _ in range(100)}
    assert all(re.fullmatch(r"[a-z0-9]{8}", e) for e in epochs)
    assert len(epochs) == 100


async def test_publish_before_start_is_unavailable() -> None:
    broker = MemoryBroker()
    with pytest.raises(Unavailable):
        await broker.publish("a", b"{}", ts=1, attrs=None, idempotency_key=None, persist=persisted)


async def test_a_cancelled_publisher_does_not_cancel_the_publish() -> None:
    recorder = Recorder()
    broker = await started(recorder)
    gate = asyncio.Event()

    async def persist(message: Message) -> None:
        await gate.wait()

    task = asyncio.create_task(
        broker.publish("a", b"{}", ts=1, attrs=None, idempotency_key=None, persist=persist)
    )
    await asyncio.sleep(0.001)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gate.set()
    result = await broker.publish(
        "a", b"{}", ts=2, attrs=None, idempotency_key=None, persist=persist
    )
    assert result.message.offset == 2
    assert recorder.offsets("a") == [1, 2]


async def test_retries_survive_the_cancellation_of_the_first_and_of_each_other() -> None:
    recorder = Recorder()
    broker = await started(recorder)
    gate = asyncio.Event()

    async def persist(message: Message) -> None:
        await gate.wait()

    def publish() -> asyncio.Task[PublishResult]:
        return asyncio.create_task(
            broker.publish("a", b"{}", ts=1, attrs=None, idempotency_key="k", persist=persist)
        )

    first, quitter, patient = publish(), publish(), publish()
    await asyncio.sleep(0.001)
    first.cancel()
    quitter.cancel()
    await asyncio.sleep(0.001)
    assert not patient.done()
    gate.set()
    result = await patient
    assert result.duplicate and result.message.offset == 1
    assert first.cancelled() and quitter.cancelled()
    assert recorder.offsets("a") == [1]


async def test_a_failing_handler_does_not_stall_the_channel() -> None:
    seen: list[int] = []

    class Flaky:
        def on_message(self, message: Message) -> None:
            seen.append(message.offset)
            if message.offset == 1:
                raise RuntimeError("handler bug")

    broker = MemoryBroker()
    await broker.start(Flaky(), {})
    for n in range(3):
        await broker.publish("a", b"{}", ts=n, attrs=None, idempotency_key=None,
                             persist=persisted)
    assert seen == [1, 2, 3]
    position = broker.position("a")
    assert position is not None and position.offset == 3


async def test_idempotency_keys_are_forgotten_after_the_window() -> None:
    broker = await started(idempotency_window_s=1)
    for n in range(100):
        await broker.publish(
            "a", b"{}", ts=n * 100, attrs=None, idempotency_key=f"k{n}", persist=persisted
        )
    assert len(broker._window) <= 12  # only keys of the last second are kept


async def test_attrs_and_key_travel_with_the_message() -> None:
    recorder = Recorder()
    broker = await started(recorder)
    result = await broker.publish(
        "odds:football:epl", b'{"p":1.5}', ts=5, attrs={"bookmaker": "b1"},
        idempotency_key="k", persist=persisted,
    )
    m = recorder.messages[0]
    assert m is result.message
    assert (m.data, dict(m.attrs or {}), m.idempotency_key, m.ts) == (
        b'{"p":1.5}', {"bookmaker": "b1"}, "k", 5
    )


# -- with the SQLite store as persist ---------------------------------------------------------


async def test_with_sqlite_concurrent_publishes_match_the_store(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.db"))
    await store.open()
    recorder = Recorder()
    broker = MemoryBroker()
    await broker.start(recorder, await store.positions())
    channels = ["game:crash", "game:dice", "sports:event:9"]
    results = await asyncio.gather(*(
        broker.publish(channels[n % 3], b'{"n":%d}' % n, ts=n, attrs=None,
                       idempotency_key=None, persist=store.append)
        for n in range(900)
    ))
    assert all(isinstance(r, PublishResult) for r in results)
    for channel in channels:
        assert recorder.offsets(channel) == list(range(1, 301))
        assert [m.offset for m in await store.read(channel, 0, 1000)] == list(range(1, 301))
    assert await store.positions() == {c: broker.position(c) for c in channels}
    assert store.commits < 100
    await broker.close()
    await store.close()


async def test_with_sqlite_an_outage_leaves_no_hole(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    store = SqliteStore(str(path), busy_timeout_ms=50)
    await store.open()
    recorder = Recorder()
    broker = MemoryBroker()
    await broker.start(recorder, await store.positions())

    async def pub(n: int) -> PublishResult | BaseException:
        try:
            return await broker.publish("a", b"%d" % n, ts=n, attrs=None,
                                        idempotency_key=None, persist=store.append)
        except Unavailable as exc:
            return exc

    first = await asyncio.gather(*(pub(n) for n in range(50)))
    lock = sqlite3.connect(path, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    during = await asyncio.gather(*(pub(n) for n in range(50, 100)))
    lock.execute("ROLLBACK")
    lock.close()
    after = await asyncio.gather(*(pub(n) for n in range(100, 150)))
    assert all(isinstance(r, PublishResult) for r in first + after)
    assert all(isinstance(r, Unavailable) for r in during)
    assert recorder.offsets("a") == list(range(1, 101))
    stored = await store.read("a", 0, 1000)
    assert [m.offset for m in stored] == list(range(1, 101))
    assert [m.data for m in stored] == [m.data for m in recorder.messages]
    assert (await store.positions())["a"] == broker.position("a")
    await broker.close()
    await store.close()


async def test_the_idempotency_window_is_bounded_in_bytes_oldest_first() -> None:
    broker = await started(idempotency_window_bytes=256 * 1024)
    data = b'"' + b"x" * 8000 + b'"'
    for i in range(200):  # ~1.7 MB of keyed publishes
        await broker.publish("idem:b", data, ts=1000 + i, attrs=None,
                             idempotency_key=f"k{i}", persist=persisted)
    assert 0 < broker.idempotency_bytes <= 256 * 1024
    # the newest are remembered, the oldest forgotten
    newest = await broker.publish("idem:b", data, ts=1300, attrs=None,
                                  idempotency_key="k199", persist=persisted)
    assert newest.duplicate and newest.message.offset == 200
    oldest = await broker.publish("idem:b", data, ts=1300, attrs=None,
                                  idempotency_key="k0", persist=persisted)
    assert not oldest.duplicate


async def test_a_retry_past_the_byte_window_is_caught_by_the_store(tmp_path: Path) -> None:
    from wagerwire.core.hub import Hub

    broker = MemoryBroker(idempotency_window_bytes=64 * 1024)
    hub = Hub(SqliteStore(str(tmp_path / "idem.db")), broker)
    await hub.start()
    try:
        first = await hub.publish("idem:c", "x" * 8000, idempotency_key="first")
        for i in range(50):
            await hub.publish("idem:c", "y" * 8000, idempotency_key=f"k{i}")
        assert broker.idempotency_bytes <= 64 * 1024
        assert ("idem:c", "first") not in broker._window  # forgotten by the broker
        retry = await hub.publish("idem:c", "x" * 8000, idempotency_key="first")
        assert retry.duplicate and retry.message.offset == first.message.offset
    finally:
        await hub.close()


def test_the_window_is_bounded_in_bytes_for_every_broker() -> None:
    """The byte budget lives in the shared window, so the Redis broker's writer has it too."""
    from wagerwire.brokers.inflight import KEY_OVERHEAD_BYTES, IdempotencyWindow, Publish

    loop = asyncio.new_event_loop()
    try:
        window = IdempotencyWindow(window_ms=300_000, budget_bytes=10 * (1000 + KEY_OVERHEAD_BYTES
                                                                          + 8))
        for i in range(30):
            window.remember(Publish(i, loop.create_future(), ("c:a", f"k{i:03}")), 1000)
        assert window.nbytes <= window.budget_bytes
        assert len(window) == 10 and ("c:a", "k029") in window and ("c:a", "k000") not in window
        window.remember(Publish(31, loop.create_future(), ("c:a", "huge")), 10**6)
        assert ("c:a", "huge") not in window  # heavier than the whole budget
    finally:
        loop.close()
