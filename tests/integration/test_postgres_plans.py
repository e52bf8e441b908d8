"""PostgreSQL history reads use indexes: by offset the primary key, by time messages_by_time.

The plans are printed (``pytest -s``) and copied into ``bench/RESULTS-scaleout.md``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from servers import PostgresServer, postgres_server
from wagerwire.core.messages import Message
from wagerwire.stores.postgres import PostgresStore

__all__ = ["postgres_server"]


@pytest.fixture
async def filled(postgres_server: PostgresServer) -> AsyncIterator[PostgresStore]:
    schema = f"plans_{uuid.uuid4().hex[:8]}"
    store = PostgresStore(postgres_server.url(), schema=schema)
    await store.open()
    # 50 channels x 2,000 messages, written in bulk (the append path is tested elsewhere).
    conn = await asyncpg.connect(postgres_server.url(), server_settings={"search_path": schema})
    try:
        channels = ["game:crash"] + [f"game:g{n}" for n in range(49)]
        rows = [(c, o, "ep", 1_000 + o * 10, b"{}", None, None)
                for c in channels for o in range(1, 2001)]
        await conn.copy_records_to_table(
            "messages", records=rows,
            columns=["channel", "offset", "epoch", "ts", "data", "attrs", "idempotency_key"],
        )
        await conn.executemany(
            "INSERT INTO channels VALUES ($1, 'ep', 2000, 21000, 0)", [(c,) for c in channels]
        )
        await conn.execute("ANALYZE messages")
    finally:
        await conn.close()
    yield store
    await store.close()


async def test_history_queries_use_indexes(filled: PostgresStore) -> None:
    plans = await filled.explain()
    for name, plan in plans.items():
        print(f"-- {name}\n{plan}\n")
        assert "Seq Scan" not in plan, f"{name} scans the table:\n{plan}"
    assert "messages_pkey" in plans["read"]
    assert "messages_pkey" in plans["read_last"]
    assert "messages_by_time" in plans["read_by_time"]
    assert "messages_by_idempotency_key" in plans["find_idempotent"]
    page = await filled.read("game:crash", 100, 5)
    assert [m.offset for m in page] == [101, 102, 103, 104, 105]
    by_time = await filled.read_by_time("game:crash", 2_000, 2_050, 10)
    assert [m.offset for m in by_time] == [100, 101, 102, 103, 104]
    assert isinstance(page[0], Message)


async def test_every_session_commits_synchronously(postgres_server: PostgresServer) -> None:
    """synchronous_commit is on for the writer and every pooled reader, even in a database
    whose default turns it off: an acknowledged append's WAL is flushed to disk."""
    db = f"sync_{uuid.uuid4().hex[:8]}"
    postgres_server.psql(f"CREATE DATABASE {db}")
    postgres_server.psql(f"ALTER DATABASE {db} SET synchronous_commit = off")
    store = PostgresStore(postgres_server.url(db), schema="s")
    await store.open()
    try:
        await store.append(Message("game:sync", 1, "ep", 1_000, b"{}"))
        assert store._wconn is not None and store._pool is not None
        assert await store._wconn.fetchval("SHOW synchronous_commit") == "on"
        conns = [await store._pool.acquire() for _ in range(2)]
        try:
            for conn in conns:
                assert await conn.fetchval("SHOW synchronous_commit") == "on"
        finally:
            for conn in conns:
                await store._pool.release(conn)
        other = await asyncpg.connect(postgres_server.url(db))  # the database's own default
        try:
            assert await other.fetchval("SHOW synchronous_commit") == "off"
        finally:
            await other.close()
    finally:
        await store.close()
