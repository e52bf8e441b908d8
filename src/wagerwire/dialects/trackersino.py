"""TrackerSino ``/v1-beta/stream`` (seed 001), sans-I/O: query in, finalised-round frames out.

The stream is ``GET /v1-beta/stream?games=stake-crash,roobet-crash`` (WebSocket, header
``Authorization: Bearer <key>``); empty or missing ``games`` means every crash and slide game
the key's plan may read (the page names ``stake-crash``, ``roobet-crash``, ``duel-crash``,
``shuffle-crash`` "and their Slide siblings"; a Slide round is one multiplier too, so its frame
is the same object). The client never sends data frames, and the server sends nothing but rounds
(both seed clients parse every frame as one), so errors are HTTP statuses at the upgrade or
close codes. Each frame, and each item of the ``/v1-beta/games/{slug}/rounds`` backfill, is::

    {"game_id": "stake-crash", "round_id": "c2caaf8a-…", "round_index": 956100250495943837,
     "multiplier": "3.1611", "state": "finalized", "finalized_at": "2026-05-28T15:05:15Z",
     "multiplier_source": "stake", "raw": {…}}

``round_index`` is a bare JSON integer, ``multiplier`` a decimal string, ``finalized_at``
RFC 3339 UTC with second precision (so it sorts as text).

Keep-alive: a WebSocket Ping frame every :data:`PING_INTERVAL_S` (the seed: "we send a
heartbeat ping every 25 s"), on the session's own cadence rather than the server's.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Literal

import orjson

from wagerwire.auth.identity import Identity
from wagerwire.core.messages import Message
from wagerwire.dialects.base import Directory, Session, StreamRequest, Subscribe
from wagerwire.dialects.catalog import Catalog, CatalogGame
from wagerwire.dialects.payload import data_object
from wagerwire.errors import BadParameter, Forbidden
from wagerwire.wire.websocket import ping_frame, text_frame

__all__ = [
    "ENCODER",
    "GAME_TYPE",
    "GAME_TYPES",
    "PING_INTERVAL_S",
    "UUID_NAMESPACE",
    "RoundEncoder",
    "TrackerSino",
    "TrackerSinoSession",
    "crash_games",
    "encode_round",
    "parse_games",
    "round_frame",
]

GAME_TYPE = "crash"
GAME_TYPES = frozenset({"crash", "slide"})
"""The canonical game types this dialect serves: crash and its Slide siblings."""
UUID_NAMESPACE = uuid.UUID("5f7c3a52-0d55-4c1e-9a57-7a4e2b9c0f11")
MAX_GAMES = 50
PING_INTERVAL_S = 25.0


def crash_games(catalog: Catalog) -> list[CatalogGame]:
    """The games this dialect serves: every crash and slide game of the catalog."""
    return sorted(
        (g for g in catalog.games.values() if g.game_type in GAME_TYPES), key=lambda g: g.slug
    )


def parse_games(raw: str | None, catalog: Catalog) -> list[CatalogGame] | None:
    """The ``games`` query value: None when empty or missing (= every game of the plan).

    Raises:
        NotFound: a slug is no game of this server.
        BadParameter: a game that is neither crash nor slide.
        BadParameter: more than ``MAX_GAMES`` slugs.
    """
    if raw is None:
        return None
    slugs = [s.strip() for s in raw.split(",") if s.strip()]
    if not slugs:
        return None
    if len(slugs) > MAX_GAMES:
        raise BadParameter(f"games lists {len(slugs)} games; at most {MAX_GAMES}")
    crash = {g.slug: g for g in crash_games(catalog)}
    games: list[CatalogGame] = []
    for slug in dict.fromkeys(slugs):
        game = crash.get(slug)
        if game is None:
            catalog.game(slug)  # NotFound for a slug that is no game at all
            raise BadParameter(f"{slug} is not a crash game; crash and slide games: "
                               f"{', '.join(crash)}")
        games.append(game)
    return games


def _round_uuid(data: Mapping[str, Any]) -> str:
    raw = data.get("raw")
    if isinstance(raw, Mapping):
        for holder in (raw, raw.get("data")):
            if isinstance(holder, Mapping) and isinstance(holder.get("id"), str):
                try:
                    return str(uuid.UUID(holder["id"]))
                except ValueError:
                    pass
    return str(uuid.uuid5(UUID_NAMESPACE, f"{data.get('game_slug')}:{data.get('index')}"))


def _seconds(value: object) -> str:
    text = str(value or "")
    return text[:19] + "Z" if len(text) >= 19 and text[10] == "T" else text


def round_frame(data: Mapping[str, Any]) -> dict[str, Any] | None:
    """The frame object for one canonical crash round; None for anything else."""
    result = data.get("result")
    slug = data.get("game_slug")
    index = data.get("index")
    if not isinstance(result, Mapping) or not isinstance(slug, str) or not isinstance(index, int):
        return None
    multiplier = result.get("multiplier", result.get("crash_point"))
    if multiplier is None or isinstance(multiplier, bool):
        return None
    raw = data.get("raw")
    return {
        "game_id": slug,
        "round_id": _round_uuid(data),
        "round_index": index,
        "multiplier": multiplier if isinstance(multiplier, str) else str(multiplier),
        "state": "finalized",
        "finalized_at": _seconds(data.get("finished_at")),
        "multiplier_source": str(data.get("provider") or slug.split("-")[0]),
        "raw": raw if isinstance(raw, Mapping) else {},
    }


def encode_round(data: bytes) -> bytes:
    """The frame JSON for a message's data bytes; ``b""`` if it is not a crash round."""
    obj = data_object(data)
    if obj is None:
        return b""
    frame = round_frame(obj)
    return b"" if frame is None else orjson.dumps(frame)


