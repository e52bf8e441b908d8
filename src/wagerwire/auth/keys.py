"""API keys and signing keys, kept in the configured SQLite database.

A key looks like ``ww_<id>_<secret>`` (or ``os_live_<id>_<secret>``, the form OddsStream
clients check for: same id and secret, another prefix): the prefix makes it recognisable (secret scanners,
logs), the id finds the record without a scan, and only the SHA-256 of the whole key is
stored, compared in constant time. A key is shown once, when it is created. The tables live
next to the history in the same file so ``wagerwire keys create`` works before the server
starts; the server re-reads revocations every few seconds, so a revocation made by the CLI
reaches a running server too.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from wagerwire.errors import BadParameter

__all__ = ["KEY_PREFIX", "KEY_PREFIXES", "ROLES", "KeyRecord", "KeyStore", "hash_key", "parse_key_id"]

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
"""

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
    """Key and signing-key tables in one SQLite file; every call is short and synchronous."""

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
        if prefix not in KEY_PREFIXES:
            raise BadParameter(f"key prefix must be one of {', '.join(KEY_PREFIXES)}")
        if role not in ROLES:
            raise BadParameter(f"role must be one of {', '.join(ROLES)}")
        if user_id is not None and (USER_ID.fullmatch(user_id) is None or user_id == "me"):
            raise BadParameter(f"invalid user id {user_id!r}: use 1-64 characters of "
                               "[a-z0-9_.-] (and not 'me')")
        key_id = secrets.token_hex(6)
        key = f"{prefix}{key_id}_{secrets.token_urlsafe(24)}"
        record = KeyRecord(key_id, hash_key(key), role, plan, user_id, name, time.time(),
                           None, None, prefix)
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
