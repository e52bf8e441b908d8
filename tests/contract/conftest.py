"""Backend factories for the contract suites: add a backend by adding a param and a factory.

A store factory opens a fresh store (``await store_factory()``), reopens the database of the
last one (``reopen=True``) and can simulate an outage of that database (``outage()``). A broker
factory returns a started broker. A key store factory returns one node's view of one shared key store (``keystore_factory()``;
every call is another node, or the CLI); ``pushes`` says whether the backend notifies the
other nodes of changes (PostgreSQL) or leaves them to poll (SQLite). A limits factory returns one node's view of one shared set
of plan limits (``await limits_factory(slot_ttl_s=…)``; every call is another node) and, where
the backend can fail, limits whose backend is down (``unavailable()``). Every store, broker
and limits made is closed at teardown.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from servers import PostgresServer, RedisServer, postgres_server, redis_server
from wagerwire.auth.keys import KeyBackend, KeyStore
from wagerwire.auth.limits import SLOT_TTL_S, Limits, LocalLimits
from wagerwire.brokers.memory import MemoryBroker
from wagerwire.core.broker import BrokerHandler
from wagerwire.core.messages import Position
from wagerwire.core.store import RetentionRule
from wagerwire.stores.sqlite import SqliteStore

__all__ = [
    "KeyStoreFactory",
    "LocalLimitsFactory",
    "MemoryBrokerFactory",
    "PostgresStoreFactory",
    "RedisBrokerFactory",
    "RedisLimitsFactory",
    "SqliteStoreFactory",
    "postgres_server",
    "redis_server",
]


class _Closing:
    """Closes every store or broker a factory made, at teardown."""

    def __init__(self) -> None:
        self._made: list[Any] = []

    async def aclose(self) -> None:
        for made in self._made:
            await made.close()


class _StoreFactory(_Closing):
    """Opens the stores a backend's factory makes."""

    async def _open(self, store: Any) -> Any:
        self._made.append(store)
        await store.open()
        return store


class SqliteStoreFactory(_StoreFactory):
    """Stores on files in a tmp directory; an outage is another connection's write lock."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self._directory = directory
        self._count = 0
        self._path: str | None = None

    async def __call__(
        self, *, retention: Sequence[RetentionRule] = (), reopen: bool = False
    ) -> SqliteStore:
        if not reopen or self._path is None:
            self._count += 1
            self._path = str(self._directory / f"store-{self._count}.db")
        # A short busy timeout so that an outage fails the batch quickly.
        store: SqliteStore = await self._open(
            SqliteStore(self._path, retention, busy_timeout_ms=100)
        )
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


class PostgresStoreFactory(_StoreFactory):
    """Stores in a fresh schema each; an outage is another session's table locks."""

    def __init__(self, server: PostgresServer) -> None:
        super().__init__()
        self._server = server
        self._schema: str | None = None

    async def __call__(
        self, *, retention: Sequence[RetentionRule] = (), reopen: bool = False
    ) -> Any:
        from wagerwire.stores.postgres import PostgresStore

        if not reopen or self._schema is None:
            self._schema = f"t_{uuid.uuid4().hex[:12]}"
        # A short lock timeout so that an outage fails the batch quickly.
        return await self._open(
            PostgresStore(self._server.url(), retention, schema=self._schema, lock_timeout_ms=100)
        )

    @asynccontextmanager
    async def outage(self) -> AsyncIterator[None]:
        """While active, every write to the last opened schema fails (its tables locked)."""
        import asyncpg

        assert self._schema is not None
        conn = await asyncpg.connect(
            self._server.url(), server_settings={"search_path": self._schema}
        )
        try:
            tx = conn.transaction()
            await tx.start()
            await conn.execute("LOCK TABLE messages, channels IN EXCLUSIVE MODE")
            yield
            await tx.rollback()
        finally:
            await conn.close()


class _BrokerFactory(_Closing):
    """Starts the brokers a backend's ``_new`` makes."""

    def _new(self, idempotency_window_s: float) -> Any:
        raise NotImplementedError

    async def __call__(
        self,
        handler: BrokerHandler,
        positions: Mapping[str, Position] | None = None,
        *,
        idempotency_window_s: float = 300,
    ) -> Any:
        broker = self._new(idempotency_window_s)
        self._made.append(broker)
        await broker.start(handler, positions or {})
        return broker


class MemoryBrokerFactory(_BrokerFactory):
    """Started in-process brokers."""

    def _new(self, idempotency_window_s: float) -> MemoryBroker:
        return MemoryBroker(idempotency_window_s)


