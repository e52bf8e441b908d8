"""PostgreSQL store (asyncpg): durable history shared by every node of a scale-out hub.

Same contract as the SQLite store (``core/store.py``; the one contract suite runs over both).

Writes: one writer task owns one connection. ``append`` queues the message and awaits a
future (``append_soon`` takes a callback instead); the writer takes everything queued (up to ``batch_max``) and commits it in one
statement, one round trip whatever the batch size: the rows go in as arrays to the
``ww_append`` function (``pg_migrations/0010_append_batch.sql``), which inserts them with
``INSERT … SELECT FROM unnest(…)`` and upserts the channel positions likewise. Appends
are settled in queue order, so appends complete in the order they were issued. Every session
sets ``synchronous_commit = on``, so a commit returns (and its appends are acknowledged) only
once its WAL is flushed to disk, even where the server or the database defaults it off.

Several processes (nodes) may write one database. Each batch (inside ``ww_append``) first
takes a transaction-level advisory lock per channel it touches (in a fixed order, so two writers cannot deadlock), then
reads those channels' positions *under the lock* and refuses any append that would leave a
hole (offset must be the stored last + 1, or 1 in a new epoch); so the no-hole invariant holds
across processes, not just within one. The broker normally makes one node the only writer of
a channel at a time (``brokers/redis.py``), the lock makes it safe when it is not.

Reads use a small connection pool. Offsets are read through the primary key
``(channel, "offset")`` and time ranges through ``messages_by_time (channel, ts, "offset")``;
``explain`` returns the plans (``bench/RESULTS-scaleout.md`` shows them, a test checks them).

Retention works as in the SQLite store: ``prune(now_ms)``, plus automatic pruning by the
writer between batches (channels written since the last prune every ``prune_every`` appends,
every channel every ``prune_interval_s``).

Schema migrations are ``stores/pg_migrations/NNNN_name.sql``, each applied once in its own
transaction and recorded in ``schema_migrations``; a session advisory lock serialises nodes
that start together. ``schema`` puts the tables in their own schema (one database can hold
several independent stores; the tests use one schema per store).
"""

from __future__ import annotations

import asyncio
import importlib.resources
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import asyncpg
import orjson

from wagerwire.core.messages import Message, Position
from wagerwire.core.store import AppendDone, ChannelInfo, RetentionPolicy, RetentionRule
from wagerwire.core.store import hole_error as _hole
from wagerwire.errors import StoreUnavailable, Unavailable
from wagerwire.stores.outcome import settle_none
from wagerwire.types import now_ms

if TYPE_CHECKING:
    from wagerwire.core.store import Store

__all__ = ["PostgresStore", "load_pg_migrations", "migrate"]

log = logging.getLogger("wagerwire.stores.postgres")

_MIGRATION_FILE = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")
_MIGRATION_LOCK = 0x77616765  # "wage": one node migrates at a time
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

_COLUMNS = 'channel, "offset", epoch, ts, data, attrs, idempotency_key'
_APPEND = (
    "SELECT refused, refused_epoch, refused_last FROM ww_append($1::text[], $2::bigint[], "
    "$3::text[], $4::bigint[], $5::bytea[], $6::text[], $7::text[])"
)
_INFO = (
    "SELECT c.name, c.epoch, c.last_offset, c.last_ts, "
    '(SELECT min(m."offset") FROM messages m WHERE m.channel = c.name) FROM channels c'
)
_READ = (
    f'SELECT {_COLUMNS} FROM messages WHERE channel = $1 AND "offset" > $2 '
    'ORDER BY "offset" LIMIT $3'
)
_READ_LAST = f'SELECT {_COLUMNS} FROM messages WHERE channel = $1 ORDER BY "offset" DESC LIMIT $2'
_READ_TIME_OPEN = (
    f"SELECT {_COLUMNS} FROM messages WHERE channel = $1 AND ts >= $2 "
    'ORDER BY ts, "offset" LIMIT $3'
)
_READ_TIME_CLOSED = (
    f"SELECT {_COLUMNS} FROM messages WHERE channel = $1 AND ts >= $2 AND ts < $3 "
    'ORDER BY ts, "offset" LIMIT $4'
)
_FIND_KEY = (
    f"SELECT {_COLUMNS} FROM messages WHERE channel = $1 AND idempotency_key = $2 "
    'AND ts >= $3 ORDER BY "offset" LIMIT 1'
)
# InternalClientError: a connection left mid-operation when the server went away under it.
_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError,
              OSError, asyncio.TimeoutError)


