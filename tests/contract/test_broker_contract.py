"""The Broker contract (``wagerwire.core.broker``), run against every backend's factory.

``persist`` here is a fake store whose appends take random time, so they complete out of
order, and which can fail chosen offsets: the broker alone must keep offsets without holes
and deliver in order.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable, Mapping
from typing import Protocol

import pytest

from wagerwire.core.broker import Broker, BrokerHandler
from wagerwire.core.messages import Message, Position, PublishResult
from wagerwire.errors import Unavailable


class BrokerFactory(Protocol):
    """What a backend's factory offers (see ``conftest.py``): a started broker."""

    async def __call__(
        self,
        handler: BrokerHandler,
        positions: Mapping[str, Position] | None = None,
        *,
        idempotency_window_s: float = 300,
    ) -> Broker: ...


class PersistError(Exception):
    """What the fake store raises for offsets it is told to fail."""


class FakeStore:
    """Records persisted messages; random delays; fails where ``fail`` says so."""

    def __init__(self, *, seed: int = 0, max_delay: float = 0.0) -> None:
        self.rng = random.Random(seed)
        self.max_delay = max_delay
        self.fail: Callable[[Message], bool] = lambda m: False
        self.kept: dict[tuple[str, int], Message] = {}
        self.calls: list[tuple[str, int]] = []

    async def persist(self, message: Message) -> None:
        self.calls.append((message.channel, message.offset))
        failing = self.fail(message)
        if self.max_delay:
            await asyncio.sleep(self.rng.random() * self.max_delay)
        if failing:
            raise PersistError(f"cannot persist {message.channel} #{message.offset}")
        self.kept[(message.channel, message.offset)] = message


class Recorder:
    """A BrokerHandler that checks every delivered message was persisted first."""

    def __init__(self, store: FakeStore | None = None) -> None:
        self.store = store
        self.messages: list[Message] = []

    def on_message(self, message: Message) -> None:
        if self.store is not None:
            assert self.store.kept.get((message.channel, message.offset)) is message
        self.messages.append(message)

    def offsets(self, channel: str) -> list[int]:
        return [m.offset for m in self.messages if m.channel == channel]


async def publish(
    broker: Broker,
    store: FakeStore,
    channel: str,
    n: int = 0,
    *,
    ts: int = 1_000,
    key: str | None = None,
) -> PublishResult:
    data = b'{"n":%d}' % n
    return await broker.publish(
        channel, data, ts=ts, attrs=None, idempotency_key=key, persist=store.persist
    )


# -- offsets and epochs ---------------------------------------------------------------------


async def test_offsets_run_from_one_without_holes(broker_factory: BrokerFactory) -> None:
    store = FakeStore()
    recorder = Recorder(store)
    broker = await broker_factory(recorder)
    results = [await publish(broker, store, ch, n) for n in range(5) for ch in ("a", "b")]
    assert [r.message.offset for r in results if r.message.channel == "a"] == [1, 2, 3, 4, 5]
    assert recorder.offsets("a") == [1, 2, 3, 4, 5]
    assert recorder.offsets("b") == [1, 2, 3, 4, 5]
    assert not any(r.duplicate for r in results)
    first = results[0].message
    assert (first.channel, first.ts, first.data, first.attrs) == ("a", 1_000, b'{"n":0}', None)
    assert all(m is store.kept[(m.channel, m.offset)] for m in recorder.messages)


async def test_new_channels_get_a_new_stable_epoch(broker_factory: BrokerFactory) -> None:
    store = FakeStore()
    broker = await broker_factory(Recorder(store))
    assert broker.position("game:crash") is None
    a1 = (await publish(broker, store, "game:crash")).message
    a2 = (await publish(broker, store, "game:crash")).message
    b1 = (await publish(broker, store, "game:dice")).message
    assert re.fullmatch(r"[a-z0-9]{1,32}", a1.epoch)
    assert a1.epoch == a2.epoch
    assert b1.epoch != a1.epoch
    assert broker.position("game:crash") == Position(a1.epoch, 2)


async def test_seeded_positions_continue_in_the_same_epoch(broker_factory: BrokerFactory) -> None:
    store = FakeStore()
    recorder = Recorder(store)
    broker = await broker_factory(recorder, {"a": Position("ep1", 41), "b": Position("ep2", 7)})
    assert broker.position("a") == Position("ep1", 41)
    result = await publish(broker, store, "a")
    assert (result.message.epoch, result.message.offset) == ("ep1", 42)
    assert broker.position("a") == Position("ep1", 42)
    assert broker.position("b") == Position("ep2", 7)


async def test_a_restarted_broker_continues_every_channel(broker_factory: BrokerFactory) -> None:
    store = FakeStore()
    first = await broker_factory(Recorder(store))
    for n in range(3):
        await publish(first, store, "a", n)
    await publish(first, store, "b")
    positions = {c: p for c in ("a", "b") if (p := first.position(c)) is not None}
    await first.close()
    second = await broker_factory(Recorder(store), positions)
    a = (await publish(second, store, "a")).message
    b = (await publish(second, store, "b")).message
    assert a.position == Position(positions["a"].epoch, 4)
    assert b.position == Position(positions["b"].epoch, 2)


