"""The publish path's store append without a task per publish (``core.store.append_soon``):
the fallback for a store without ``append_soon``, and the hub's count of appends in flight
(the flusher waits on it)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from wagerwire.brokers.memory import MemoryBroker
from wagerwire.core.hub import Hub
from wagerwire.core.messages import Message
from wagerwire.core.store import append_soon
from wagerwire.errors import Unavailable
from wagerwire.stores.sqlite import SqliteStore


class OnlyAppend:
    """A store offering only the async ``append`` (the ``Store`` protocol's minimum)."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.release = asyncio.Event()
        self.appended: list[int] = []

    async def append(self, message: Message) -> None:
        await self.release.wait()
        if self.fail:
            raise Unavailable("refused")
        self.appended.append(message.offset)


def message(offset: int) -> Message:
    return Message("a", offset, "ep", 1, b"{}", None, None)


async def test_the_fallback_runs_append_and_reports_its_outcome() -> None:
    store = OnlyAppend()
    heard: list[BaseException | None] = []
    append_soon(store, message(1), heard.append)  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    assert heard == [] and store.appended == []  # not before append returned
    store.release.set()
    await asyncio.sleep(0.01)
    assert heard == [None] and store.appended == [1]


async def test_the_fallback_reports_the_error_of_append() -> None:
    store = OnlyAppend(fail=True)
    heard: list[BaseException | None] = []
    append_soon(store, message(1), heard.append)  # type: ignore[arg-type]
    store.release.set()
    await asyncio.sleep(0.01)
    assert len(heard) == 1 and isinstance(heard[0], Unavailable)


async def test_the_hub_counts_appends_until_their_commit(tmp_path: Path) -> None:
    hub = Hub(SqliteStore(str(tmp_path / "h.db")), MemoryBroker())
    await hub.start()
    try:
        publishes = [asyncio.ensure_future(hub.publish("a", {"n": n})) for n in range(5)]
        await asyncio.sleep(0)  # the publishes ran up to their wait; nothing committed yet
        assert hub.persisting == 5
        results = await asyncio.wait_for(asyncio.gather(*publishes), 30)
        assert [r.message.offset for r in results] == [1, 2, 3, 4, 5]
        assert hub.persisting == 0
    finally:
        await hub.close()


async def test_a_publish_on_a_closed_store_fails_and_is_not_counted(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "h.db"))
    hub = Hub(store, MemoryBroker())
    await hub.start()
    await store.close()
    with pytest.raises(Unavailable):
        await hub.publish("a", {"n": 1})
    assert hub.persisting == 0
    await hub.close()