def load_pg_migrations() -> list[tuple[int, str, str]]:
    """The packaged migrations ``(version, name, sql)``, ordered by version."""
    folder = importlib.resources.files("wagerwire.stores").joinpath("pg_migrations")
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION_FILE.fullmatch(entry.name)
        if match is not None:
            found.append((int(match[1]), entry.name, entry.read_text("utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions in {folder}: {versions}")
    return found


async def migrate(conn: asyncpg.Connection, schema: str | None) -> list[int]:
    """Apply the migrations not yet recorded in ``schema`` (created if missing); one node at
    a time. The store and the key store (``pg_keys.py``) both call it: whichever opens first
    creates every table."""
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        if schema is not None:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ms BIGINT NOT NULL)"
        )
        done = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        applied = []
        for version, name, sql in load_pg_migrations():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_ms) "
                    "VALUES ($1, $2, $3)", version, name, now_ms(),
                )
            applied.append(version)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)


def _message(row: Any) -> Message:
    channel, offset, epoch, ts, data, attrs, key = row
    return Message(
        channel, offset, epoch, ts, bytes(data),
        orjson.loads(attrs) if attrs is not None else None, key,
    )


def _info(row: Any) -> ChannelInfo:
    name, epoch, last_offset, last_ts, first = row
    count = last_offset - first + 1 if first is not None else 0
    return ChannelInfo(name, epoch, last_offset, first, count, last_ts)


class _Append:
    __slots__ = ("done", "message")

    def __init__(self, message: Message, done: AppendDone) -> None:
        self.message = message
        self.done = done


class _Job:
    """Work serialised with the appends on the writer connection (prune)."""

    __slots__ = ("future", "run")

    def __init__(
        self, run: Callable[[asyncpg.Connection], Awaitable[object]], future: asyncio.Future[Any]
    ) -> None:
        self.run = run
        self.future = future