# -- ordering -------------------------------------------------------------------------------


async def test_concurrent_publishes_are_delivered_in_offset_order(
    broker_factory: BrokerFactory,
) -> None:
    store = FakeStore(seed=7, max_delay=0.005)
    recorder = Recorder(store)
    broker = await broker_factory(recorder)
    channels = ["game:crash", "game:dice", "odds:football:epl"]
    jobs = [publish(broker, store, channels[n % 3], n) for n in range(300)]
    results = await asyncio.gather(*jobs)
    for channel in channels:
        assert recorder.offsets(channel) == list(range(1, 101))
        mine = sorted(r.message.offset for r in results if r.message.channel == channel)
        assert mine == list(range(1, 101))
    # each publish got the offset of its issue order within its channel
    for n, result in enumerate(results):
        assert result.message.offset == n // 3 + 1
        assert result.message.data == b'{"n":%d}' % n
    assert broker.position("game:dice") is not None
    assert broker.position("game:dice") == Position(results[1].message.epoch, 100)


async def test_publish_returns_after_delivery(broker_factory: BrokerFactory) -> None:
    store = FakeStore(seed=3, max_delay=0.003)
    recorder = Recorder(store)
    broker = await broker_factory(recorder)

    async def publish_and_check(n: int) -> None:
        result = await publish(broker, store, "a", n)
        assert result.message in recorder.messages

    await asyncio.gather(*(publish_and_check(n) for n in range(50)))


# -- idempotency ----------------------------------------------------------------------------


async def test_a_retried_key_returns_the_first_result(broker_factory: BrokerFactory) -> None:
    store = FakeStore()
    recorder = Recorder(store)
    broker = await broker_factory(recorder, idempotency_window_s=60)
    first = await publish(broker, store, "a", 1, ts=10_000, key="k")
    again = await publish(broker, store, "a", 2, ts=70_000, key="k")  # exactly 60 s later
    assert not first.duplicate
    assert again.duplicate and again.message is first.message
    other_channel = await publish(broker, store, "b", 3, ts=10_000, key="k")
    assert not other_channel.duplicate
    other_key = await publish(broker, store, "a", 4, ts=10_000, key="k2")
    assert not other_key.duplicate and other_key.message.offset == 2
    assert recorder.offsets("a") == [1, 2]
    assert len(store.calls) == 3


async def test_a_key_is_forgotten_after_the_window(broker_factory: BrokerFactory) -> None:
    store = FakeStore()
    recorder = Recorder(store)
    broker = await broker_factory(recorder, idempotency_window_s=60)
    await publish(broker, store, "a", ts=10_000, key="k")
    late = await publish(broker, store, "a", ts=70_001, key="k")
    assert not late.duplicate and late.message.offset == 2
    again = await publish(broker, store, "a", ts=70_002, key="k")
    assert again.duplicate and again.message is late.message
    assert recorder.offsets("a") == [1, 2]


async def test_concurrent_retries_wait_for_the_first(broker_factory: BrokerFactory) -> None:
    store = FakeStore(seed=1, max_delay=0.01)
    recorder = Recorder(store)
    broker = await broker_factory(recorder)
    results = await asyncio.gather(*(publish(broker, store, "a", n, key="k") for n in range(8)))
    assert [r.duplicate for r in results] == [False] + [True] * 7
    assert all(r.message is results[0].message for r in results)
    assert recorder.offsets("a") == [1]
    assert store.calls == [("a", 1)]


async def test_retries_of_a_failed_first_publish_once(broker_factory: BrokerFactory) -> None:
    store = FakeStore(seed=2, max_delay=0.005)
    store.fail = lambda m: m.data == b'{"n":0}'
    recorder = Recorder(store)
    broker = await broker_factory(recorder)
    results = await asyncio.gather(
        *(publish(broker, store, "a", n, key="k") for n in range(6)), return_exceptions=True
    )
    assert isinstance(results[0], PersistError)
    rest = [r for r in results[1:] if isinstance(r, PublishResult)]
    assert len(rest) == 5
    assert [r.duplicate for r in rest] == [False, True, True, True, True]
    assert all(r.message is rest[0].message for r in rest)
    assert rest[0].message.offset == 1  # the failed offset was reused
    assert recorder.offsets("a") == [1]


# -- persist failures -----------------------------------------------------------------------


async def test_a_failed_persist_raises_delivers_nothing_and_reuses_the_offset(
    broker_factory: BrokerFactory,
) -> None:
    store = FakeStore()
    recorder = Recorder(store)
    broker = await broker_factory(recorder)
    await publish(broker, store, "a", 1)
    store.fail = lambda m: True
    with pytest.raises(PersistError):
        await publish(broker, store, "a", 2)
    assert recorder.offsets("a") == [1]
    assert broker.position("a") is not None and broker.position("a") == Position(
        recorder.messages[0].epoch, 1
    )
    store.fail = lambda m: False
    result = await publish(broker, store, "a", 3)
    assert result.message.offset == 2
    assert result.message.epoch == recorder.messages[0].epoch
    assert recorder.offsets("a") == [1, 2]


