"""API keys, signing keys and stored Pusher apps: the key store every node shares.

Two backends with one interface (:class:`KeyBackend`): :class:`KeyStore`, tables in the
embedded SQLite database (the default), and ``stores/pg_keys.PgKeyStore``, the same tables in
PostgreSQL when the store is PostgreSQL, so every node of a scale-out hub sees one set of
keys, revocations, signing keys and apps (``node/backends.build_keystore`` picks one).

A key looks like ``ww_<id>_<secret>`` (or ``os_live_<id>_<secret>``, the form OddsStream
clients check for: same id and secret, another prefix): the prefix makes it recognisable (secret scanners,
logs), the id finds the record without a scan, and only the SHA-256 of the whole key is
stored, compared in constant time. A key is shown once, when it is created. The tables live
next to the history in the same file so ``wagerwire keys create`` works before the server
starts; the server re-reads revocations every few seconds, so a revocation made by the CLI
reaches a running server too.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from wagerwire.errors import BadParameter

__all__ = [
    "KEY_PREFIX",
    "KEY_PREFIXES",
    "ROLES",
    "AppRecord",
    "KeyBackend",
    "KeyRecord",
    "KeyStore",
    "NodeRecord",
    "SigningRow",
    "StoreListener",
    "check_new_key",
    "hash_key",
    "new_key",
    "parse_key_id",
]

KEY_PREFIX = "ww_"
KEY_PREFIXES = (KEY_PREFIX, "os_live_")
ROLES = ("reader", "publisher", "admin")
# A user id is one segment of ``user:{id}:…``: no ':' (or user "a" would own "a:b"'s
# channels), no '*', and not "me" (``user:me:…`` means the holder's own channels).
USER_ID = re.compile(r"[a-z0-9_.-]{1,64}")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    plan TEXT NOT NULL,
    user_id TEXT,
    name TEXT,
    created_at REAL NOT NULL,
    last_used_at REAL,
    revoked_at REAL,
    prefix TEXT NOT NULL DEFAULT 'ww_'
);
CREATE TABLE IF NOT EXISTS signing_keys (
    kid TEXT PRIMARY KEY,
    secret TEXT NOT NULL,
    created_at REAL NOT NULL,
    retired_at REAL
);
CREATE TABLE IF NOT EXISTS pusher_apps (
    app_id TEXT PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    secret TEXT NOT NULL,
    plan TEXT NOT NULL,
    client_events INTEGER NOT NULL,
    max_client_events INTEGER NOT NULL,
    encryption_master_key TEXT,
    webhook_url TEXT,
    builtin INTEGER NOT NULL,
    created_at REAL NOT NULL
);
"""

SigningRow = tuple[str, str, float, float | None]  # kid, secret (hex), created_at, retired_at

NODE_FORGET_S = 3600.0  # a node not seen for an hour leaves the table

# Called with (kind, id) when another node or process changed the store: kind "revoke" (id:
# the key id), "create" (key id), "sign" (signing keys rotated), "apps" (an app changed),
# "resync" (notifications may have been missed: re-read everything). Any thread may call it.
StoreListener = Callable[[str, str], None]

_COLUMNS = ("id, key_hash, role, plan, user_id, name, created_at, last_used_at, revoked_at, "
            "prefix")


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A stored key (never the key itself)."""

    id: str
    key_hash: str
    role: str
    plan: str
    user_id: str | None
    name: str | None
    created_at: float
    last_used_at: float | None
    revoked_at: float | None
    key_prefix: str = KEY_PREFIX  # ww_ or os_live_ (keys made before it was stored: ww_)

    def public(self) -> dict[str, object]:
        """What listings show: everything but the hash."""
        return {
            "id": self.id, "role": self.role, "plan": self.plan, "user_id": self.user_id,
            "name": self.name, "created_at": self.created_at,
            "last_used_at": self.last_used_at, "revoked_at": self.revoked_at,
            "prefix": f"{self.key_prefix}{self.id}_",
        }


@dataclass(frozen=True, slots=True)
class AppRecord:
    """A Pusher app kept in the key store (``wagerwire apps create``), or the built-in
    SportsGameOdds app whose secret every node must share."""

    app_id: str
    key: str
    secret: str
    plan: str = "open"
    client_events: bool = True
    max_client_events: int = 10
    encryption_master_key: str | None = None  # base64 of 32 bytes
    webhook_url: str | None = None
    builtin: bool = False
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """One node's heartbeat in the shared store: who it is and how its backends are."""

    node_id: str
    address: str
    started_at: float
    seen_at: float
    broker: str  # "memory" | "redis"
    broker_ok: bool
    store: str  # "sqlite" | "postgresql"
    store_ok: bool
    streams: int


