"""The Store contract (``wagerwire.core.store``), run against every backend's factory."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import pytest

from wagerwire.core.messages import Message, Position
from wagerwire.core.store import ChannelInfo, RetentionRule, Store, append_soon
from wagerwire.errors import Unavailable


class CountingStore(Store, Protocol):
    commits: int  # committed append transactions, to observe group commit


class StoreFactory(Protocol):
    """What a backend's factory offers (see ``conftest.py``)."""

    async def __call__(
        self, *, retention: Sequence[RetentionRule] = (), reopen: bool = False
    ) -> CountingStore: ...

    def outage(self) -> AbstractAsyncContextManager[None]: ...


def msg(
    channel: str,
    offset: int,
    *,
    epoch: str = "ep1",
    ts: int | None = None,
    attrs: dict[str, str] | None = None,
    key: str | None = None,
) -> Message:
    ts = 1_000_000 + offset * 10 if ts is None else ts
    return Message(channel, offset, epoch, ts, b'{"n":%d}' % offset, attrs, key)


def fields(m: Message) -> tuple[object, ...]:
    attrs = dict(m.attrs) if m.attrs is not None else None
    return (m.channel, m.offset, m.epoch, m.ts, bytes(m.data), attrs, m.idempotency_key)


def offsets(messages: Sequence[Message]) -> list[int]:
    return [m.offset for m in messages]


async def fill(store: Store, channel: str, count: int, **kw: str) -> list[Message]:
    sent = [msg(channel, n, **kw) for n in range(1, count + 1)]
    for m in sent:
        await store.append(m)
    return sent


# -- appends and reads --------------------------------------------------------------------


async def test_append_then_read_round_trips_every_field(store_factory: StoreFactory) -> None:
    store = await store_factory()
    sent = [
        msg("game:crash", 1, attrs={"game": "crash", "tier": "vip"}, key="k-1"),
        msg("game:crash", 2),
        msg("game:crash", 3, attrs={}),
    ]
    for m in sent:
        await store.append(m)
    got = await store.read("game:crash", 0, 10)
    assert [fields(m) for m in got] == [fields(m) for m in sent]
    assert all(isinstance(m.data, bytes) for m in got)


async def test_each_committed_batch_is_reported_with_its_size(
    store_factory: StoreFactory,
) -> None:
    """``on_commit(messages, seconds)`` (what /metrics' commit histograms hear)."""
    store = await store_factory()
    seen: list[tuple[int, float]] = []
    store.on_commit = lambda n, seconds: seen.append((n, seconds))  # type: ignore[attr-defined]
    await asyncio.gather(*(store.append(msg("c:batch", n)) for n in range(1, 41)))
    await fill(store, "c:other", 5)
    assert sum(n for n, _ in seen) == 45
    assert len(seen) < 45  # the concurrent appends shared commits
    assert all(n >= 1 and 0 <= seconds < 30 for n, seconds in seen)


async def test_read_after_and_limit(store_factory: StoreFactory) -> None:
    store = await store_factory()
    await fill(store, "a", 10)
    assert offsets(await store.read("a", 0, 3)) == [1, 2, 3]
    assert offsets(await store.read("a", 3, 4)) == [4, 5, 6, 7]
    assert offsets(await store.read("a", 7, 100)) == [8, 9, 10]
    assert await store.read("a", 10, 5) == []
    assert await store.read("a", 0, 0) == []
    assert await store.read("unknown", 0, 5) == []


async def test_read_last_returns_newest_ascending(store_factory: StoreFactory) -> None:
    store = await store_factory()
    await fill(store, "a", 6)
    assert offsets(await store.read_last("a", 3)) == [4, 5, 6]
    assert offsets(await store.read_last("a", 100)) == [1, 2, 3, 4, 5, 6]
    assert await store.read_last("a", 0) == []
    assert await store.read_last("unknown", 3) == []


async def test_read_by_time_is_half_open_and_limited(store_factory: StoreFactory) -> None:
    store = await store_factory()
    for n, ts in enumerate([100, 200, 200, 300, 400, 500], start=1):
        await store.append(msg("a", n, ts=ts))
    assert offsets(await store.read_by_time("a", 200, 400, 10)) == [2, 3, 4]
    assert offsets(await store.read_by_time("a", 201, None, 10)) == [4, 5, 6]
    assert offsets(await store.read_by_time("a", 0, None, 2)) == [1, 2]
    assert offsets(await store.read_by_time("a", 0, 100, 10)) == []
    assert await store.read_by_time("a", 600, None, 10) == []