async def test_the_error_raised_is_the_persist_error(broker_factory: BrokerFactory) -> None:
    store = FakeStore()
    broker = await broker_factory(Recorder(store))
    boom = PersistError("boom")

    async def persist(message: Message) -> None:
        raise boom

    with pytest.raises(PersistError) as caught:
        await broker.publish("a", b"{}", ts=1, attrs=None, idempotency_key=None, persist=persist)
    assert caught.value is boom


async def test_a_failure_abandons_later_publishes_still_in_flight(
    broker_factory: BrokerFactory,
) -> None:
    store = FakeStore()
    recorder = Recorder(store)
    broker = await broker_factory(recorder)
    gates = {n: asyncio.Event() for n in range(1, 5)}

    async def persist(message: Message) -> None:
        await gates[message.offset].wait()
        if message.offset == 2:
            raise PersistError("offset 2 failed")
        store.kept[(message.channel, message.offset)] = message

    async def pub(n: int) -> PublishResult:
        return await broker.publish(
            "a", b"%d" % n, ts=1, attrs=None, idempotency_key=None, persist=persist
        )

    tasks = [asyncio.create_task(pub(n)) for n in range(1, 5)]
    await asyncio.sleep(0)
    for n in (4, 3, 1, 2):  # later ones persist first; 2 fails last
        gates[n].set()
        await asyncio.sleep(0.001)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], PublishResult) and results[0].message.offset == 1
    assert isinstance(results[1], PersistError)
    assert isinstance(results[2], Unavailable) and isinstance(results[3], Unavailable)
    assert recorder.offsets("a") == [1]
    followers = [await publish(broker, store, "a", n) for n in range(2)]
    assert [r.message.offset for r in followers] == [2, 3]
    assert recorder.offsets("a") == [1, 2, 3]


async def test_several_failures_in_flight_leave_no_hole(broker_factory: BrokerFactory) -> None:
    store = FakeStore(seed=11, max_delay=0.004)
    recorder = Recorder(store)
    broker = await broker_factory(recorder)
    # an outage hits the persists of every publish numbered 5-11 modulo 20
    store.fail = lambda m: 5 <= int(m.data[5:-1]) % 20 < 12

    async def pub(channel: str, n: int) -> PublishResult | BaseException:
        try:
            return await publish(broker, store, channel, n)
        except (PersistError, Unavailable) as exc:
            return exc

    results: list[PublishResult | BaseException] = []
    for round_ in range(5):  # bursts of concurrent publishes straddling outages
        burst = [pub(("a", "b")[n % 2], round_ * 40 + n) for n in range(40)]
        results += await asyncio.gather(*burst)
    ok = [r for r in results if isinstance(r, PublishResult)]
    failed = [r for r in results if not isinstance(r, PublishResult)]
    assert ok and failed
    for channel in ("a", "b"):
        delivered = recorder.offsets(channel)
        assert delivered == list(range(1, len(delivered) + 1))
        assert sorted(r.message.offset for r in ok if r.message.channel == channel) == delivered
    store.fail = lambda m: False
    for channel in ("a", "b"):
        nxt = await publish(broker, store, channel)
        assert nxt.message.offset == len(recorder.offsets(channel))
        assert recorder.offsets(channel) == list(range(1, nxt.message.offset + 1))


# -- lifecycle ------------------------------------------------------------------------------


async def test_close_fails_pending_and_later_publishes(broker_factory: BrokerFactory) -> None:
    store = FakeStore()
    recorder = Recorder(store)
    broker = await broker_factory(recorder)
    gate = asyncio.Event()

    async def persist(message: Message) -> None:
        await gate.wait()

    pending = asyncio.create_task(
        broker.publish("a", b"{}", ts=1, attrs=None, idempotency_key=None, persist=persist)
    )
    await asyncio.sleep(0.001)
    await broker.close()
    gate.set()
    with pytest.raises(Unavailable):
        await pending
    with pytest.raises(Unavailable):
        await publish(broker, store, "a")
    assert recorder.messages == []


async def test_subscribe_and_unsubscribe_are_accepted(broker_factory: BrokerFactory) -> None:
    store = FakeStore()
    recorder = Recorder(store)
    broker = await broker_factory(recorder)
    await broker.subscribe("a")
    await publish(broker, store, "a")
    await broker.unsubscribe("a")
    assert recorder.offsets("a") == [1]


async def test_latest_is_at_least_the_delivered_position(broker_factory: BrokerFactory) -> None:
    store = FakeStore()
    broker = await broker_factory(Recorder(store))
    assert await broker.latest("nothing-yet") is None
    for n in range(3):
        await publish(broker, store, "l", n)
    position = broker.position("l")
    assert position is not None and position.offset == 3
    assert await broker.latest("l") == position
