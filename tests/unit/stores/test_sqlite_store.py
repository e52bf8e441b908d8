"""SQLite-specific behaviour of ``SqliteStore`` beyond the Store contract."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import textwrap
from contextlib import closing
from pathlib import Path

import pytest

from wagerwire.core.messages import Message, Position
from wagerwire.core.store import RetentionRule
from wagerwire.errors import Unavailable
from wagerwire.stores.sqlite import SqliteStore
from wagerwire.stores.sqlite_schema import Migration, apply_migrations, load_migrations

SRC = str(Path(__file__).resolve().parents[3] / "src")


def msg(channel: str, offset: int, *, ts: int = 1_000) -> Message:
    return Message(channel, offset, "ep1", ts, b'{"n":%d}' % offset)


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


async def test_memory_databases_are_refused() -> None:
    for path in (":memory:", "file::memory:?cache=shared", "file:x?mode=memory", ""):
        with pytest.raises(ValueError):
            SqliteStore(path)


async def test_opening_an_impossible_path_is_unavailable(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "missing-dir" / "x.db"))
    with pytest.raises(Unavailable):
        await store.open()
    await store.close()


async def test_database_is_in_wal_mode_with_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    store = SqliteStore(str(path))
    await store.open()
    await store.close()
    with closing(raw(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"channels", "messages", "schema_migrations"} <= tables
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert {"messages_by_time", "messages_by_idempotency_key"} <= indexes


async def test_migrations_are_recorded_once(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    for _ in range(3):
        store = SqliteStore(str(path))
        await store.open()
        await store.close()
    packaged = load_migrations()
    assert packaged[0].version == 1 and packaged[0].name == "0001_init.sql"
    with closing(raw(path)) as conn:
        rows = conn.execute("SELECT version, name FROM schema_migrations ORDER BY version")
        assert rows.fetchall() == [(m.version, m.name) for m in packaged]


def test_apply_migrations_applies_only_new_ones_in_order(tmp_path: Path) -> None:
    conn = raw(tmp_path / "a.db")
    first = [Migration(1, "0001_a.sql", "CREATE TABLE a (x INTEGER);")]
    assert apply_migrations(conn, first) == [1]
    assert apply_migrations(conn, first) == []
    later = [
        *first,
        Migration(2, "0002_b.sql", "-- a comment; with a semicolon\nCREATE TABLE b (y TEXT);"),
        Migration(
            3,
            "0003_trigger.sql",
            "CREATE TRIGGER a_to_b AFTER INSERT ON a BEGIN\n"
            "  INSERT INTO b (y) VALUES ('x;y');\nEND;\n",
        ),
    ]
    assert apply_migrations(conn, later) == [2, 3]
    conn.execute("INSERT INTO a VALUES (1)")
    assert conn.execute("SELECT y FROM b").fetchall() == [("x;y",)]
    conn.close()


def test_a_failed_migration_leaves_no_trace(tmp_path: Path) -> None:
    conn = raw(tmp_path / "f.db")
    broken = [Migration(1, "0001_bad.sql", "CREATE TABLE ok (x);\nCREATE TABLE broken (;\n")]
    with pytest.raises(sqlite3.Error):
        apply_migrations(conn, broken)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"schema_migrations"}
    assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (0,)
    conn.close()


async def test_batch_max_bounds_a_transaction(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "b.db"), batch_max=10)
    await store.open()
    await asyncio.gather(*(store.append(msg("a", n)) for n in range(1, 201)))
    assert store.commits >= 20
    assert store.appended == 200
    await store.close()


async def test_count_matches_the_rows_kept(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    store = SqliteStore(str(path), [RetentionRule("*", max_count=7)])
    await store.open()
    for n in range(1, 31):
        await store.append(msg("a", n))
    await store.prune(now_ms=0)
    info = await store.channel_info("a")
    await store.close()
    with closing(raw(path)) as conn:
        (rows,) = conn.execute("SELECT count(*) FROM messages WHERE channel = 'a'").fetchone()
    assert info is not None and info.count == rows == 7


async def test_the_writer_prunes_every_n_appends(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "p.db"), [RetentionRule("*", max_count=10)], prune_every=50)
    await store.open()
    for n in range(1, 102):  # prunes after the 50th and the 100th, before the 101st commits
        await store.append(msg("a", n))
    info = await store.channel_info("a")
    assert info is not None and (info.first_offset, info.count) == (91, 11)
    await store.close()


async def test_the_writer_prunes_on_a_timer(tmp_path: Path) -> None:
    store = SqliteStore(
        str(tmp_path / "t.db"), [RetentionRule("*", max_age_s=60)], prune_interval_s=0.05
    )
    await store.open()
    for n in range(1, 6):
        await store.append(msg("a", n, ts=1_000))  # in 1970: far older than 60 s
    for _ in range(200):
        info = await store.channel_info("a")
        assert info is not None
        if info.count == 0:
            break
        await asyncio.sleep(0.01)
    assert info.count == 0 and info.last_offset == 5
    await store.close()


async def test_a_cancelled_append_is_still_committed(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "x.db"))
    await store.open()
    task = asyncio.create_task(store.append(msg("a", 1)))
    await asyncio.sleep(0)
    task.cancel()
    await store.append(msg("a", 2))
    assert [m.offset for m in await store.read("a", 0, 10)] == [1, 2]
    await store.close()


async def test_reads_proceed_while_another_process_holds_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    store = SqliteStore(str(path), busy_timeout_ms=2_000)
    await store.open()
    await store.append(msg("a", 1))
    conn = raw(path)
    conn.execute("BEGIN EXCLUSIVE")
    pending = asyncio.create_task(store.append(msg("a", 2)))  # waits for the lock
    assert [m.offset for m in await store.read("a", 0, 10)] == [1]
    assert not pending.done()
    conn.execute("ROLLBACK")
    conn.close()
    await pending
    assert await store.positions() == {"a": Position("ep1", 2)}
    await store.close()


async def test_committed_appends_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal, sys
        sys.path.insert(0, {SRC!r})
        from wagerwire.core.messages import Message
        from wagerwire.stores.sqlite import SqliteStore

        async def main():
            store = SqliteStore({str(path)!r})
            await store.open()
            await asyncio.gather(*(
                store.append(Message("a", n, "ep1", 1_000, b"{{}}")) for n in range(1, 501)
            ))
            print("committed", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
        """
    )
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.stdout.strip() == "committed", done.stderr
    assert done.returncode == -9
    assert os.path.exists(f"{path}-wal")  # the process died without checkpointing
    store = SqliteStore(str(path))
    await store.open()
    assert await store.positions() == {"a": Position("ep1", 500)}
    assert len(await store.read("a", 0, 1000)) == 500
    await store.close()


