"""SQLite store: the embedded default for durable history, one process per database file.

Durability: WAL journal with ``synchronous=FULL``: each commit writes the transaction into
the WAL file and fsyncs it before ``append`` returns, so what was acknowledged survives a
process crash, an OS crash and a power loss. The cost is one fsync per group commit (a batch
of up to ``batch_max`` appends), not per message. ``synchronous="NORMAL"`` skips that fsync
(the WAL is synced at checkpoints only): it survives a process crash but an OS crash or power
loss rolls back the commits since the last checkpoint, acknowledged or not; it is for
benchmarks and tests, never the server's default.

Threads: one writer thread owns the only write connection. ``append`` queues the message and
awaits a future (``append_soon`` takes a callback instead); the appends of one event-loop turn reach the writer's queue together (one
queue item, one wake-up of the thread, not one per append); the writer takes everything queued (up to ``batch_max``), inserts it in one
transaction, commits, then settles the appends through ``loop.call_soon_threadsafe`` in queue
order, in one callback per batch, so appends complete in the order they were issued (the hub
relies on it). Reads run on a small pool of reader threads, each with its own read-only
connection; under WAL they block neither the writer nor each other.

Invariant: a channel's retained messages are one contiguous run of offsets of its current
epoch. The writer refuses an append that would leave a hole (offset must be last + 1, or 1
in a new epoch), a new epoch deletes the old epoch's messages, and retention only removes a
prefix; hence ``ChannelInfo.count`` is ``last_offset - first_offset + 1``.

Retention: the first matching :class:`RetentionRule` applies to a channel. Besides explicit
``prune(now_ms)`` calls, the writer prunes by itself: the channels written since the last
prune every ``prune_every`` appended messages (count limits only grow with writes), and every
channel every ``prune_interval_s`` seconds (age limits grow with time, even on a quiet hub).
Both run on the writer thread between batches, so they never contend for the write lock.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import orjson

from wagerwire.core.messages import Message, Position
from wagerwire.core.store import AppendDone, ChannelInfo, RetentionPolicy, RetentionRule
from wagerwire.core.store import hole_error as _hole
from wagerwire.errors import Unavailable
from wagerwire.stores.outcome import settle, settle_none
from wagerwire.stores.sqlite_schema import apply_migrations, load_migrations
from wagerwire.types import now_ms

if TYPE_CHECKING:
    from wagerwire.core.store import Store

__all__ = ["SqliteStore"]

log = logging.getLogger("wagerwire.stores.sqlite")

T = TypeVar("T")

_COLUMNS = "channel, offset, epoch, ts, data, attrs, idempotency_key"
_INSERT = f"INSERT INTO messages ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
_UPSERT_CHANNEL = (
    "INSERT INTO channels (name, epoch, last_offset, last_ts, created_ts) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET epoch = excluded.epoch, "
    "last_offset = excluded.last_offset, last_ts = excluded.last_ts"
)
_INFO = (
    "SELECT c.name, c.epoch, c.last_offset, c.last_ts, "
    "(SELECT min(m.offset) FROM messages m WHERE m.channel = c.name) FROM channels c"
)


def _message(row: Any) -> Message:
    channel, offset, epoch, ts, data, attrs, key = row
    return Message(
        channel, offset, epoch, ts, data, orjson.loads(attrs) if attrs is not None else None, key
    )


def _row(message: Message) -> tuple[object, ...]:
    attrs = message.attrs
    return (
        message.channel,
        message.offset,
        message.epoch,
        message.ts,
        message.data,
        orjson.dumps(dict(attrs)).decode() if attrs is not None else None,
        message.idempotency_key,
    )


def _info(row: Any) -> ChannelInfo:
    name, epoch, last_offset, last_ts, first = row
    count = last_offset - first + 1 if first is not None else 0
    return ChannelInfo(name, epoch, last_offset, first, count, last_ts)


def _resolve(outcomes: list[tuple[AppendDone, BaseException | None]]) -> None:
    """Tell each append its outcome, in the given order (runs on their event loop)."""
    for done, error in outcomes:
        try:
            done(error)
        except Exception:  # one caller's bug must not keep the others waiting
            log.exception("an append's completion callback failed")


class _Append:
    __slots__ = ("done", "loop", "message")

    def __init__(
        self, message: Message, done: AppendDone, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.message = message
        self.done = done
        self.loop = loop


class _Job:
    """Work that must run on the writer thread, serialised with the appends (e.g. prune)."""

    __slots__ = ("future", "loop", "run")

    def __init__(
        self,
        run: Callable[[], object],
        future: asyncio.Future[Any],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.run = run
        self.future = future
        self.loop = loop


class SqliteStore:
    """Durable history in one SQLite file; see the module docstring for the design.

    Args:
        path: database file (created if missing). ``:memory:`` is refused: the writer and the
            readers need separate connections to one shared, durable database.
        retention: rules applied by ``prune`` and by the writer's periodic pruning.
        batch_max: most appends committed in one transaction.
        synchronous: ``"FULL"`` (default: fsync before acknowledging) or ``"NORMAL"`` (see the
            module docstring).
        busy_timeout_ms: how long a transaction waits for a lock held by another process
            before its batch fails with ``Unavailable``.
        readers: reader threads (each with its own connection).
        prune_every: appended messages between prunes of the channels written meanwhile.
        prune_interval_s: seconds between prunes of every channel.

    ``commits`` counts committed append batches and ``appended`` the messages they held;
    ``on_commit(messages, seconds)``, when set, hears each committed batch (on the writer
    thread: it must be thread-safe).
    """

    def __init__(
        self,
        path: str,
        retention: Sequence[RetentionRule] = (),
        batch_max: int = 512,
        *,
        synchronous: Literal["NORMAL", "FULL"] = "FULL",
        busy_timeout_ms: int = 5000,
        readers: int = 2,
        prune_every: int = 1000,
        prune_interval_s: float = 60.0,
    ) -> None:
        if path == ":memory:" or path == "" or "mode=memory" in path or "::memory:" in path:
            raise ValueError("SqliteStore needs a database file, not an in-memory database")
        if batch_max < 1 or readers < 1 or prune_every < 1 or prune_interval_s <= 0:
            raise ValueError("batch_max, readers, prune_every and prune_interval_s must be > 0")
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError("synchronous must be 'NORMAL' or 'FULL'")
        self.path = path
        self.retention = tuple(retention)
        self.batch_max = batch_max
        self.commits = 0
        self.appended = 0
        self.on_commit: Callable[[int, float], None] | None = None
        self._synchronous = synchronous
        self._timeout_s = busy_timeout_ms / 1000
        self._reader_count = readers
        self._prune_every = prune_every
        self._prune_interval_s = prune_interval_s
        self._queue: queue.SimpleQueue[list[_Append] | _Job | None] = queue.SimpleQueue()
        self._pending: list[_Append] = []  # this event-loop turn's appends, not handed over
        self._writer: threading.Thread | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._reader_local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()
        self._closed = False
        # Owned by the writer thread once it runs:
        self._wconn: sqlite3.Connection | None = None
        self._known: dict[str, tuple[str, int]] = {}  # channel -> committed (epoch, last offset)
        self._policy = RetentionPolicy(self.retention)
        self._dirty: set[str] = set()
        self._since_prune = 0
        self._next_sweep = 0.0

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Create or migrate the schema, then start the writer thread and the reader pool."""
        if self._closed:
            raise Unavailable("the store is closed; create a new one to reopen the file")
        if self._writer is not None:
            return
        try:
            await asyncio.to_thread(self._open_writer)
        except (sqlite3.Error, OSError) as exc:
            raise Unavailable(f"cannot open SQLite store {self.path!r}: {exc}") from exc
        self._next_sweep = time.monotonic() + self._prune_interval_s
        self._writer = threading.Thread(
            target=self._run_writer, name="wagerwire-sqlite-writer", daemon=True
        )
        self._writer.start()
        self._readers = ThreadPoolExecutor(
            max_workers=self._reader_count, thread_name_prefix="wagerwire-sqlite-reader"
        )

    async def close(self) -> None:
        """Commit every append queued so far, then stop the threads and close connections."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._hand_over()  # appends of this very turn go before the stop marker
            self._queue.put(None)
            await asyncio.to_thread(self._writer.join)
        if self._readers is not None:
            await asyncio.to_thread(self._readers.shutdown, True)
            with self._reader_lock:
                for conn in self._reader_conns:
                    conn.close()
                self._reader_conns.clear()

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(
            self.path, timeout=self._timeout_s, isolation_level=None, check_same_thread=False
        )

    def _open_writer(self) -> None:
        conn = self._connect()
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"WAL journal mode unavailable (got {mode!r})")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            apply_migrations(conn, load_migrations())
            self._known = {
                name: (epoch, last)
                for name, epoch, last in conn.execute(
                    "SELECT name, epoch, last_offset FROM channels"
                )
            }
        except BaseException:
            conn.close()
            raise
        self._wconn = conn

    # -- writes ----------------------------------------------------------------------------

    async def append(self, message: Message) -> None:
        """Queue ``message`` for the next group commit; returns once it is committed.

        Raises:
            Unavailable: the store is closed, the offset would leave a hole (it must be the
                channel's last offset + 1, or 1 in a new epoch), or the batch failed.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.append_soon(message, partial(settle_none, future))
        await future

    def append_soon(self, message: Message, done: AppendDone) -> None:
        """``append`` without a future: ``done`` hears the outcome (``core.store.AppendSoon``).

        Raises:
            Unavailable: the store is closed or not open (nothing was queued).
        """
        if self._closed or self._writer is None:
            raise Unavailable("the store is closed" if self._closed else "the store is not open")
        loop = asyncio.get_running_loop()
        pending = self._pending
        if pending and pending[0].loop is not loop:  # another loop's turn: hand it over
            self._hand_over()
            pending = self._pending
        if not pending:
            loop.call_soon(self._hand_over)
        pending.append(_Append(message, done, loop))

    def _hand_over(self) -> None:
        """Give the writer every append of this event-loop turn at once (one queue item)."""
        if self._pending:
            self._queue.put(self._pending)
            self._pending = []

    async def prune(self, now_ms: int) -> int:
        """Apply the retention rules to every channel; returns how many messages went."""
        removed = await self._submit(lambda: self._prune(now_ms, None))
        assert isinstance(removed, int)
        return removed

    async def _submit(self, run: Callable[[], object]) -> object:
        if self._closed or self._writer is None:
            raise Unavailable("the store is closed" if self._closed else "the store is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._hand_over()  # keep the order: this turn's appends first
        self._queue.put(_Job(run, future, loop))
        return await future

    def _run_writer(self) -> None:
        """The writer thread: group commits, jobs, periodic pruning, until the stop marker."""
        q = self._queue
        while True:
            try:
                item = q.get(timeout=self._sweep_wait())
            except queue.Empty:
                self._auto_prune(sweep=True)
                continue
            batch: list[_Append] = []
            stop = False
            while True:
                if item is None:
                    stop = True
                    break
                if isinstance(item, _Job):
                    if batch:
                        self._write_batches(batch)
                        batch = []
                    self._run_job(item)
                else:
                    batch += item
                    if len(batch) >= self.batch_max:
                        break
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._write_batches(batch)
            self._maybe_auto_prune()
            if stop:
                break
        if self._wconn is not None:
            self._wconn.close()

    def _write_batches(self, appends: list[_Append]) -> None:
        for start in range(0, len(appends), self.batch_max):
            self._write_batch(appends[start:start + self.batch_max])

    def _write_batch(self, batch: list[_Append]) -> None:
        """Insert one batch in one transaction, then settle its futures in queue order."""
        conn = self._wconn
        assert conn is not None
        started = time.perf_counter()
        errors: list[BaseException | None] = []
        tip: dict[str, tuple[str, int]] = {}
        last_ts: dict[str, int] = {}
        rows: list[tuple[object, ...]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for item in batch:
                message = item.message
                state = tip.get(message.channel) or self._known.get(message.channel)
                new_epoch = state is not None and state[0] != message.epoch
                expected = 1 if state is None or new_epoch else state[1] + 1
                if message.offset != expected:
                    errors.append(_hole(message, state))
                    continue
                if new_epoch:  # the channel restarts: its old history is gone for good
                    if rows:
                        conn.executemany(_INSERT, rows)
                        rows.clear()
                    conn.execute("DELETE FROM messages WHERE channel = ?", (message.channel,))
                tip[message.channel] = (message.epoch, message.offset)
                last_ts[message.channel] = message.ts
                rows.append(_row(message))
                errors.append(None)
            if rows:
                conn.executemany(_INSERT, rows)
            if tip:
                conn.executemany(
                    _UPSERT_CHANNEL,
                    [(c, e, o, last_ts[c], last_ts[c]) for c, (e, o) in tip.items()],
                )
            conn.execute("COMMIT")
        except Exception as exc:  # any failure fails the whole batch, nothing is kept
            self._rollback()
            log.warning("SQLite batch of %d appends failed: %s", len(batch), exc)
            errors = [Unavailable(f"the store failed to commit: {exc}") for _ in batch]
            tip = {}
        else:
            self._known.update(tip)
            self._dirty.update(tip)
            appended = sum(1 for e in errors if e is None)
            self._since_prune += appended
            self.appended += appended
            self.commits += 1
            if self.on_commit is not None:
                self.on_commit(appended, time.perf_counter() - started)
        self._settle(batch, errors)

    def _run_job(self, job: _Job) -> None:
        result: object = None
        error: BaseException | None = None
        try:
            result = job.run()
        except sqlite3.Error as exc:
            self._rollback()
            error = Unavailable(f"the store failed: {exc}")
        except Exception as exc:
            self._rollback()
            error = exc
        try:
            job.loop.call_soon_threadsafe(settle, job.future, result, error)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    def _rollback(self) -> None:
        conn = self._wconn
        if conn is not None and conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                log.exception("SQLite rollback failed")

    @staticmethod
    def _settle(batch: Sequence[_Append], errors: Sequence[BaseException | None]) -> None:
        """Hand the outcomes to each append's loop: one callback per loop, queue order kept."""
        loop = batch[0].loop
        if all(item.loop is loop for item in batch):  # the usual case: one event loop
            by_loop = {loop: [(item.done, error) for item, error in
                              zip(batch, errors, strict=True)]}
        else:
            by_loop = {}
            for item, error in zip(batch, errors, strict=True):
                by_loop.setdefault(item.loop, []).append((item.done, error))
        for loop, outcomes in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, outcomes)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

    # -- retention (writer thread) ---------------------------------------------------------

    def _sweep_wait(self) -> float | None:
        if not self.retention:
            return None
        return max(0.0, self._next_sweep - time.monotonic())

    def _maybe_auto_prune(self) -> None:
        if not self.retention:
            return
        if time.monotonic() >= self._next_sweep:
            self._auto_prune(sweep=True)
        elif self._since_prune >= self._prune_every:
            self._auto_prune(sweep=False)

    def _auto_prune(self, *, sweep: bool) -> None:
        """Prune every channel (``sweep``) or only those written since the last prune."""
        try:
            self._prune(now_ms(), None if sweep else list(self._dirty))
        except Exception:
            self._rollback()
            log.exception("automatic SQLite prune failed")
        self._dirty.clear()
        self._since_prune = 0
        if sweep:
            self._next_sweep = time.monotonic() + self._prune_interval_s

    def _rule(self, channel: str) -> RetentionRule | None:
        return self._policy.rule_for(channel)

    def _prune(self, now_ms: int, channels: Iterable[str] | None) -> int:
        """Delete, per channel, the prefix its rule no longer keeps; one transaction."""
        conn = self._wconn
        assert conn is not None
        names = list(self._known if channels is None else channels)
        removed = 0
        conn.execute("BEGIN IMMEDIATE")
        try:
            for name in names:
                rule = self._rule(name)
                if rule is None or name not in self._known:
                    continue
                cut = 0
                if rule.max_count is not None:
                    cut = self._known[name][1] - rule.max_count
                if rule.max_age_s is not None:
                    oldest_kept = now_ms - int(rule.max_age_s * 1000)
                    (aged,) = conn.execute(
                        "SELECT max(offset) FROM messages WHERE channel = ? AND ts < ?",
                        (name, oldest_kept),
                    ).fetchone()
                    if aged is not None:
                        cut = max(cut, aged)
                if cut > 0:
                    removed += conn.execute(
                        "DELETE FROM messages WHERE channel = ? AND offset <= ?", (name, cut)
                    ).rowcount
            conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        if removed:
            log.debug("pruned %d messages from %d channels", removed, len(names))
        return removed

    # -- reads -----------------------------------------------------------------------------

    async def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        readers = self._readers
        if self._closed or readers is None:
            raise Unavailable("the store is closed" if self._closed else "the store is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(readers, self._on_reader, query)
        except sqlite3.Error as exc:
            raise Unavailable(f"the store failed to read: {exc}") from exc
        except RuntimeError as exc:  # the pool shut down under us
            if self._closed:
                raise Unavailable("the store is closed") from exc
            raise

    def _on_reader(self, query: Callable[[sqlite3.Connection], T]) -> T:
        conn: sqlite3.Connection | None = getattr(self._reader_local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only = ON")
            self._reader_local.conn = conn
            with self._reader_lock:
                self._reader_conns.append(conn)
        return query(conn)

    async def positions(self) -> dict[str, Position]:
        """The last position of every channel ever written (retention never lowers it)."""

        def query(conn: sqlite3.Connection) -> dict[str, Position]:
            rows = conn.execute("SELECT name, epoch, last_offset FROM channels")
            return {name: Position(epoch, last) for name, epoch, last in rows}

        return await self._read(query)

    async def read(self, channel: str, after: int, limit: int) -> list[Message]:
        """Messages with offset > ``after``, ascending, at most ``limit``."""
        if limit <= 0:
            return []
        sql = (
            f"SELECT {_COLUMNS} FROM messages WHERE channel = ? AND offset > ? "
            "ORDER BY offset LIMIT ?"
        )
        return await self._read(
            lambda conn: [_message(r) for r in conn.execute(sql, (channel, after, limit))]
        )

    async def read_last(self, channel: str, limit: int) -> list[Message]:
        """The newest ``limit`` messages, ascending."""
        if limit <= 0:
            return []
        sql = f"SELECT {_COLUMNS} FROM messages WHERE channel = ? ORDER BY offset DESC LIMIT ?"
        newest = await self._read(
            lambda conn: [_message(r) for r in conn.execute(sql, (channel, limit))]
        )
        newest.reverse()
        return newest

    async def read_by_time(
        self, channel: str, since_ms: int, until_ms: int | None, limit: int
    ) -> list[Message]:
        """Messages with ``since_ms <= ts < until_ms``, ascending by ts then offset."""
        if limit <= 0:
            return []
        upper = "AND ts < ? " if until_ms is not None else ""
        sql = (
            f"SELECT {_COLUMNS} FROM messages WHERE channel = ? AND ts >= ? {upper}"
            "ORDER BY ts, offset LIMIT ?"
        )
        params: tuple[object, ...] = (
            (channel, since_ms, until_ms, limit) if until_ms is not None
            else (channel, since_ms, limit)
        )
        return await self._read(lambda conn: [_message(r) for r in conn.execute(sql, params)])

    async def channel_info(self, channel: str) -> ChannelInfo | None:
        """Positions and retained range of one channel, ``None`` if never written."""

        def query(conn: sqlite3.Connection) -> ChannelInfo | None:
            row = conn.execute(f"{_INFO} WHERE c.name = ?", (channel,)).fetchone()
            return _info(row) if row is not None else None

        return await self._read(query)

    async def channels(self) -> list[ChannelInfo]:
        """Every channel ever written, sorted by name."""
        return await self._read(
            lambda conn: [_info(r) for r in conn.execute(f"{_INFO} ORDER BY c.name")]
        )

    async def find_idempotent(self, channel: str, key: str, since_ms: int) -> Message | None:
        """The first message published with ``key`` on ``channel`` at or after ``since_ms``."""
        sql = (
            f"SELECT {_COLUMNS} FROM messages WHERE channel = ? AND idempotency_key = ? "
            "AND ts >= ? ORDER BY offset LIMIT 1"
        )

        def query(conn: sqlite3.Connection) -> Message | None:
            row = conn.execute(sql, (channel, key, since_ms)).fetchone()
            return _message(row) if row is not None else None

        return await self._read(query)


    # -- upstream sources added at run time (connectors.runner.SourceBook) -----------------

    async def source_entries(self) -> dict[str, str]:
        """Every stored source: name -> its entry as JSON (credentials included)."""
        return await self._read(
            lambda conn: dict(conn.execute("SELECT name, entry FROM sources ORDER BY name"))
        )

    async def put_source(self, name: str, entry: str) -> None:
        """Store (or replace) the entry of source ``name``."""
        sql = ("INSERT INTO sources (name, entry, updated_ms) VALUES (?, ?, ?) "
               "ON CONFLICT (name) DO UPDATE SET entry = excluded.entry, "
               "updated_ms = excluded.updated_ms")
        stamp = now_ms()

        def run() -> None:
            assert self._wconn is not None
            self._wconn.execute(sql, (name, entry, stamp))

        await self._submit(run)

    async def drop_source(self, name: str) -> bool:
        """Forget source ``name``; whether it was stored."""

        def run() -> bool:
            assert self._wconn is not None
            return self._wconn.execute("DELETE FROM sources WHERE name = ?", (name,)).rowcount > 0

        return bool(await self._submit(run))


if TYPE_CHECKING:
    _conforms: Store = SqliteStore("conformance.db")
