"""The key store in PostgreSQL: one set of keys, revocations, signing keys and apps for every
node of a scale-out hub (the SQLite tables of ``auth/keys.py``, migrated with the store's
schema by ``pg_migrations/0002_keys.sql``).

The gate asks its key store synchronously, on the event loop (``authenticate`` is called by
sans-I/O dialects). So this store keeps its own thread with its own event loop and asyncpg
connections, and answers the hot reads from memory:

* every key record is loaded at start; a key created elsewhere arrives by notification, and
  an id still unknown is fetched once (a blocking round trip, at most ``misses_per_s`` a
  second, remembered as missing for ``MISS_TTL_S``) so a key made a moment ago on another node
  works at once and a flood of made-up ids costs the database nothing;
* every change is written in a transaction that also sends ``pg_notify`` on
  :func:`notify_channel`: ``create:<id>``, ``revoke:<id>``, ``sign:<kid>``, ``apps:<id>``. A
  notification is delivered only if its transaction commits, to every session listening,
  whoever made the change (a node, the admin REST, or ``wagerwire keys`` on a laptop, which
  knows only the store URL). The listener passes each one on (:meth:`PgKeyStore.watch`); the
  gate closes a revoked key's streams at once;
* the gate re-reads the revoked ids every few seconds anyway, so a notification lost while
  the listening connection was down still converges; the listening connection is re-made
  within ``WATCH_EVERY_S`` and then says ``resync`` (every key is re-loaded).

Writes (create, revoke, rotate, apps) and listings are blocking round trips: they are rare
and made by an administrator. ``touch`` (last used) is sent without waiting.
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import contextlib
import dataclasses
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import asyncpg

from wagerwire.auth.keys import (
    KEY_PREFIX,
    NODE_FORGET_S,
    AppRecord,
    KeyRecord,
    NodeRecord,
    SigningRow,
    StoreListener,
    hash_key,
    new_key,
    parse_key_id,
)
from wagerwire.errors import BadParameter, Unavailable
from wagerwire.stores.postgres import migrate

__all__ = ["MISS_TTL_S", "PgKeyStore", "notify_channel"]

log = logging.getLogger("wagerwire.stores.pg_keys")

T = TypeVar("T")

MISS_TTL_S = 5.0  # an id not found is not looked up again for this long (unless created)
MISSES_PER_S = 50.0  # blocking look-ups of unknown ids (or key ids) per second, at most
MISS_TIMEOUT_S = 1.0  # the event loop waits at most this long for one (then 503)
MAX_MISSING = 10_000
WATCH_EVERY_S = 1.0
CURRENT_KID_TTL_S = 10.0
_SIGNING_LOCK = 0x77777369  # one first signing key, whoever asks first
_KEY_COLUMNS = ("id, key_hash, role, plan, user_id, name, created_at, last_used_at, revoked_at, "
                "prefix")
_APP_COLUMNS = ("app_id, key, secret, plan, client_events, max_client_events, "
                "encryption_master_key, webhook_url, builtin, created_at")
_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError)


def notify_channel(schema: str | None) -> str:
    """The ``LISTEN`` channel of the key store in ``schema`` (one database may hold several)."""
    return f"wagerwire_keys_{schema or 'public'}"


def _record(row: Any) -> KeyRecord:
    return KeyRecord(*row)


def _app(row: Any) -> AppRecord:
    return AppRecord(*row)


class PgKeyStore:
    """:class:`~wagerwire.auth.keys.KeyBackend` over PostgreSQL (see the module's notes).

    Raises ``Unavailable`` (HTTP 503) when PostgreSQL cannot answer a call that needs it.
    """

    def __init__(
        self, dsn: str, schema: str | None = None, *, timeout: float = 5.0,
        misses_per_s: float = MISSES_PER_S, listen: bool = True,
    ) -> None:
        self.dsn = dsn
        self.schema = schema
        self.timeout = timeout
        self.channel = notify_channel(schema)
        self.notifications = 0  # received, for /metrics
        self._lock = threading.Lock()
        self._records: dict[str, KeyRecord] = {}
        self._missing: dict[str, float] = {}
        self._signing: dict[str, bytes] = {}
        self._current: tuple[str, float] | None = None
        self._listener: StoreListener | None = None
        self._rate = misses_per_s
        self._bucket = misses_per_s
        self._bucket_at = time.monotonic()
        self._pool: asyncpg.Pool | None = None
        self._listen_conn: asyncpg.Connection | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name="wagerwire-keys", daemon=True)
        self._thread.start()
        try:
            self._call(self._open(listen))
        except BaseException:
            self._stop_thread()
            raise

    # -- the store's own thread ------------------------------------------------------------

    def _settings(self) -> dict[str, str]:
        settings = {"application_name": "wagerwire-keys", "synchronous_commit": "on"}
        if self.schema is not None:
            settings["search_path"] = self.schema
        return settings

    async def _connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.dsn, server_settings=self._settings(),
                                     timeout=self.timeout)

    async def _open(self, listen: bool) -> None:
        conn = await self._connect()
        try:
            await migrate(conn, self.schema)
        finally:
            await conn.close()
        self._pool = await asyncpg.create_pool(
            self.dsn, min_size=1, max_size=2, server_settings=self._settings(),
            timeout=self.timeout,
        )
        await self._load()
        if listen:
            await self._listen()
            self._watchdog = asyncio.get_running_loop().create_task(self._watch())

    async def _load(self) -> None:
        rows = await self._fetch(f"SELECT {_KEY_COLUMNS} FROM api_keys")
        records = {r[0]: _record(r) for r in rows}
        with self._lock:
            self._records = records
            self._missing.clear()
            self._current = None

    async def _listen(self) -> None:
        conn = await self._connect()
        await conn.add_listener(self.channel, self._notified)
        self._listen_conn = conn

    async def _watch(self) -> None:
        """Re-make the listening connection when it is lost; then everyone resyncs."""
        down = False
        while True:
            await asyncio.sleep(WATCH_EVERY_S)
            conn = self._listen_conn
            if conn is not None and not conn.is_closed():
                continue
            try:
                await self._listen()
                await self._load()
            except _DB_ERRORS as exc:
                if not down:
                    log.warning("key store notifications lost (%s); revocations still "
                                "converge by polling", exc)
                down = True
                continue
            log.info("key store notifications listening again; resyncing")
            down = False
            self._tell("resync", "")

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        kind, _, ident = payload.partition(":")
        self.notifications += 1
        with self._lock:
            self._missing.pop(ident, None)
            if kind == "revoke":
                record = self._records.get(ident)
                if record is not None and record.revoked_at is None:
                    self._records[ident] = dataclasses.replace(record, revoked_at=time.time())
            elif kind == "sign":
                self._current = None
        if kind == "create" and ident not in self._records:
            self._loop.create_task(self._prefetch(ident))  # in memory before anyone asks
        elif kind == "resync":  # many rows changed at once (an import): load them all
            self._loop.create_task(self._reload())
        self._tell(kind, ident)

    async def _reload(self) -> None:
        with contextlib.suppress(*_DB_ERRORS):
            await self._load()

    async def _prefetch(self, key_id: str) -> None:
        with contextlib.suppress(*_DB_ERRORS):
            record = await self._fetch_key(key_id)
            if record is not None:
                with self._lock:
                    self._records.setdefault(key_id, record)

    def _tell(self, kind: str, ident: str) -> None:
        listener = self._listener
        if listener is not None:
            try:
                listener(kind, ident)
            except Exception:
                log.exception("key store listener failed")

    async def _fetch(self, sql: str, *args: object) -> list[Any]:
        assert self._pool is not None
        async with self._pool.acquire(timeout=self.timeout) as conn:
            return list(await conn.fetch(sql, *args))

    async def _fetch_key(self, key_id: str) -> KeyRecord | None:
        rows = await self._fetch(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = $1", key_id)
        return _record(rows[0]) if rows else None

    async def _write(self, sql: str, args: tuple[object, ...], notify: str | None) -> str:
        """Run ``sql`` and, in the same transaction, notify ``notify`` if it changed a row."""
        assert self._pool is not None
        async with self._pool.acquire(timeout=self.timeout) as conn, conn.transaction():
            status: str = await conn.execute(sql, *args)
            if notify is not None and not status.endswith(" 0"):
                await conn.execute("SELECT pg_notify($1, $2)", self.channel, notify)
            return status

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the store's loop and wait for it (never from that loop) at most
        ``timeout`` seconds (default: the store's timeout, plus one)."""
        if self._closed:
            coro.close()
            raise Unavailable("the key store is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(self.timeout + 1.0 if timeout is None else timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise Unavailable("the key store (PostgreSQL) did not answer in time; retry "
                              "shortly") from None
        except _DB_ERRORS as exc:
            raise Unavailable(f"the key store (PostgreSQL) cannot answer: {exc}") from exc

    def _take_miss(self, now: float) -> bool:
        """One blocking look-up of an unknown id, if the budget allows (under the lock)."""
        self._bucket = min(self._rate, self._bucket + (now - self._bucket_at) * self._rate)
        self._bucket_at = now
        if self._bucket < 1.0:
            return False
        self._bucket -= 1.0
        return True

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def listening(self) -> bool:
        """Whether notifications are being received (else revocations arrive by polling)."""
        conn = self._listen_conn
        return conn is not None and not conn.is_closed()

    def watch(self, listener: StoreListener | None) -> None:
        """Call ``listener(kind, id)`` (from the store's thread) for every change notified."""
        self._listener = listener

    def close(self) -> None:
        if self._closed:
            return
        self._listener = None
        with contextlib.suppress(Exception):
            self._call(self._aclose())
        self._closed = True
        self._stop_thread()

    async def _aclose(self) -> None:
        current = asyncio.current_task()
        others = [t for t in asyncio.all_tasks() if t is not current]  # watchdog, prefetches
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        if self._listen_conn is not None:
            with contextlib.suppress(*_DB_ERRORS):
                await self._listen_conn.close(timeout=2)
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), 2)
            except _DB_ERRORS:
                self._pool.terminate()

    def _stop_thread(self) -> None:
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    # -- API keys --------------------------------------------------------------------------

    def create(
        self, role: str, plan: str, user_id: str | None = None, name: str | None = None,
        prefix: str = KEY_PREFIX,
    ) -> tuple[KeyRecord, str]:
        record, key = new_key(role, plan, user_id, name, prefix, time.time())
        r = record
        self._call(self._write(
            f"INSERT INTO api_keys ({_KEY_COLUMNS}) "
            "VALUES ($1,$2,$3,$4,$5,$6,$7,NULL,NULL,$8)",
            (r.id, r.key_hash, r.role, r.plan, r.user_id, r.name, r.created_at, r.key_prefix),
            f"create:{r.id}",
        ))
        with self._lock:
            self._records[r.id] = r
            self._missing.pop(r.id, None)
        return record, key

    def get(self, key_id: str) -> KeyRecord | None:
        now = time.monotonic()
        with self._lock:
            record = self._records.get(key_id)
            if record is not None:
                return record
            seen = self._missing.get(key_id)
            if seen is not None and now - seen < MISS_TTL_S:
                return None
            if not self._take_miss(now):
                return None
        record = self._call(self._fetch_key(key_id), MISS_TIMEOUT_S)
        with self._lock:
            if record is not None:
                self._records[key_id] = record
            else:
                if len(self._missing) >= MAX_MISSING:
                    self._missing.clear()
                self._missing[key_id] = now
        return record

    def verify(self, key: str) -> KeyRecord | None:
        key_id = parse_key_id(key)
        record = self.get(key_id) if key_id else None
        if record is None or not hmac.compare_digest(record.key_hash, hash_key(key)):
            return None
        return record

    def list(self) -> list[KeyRecord]:
        rows = self._call(self._fetch(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at"))
        return [_record(r) for r in rows]

    def revoke(self, key_id: str) -> bool:
        when = time.time()
        status = self._call(self._write(
            "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
            (when, key_id), f"revoke:{key_id}",
        ))
        with self._lock:
            record = self._records.get(key_id)
            if record is not None and record.revoked_at is None:
                self._records[key_id] = dataclasses.replace(record, revoked_at=when)
        return not status.endswith(" 0")

    def revoked_ids(self) -> set[str]:
        """Every revoked id, read from PostgreSQL (the periodic re-check); updates memory."""
        rows = self._call(self._fetch(
            "SELECT id, revoked_at FROM api_keys WHERE revoked_at IS NOT NULL"))
        with self._lock:
            for key_id, when in rows:
                record = self._records.get(key_id)
                if record is not None and record.revoked_at is None:
                    self._records[key_id] = dataclasses.replace(record, revoked_at=when)
        return {r[0] for r in rows}

    def touch(self, key_id: str, when: float) -> None:
        """Record the last use, without waiting for it."""
        if self._closed:
            return
        future = asyncio.run_coroutine_threadsafe(self._write(
            "UPDATE api_keys SET last_used_at = $1 WHERE id = $2", (when, key_id), None,
        ), self._loop)
        future.add_done_callback(_log_failure)

    def count(self) -> int:
        rows = self._call(self._fetch("SELECT count(*) FROM api_keys"))
        return int(rows[0][0])

    # -- signing keys (stream tokens) ------------------------------------------------------

    def signing_keys(self) -> dict[str, bytes]:
        """Every signing key still accepted, by key id; creates the first one. Re-read from
        PostgreSQL at most ``misses_per_s`` times a second (forged key ids ask for it)."""
        with self._lock:
            if self._signing and not self._take_miss(time.monotonic()):
                return dict(self._signing)
        found = self._call(self._signing_keys(), MISS_TIMEOUT_S if self._signing else None)
        with self._lock:
            self._signing = found
        return dict(found)

    async def _signing_keys(self) -> dict[str, bytes]:
        rows = await self._fetch("SELECT kid, secret FROM signing_keys ORDER BY created_at")
        if not rows:
            await self._first_signing_key()
            rows = await self._fetch("SELECT kid, secret FROM signing_keys ORDER BY created_at")
        return {kid: bytes.fromhex(secret) for kid, secret in rows}

    async def _first_signing_key(self) -> str:
        """The current signing key, made if there is none (one, whoever asks first)."""
        assert self._pool is not None
        async with self._pool.acquire(timeout=self.timeout) as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _SIGNING_LOCK)
            kid = await conn.fetchval(
                "SELECT kid FROM signing_keys WHERE retired_at IS NULL "
                "ORDER BY created_at DESC LIMIT 1")
            if kid is not None:
                return str(kid)
            kid = secrets.token_hex(4)
            await conn.execute("INSERT INTO signing_keys VALUES ($1,$2,$3,NULL)",
                               kid, secrets.token_hex(32), time.time())
            await conn.execute("SELECT pg_notify($1, $2)", self.channel, f"sign:{kid}")
            return str(kid)

    def current_signing_kid(self) -> str:
        now = time.monotonic()
        with self._lock:
            if self._current is not None and now - self._current[1] < CURRENT_KID_TTL_S:
                return self._current[0]
        kid = self._call(self._first_signing_key())
        with self._lock:
            self._current = (kid, now)
        return kid

    def rotate_signing_key(self, keep_seconds: float = 3600.0) -> str:
        """Start signing with a new key; old ones verify for ``keep_seconds`` more."""
        kid = secrets.token_hex(4)
        self._call(self._rotate(kid, keep_seconds))
        with self._lock:
            self._current = None
        return kid

    async def _rotate(self, kid: str, keep_seconds: float) -> None:
        assert self._pool is not None
        now = time.time()
        async with self._pool.acquire(timeout=self.timeout) as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _SIGNING_LOCK)
            await conn.execute(
                "DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < $1",
                now - keep_seconds)
            await conn.execute(
                "UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL", now)
            await conn.execute("INSERT INTO signing_keys VALUES ($1,$2,$3,NULL)",
                               kid, secrets.token_hex(32), now)
            await conn.execute("SELECT pg_notify($1, $2)", self.channel, f"sign:{kid}")

    # -- stored Pusher apps ----------------------------------------------------------------

    def apps(self) -> builtins.list[AppRecord]:
        rows = self._call(self._fetch(
            f"SELECT {_APP_COLUMNS} FROM pusher_apps ORDER BY created_at"))
        return [_app(r) for r in rows]

    def create_app(self, app: AppRecord) -> AppRecord:
        """Store a new app. Raises ``BadParameter`` when its id or key is taken."""
        if not app.created_at:
            app = dataclasses.replace(app, created_at=time.time())
        self._call(self._insert_app(app))
        return app

    async def _insert_app(self, app: AppRecord) -> None:
        try:
            await self._write(
                f"INSERT INTO pusher_apps ({_APP_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)",
                dataclasses.astuple(app), f"apps:{app.app_id}",
            )
        except asyncpg.UniqueViolationError as exc:
            raise BadParameter(f"pusher app {app.app_id!r}: app id and key must be "
                               "unique") from exc

    def delete_app(self, app_id: str) -> bool:
        status = self._call(self._write(
            "DELETE FROM pusher_apps WHERE app_id = $1 AND NOT builtin", (app_id,),
            f"apps:{app_id}",
        ))
        return not status.endswith(" 0")

    def builtin_app(self, app: AppRecord) -> AppRecord:
        """The stored built-in app of ``app.app_id``; stores ``app`` first if there is none
        (so every node signs with one secret)."""
        if not app.created_at:
            app = dataclasses.replace(app, created_at=time.time())
        return self._call(self._builtin_app(app))

    async def _builtin_app(self, app: AppRecord) -> AppRecord:
        await self._write(
            f"INSERT INTO pusher_apps ({_APP_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) "
            "ON CONFLICT DO NOTHING", dataclasses.astuple(app), f"apps:{app.app_id}",
        )
        rows = await self._fetch(f"SELECT {_APP_COLUMNS} FROM pusher_apps WHERE app_id = $1",
                                 app.app_id)
        return _app(rows[0])

    # -- import ----------------------------------------------------------------------------

    def import_rows(
        self, keys: builtins.list[KeyRecord], signing: builtins.list[SigningRow],
        apps: builtins.list[AppRecord],
    ) -> tuple[int, int, int]:
        """Add keys, signing keys and apps that are not here yet (by id) in one transaction;
        returns how many of each were added. Running nodes see them at once."""
        counts = self._call(self._import(keys, signing, apps))
        self._call(self._load())
        return counts

    async def _import(
        self, keys: builtins.list[KeyRecord], signing: builtins.list[SigningRow],
        apps: builtins.list[AppRecord],
    ) -> tuple[int, int, int]:
        assert self._pool is not None
        added = [0, 0, 0]
        async with self._pool.acquire(timeout=self.timeout) as conn, conn.transaction():
            for key in keys:
                status = await conn.execute(
                    f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES "
                    "($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) ON CONFLICT DO NOTHING",
                    *dataclasses.astuple(key))
                added[0] += not status.endswith(" 0")
            for row in signing:
                status = await conn.execute(
                    "INSERT INTO signing_keys VALUES ($1,$2,$3,$4) ON CONFLICT DO NOTHING", *row)
                added[1] += not status.endswith(" 0")
            for app in apps:
                status = await conn.execute(
                    f"INSERT INTO pusher_apps ({_APP_COLUMNS}) VALUES "
                    "($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) ON CONFLICT DO NOTHING",
                    *dataclasses.astuple(app))
                added[2] += not status.endswith(" 0")
            for kind in ("resync", "sign", "apps"):
                await conn.execute("SELECT pg_notify($1, $2)", self.channel, f"{kind}:")
        return added[0], added[1], added[2]

    # -- nodes -----------------------------------------------------------------------------

    def heartbeat(self, node: NodeRecord) -> None:
        """Record ``node``'s state (and forget nodes not seen for ``NODE_FORGET_S``)."""
        self._call(self._heartbeat(node))

    async def _heartbeat(self, node: NodeRecord) -> None:
        assert self._pool is not None
        async with self._pool.acquire(timeout=self.timeout) as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO nodes VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) ON CONFLICT (node_id) "
                "DO UPDATE SET address = excluded.address, seen_at = excluded.seen_at, "
                "broker = excluded.broker, broker_ok = excluded.broker_ok, "
                "store = excluded.store, store_ok = excluded.store_ok, "
                "streams = excluded.streams", *dataclasses.astuple(node))
            await conn.execute("DELETE FROM nodes WHERE seen_at < $1",
                               node.seen_at - NODE_FORGET_S)

    def nodes(self) -> builtins.list[NodeRecord]:
        rows = self._call(self._fetch("SELECT * FROM nodes ORDER BY node_id"))
        return [NodeRecord(*r) for r in rows]


def _log_failure(future: concurrent.futures.Future[str]) -> None:
    if future.cancelled():
        return
    exc = future.exception()
    if exc is not None:
        log.warning("cannot record a key's last use: %s", exc)