class _SyncRecorder:
    """Stands in for the store's writer connection: records each COMMIT once it returned,
    with the ``synchronous`` level it ran under (2 = FULL: the WAL is fsynced in the commit)."""

    def __init__(self, conn: sqlite3.Connection, events: list[tuple[str, int]]) -> None:
        self._conn = conn
        self._events = events

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        cursor = self._conn.execute(sql, *args)
        if sql == "COMMIT":
            level = self._conn.execute("PRAGMA synchronous").fetchone()[0]
            self._events.append(("commit", int(level)))
        return cursor

    def __getattr__(self, name: str) -> object:
        return getattr(self._conn, name)


async def test_every_acknowledged_append_was_synced_to_disk_first(tmp_path: Path) -> None:
    """What the server builds (backends.build_store): synchronous=FULL in WAL mode, so each
    group commit fsyncs the WAL, and no append is acknowledged before its commit returned."""
    from wagerwire.node.backends import build_store

    store = build_store(f"sqlite:///{tmp_path / 'sync.db'}", [])
    assert isinstance(store, SqliteStore)
    await store.open()
    events: list[tuple[str, int]] = []
    try:
        real = store._wconn
        assert real is not None
        assert real.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        store._wconn = _SyncRecorder(real, events)  # type: ignore[assignment]

        async def append(n: int) -> None:
            await store.append(msg(f"c{n % 4}", n // 4 + 1))
            events.append(("ack", n))

        for start in range(0, 400, 100):  # waves of concurrent appends: group commits
            await asyncio.gather(*(append(n) for n in range(start, start + 100)))
        store._wconn = real
    finally:
        await store.close()
    acks = [i for i, e in enumerate(events) if e[0] == "ack"]
    commits = [i for i, e in enumerate(events) if e[0] == "commit"]
    assert len(acks) == 400
    assert all(level == 2 for kind, level in events if kind == "commit"), events[:5]
    # each acknowledgement follows a synced commit; fewer commits than appends (grouped)
    assert commits and commits[0] < acks[0]
    assert all(any(c < a for c in commits) for a in acks)
    assert len(commits) < len(acks) / 4, len(commits)


def test_the_store_url_may_trade_the_fsync_for_throughput(tmp_path: Path) -> None:
    from wagerwire.errors import BadParameter
    from wagerwire.node.backends import build_store

    assert build_store(f"sqlite:///{tmp_path / 'a.db'}")._synchronous == "FULL"
    relaxed = build_store(f"sqlite:///{tmp_path / 'b.db'}?synchronous=normal")
    assert relaxed._synchronous == "NORMAL"
    assert Path(relaxed.path).resolve() == (tmp_path / "b.db").resolve()
    with pytest.raises(BadParameter, match="synchronous"):
        build_store(f"sqlite:///{tmp_path / 'c.db'}?synchronous=off")
    with pytest.raises(BadParameter, match="unknown"):
        build_store(f"sqlite:///{tmp_path / 'd.db'}?sync=normal")
