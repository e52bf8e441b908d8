"""Backend factories for the contract suites: add a backend by adding a param and a factory.

A store factory opens a fresh store (``await store_factory()``), reopens the database of the
last one (``reopen=True``) and can simulate an outage of that database (``outage()``). A broker
factory returns a started broker. Every store and broker made is closed at teardown.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from wagerwire.brokers.memory import MemoryBroker
from wagerwire.core.broker import BrokerHandler
from wagerwire.core.messages import Position
from wagerwire.core.store import RetentionRule
from wagerwire.stores.sqlite import SqliteStore

__all__ = ["MemoryBrokerFactory", "SqliteStoreFactory"]


class SqliteStoreFactory:
    """Stores on files in a tmp directory; an outage is another connection's write lock."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._count = 0
        self._path: str | None = None
        self._stores: list[SqliteStore] = []

    async def __call__(
        self, *, retention: Sequence[RetentionRule] = (), reopen: bool = False
    ) -> SqliteStore:
        if not reopen or self._path is None:
            self._count += 1
            self._path = str(self._directory / f"store-{self._count}.db")
        # A short busy timeout so that an outage fails the batch quickly.
        store = SqliteStore(self._path, retention, busy_timeout_ms=100)
        self._stores.append(store)
        await store.open()
        return store

    @asynccontextmanager
    async def outage(self) -> AsyncIterator[None]:
        """While active, every write to the last opened database fails."""
        assert self._path is not None
        conn = sqlite3.connect(self._path, isolation_level=None)
        try:
            conn.execute("BEGIN EXCLUSIVE")
            yield
            conn.execute("ROLLBACK")
        finally:
            conn.close()

    async def aclose(self) -> None:
        for store in self._stores:
            await store.close()


class MemoryBrokerFactory:
    """Started in-process brokers."""

    def __init__(self) -> None:
        self._brokers: list[MemoryBroker] = []

    async def __call__(
        self,
        handler: BrokerHandler,
        positions: Mapping[str, Position] | None = None,
        *,
        idempotency_window_s: float = 300,
    ) -> MemoryBroker:
        broker = MemoryBroker(idempotency_window_s)
        self._brokers.append(broker)
        await broker.start(handler, positions or {})
        return broker

    async def aclose(self) -> None:
        for broker in self._brokers:
            await broker.close()


@pytest.fixture(params=["sqlite"])
async def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[SqliteStoreFactory]:
    factories = {"sqlite": SqliteStoreFactory}
    factory = factories[request.param](tmp_path)
    yield factory
    await factory.aclose()


@pytest.fixture(params=["memory"])
async def broker_factory(request: pytest.FixtureRequest) -> AsyncIterator[MemoryBrokerFactory]:
    factories = {"memory": MemoryBrokerFactory}
    factory = factories[request.param]()
    yield factory
    await factory.aclose()