async def test_channels_are_independent(store_factory: StoreFactory) -> None:
    store = await store_factory()
    for n in range(1, 4):
        await store.append(msg("b", n, epoch="eb"))
        await store.append(msg("a", n, epoch="ea"))
    await store.append(msg("a", 4, epoch="ea"))
    assert offsets(await store.read("a", 0, 10)) == [1, 2, 3, 4]
    assert offsets(await store.read("b", 0, 10)) == [1, 2, 3]
    assert {m.channel for m in await store.read("b", 0, 10)} == {"b"}
    assert await store.positions() == {"a": Position("ea", 4), "b": Position("eb", 3)}


async def test_channel_info_and_channels(store_factory: StoreFactory) -> None:
    store = await store_factory()
    assert await store.channel_info("odds:football:epl") is None
    assert await store.channels() == []
    await fill(store, "odds:football:epl", 3)
    await fill(store, "game:crash", 2)
    info = await store.channel_info("odds:football:epl")
    assert info == ChannelInfo("odds:football:epl", "ep1", 3, 1, 3, msg("x", 3).ts)
    assert [c.name for c in await store.channels()] == ["game:crash", "odds:football:epl"]
    assert (await store.channels())[0] == ChannelInfo("game:crash", "ep1", 2, 1, 2, msg("x", 2).ts)


# -- durability and migrations --------------------------------------------------------------


async def test_reopen_keeps_messages_and_positions(store_factory: StoreFactory) -> None:
    store = await store_factory()
    sent = await fill(store, "a", 5)
    await fill(store, "b", 2, epoch="other")
    await store.close()
    reopened = await store_factory(reopen=True)
    assert [fields(m) for m in await reopened.read("a", 0, 10)] == [fields(m) for m in sent]
    assert await reopened.positions() == {"a": Position("ep1", 5), "b": Position("other", 2)}
    await reopened.append(msg("a", 6))
    assert offsets(await reopened.read_last("a", 1)) == [6]


async def test_fresh_store_is_empty(store_factory: StoreFactory) -> None:
    first = await store_factory()
    await fill(first, "a", 2)
    fresh = await store_factory()
    assert await fresh.positions() == {}
    assert await fresh.channels() == []


async def test_reopening_repeatedly_is_idempotent(store_factory: StoreFactory) -> None:
    store = await store_factory()
    await fill(store, "a", 3)
    for _ in range(3):
        await store.close()
        store = await store_factory(reopen=True)
        assert await store.positions() == {"a": Position("ep1", 3)}
    await store.append(msg("a", 4))
    assert offsets(await store.read("a", 0, 10)) == [1, 2, 3, 4]


async def test_close_commits_pending_appends(store_factory: StoreFactory) -> None:
    store = await store_factory()
    tasks = [asyncio.create_task(store.append(msg("a", n))) for n in range(1, 101)]
    await asyncio.sleep(0)  # let every append queue up
    await store.close()
    assert all(t.done() and t.exception() is None for t in tasks)
    reopened = await store_factory(reopen=True)
    assert offsets(await reopened.read("a", 0, 1000)) == list(range(1, 101))


# -- group commit and ordering ------------------------------------------------------------