class RedisBrokerFactory(_BrokerFactory):
    """Started Redis brokers sharing one fresh key prefix (like nodes of one hub)."""

    def __init__(self, server: RedisServer) -> None:
        super().__init__()
        self._server = server
        self._prefix = f"t{uuid.uuid4().hex[:10]}"

    def _new(self, idempotency_window_s: float) -> Any:
        from wagerwire.brokers.redis import RedisBroker

        return RedisBroker(
            self._server.url, prefix=self._prefix, idempotency_window_s=idempotency_window_s
        )


@pytest.fixture(params=["sqlite", "postgres"])
async def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[SqliteStoreFactory | PostgresStoreFactory]:
    factory: SqliteStoreFactory | PostgresStoreFactory
    if request.param == "postgres":
        factory = PostgresStoreFactory(request.getfixturevalue("postgres_server"))
    else:
        factory = SqliteStoreFactory(tmp_path)
    yield factory
    await factory.aclose()


@pytest.fixture(params=["memory", "redis"])
async def broker_factory(
    request: pytest.FixtureRequest,
) -> AsyncIterator[MemoryBrokerFactory | RedisBrokerFactory]:
    factory: MemoryBrokerFactory | RedisBrokerFactory
    if request.param == "redis":
        factory = RedisBrokerFactory(request.getfixturevalue("redis_server"))
    else:
        factory = MemoryBrokerFactory()
    yield factory
    await factory.aclose()


class LocalLimitsFactory:
    """In-process limits: one node, so every call answers the same object; never down."""

    can_fail = False

    def __init__(self) -> None:
        self._limits: LocalLimits | None = None

    async def __call__(self, *, slot_ttl_s: float = SLOT_TTL_S) -> Limits:
        if self._limits is None:
            self._limits = LocalLimits(slot_ttl_s=slot_ttl_s)
        return self._limits

    async def unavailable(self) -> Limits:
        raise AssertionError("in-process limits cannot fail")

    async def aclose(self) -> None:
        if self._limits is not None:
            await self._limits.aclose()


class RedisLimitsFactory:
    """Redis-kept limits sharing one fresh key prefix (like nodes of one hub); down ones are
    clients of a private redis-server that was stopped."""

    can_fail = True

    def __init__(self, server: RedisServer, directory: Path) -> None:
        self._server = server
        self._directory = directory
        self._prefix = f"t{uuid.uuid4().hex[:10]}"
        self._made: list[Any] = []
        self._stopped: list[RedisServer] = []

    async def __call__(self, *, slot_ttl_s: float = SLOT_TTL_S) -> Limits:
        from wagerwire.brokers.redis_limits import RedisLimits

        limits = RedisLimits.from_url(self._server.url, prefix=self._prefix,
                                      slot_ttl_s=slot_ttl_s)
        self._made.append(limits)
        return limits

    async def unavailable(self) -> Limits:
        from wagerwire.brokers.redis_limits import RedisLimits

        server = RedisServer(self._directory / f"down-{len(self._stopped)}").start()
        self._stopped.append(server)
        limits = RedisLimits.from_url(server.url, prefix=self._prefix)
        self._made.append(limits)
        assert await limits.take_rate("warm", 10) == 0  # it worked while Redis was up
        server.stop()
        return limits

    async def aclose(self) -> None:
        for limits in self._made:
            await limits.aclose()
        for server in self._stopped:
            server.stop()


@pytest.fixture(params=["local", "redis"])
async def limits_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[LocalLimitsFactory | RedisLimitsFactory]:
    factory: LocalLimitsFactory | RedisLimitsFactory
    if request.param == "redis":
        factory = RedisLimitsFactory(request.getfixturevalue("redis_server"), tmp_path)
    else:
        factory = LocalLimitsFactory()
    yield factory
    await factory.aclose()


class KeyStoreFactory:
    """Nodes' views of one shared key store: one SQLite file, or one PostgreSQL schema."""

    def __init__(self, pushes: bool, make: Any) -> None:
        self.pushes = pushes
        self._make = make
        self._made: list[KeyBackend] = []

    def __call__(self) -> KeyBackend:
        store: KeyBackend = self._make()
        self._made.append(store)
        return store

    def close(self) -> None:
        for store in self._made:
            store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def keystore_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    factory: KeyStoreFactory
    if request.param == "postgres":
        from wagerwire.stores.pg_keys import PgKeyStore

        server: PostgresServer = request.getfixturevalue("postgres_server")
        schema = f"k_{uuid.uuid4().hex[:12]}"
        factory = KeyStoreFactory(True, lambda: PgKeyStore(server.url(), schema))
    else:
        path = str(tmp_path / "keys.db")
        factory = KeyStoreFactory(False, lambda: KeyStore(path))
    yield factory
    factory.close()
