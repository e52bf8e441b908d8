"""Hypetech "Data Stream" (seed 004), sans-I/O: stream paths in, ``Round`` frames out.

Endpoints (no client messages): WebSocket ``/ws/{game}`` and ``/ws/type/{type}``, SSE
``/sse/{game}`` and ``/sse/type/{type}``, WebTransport ``/wt`` (every game the key may read),
``/wt/{game}`` and ``/wt/type/{type}`` (each Round one datagram). Every frame is one ``Round``::

    {"round_id": 512, "game_id": 1, "game_slug": "crash", "game_type": "multiplier",
     "finished_at": "2026-01-17T00:45:42Z", "extras": "{\\"point\\":\\"11.72\\"}",
     "timestamp": 1768621542123}

``extras`` is a JSON *string* (double-encoded, per game type) and ``timestamp`` is the send
time in Unix ms, which the caller passes in as ``now_ms`` (clients compute latency from it).
A round published by a Hypetech simulator already carries the exact Round in ``raw``; other
rounds are mapped from the canonical round fields.

A *type* is Data Stream's ``game_type`` (``multiplier``, ``color``, ``trending``), which is the
canonical round's ``category``; :class:`~wagerwire.dialects.catalog.Catalog` maps slugs and
types to hub channels.

Sessions: :class:`DataStreamWs` subscribes at connect and sends nothing but Rounds (an error
closes with its code). :class:`DataStreamSse` answers the seed's head, then ``event: initial``
with the newest round of the selection, then ``event: message`` per round; every event
carries ``id: <resume token>``, so an EventSource that reconnects with ``Last-Event-ID`` gets
exactly the rounds it missed (and ``initial`` only for a channel whose history no longer
reaches back).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from wagerwire.auth.identity import Identity
from wagerwire.core.messages import Message, Position, SubscribeReply
from wagerwire.core.tokens import decode_token, encode_positions
from wagerwire.dialects.base import (
    Clock,
    Directory,
    HubEvent,
    LatestRead,
    OpFailed,
    ReadLatest,
    Session,
    StreamRequest,
    Subscribe,
)
from wagerwire.dialects.catalog import Catalog
from wagerwire.dialects.payload import data_object
from wagerwire.errors import Forbidden, WagerwireError
from wagerwire.wire.sse import parse_last_event_id, sse_retry
from wagerwire.wire.websocket import text_frame

__all__ = [
    "RETRY_MS",
    "SSE_HEAD",
    "DataStreamSse",
    "DataStreamSseSession",
    "DataStreamWs",
    "DataStreamWsSession",
    "DataStreamWt",
    "DataStreamWtSession",
    "DatagramRoundEncoder",
    "SseRoundEncoder",
    "Target",
    "WsRoundEncoder",
    "encode_round",
    "round_object",
    "sse_event",
]

RETRY_MS = 1000
SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream\r\n"
    b"Cache-Control: no-cache\r\n"
    b"Connection: keep-alive\r\n"
    b"X-Accel-Buffering: no\r\n"
    b"\r\n"
)


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

    @classmethod
    def of_request(cls, catalog: Catalog, request: StreamRequest) -> Target:
        return cls.parse(catalog, request.params.get("game"), request.params.get("type"))


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


# -- encoders (one per dialect instance, shared by all its connections) -----------------------


class WsRoundEncoder:
    """A Round as a complete WebSocket text frame; ``timestamp`` is the encode (send) time."""

    __slots__ = ("clock",)

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def encode(self, message: Message) -> bytes:
        payload = encode_round(message.data, self.clock())
        return text_frame(payload) if payload else b""


class SseRoundEncoder:
    """``event: message`` + ``data: <Round>``; the ``id:`` line is added per connection."""

    __slots__ = ("clock",)

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def encode(self, message: Message) -> bytes:
        payload = encode_round(message.data, self.clock())
        return sse_event("message", payload) if payload else b""


class DatagramRoundEncoder:
    """A Round as its bare JSON (one WebTransport datagram); the WebSocket encoder's payload
    exactly, without the WebSocket frame header."""

    __slots__ = ("clock",)

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def encode(self, message: Message) -> bytes:
        return encode_round(message.data, self.clock())


def _resolved(directory: Directory, identity: Identity, channels: tuple[str, ...]
              ) -> tuple[str, ...]:
    return tuple(directory.resolve_channel(identity, c) for c in channels)


# -- WebSocket --------------------------------------------------------------------------------


class DataStreamWs:
    """``/ws/{game}`` and ``/ws/type/{type}``: 404 for unknown ones, 401 for a bad key."""

    __slots__ = ("catalog", "encoder")
    transport: Literal["ws", "sse"] = "ws"

    def __init__(self, catalog: Catalog, clock: Clock) -> None:
        self.catalog = catalog
        self.encoder = WsRoundEncoder(clock)

    def accept(self, request: StreamRequest, directory: Directory) -> DataStreamWsSession:
        channels = Target.of_request(self.catalog, request).channels
        identity = directory.authenticate(request.headers, request.query_one("token"))
        return DataStreamWsSession(identity, self.encoder,
                                   _resolved(directory, identity, channels))


class DataStreamWsSession(Session):
    """Subscribed at connect to fixed channels; client frames are ignored."""

    __slots__ = ("channels",)

    def __init__(self, identity: Identity, encoder: WsRoundEncoder | DatagramRoundEncoder,
                 channels: tuple[str, ...]) -> None:
        super().__init__(identity, encoder)
        self.channels = channels

    def start(self, now: float) -> None:
        self.emit(Subscribe(self.channels))


# -- SSE --------------------------------------------------------------------------------------


class DataStreamSse:
    """``/sse/{game}`` and ``/sse/type/{type}``; ``Last-Event-ID`` resumes."""

    __slots__ = ("catalog", "encoder")
    transport: Literal["ws", "sse"] = "sse"

    def __init__(self, catalog: Catalog, clock: Clock) -> None:
        self.catalog = catalog
        self.encoder = SseRoundEncoder(clock)

    def accept(self, request: StreamRequest, directory: Directory) -> DataStreamSseSession:
        channels = Target.of_request(self.catalog, request).channels
        token = parse_last_event_id(request.headers.get("last-event-id"))
        since = decode_token(token) if token else None
        if since is not None:
            since = {ch: pos for ch, pos in since.items() if ch in channels} or None
        directory.validate_subscription(channels, since)
        identity = directory.authenticate(request.headers, request.query_one("token"))
        return DataStreamSseSession(identity, self.encoder,
                                    _resolved(directory, identity, channels), since)


class DataStreamSseSession(Session):
    """Head and ``retry:``, then ``initial`` (newest round) or the resumed rounds, then
    ``message`` per round, each with ``id: <token of every channel's position>``."""

    __slots__ = ("channels", "clock", "positions", "since", "latest")

    def __init__(self, identity: Identity, encoder: SseRoundEncoder,
                 channels: tuple[str, ...], since: dict[str, Position] | None) -> None:
        super().__init__(identity, encoder)
        self.clock = encoder.clock
        self.channels = channels
        self.since = since
        self.positions: dict[str, Position] = {
            ch: pos for ch, pos in (since or {}).items() if ch in channels
        }
        self.latest: dict[str, Message] = {}

    def start(self, now: float) -> None:
        self.send(SSE_HEAD + sse_retry(RETRY_MS))
        self.emit(ReadLatest(self.channels, 1))

    def receive_event(self, event: HubEvent) -> None:
        match event:
            case LatestRead(messages=messages):
                self.latest = latest = {ch: m[-1] for ch, m in messages.items() if m}
                if self.since:
                    self.emit(Subscribe(self.channels, self.since, announce=True))
                    return
                since = {ch: m.position for ch, m in latest.items()}
                self.positions.update(since)
                if latest:
                    self._send_initial(max(latest.values(), key=lambda m: (m.ts, m.channel)))
                self.emit(Subscribe(self.channels, since))
            case OpFailed(error=error):
                self.fail(error)

    def receive_reply(self, reply: SubscribeReply) -> None:
        """A resume that history cannot serve falls back to ``initial`` for that channel."""
        if reply.recovered:
            return
        message = self.latest.get(reply.channel)
        if message is not None:
            self.positions[reply.channel] = message.position
            self._send_initial(message)

    def _send_initial(self, message: Message) -> None:
        payload = encode_round(message.data, self.clock())
        if payload:
            token = encode_positions(self.positions) if self.positions else None
            self.send(sse_event("initial", payload, token))

    def rewrite(self, frame: bytes, message: Message) -> bytes:
        if not frame:
            return b""
        self.positions[message.channel] = Position(message.epoch, message.offset)
        return b"id: " + encode_positions(self.positions).encode() + b"\n" + frame

    def fail(self, error: WagerwireError) -> None:
        """An ``event: error`` with the error object, then the end of the stream."""
        self.send(sse_event("error", orjson.dumps(error.to_json()["error"])))
        super().fail(error)