async def test_group_commit_completes_in_order_in_few_transactions(
    store_factory: StoreFactory,
) -> None:
    store = await store_factory()
    await store.append(msg("warm", 1))
    before = store.commits
    completed: list[tuple[str, int]] = []

    async def append(m: Message) -> None:
        await store.append(m)
        completed.append((m.channel, m.offset))

    issued = [msg(f"c{n % 3}", n // 3 + 1) for n in range(1000)]
    await asyncio.gather(*(append(m) for m in issued))
    assert completed == [(m.channel, m.offset) for m in issued]
    assert store.commits - before <= 100, f"{store.commits - before} commits for 1000 appends"
    for channel in ("c0", "c1", "c2"):
        got = await store.read(channel, 0, 1000)
        assert offsets(got) == list(range(1, len(got) + 1))
    positions = await store.positions()
    assert [positions[c].offset for c in ("c0", "c1", "c2")] == [334, 333, 333]


# -- offsets have no holes ----------------------------------------------------------------


async def test_an_append_that_would_leave_a_hole_fails(store_factory: StoreFactory) -> None:
    store = await store_factory()
    with pytest.raises(Unavailable):
        await store.append(msg("a", 2))  # a new channel starts at 1
    await store.append(msg("a", 1))
    with pytest.raises(Unavailable):
        await store.append(msg("a", 3))
    with pytest.raises(Unavailable):
        await store.append(msg("a", 1))  # no reuse either
    await store.append(msg("a", 2))
    assert offsets(await store.read("a", 0, 10)) == [1, 2]
    assert await store.positions() == {"a": Position("ep1", 2)}


async def test_a_hole_fails_only_its_append_in_a_batch(store_factory: StoreFactory) -> None:
    store = await store_factory()
    batch = [msg("a", 1), msg("a", 2), msg("a", 5), msg("a", 3), msg("b", 1)]
    results = await asyncio.gather(*(store.append(m) for m in batch), return_exceptions=True)
    assert [type(r) for r in results] == [type(None), type(None), Unavailable, type(None),
                                          type(None)]
    assert offsets(await store.read("a", 0, 10)) == [1, 2, 3]
    assert await store.positions() == {"a": Position("ep1", 3), "b": Position("ep1", 1)}


async def test_append_soon_reports_each_outcome_in_queue_order(
    store_factory: StoreFactory,
) -> None:
    """The hub's path (``core.store.AppendSoon``): one callback per append, in queue order,
    a hole refused on its own; a callback that raises does not stop the others."""
    store = await store_factory()
    assert hasattr(store, "append_soon")  # every backend offers it (no task per append)
    heard: list[tuple[int, type[BaseException] | None]] = []
    everything = asyncio.get_running_loop().create_future()
    batch = [msg("a", 1), msg("a", 2), msg("a", 5), msg("a", 3), msg("b", 1)]

    def done(m: Message, error: BaseException | None) -> None:
        heard.append((m.offset, None if error is None else type(error)))
        if len(heard) == len(batch):
            everything.set_result(None)
        if m.channel == "b":
            raise RuntimeError("a caller's bug")

    for m in [batch[4], *batch[:4]]:
        append_soon(store, m, functools.partial(done, m))
    await asyncio.wait_for(everything, 30)
    assert heard == [(1, None), (1, None), (2, None), (5, Unavailable), (3, None)]
    assert offsets(await store.read("a", 0, 10)) == [1, 2, 3]
    await store.append(msg("b", 2))  # the writer carries on after the raising callback
    assert await store.positions() == {"a": Position("ep1", 3), "b": Position("ep1", 2)}


async def test_append_soon_on_a_closed_store_raises_at_once(
    store_factory: StoreFactory,
) -> None:
    store = await store_factory()
    await store.close()
    heard: list[BaseException | None] = []
    with pytest.raises(Unavailable):
        append_soon(store, msg("a", 1), heard.append)
    await asyncio.sleep(0.05)
    assert heard == []


async def test_a_new_epoch_restarts_the_channel(store_factory: StoreFactory) -> None:
    store = await store_factory()
    await fill(store, "a", 3)
    with pytest.raises(Unavailable):
        await store.append(msg("a", 4, epoch="ep2"))  # a new epoch starts at 1
    await store.append(msg("a", 1, epoch="ep2"))
    await store.append(msg("a", 2, epoch="ep2"))
    assert [(m.epoch, m.offset) for m in await store.read("a", 0, 10)] == [("ep2", 1), ("ep2", 2)]
    assert await store.positions() == {"a": Position("ep2", 2)}
    info = await store.channel_info("a")
    assert info is not None and (info.epoch, info.first_offset, info.count) == ("ep2", 1, 2)


# -- retention ------------------------------------------------------------------------------


async def test_prune_by_count_keeps_the_newest(store_factory: StoreFactory) -> None:
    store = await store_factory(retention=[RetentionRule("a", max_count=3)])
    await fill(store, "a", 10)
    assert await store.prune(now_ms=msg("a", 10).ts) == 7
    assert offsets(await store.read("a", 0, 100)) == [8, 9, 10]
    assert await store.prune(now_ms=msg("a", 10).ts) == 0
    info = await store.channel_info("a")
    assert info is not None and (info.first_offset, info.last_offset, info.count) == (8, 10, 3)


async def test_prune_by_age_removes_older_messages(store_factory: StoreFactory) -> None:
    store = await store_factory(retention=[RetentionRule("a", max_age_s=1)])
    for n, ts in enumerate([1_000, 2_000, 3_000, 4_000, 5_000], start=1):
        await store.append(msg("a", n, ts=ts))
    assert await store.prune(now_ms=4_500) == 3  # keeps ts >= 3_500
    assert offsets(await store.read("a", 0, 100)) == [4, 5]
    assert await store.prune(now_ms=6_000) == 1  # ts == 5_000 is exactly 1 s old: kept
    assert offsets(await store.read("a", 0, 100)) == [5]


async def test_prune_by_count_and_age_together(store_factory: StoreFactory) -> None:
    store = await store_factory(retention=[RetentionRule("*", max_count=4, max_age_s=10)])
    for n in range(1, 7):
        await store.append(msg("a", n, ts=n * 1_000))
    assert await store.prune(now_ms=14_500) == 4  # count keeps 3..6, age keeps ts >= 4_500
    assert offsets(await store.read("a", 0, 100)) == [5, 6]


async def test_first_matching_rule_applies(store_factory: StoreFactory) -> None:
    rules = [
        RetentionRule("game:crash", max_count=1),
        RetentionRule("game:*", max_count=2),
        RetentionRule("*", max_count=4),
    ]
    store = await store_factory(retention=rules)
    for channel in ("game:crash", "game:dice", "odds:football:epl"):
        await fill(store, channel, 6)
    await fill(store, "user:7:balances", 2)
    assert await store.prune(now_ms=0) == 5 + 4 + 2
    kept = {c.name: c.count for c in await store.channels()}
    assert kept == {"game:crash": 1, "game:dice": 2, "odds:football:epl": 4, "user:7:balances": 2}


async def test_channels_without_a_rule_keep_everything(store_factory: StoreFactory) -> None:
    store = await store_factory(retention=[RetentionRule("game:*", max_count=1)])
    await fill(store, "odds:x:y", 5)
    assert await store.prune(now_ms=10**13) == 0
    assert offsets(await store.read("odds:x:y", 0, 10)) == [1, 2, 3, 4, 5]


async def test_positions_survive_retention(store_factory: StoreFactory) -> None:
    store = await store_factory(retention=[RetentionRule("*", max_age_s=1)])
    await fill(store, "a", 5)
    assert await store.prune(now_ms=10**13) == 5
    assert await store.read("a", 0, 10) == []
    assert await store.read_last("a", 10) == []
    assert await store.positions() == {"a": Position("ep1", 5)}
    info = await store.channel_info("a")
    assert info == ChannelInfo("a", "ep1", 5, None, 0, msg("a", 5).ts)
    await store.append(msg("a", 6))  # the channel continues where it was
    await store.close()
    reopened = await store_factory(reopen=True, retention=[RetentionRule("*", max_age_s=1)])
    assert await reopened.positions() == {"a": Position("ep1", 6)}
    assert offsets(await reopened.read("a", 0, 10)) == [6]


# -- idempotency lookup ---------------------------------------------------------------------


async def test_find_idempotent(store_factory: StoreFactory) -> None:
    store = await store_factory()
    await store.append(msg("a", 1, ts=1_000, key="order-1"))
    await store.append(msg("a", 2, ts=2_000))
    await store.append(msg("a", 3, ts=3_000, key="order-2"))
    await store.append(msg("b", 1, ts=3_000, key="order-1"))
    await store.append(msg("a", 4, ts=9_000, key="order-1"))  # the key reused later
    found = await store.find_idempotent("a", "order-1", since_ms=0)
    assert found is not None and fields(found) == fields(msg("a", 1, ts=1_000, key="order-1"))
    found = await store.find_idempotent("a", "order-1", since_ms=1_001)
    assert found is not None and found.offset == 4
    found = await store.find_idempotent("b", "order-1", since_ms=3_000)
    assert found is not None and (found.channel, found.offset) == ("b", 1)
    assert await store.find_idempotent("a", "order-2", since_ms=3_001) is None
    assert await store.find_idempotent("a", "nope", since_ms=0) is None
    assert await store.find_idempotent("c", "order-1", since_ms=0) is None


# -- failures -------------------------------------------------------------------------------


async def test_a_failed_batch_fails_every_append_in_it(store_factory: StoreFactory) -> None:
    store = await store_factory()
    await store.append(msg("a", 1))
    async with store_factory.outage():
        batch = [msg("a", n) for n in range(2, 12)]
        results = await asyncio.gather(*(store.append(m) for m in batch), return_exceptions=True)
        assert all(isinstance(r, Unavailable) for r in results), results
    assert await store.positions() == {"a": Position("ep1", 1)}
    assert offsets(await store.read("a", 0, 100)) == [1]
    await store.append(msg("a", 2))  # nothing of the failed batch was kept: 2 is next
    assert await store.positions() == {"a": Position("ep1", 2)}


async def test_closed_store_raises_unavailable(store_factory: StoreFactory) -> None:
    store = await store_factory()
    await store.append(msg("a", 1))
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(Unavailable):
        await store.append(msg("a", 2))
    with pytest.raises(Unavailable):
        await store.read("a", 0, 10)
    with pytest.raises(Unavailable):
        await store.positions()