class PostgresStore:
    """Durable history in PostgreSQL; see the module docstring for the design.

    Args:
        dsn: ``postgresql://user@host:port/database`` (asyncpg syntax).
        retention: rules applied by ``prune`` and by the writer's periodic pruning.
        batch_max: most appends committed in one transaction.
        schema: keep the tables in this schema (created if missing) instead of ``public``.
        lock_timeout_ms: how long a write waits for a lock held elsewhere before its batch
            fails with ``Unavailable``.
        pool_size: connections for reads.
        prune_every: appended messages between prunes of the channels written meanwhile.
        prune_interval_s: seconds between prunes of every channel.
        read_timeout_s: a read (waiting for a pool connection included) fails with
            ``StoreUnavailable`` after this long.

    ``commits`` counts committed append batches and ``appended`` the messages they held;
    ``healthy`` says whether the last write or read reached PostgreSQL.

    While PostgreSQL is unreachable (restarting, network), appends and reads fail at once
    with :class:`StoreUnavailable` (HTTP 503 ``store_unavailable``): nothing of a failed batch
    was kept or acknowledged. Every batch and read after that tries again (the writer opens
    a new connection, the pool replaces its broken ones), so the store resumes by itself.
    """

    def __init__(
        self,
        dsn: str,
        retention: Sequence[RetentionRule] = (),
        batch_max: int = 1024,
        *,
        schema: str | None = None,
        lock_timeout_ms: int = 5000,
        pool_size: int = 4,
        prune_every: int = 1000,
        prune_interval_s: float = 60.0,
        read_timeout_s: float = 10.0,
    ) -> None:
        if batch_max < 1 or pool_size < 1 or prune_every < 1 or prune_interval_s <= 0:
            raise ValueError("batch_max, pool_size, prune_every and prune_interval_s must be > 0")
        if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError(f"schema {schema!r} must match {_SCHEMA_NAME.pattern}")
        self.dsn = dsn
        self.schema = schema
        self.retention = tuple(retention)
        self.batch_max = batch_max
        self.commits = 0
        self.appended = 0
        self.healthy = True  # the last write or read reached PostgreSQL (/metrics)
        # Hears each committed batch: (messages, seconds); /metrics sets it.
        self.on_commit: Callable[[int, float], None] | None = None
        self._lock_timeout_ms = lock_timeout_ms
        self._read_timeout_s = read_timeout_s
        self._pool_size = pool_size
        self._prune_every = prune_every
        self._prune_interval_s = prune_interval_s
        self._queue: deque[_Append | _Job | None] = deque()
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._wconn: asyncpg.Connection | None = None
        self._pool: asyncpg.Pool | None = None
        self._closed = False
        self._opened = False
        self._policy = RetentionPolicy(self.retention)
        self._dirty: set[str] = set()
        self._since_prune = 0
        self._next_sweep = 0.0

    # -- lifecycle -------------------------------------------------------------------------

    def _settings(self) -> dict[str, str]:
        # synchronous_commit on for every session, whatever the server's or database's
        # default: a commit (and so an acknowledgement) waits for its WAL flush to disk.
        settings = {"lock_timeout": str(self._lock_timeout_ms), "application_name": "wagerwire",
                    "synchronous_commit": "on"}
        if self.schema is not None:
            settings["search_path"] = self.schema
        return settings

    async def _connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.dsn, server_settings=self._settings(), timeout=10)

    async def open(self) -> None:
        """Create or migrate the schema, then start the writer and the read pool."""
        if self._closed:
            raise Unavailable("the store is closed; create a new one to reopen the database")
        if self._opened:
            return
        try:
            conn = await self._connect()
            try:
                await self._migrate(conn)
            except BaseException:
                await conn.close()
                raise
            self._wconn = conn
            self._pool = await asyncpg.create_pool(
                self.dsn, min_size=1, max_size=self._pool_size,
                server_settings=self._settings(), timeout=10,
            )
        except _DB_ERRORS as exc:
            if self._wconn is not None:
                await self._wconn.close()
                self._wconn = None
            raise StoreUnavailable(f"cannot open PostgreSQL store: {exc}") from exc
        self._opened = True
        self._next_sweep = time.monotonic() + self._prune_interval_s
        self._writer = asyncio.get_running_loop().create_task(self._run_writer())

    async def _migrate(self, conn: asyncpg.Connection) -> list[int]:
        return await migrate(conn, self.schema)

    async def close(self) -> None:
        """Commit every append queued so far, then close the connections."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._queue.append(None)
            self._wake.set()
            await asyncio.shield(self._writer)
        if self._wconn is not None:
            await self._wconn.close()
        if self._pool is not None:
            await self._pool.close()

    # -- writes ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed or not self._opened:
            raise Unavailable("the store is closed" if self._closed else "the store is not open")

    async def append(self, message: Message) -> None:
        """Queue ``message`` for the next group commit; returns once it is committed.

        Raises:
            Unavailable: the store is closed, the offset would leave a hole (it must be the
                channel's last offset + 1, or 1 in a new epoch), or the batch failed.
        """
        self._check_open()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.append_soon(message, partial(settle_none, future))
        await future

    def append_soon(self, message: Message, done: AppendDone) -> None:
        """``append`` without a future: ``done`` hears the outcome (``core.store.AppendSoon``).

        Raises:
            Unavailable: the store is closed or not open (nothing was queued).
        """
        self._check_open()
        self._queue.append(_Append(message, done))
        if not self._wake.is_set():
            self._wake.set()

    async def prune(self, now_ms: int) -> int:
        """Apply the retention rules to every channel; returns how many messages went."""
        self._check_open()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(_Job(lambda conn: self._prune(conn, now_ms, None), future))
        self._wake.set()
        removed = await future
        assert isinstance(removed, int)
        return removed

    async def _run_writer(self) -> None:
        queue = self._queue
        while True:
            if not queue:
                self._wake.clear()
                wait = self._sweep_wait()
                try:
                    await asyncio.wait_for(self._wake.wait(), wait)
                except TimeoutError:
                    await self._auto_prune(sweep=True)
                    continue
            batch: list[_Append] = []
            stop = False
            while queue and len(batch) < self.batch_max:
                item = queue[0]
                if item is None:
                    queue.popleft()
                    stop = True
                    break
                if isinstance(item, _Job):
                    if batch:
                        break
                    queue.popleft()
                    await self._run_job(item)
                    continue
                queue.popleft()
                batch.append(item)
            if batch:
                await self._write_batch(batch)
                await self._maybe_auto_prune()
            if stop:
                left = [item for item in queue if item is not None]
                queue.clear()  # only possible if something was queued after close
                closed = Unavailable("the store is closed")
                _settle([item for item in left if isinstance(item, _Append)],
                        [closed] * len(left))
                for item in left:
                    if isinstance(item, _Job) and not item.future.done():
                        item.future.set_exception(closed)
                return

    async def _writer_conn(self) -> asyncpg.Connection:
        conn = self._wconn
        if conn is None or conn.is_closed():
            self._wconn = conn = await self._connect()
        return conn

    async def _write_batch(self, batch: list[_Append]) -> None:
        """Commit one batch in one statement (``ww_append``), then settle its appends in order.

        One round trip whatever the batch size: the function takes the channels' advisory
        locks, checks every offset under them, inserts the accepted rows and upserts the
        positions in the statement's own transaction (``pg_migrations/0010_append_batch.sql``).
        """
        started = time.perf_counter()
        errors: list[BaseException | None] = [None] * len(batch)
        messages = [item.message for item in batch]
        rows: list[list[Any]] = [  # one array per column of ww_append
            [m.channel for m in messages], [m.offset for m in messages],
            [m.epoch for m in messages], [m.ts for m in messages], [m.data for m in messages],
            [None if m.attrs is None else orjson.dumps(dict(m.attrs)).decode()
             for m in messages],
            [m.idempotency_key for m in messages],
        ]
        try:
            conn = await self._writer_conn()
            refused, refused_epoch, refused_last = await conn.fetchrow(_APPEND, *rows)
        except _DB_ERRORS as exc:  # any failure fails the whole batch, nothing is kept
            log.warning("PostgreSQL batch of %d appends failed: %s", len(batch), exc)
            errors = [StoreUnavailable(f"the store failed to commit: {exc}") for _ in batch]
            self.healthy = False
            await self._drop_broken_conn()
        else:
            for index, epoch, last in zip(refused, refused_epoch, refused_last, strict=True):
                m = batch[index - 1].message
                errors[index - 1] = _hole(m, None if epoch is None else (epoch, last))
            self.healthy = True
            appended = len(batch) - len(refused)
            self._dirty.update(rows[0])
            self._since_prune += appended
            self.appended += appended
            self.commits += 1
            if self.on_commit is not None:
                self.on_commit(appended, time.perf_counter() - started)
        _settle(batch, errors)

    async def _drop_broken_conn(self) -> None:
        """After a failure, the writer's next batch opens a new connection."""
        conn, self._wconn = self._wconn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()  # its state is unknown (an error may have left it mid-way)

    async def _run_job(self, job: _Job) -> None:
        try:
            conn = await self._writer_conn()
            result = await job.run(conn)
        except _DB_ERRORS as exc:
            await self._drop_broken_conn()
            if not job.future.done():
                job.future.set_exception(StoreUnavailable(f"the store failed: {exc}"))
        except Exception as exc:
            if not job.future.done():
                job.future.set_exception(exc)
        else:
            if not job.future.done():
                job.future.set_result(result)

    # -- retention (writer) ----------------------------------------------------------------

    def _sweep_wait(self) -> float | None:
        if not self.retention:
            return None
        return max(0.0, self._next_sweep - time.monotonic())

    async def _maybe_auto_prune(self) -> None:
        if not self.retention:
            return
        if time.monotonic() >= self._next_sweep:
            await self._auto_prune(sweep=True)
        elif self._since_prune >= self._prune_every:
            await self._auto_prune(sweep=False)

    async def _auto_prune(self, *, sweep: bool) -> None:
        try:
            conn = await self._writer_conn()
            await self._prune(conn, now_ms(), None if sweep else list(self._dirty))
        except Exception:
            log.exception("automatic PostgreSQL prune failed")
            await self._drop_broken_conn()
        self._dirty.clear()
        self._since_prune = 0
        if sweep:
            self._next_sweep = time.monotonic() + self._prune_interval_s

    def _rule(self, channel: str) -> RetentionRule | None:
        return self._policy.rule_for(channel)

    async def _prune(
        self, conn: asyncpg.Connection, now_ms: int, channels: Iterable[str] | None
    ) -> int:
        """Delete, per channel, the prefix its rule no longer keeps; one transaction."""
        if channels is None:
            rows = await conn.fetch("SELECT name, last_offset FROM channels")
        else:
            rows = await conn.fetch(
                "SELECT name, last_offset FROM channels WHERE name = ANY($1::text[])",
                list(channels),
            )
        removed = 0
        async with conn.transaction():
            for name, last_offset in rows:
                rule = self._rule(name)
                if rule is None:
                    continue
                cut = 0
                if rule.max_count is not None:
                    cut = last_offset - rule.max_count
                if rule.max_age_s is not None:
                    oldest_kept = now_ms - int(rule.max_age_s * 1000)
                    aged = await conn.fetchval(
                        'SELECT max("offset") FROM messages WHERE channel = $1 AND ts < $2',
                        name, oldest_kept,
                    )
                    if aged is not None:
                        cut = max(cut, aged)
                if cut > 0:
                    status = await conn.execute(
                        'DELETE FROM messages WHERE channel = $1 AND "offset" <= $2', name, cut
                    )
                    removed += int(status.rsplit(" ", 1)[-1])
        if removed:
            log.debug("pruned %d messages from %d channels", removed, len(rows))
        return removed

    # -- reads -----------------------------------------------------------------------------

    async def _fetch(self, sql: str, *args: object) -> list[Any]:
        self._check_open()
        pool = self._pool
        assert pool is not None
        try:
            # Bounded: while PostgreSQL restarts, the pool may wait for a connection that
            # never comes; a publish waiting on a read (reconcile) must not hang with it.
            timeout = self._read_timeout_s
            async with pool.acquire(timeout=timeout) as conn:
                rows = list(await conn.fetch(sql, *args, timeout=timeout))
        except _DB_ERRORS as exc:
            if self._closed:
                raise Unavailable("the store is closed") from exc
            self.healthy = False
            raise StoreUnavailable(f"the store failed to read: {exc}") from exc
        self.healthy = True
        return rows

    async def positions(self) -> dict[str, Position]:
        """The last position of every channel ever written (retention never lowers it)."""
        rows = await self._fetch("SELECT name, epoch, last_offset FROM channels")
        return {name: Position(epoch, last) for name, epoch, last in rows}

    async def read(self, channel: str, after: int, limit: int) -> list[Message]:
        """Messages with offset > ``after``, ascending, at most ``limit``."""
        if limit <= 0:
            return []
        return [_message(r) for r in await self._fetch(_READ, channel, after, limit)]

    async def read_last(self, channel: str, limit: int) -> list[Message]:
        """The newest ``limit`` messages, ascending."""
        if limit <= 0:
            return []
        newest = [_message(r) for r in await self._fetch(_READ_LAST, channel, limit)]
        newest.reverse()
        return newest

    async def read_by_time(
        self, channel: str, since_ms: int, until_ms: int | None, limit: int
    ) -> list[Message]:
        """Messages with ``since_ms <= ts < until_ms``, ascending by ts then offset."""
        if limit <= 0:
            return []
        if until_ms is None:
            rows = await self._fetch(_READ_TIME_OPEN, channel, since_ms, limit)
        else:
            rows = await self._fetch(_READ_TIME_CLOSED, channel, since_ms, until_ms, limit)
        return [_message(r) for r in rows]

    async def channel_info(self, channel: str) -> ChannelInfo | None:
        """Positions and retained range of one channel, ``None`` if never written."""
        rows = await self._fetch(f"{_INFO} WHERE c.name = $1", channel)
        return _info(rows[0]) if rows else None

    async def channels(self) -> list[ChannelInfo]:
        """Every channel ever written, sorted by name."""
        return [_info(r) for r in await self._fetch(f"{_INFO} ORDER BY c.name")]

    async def find_idempotent(self, channel: str, key: str, since_ms: int) -> Message | None:
        """The first message published with ``key`` on ``channel`` at or after ``since_ms``."""
        rows = await self._fetch(_FIND_KEY, channel, key, since_ms)
        return _message(rows[0]) if rows else None

    # -- upstream sources added at run time (connectors.runner.SourceBook) -----------------

    async def source_entries(self) -> dict[str, str]:
        """Every stored source: name -> its entry as JSON (credentials included)."""
        rows = await self._fetch("SELECT name, entry FROM sources ORDER BY name")
        return {name: entry for name, entry in rows}

    async def put_source(self, name: str, entry: str) -> None:
        """Store (or replace) the entry of source ``name``."""
        await self._fetch(
            "INSERT INTO sources (name, entry, updated_ms) VALUES ($1, $2, $3) "
            "ON CONFLICT (name) DO UPDATE SET entry = excluded.entry, "
            "updated_ms = excluded.updated_ms", name, entry, now_ms())

    async def drop_source(self, name: str) -> bool:
        """Forget source ``name``; whether it was stored."""
        rows = await self._fetch("DELETE FROM sources WHERE name = $1 RETURNING name", name)
        return bool(rows)

    async def explain(self) -> dict[str, str]:
        """The query plans of the history reads (for docs and the index test)."""
        queries = {
            "read": (_READ, "game:crash", 100, 500),
            "read_last": (_READ_LAST, "game:crash", 100),
            "read_by_time": (_READ_TIME_CLOSED, "game:crash", 1_000, 2_000, 500),
            "find_idempotent": (_FIND_KEY, "game:crash", "k", 0),
        }
        plans = {}
        for name, (sql, *args) in queries.items():
            rows = await self._fetch(f"EXPLAIN {sql}", *args)
            plans[name] = "\n".join(r[0] for r in rows)
        return plans


def _settle(batch: Sequence[_Append], errors: Sequence[BaseException | None]) -> None:
    """Tell each append its outcome, in queue order."""
    for item, error in zip(batch, errors, strict=True):
        try:
            item.done(error)
        except Exception:  # one caller's bug must not keep the others waiting
            log.exception("an append's completion callback failed")


if TYPE_CHECKING:
    _conforms: Store = PostgresStore("postgresql://")