class KeyBackend(Protocol):
    """What the gate, the CLI and the admin REST need of a key store; every call is short
    and synchronous (the PostgreSQL backend answers hot reads from memory)."""

    def close(self) -> None: ...
    def create(self, role: str, plan: str, user_id: str | None = None,
               name: str | None = None, prefix: str = KEY_PREFIX) -> tuple[KeyRecord, str]: ...
    def get(self, key_id: str) -> KeyRecord | None: ...
    def verify(self, key: str) -> KeyRecord | None: ...
    def list(self) -> list[KeyRecord]: ...
    def revoke(self, key_id: str) -> bool: ...
    def revoked_ids(self) -> set[str]: ...
    def touch(self, key_id: str, when: float) -> None: ...
    def count(self) -> int: ...
    def signing_keys(self) -> dict[str, bytes]: ...
    def current_signing_kid(self) -> str: ...
    def rotate_signing_key(self, keep_seconds: float = 3600.0) -> str: ...
    def apps(self) -> builtins.list[AppRecord]: ...
    def create_app(self, app: AppRecord) -> AppRecord: ...
    def delete_app(self, app_id: str) -> bool: ...
    def builtin_app(self, app: AppRecord) -> AppRecord: ...
    def watch(self, listener: StoreListener | None) -> None: ...
    def heartbeat(self, node: NodeRecord) -> None: ...
    def nodes(self) -> builtins.list[NodeRecord]: ...


def check_new_key(role: str, user_id: str | None, prefix: str) -> None:
    """Raises ``BadParameter`` for a role, user id or prefix a new key cannot have."""
    if prefix not in KEY_PREFIXES:
        raise BadParameter(f"key prefix must be one of {', '.join(KEY_PREFIXES)}")
    if role not in ROLES:
        raise BadParameter(f"role must be one of {', '.join(ROLES)}")
    if user_id is not None and (USER_ID.fullmatch(user_id) is None or user_id == "me"):
        raise BadParameter(f"invalid user id {user_id!r}: use 1-64 characters of "
                           "[a-z0-9_.-] (and not 'me')")


def new_key(role: str, plan: str, user_id: str | None, name: str | None, prefix: str,
            now: float) -> tuple[KeyRecord, str]:
    """A new key and its record (checked by :func:`check_new_key`)."""
    check_new_key(role, user_id, prefix)
    key_id = secrets.token_hex(6)
    key = f"{prefix}{key_id}_{secrets.token_urlsafe(24)}"
    return KeyRecord(key_id, hash_key(key), role, plan, user_id, name, now, None, None,
                     prefix), key


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_key_id(key: str) -> str | None:
    """The id part of ``ww_<id>_<secret>`` (or ``os_live_…``), or None when it is not shaped
    like a key."""
    prefix = next((p for p in KEY_PREFIXES if key.startswith(p)), None)
    if prefix is None:
        return None
    parts = key[len(prefix):].split("_", 1)
    if len(parts) != 2 or not parts[0] or not parts[1]:
        return None
    return parts[0]