# -- WebTransport -----------------------------------------------------------------------------


class DataStreamWt:
    """``/wt`` (every game the key may read), ``/wt/{game}``, ``/wt/type/{type}``.

    The transport sends each frame of :attr:`encoder` as one datagram (one that does not fit
    goes on a unidirectional stream of its own). No client messages.
    """

    __slots__ = ("catalog", "encoder")
    transport: Literal["ws", "sse", "wt"] = "wt"

    def __init__(self, catalog: Catalog, clock: Clock) -> None:
        self.catalog = catalog
        self.encoder = DatagramRoundEncoder(clock)

    def accept(self, request: StreamRequest, directory: Directory) -> DataStreamWtSession:
        game = request.params.get("game")
        type_ = request.params.get("type")
        identity = directory.authenticate(request.headers, request.query_one("token"))
        if game is None and type_ is None:
            channels: list[str] = []
            for slug in sorted(self.catalog.games):
                try:
                    channels.append(directory.resolve_channel(identity, f"game:{slug}"))
                except Forbidden:
                    continue
            if not channels:
                raise Forbidden(f"plan {identity.plan!r} includes none of the games")
            return DataStreamWtSession(identity, self.encoder, tuple(channels))
        target = Target.parse(self.catalog, game, type_).channels
        return DataStreamWtSession(identity, self.encoder,
                                   _resolved(directory, identity, target))


class DataStreamWtSession(DataStreamWsSession):
    """Subscribed at connect to fixed channels; nothing but Rounds is sent."""

    __slots__ = ()