class RoundEncoder:
    """A finalised-round frame as a complete WebSocket text frame (``b""`` for others)."""

    __slots__ = ()

    def encode(self, message: Message) -> bytes:
        payload = encode_round(message.data)
        return text_frame(payload) if payload else b""


ENCODER = RoundEncoder()


class TrackerSino:
    """``/v1-beta/stream?games=``: 404/422 bad games, 401 bad key, 403 no game on the plan.

    Only the ``Authorization: Bearer`` header authenticates (no ``?token=``).
    """

    __slots__ = ("catalog", "encoder")
    transport: Literal["ws", "sse"] = "ws"

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.encoder = ENCODER

    def accept(self, request: StreamRequest, directory: Directory) -> TrackerSinoSession:
        games = parse_games(request.query_one("games"), self.catalog)
        identity = directory.authenticate(request.headers, None)
        channels: list[str] = []
        if games is None:
            for game in crash_games(self.catalog):
                try:
                    channels.append(directory.resolve_channel(identity, game.channel))
                except Forbidden:
                    continue  # "every game on your tier": the others are left out
            if not channels:
                raise Forbidden("your plan includes no crash game")
        else:
            channels = [directory.resolve_channel(identity, g.channel) for g in games]
        return TrackerSinoSession(identity, tuple(channels))


class TrackerSinoSession(Session):
    """Subscribed at connect; a Ping frame every 25 s; client frames are ignored."""

    __slots__ = ("channels", "next_ping")
    ping_interval = PING_INTERVAL_S

    def __init__(self, identity: Identity, channels: tuple[str, ...]) -> None:
        super().__init__(identity, ENCODER)
        self.channels = channels
        self.next_ping = 0.0

    def start(self, now: float) -> None:
        self.next_ping = now + PING_INTERVAL_S
        self.emit(Subscribe(self.channels))

    def tick(self, now: float) -> None:
        if now >= self.next_ping:
            self.send(ping_frame())
            self.next_ping = now + PING_INTERVAL_S
