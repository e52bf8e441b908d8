"""What a connector publishes: publications, idempotency keys, gap markers, cursors.

Idempotency keys come from the source's own identifiers and the source's failover ``group``
(not its name), so the same round arriving again — after a reconnect, a node restart, or from
the backup feed of the same group — is delivered once. Keys longer than the hub's 200
characters are shortened to a hash of themselves.

A **gap marker** is published on a hub channel where the source lost data that no backfill
could bring back. Its ``data`` (also documented in the README)::

    {"type": "gap",
     "gap": {"source": "eu-hub", "dialect": "native", "upstream": "game:crash",
             "after": "17", "before": "25", "missing": 7,
             "reason": "history_lost", "detected_at": 1765080000000}}

``after``/``before`` are the source's identifiers around the hole as strings (``before`` is
``null`` when the end is unknown), ``missing`` the number of lost items when the identifiers
count (``null`` otherwise). ``reason``: ``history_lost`` (the upstream no longer has it),
``epoch_changed`` (the upstream restarted its history), ``no_backfill`` (the dialect has no
way to fetch it) or ``reconnected`` (a dialect without identifiers was disconnected, so
something may be missing). Markers are published with the attribute ``gap=true`` so filters
can select or skip them; every dialect encoder skips them (they are not rounds).

A **cursor** is a connector's resume position (per dialect: offsets, round indexes,
timestamps). It is saved on the hub channel ``connector:{name}`` (so in the store, SQLite or
PostgreSQL alike) at most every ``checkpoint`` seconds and when the connector stops; after a
crash the connector resumes from the last saved cursor and the idempotency keys absorb what is
published twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from wagerwire.types import Json

__all__ = [
    "GAP_REASONS",
    "MAX_KEY",
    "Gap",
    "Publication",
    "checkpoint_channel",
    "cursor_payload",
    "gap_marker",
    "idempotency_key",
    "read_cursor",
]

MAX_KEY: Final = 200
GAP_REASONS: Final = ("history_lost", "epoch_changed", "no_backfill", "reconnected")


@dataclass(frozen=True, slots=True)
class Publication:
    """One message to publish: normalised ``channel`` (before renames), data, attributes and
    the source identity the idempotency key is made from. ``ts`` is the source's own time
    (ms) when it has one, for the lag measurement. ``order`` is the round index when the
    item is one of a counted sequence (failover peers never publish it behind a later one)."""

    channel: str
    data: Json
    identity: str
    attrs: Mapping[str, str] = field(default_factory=dict)
    ts: int | None = None
    order: int | None = None


@dataclass(frozen=True, slots=True)
class Gap:
    """Items of ``upstream`` after ``after`` and before ``before`` are lost for good."""

    channel: str
    upstream: str
    after: str
    before: str | None
    missing: int | None
    reason: str


def idempotency_key(group: str, identity: str) -> str:
    """``cx:{group}:{identity}``, or a hash of it past :data:`MAX_KEY` characters."""
    key = f"cx:{group}:{identity}"
    if len(key) <= MAX_KEY:
        return key
    return f"cx:{group[:40]}:h:{hashlib.sha256(key.encode()).hexdigest()}"


def gap_marker(gap: Gap, *, source: str, dialect: str, now_ms: int) -> Publication:
    """The marker publication for ``gap`` (see the module docstring for its shape)."""
    data = {
        "type": "gap",
        "gap": {
            "source": source, "dialect": dialect, "upstream": gap.upstream,
            "after": gap.after, "before": gap.before, "missing": gap.missing,
            "reason": gap.reason, "detected_at": now_ms,
        },
    }
    identity = f"gap:{gap.upstream}:{gap.after}:{gap.before}:{gap.reason}"
    return Publication(gap.channel, data, identity, {"gap": "true"}, now_ms)


def checkpoint_channel(name: str) -> str:
    """Where the cursor of source ``name`` is saved."""
    return f"connector:{name}"


def cursor_payload(name: str, dialect: str, cursor: Mapping[str, Json], now_ms: int) -> Json:
    return {"source": name, "dialect": dialect, "cursor": dict(cursor), "saved_at": now_ms}


def read_cursor(data: Any, dialect: str) -> dict[str, Json]:
    """The cursor of a saved checkpoint; empty when it is not one of this dialect."""
    if not isinstance(data, Mapping) or data.get("dialect") != dialect:
        return {}
    cursor = data.get("cursor")
    return dict(cursor) if isinstance(cursor, Mapping) else {}
