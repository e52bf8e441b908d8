"""Schema migrations of the SQLite store: numbered SQL files, each applied once, in order.

``stores/migrations/NNNN_name.sql`` holds the steps. ``schema_migrations`` records which ran,
so reopening a database applies only what is new; each step commits together with its
record, so a failed step leaves the schema as it was.
"""

from __future__ import annotations

import importlib.resources
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from wagerwire.types import now_ms

__all__ = ["Migration", "apply_migrations", "load_migrations"]

_MIGRATION_FILE = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered schema step; applied once, in version order, in its own transaction."""

    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    """The packaged migrations (``stores/migrations/NNNN_name.sql``), ordered by version."""
    folder = importlib.resources.files("wagerwire.stores").joinpath("migrations")
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _MIGRATION_FILE.fullmatch(entry.name)
        if match is not None:
            found.append(Migration(int(match[1]), entry.name, entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions in {folder}: {versions}")
    return found


def apply_migrations(conn: sqlite3.Connection, migrations: Iterable[Migration]) -> list[int]:
    """Apply the migrations not yet recorded in ``schema_migrations``; returns their versions.

    ``conn`` must be in autocommit mode (``isolation_level=None``). Each migration and its
    record commit together, so a failed one leaves the schema as it was; reopening an
    up-to-date database applies nothing.
    """
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ms INTEGER NOT NULL)"
    )
    done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    applied: list[int] = []
    for migration in migrations:
        if migration.version in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-check under the write lock: another process may have just migrated.
            if conn.execute(
                "SELECT 1 FROM schema_migrations WHERE version = ?", (migration.version,)
            ).fetchone() is None:
                for statement in _statements(migration.sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_ms) VALUES (?, ?, ?)",
                    (migration.version, migration.name, now_ms()),
                )
                applied.append(migration.version)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return applied


def _statements(script: str) -> list[str]:
    """Split a SQL script into statements (``executescript`` would commit our transaction)."""
    pieces = script.split(";")
    statements: list[str] = []
    buffer = ""
    for piece in pieces[:-1]:
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            statements.append(buffer)
            buffer = ""
    if (buffer + pieces[-1]).strip():
        raise ValueError(f"SQL script ends with an incomplete statement: {pieces[-1]!r}")
    return statements
