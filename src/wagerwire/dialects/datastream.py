"""Hypetech "Data Stream" (seed 004), sans-I/O: stream paths in, ``Round`` frames out.

Endpoints (no client messages): WebSocket ``/ws/{game}`` and ``/ws/type/{type}``, SSE
``/sse/{game}`` and ``/sse/type/{type}``. Every frame is one ``Round``::

    {"round_id": 512, "game_id": 1, "game_slug": "crash", "game_type": "multiplier",
     "finished_at": "2026-01-17T00:45:42Z", "extras": "{\\"point\\":\\"11.72\\"}",
     "timestamp": 1768621542123}

``extras`` is a JSON *string* (double-encoded, per game type) and ``timestamp`` is the send
time in Unix ms, which the caller passes in as ``now_ms`` (clients compute latency from it).
A round published by a Hypetech simulator already carries the exact Round in ``raw``; other
rounds are mapped from the canonical round fields.

A *type* is Data Stream's ``game_type`` (``multiplier``, ``color``, ``trending``), which is the
canonical round's ``category``; :class:`Catalog` maps slugs and types to hub channels.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from wagerwire.dialects.payload import data_object
from wagerwire.errors import NotFound

__all__ = [
    "Catalog",
    "CatalogGame",
    "Target",
    "encode_round",
    "round_object",
    "sse_event",
]


@dataclass(frozen=True, slots=True)
class CatalogGame:
    """One game as the dialects see it: slug, canonical type, Data Stream type, provider."""

    slug: str
    game_type: str  # canonical: crash | double | slot | wallstreet
    category: str  # Data Stream's game_type: multiplier | color | trending
    provider: str

    @property
    def channel(self) -> str:
        return f"game:{self.slug}"


class Catalog:
    """The games a server offers; dialects resolve paths and query strings against it."""

    __slots__ = ("games",)

    def __init__(self, games: Iterable[CatalogGame]) -> None:
        self.games: dict[str, CatalogGame] = {g.slug: g for g in games}

    def types(self) -> list[str]:
        return sorted({g.category for g in self.games.values()})

    def game(self, slug: str) -> CatalogGame:
        """Raises ``NotFound`` for a slug the server does not offer."""
        game = self.games.get(slug)
        if game is None:
            raise NotFound(
                f"unknown game {slug[:60]!r}; known games: {', '.join(sorted(self.games))}"
            )
        return game

    def of_type(self, category: str) -> list[CatalogGame]:
        """Raises ``NotFound`` for a type no game has."""
        games = [g for g in self.games.values() if g.category == category]
        if not games:
            raise NotFound(
                f"unknown game type {category[:60]!r}; known types: {', '.join(self.types())}"
            )
        return sorted(games, key=lambda g: g.slug)


@dataclass(frozen=True, slots=True)
class Target:
    """What a stream path selects: the hub channels to read."""

    channels: tuple[str, ...]

    @classmethod
    def parse(cls, catalog: Catalog, game: str | None, type_: str | None) -> Target:
        """``/…/{game}`` or ``/…/type/{type}``; raises ``NotFound`` for unknown ones."""
        if type_ is not None:
            return cls(tuple(g.channel for g in catalog.of_type(type_)))
        return cls((catalog.game(game or "").channel,))


def _finished_seconds(value: object) -> str:
    """``2026-01-17T00:45:42.123Z`` → ``2026-01-17T00:45:42Z`` (the seed's precision)."""
    text = str(value or "")
    if len(text) >= 19 and text[10] == "T":
        return text[:19] + "Z"
    return text


def round_object(data: Mapping[str, Any], now_ms: int) -> dict[str, Any] | None:
    """The ``Round`` for one canonical round dict; None if ``data`` is not a round."""
    raw = data.get("raw")
    if (
        isinstance(raw, Mapping)
        and isinstance(raw.get("round_id"), int)
        and isinstance(raw.get("extras"), str)
    ):
        return {
            "round_id": raw["round_id"],
            "game_id": raw.get("game_id"),
            "game_slug": raw.get("game_slug"),
            "game_type": raw.get("game_type"),
            "finished_at": raw.get("finished_at"),
            "extras": raw["extras"],
            "timestamp": now_ms,
        }
    index = data.get("index")
    slug = data.get("game_slug")
    if not isinstance(index, int) or not isinstance(slug, str):
        return None
    extras = data.get("extras")
    return {
        "round_id": index,
        "game_id": data.get("game_id"),
        "game_slug": slug,
        "game_type": data.get("category") or data.get("game_type"),
        "finished_at": _finished_seconds(data.get("finished_at")),
        "extras": extras if isinstance(extras, str) else orjson.dumps(extras or {}).decode(),
        "timestamp": now_ms,
    }


def encode_round(data: bytes, now_ms: int) -> bytes:
    """The Round JSON for a message's data bytes; ``b""`` if it is not a round."""
    obj = data_object(data)
    if obj is None:
        return b""
    rnd = round_object(obj, now_ms)
    return b"" if rnd is None else orjson.dumps(rnd)


def sse_event(event: str, payload: bytes, event_id: str | None = None) -> bytes:
    """``event: …`` / optional ``id: …`` / ``data: …`` and the dispatching blank line."""
    head = b"event: " + event.encode() + b"\n"
    if event_id is not None:
        head += b"id: " + event_id.encode() + b"\n"
    return head + b"data: " + payload + b"\n\n"