class KeyStore:
    """Key, signing-key and app tables in one SQLite file; every call is short and
    synchronous. Changes made elsewhere (the CLI) are seen by polling: :meth:`watch` never
    calls its listener."""

    def __init__(self, path: str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, check_same_thread=False, timeout=5.0,
                                     isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(_SCHEMA)
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(api_keys)")}
        if "prefix" not in columns:  # a file made before the prefix was stored
            self._conn.execute("ALTER TABLE api_keys ADD COLUMN prefix TEXT NOT NULL "
                               "DEFAULT 'ww_'")
        self._lock = threading.Lock()
        self._node: NodeRecord | None = None

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- API keys --------------------------------------------------------------------------

    def create(
        self, role: str, plan: str, user_id: str | None = None, name: str | None = None,
        prefix: str = KEY_PREFIX,
    ) -> tuple[KeyRecord, str]:
        """Create a key; returns the record and the key, which is not stored anywhere.

        ``prefix`` is one of :data:`KEY_PREFIXES` (``os_live_`` for OddsStream clients)."""
        record, key = new_key(role, plan, user_id, name, prefix, time.time())
        with self._lock:
            self._conn.execute(
                "INSERT INTO api_keys (id, key_hash, role, plan, user_id, name, created_at, "
                "last_used_at, revoked_at, prefix) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (record.id, record.key_hash, role, plan, user_id, name, record.created_at,
                 None, None, prefix),
            )
        return record, key

    def get(self, key_id: str) -> KeyRecord | None:
        with self._lock:
            row = self._conn.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE id = ?",
                                     (key_id,)).fetchone()
        return KeyRecord(*row) if row else None

    def verify(self, key: str) -> KeyRecord | None:
        """The record of ``key`` if it exists and its hash matches (constant-time)."""
        key_id = parse_key_id(key)
        record = self.get(key_id) if key_id else None
        if record is None or not hmac.compare_digest(record.key_hash, hash_key(key)):
            return None
        return record

    def list(self) -> list[KeyRecord]:
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at").fetchall()
        return [KeyRecord(*row) for row in rows]

    def revoke(self, key_id: str) -> bool:
        with self._lock:
            cur = self._conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (time.time(), key_id),
            )
        return cur.rowcount > 0

    def revoked_ids(self) -> set[str]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id FROM api_keys WHERE revoked_at IS NOT NULL"
            ).fetchall()
        return {r[0] for r in rows}

    def touch(self, key_id: str, when: float) -> None:
        with self._lock:
            self._conn.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?",
                               (when, key_id))

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM api_keys").fetchone()[0])

    # -- signing keys (stream tokens) ------------------------------------------------------

    def signing_keys(self) -> dict[str, bytes]:
        """Every signing key still accepted, by key id; creates the first one."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT kid, secret FROM signing_keys ORDER BY created_at"
            ).fetchall()
        if not rows:
            self.rotate_signing_key()
            return self.signing_keys()
        return {kid: bytes.fromhex(secret) for kid, secret in rows}

    def current_signing_kid(self) -> str:
        with self._lock:
            row = self._conn.execute(
                "SELECT kid FROM signing_keys WHERE retired_at IS NULL "
                "ORDER BY created_at DESC LIMIT 1"
            ).fetchone()
        if row is None:
            return self.rotate_signing_key()
        return str(row[0])

    def rotate_signing_key(self, keep_seconds: float = 3600.0) -> str:
        """Start signing with a new key; old ones verify for ``keep_seconds`` more."""
        kid = secrets.token_hex(4)
        now = time.time()
        with self._lock:
            self._conn.execute(
                "DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < ?",
                (now - keep_seconds,),
            )
            self._conn.execute(
                "UPDATE signing_keys SET retired_at = ? WHERE retired_at IS NULL", (now,)
            )
            self._conn.execute("INSERT INTO signing_keys VALUES (?,?,?,NULL)",
                               (kid, secrets.token_hex(32), now))
        return kid

    def export_rows(
        self,
    ) -> tuple[builtins.list[KeyRecord], builtins.list[SigningRow], builtins.list[AppRecord]]:
        """Every key, signing key and stored app, as stored (``wagerwire keys import``)."""
        with self._lock:
            signing = self._conn.execute(
                "SELECT kid, secret, created_at, retired_at FROM signing_keys").fetchall()
        return self.list(), [(str(k), str(s), float(c), r) for k, s, c, r in signing], \
            self.apps()

    # -- stored Pusher apps ----------------------------------------------------------------

    def apps(self) -> builtins.list[AppRecord]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT app_id, key, secret, plan, client_events, max_client_events, "
                "encryption_master_key, webhook_url, builtin, created_at FROM pusher_apps "
                "ORDER BY created_at"
            ).fetchall()
        return [_app(row) for row in rows]

    def create_app(self, app: AppRecord) -> AppRecord:
        """Store a new app. Raises ``BadParameter`` when its id or key is taken."""
        app = _stamped(app)
        try:
            with self._lock:
                self._conn.execute("INSERT INTO pusher_apps VALUES (?,?,?,?,?,?,?,?,?,?)",
                                   _app_row(app))
        except sqlite3.IntegrityError as exc:
            raise BadParameter(f"pusher app {app.app_id!r}: app id and key must be "
                               "unique") from exc
        return app

    def delete_app(self, app_id: str) -> bool:
        with self._lock:
            cur = self._conn.execute(
                "DELETE FROM pusher_apps WHERE app_id = ? AND builtin = 0", (app_id,))
        return cur.rowcount > 0

    def builtin_app(self, app: AppRecord) -> AppRecord:
        """The stored built-in app of ``app.app_id``; stores ``app`` first if there is none
        (so every process of this database signs with one secret)."""
        with self._lock:
            self._conn.execute("INSERT OR IGNORE INTO pusher_apps VALUES (?,?,?,?,?,?,?,?,?,?)",
                               _app_row(_stamped(app)))
            row = self._conn.execute(
                "SELECT app_id, key, secret, plan, client_events, max_client_events, "
                "encryption_master_key, webhook_url, builtin, created_at FROM pusher_apps "
                "WHERE app_id = ?", (app.app_id,)).fetchone()
        return _app(row)

    def watch(self, listener: StoreListener | None) -> None:
        """Nothing to push: SQLite is one machine's file, polled by the gate."""

    # -- nodes -----------------------------------------------------------------------------

    def heartbeat(self, node: NodeRecord) -> None:
        """Remember ``node``'s state in memory: a SQLite hub is one node (no disk write)."""
        self._node = node

    def nodes(self) -> builtins.list[NodeRecord]:
        return [] if self._node is None else [self._node]


def _stamped(app: AppRecord) -> AppRecord:
    if app.created_at:
        return app
    return AppRecord(app.app_id, app.key, app.secret, app.plan, app.client_events,
                     app.max_client_events, app.encryption_master_key, app.webhook_url,
                     app.builtin, time.time())


def _app_row(app: AppRecord) -> tuple[object, ...]:
    return (app.app_id, app.key, app.secret, app.plan, int(app.client_events),
            app.max_client_events, app.encryption_master_key, app.webhook_url,
            int(app.builtin), app.created_at)


def _app(row: tuple[object, ...]) -> AppRecord:
    (app_id, key, secret, plan, client_events, max_client_events, master, url, builtin,
     created) = row
    return AppRecord(str(app_id), str(key), str(secret), str(plan), bool(client_events),
                     int(str(max_client_events)), None if master is None else str(master),
                     None if url is None else str(url), bool(builtin), float(str(created)))
