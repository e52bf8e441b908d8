"""WebSocket and SSE connections that speak the seed dialects (Data Stream, TrackerSino, Stake).

Each connection drives its sans-I/O codec from :mod:`wagerwire.dialects` over the shared
transport bases; each dialect has one encoder instance shared by all its connections, so the
fan-out encodes a message once per dialect. Factories validate the request (path, query,
credentials, Origin) before any byte of the stream is written, so refusals are plain HTTP
errors at the upgrade.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from wagerwire.auth.identity import Identity, StreamLease
from wagerwire.core.hub import FrameEncoder, SubscribeReply
from wagerwire.core.messages import Message, Position
from wagerwire.core.tokens import decode_token, encode_positions
from wagerwire.dialects import datastream, stake, trackersino
from wagerwire.dialects.datastream import Catalog
from wagerwire.errors import (
    CloseCode,
    Forbidden,
    InternalError,
    WagerwireError,
)
from wagerwire.transports.http import HttpRequest
from wagerwire.transports.sse import RETRY_MS, SseConnection
from wagerwire.transports.stream import StreamConnection, StreamRegistry
from wagerwire.transports.websocket import WsConnection
from wagerwire.wire.sse import parse_last_event_id, sse_retry
from wagerwire.wire.websocket import ping_frame, text_frame

__all__ = [
    "DEFAULT_STAKE_ORIGINS",
    "DataStreamSseConnection",
    "DataStreamWsConnection",
    "StakeWsConnection",
    "TrackerSinoWsConnection",
    "datastream_sse_factory",
    "datastream_ws_factory",
    "stake_ws_factory",
    "trackersino_ws_factory",
]

log = logging.getLogger("wagerwire.transports.dialects")

Factory = Callable[[HttpRequest, StreamRegistry], StreamConnection]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _error_close_code(error: WagerwireError) -> int:
    return int(error.close_code or CloseCode.POLICY_VIOLATION)


# -- encoders (one instance per dialect and transport) ------------------------------------------


class DataStreamWsEncoder:
    """A Round as a complete WebSocket text frame; ``timestamp`` is the encode (send) time."""

    __slots__ = ()

    def encode(self, message: Message) -> bytes:
        payload = datastream.encode_round(message.data, now_ms())
        return text_frame(payload) if payload else b""


class DataStreamSseEncoder:
    """``event: message`` + ``data: <Round>``; the ``id:`` line is added per connection."""

    __slots__ = ()

    def encode(self, message: Message) -> bytes:
        payload = datastream.encode_round(message.data, now_ms())
        return datastream.sse_event("message", payload) if payload else b""


class TrackerSinoEncoder:
    """A finalised-round frame as a complete WebSocket text frame."""

    __slots__ = ()

    def encode(self, message: Message) -> bytes:
        payload = trackersino.encode_round(message.data)
        return text_frame(payload) if payload else b""


class StakeEncoder:
    """``{"channel", "payload"}`` as a complete WebSocket text frame."""

    __slots__ = ()

    def encode(self, message: Message) -> bytes:
        return text_frame(stake.encode_frame(message.channel, message.data))


DATASTREAM_WS = DataStreamWsEncoder()
DATASTREAM_SSE = DataStreamSseEncoder()
TRACKERSINO_WS = TrackerSinoEncoder()
STAKE_WS = StakeEncoder()


# -- shared helpers -----------------------------------------------------------------------------


def _identity(request: HttpRequest, registry: StreamRegistry, kind: str) -> tuple[
    Identity, StreamLease
]:
    """Authenticate the request and count one stream (raises Unauthorized/Forbidden/...)."""
    gate = registry.gate
    identity = gate.authenticate(request.headers, request.query_one("token"))
    return identity, gate.open_stream(identity, kind)


async def _latest(registry: StreamRegistry, channels: Iterable[str]) -> dict[str, Message]:
    """The newest stored message of each channel that has one."""
    out: dict[str, Message] = {}
    for channel in channels:
        last = await registry.hub.store.read_last(channel, 1)
        if last:
            out[channel] = last[-1]
    return out


# -- Data Stream --------------------------------------------------------------------------------


class ReceiveOnlyWsConnection(WsConnection):
    """A dialect WebSocket whose clients only listen: subscribed at connect to fixed channels.

    Data Stream and TrackerSino clients send no data frames (anything sent is ignored); an
    error closes the stream with its documented code; the key's lease is held until close.
    """

    __slots__ = ("channels", "lease")

    def __init__(
        self,
        registry: StreamRegistry,
        encoder: FrameEncoder,
        channels: tuple[str, ...],
        lease: StreamLease,
    ) -> None:
        super().__init__(registry, encoder)
        self.channels = channels
        self.lease = lease

    def started(self, request: Any) -> None:
        hub = self.registry.hub

        async def subscribe() -> None:
            await hub.subscribe(self, self.channels)

        self.run_in_order(subscribe)

    def deliver(self, frame: bytes, message: Message) -> None:
        if frame:  # an encoder answers b"" for messages its dialect does not carry
            super().deliver(frame, message)

    def on_text(self, text: str) -> None:
        """The seeds define no client messages; anything sent is ignored."""

    def send_error(self, error: WagerwireError) -> None:
        self.close(_error_close_code(error), error.message[:120])

    def on_closed(self) -> None:
        super().on_closed()
        self.lease.release()


class DataStreamWsConnection(ReceiveOnlyWsConnection):
    """``/ws/{game}`` and ``/ws/type/{type}``: live Rounds, one per text frame."""

    __slots__ = ()

    def __init__(
        self, registry: StreamRegistry, channels: tuple[str, ...], lease: StreamLease
    ) -> None:
        super().__init__(registry, DATASTREAM_WS, channels, lease)


def _datastream_channels(request: HttpRequest, catalog: Catalog) -> tuple[str, ...]:
    params = request.params
    target = datastream.Target.parse(catalog, params.get("game"), params.get("type"))
    return target.channels


def datastream_ws_factory(catalog: Catalog) -> Factory:
    """Factory for ``/ws/{game}`` and ``/ws/type/{type}`` (unknown ones answer 404)."""

    def factory(request: HttpRequest, registry: StreamRegistry) -> StreamConnection:
        channels = _datastream_channels(request, catalog)
        identity, lease = _identity(request, registry, "ws")
        try:
            channels = tuple(registry.gate.resolve_channel(identity, c) for c in channels)
        except WagerwireError:
            lease.release()
            raise
        return DataStreamWsConnection(registry, channels, lease)

    return factory


_SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream\r\n"
    b"Cache-Control: no-cache\r\n"
    b"Connection: keep-alive\r\n"
    b"X-Accel-Buffering: no\r\n"
    b"\r\n"
)


class DataStreamSseConnection(SseConnection):
    """``/sse/{game}``, ``/sse/type/{type}``: ``initial`` (latest round), then ``message``.

    Every event carries ``id: <resume token>``; an EventSource that reconnects sends it back
    as ``Last-Event-ID`` and gets exactly the rounds it missed (no ``initial`` then, unless
    the history no longer reaches back).
    """

    __slots__ = ("channels", "lease", "positions", "_since", "_task", "_latest")

    def __init__(
        self,
        registry: StreamRegistry,
        channels: tuple[str, ...],
        since: dict[str, Position] | None,
        lease: StreamLease,
    ) -> None:
        super().__init__(registry, DATASTREAM_SSE)
        self.channels = channels
        self.lease = lease
        self._since = since
        self.positions: dict[str, Position] = {
            ch: pos for ch, pos in (since or {}).items() if ch in channels
        }
        self._task: asyncio.Task[None] | None = None
        self._latest: dict[str, Message] = {}

    def started(self, request: Any) -> None:
        if self.transport is not None:
            self.transport.write(_SSE_HEAD + sse_retry(RETRY_MS))
        self.next_beat = self.last_seen + self.registry.config.sse_heartbeat
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            await self._subscribe()
        except WagerwireError as exc:
            self._fail(exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Data Stream SSE subscribe failed")
            self._fail(InternalError("internal error; the server logged it"))

    def _fail(self, error: WagerwireError) -> None:
        body = orjson.dumps(error.to_json()["error"])
        self.close_transport(datastream.sse_event("error", body))

    async def _subscribe(self) -> None:
        hub = self.registry.hub
        self._latest = latest = await _latest(self.registry, self.channels)
        if self.closed:
            return
        if self._since:
            await hub.subscribe(self, self.channels, since=self._since, announce=self._announce)
            return
        since = {ch: m.position for ch, m in latest.items()}
        self.positions.update(since)
        if latest:
            newest = max(latest.values(), key=lambda m: (m.ts, m.channel))
            self._send_initial(newest)
        await hub.subscribe(self, self.channels, since=since)

    def _send_initial(self, message: Message) -> None:
        payload = datastream.encode_round(message.data, now_ms())
        if payload:
            token = encode_positions(self.positions) if self.positions else None
            self.send_now(datastream.sse_event("initial", payload, token))

    def _announce(self, reply: SubscribeReply) -> None:
        """A resume that history cannot serve falls back to ``initial`` for that channel."""
        if reply.recovered:
            return
        message = self._latest.get(reply.channel)
        if message is not None:
            self.positions[reply.channel] = message.position
            self._send_initial(message)

    def deliver(self, frame: bytes, message: Message) -> None:
        if not frame:
            return
        self.positions[message.channel] = Position(message.epoch, message.offset)
        super().deliver(b"id: " + encode_positions(self.positions).encode() + b"\n" + frame,
                        message)

    def on_closed(self) -> None:
        task = self._task
        if task is not None and not task.done():
            task.cancel()
        self.lease.release()


def datastream_sse_factory(catalog: Catalog) -> Factory:
    """Factory for ``/sse/{game}`` and ``/sse/type/{type}``; ``Last-Event-ID`` resumes."""

    def factory(request: HttpRequest, registry: StreamRegistry) -> StreamConnection:
        channels = _datastream_channels(request, catalog)
        token = parse_last_event_id(request.headers.get("last-event-id"))
        since = decode_token(token) if token else None
        if since is not None:
            since = {ch: pos for ch, pos in since.items() if ch in channels} or None
        registry.hub.validate_subscription(channels, since)
        identity, lease = _identity(request, registry, "sse")
        try:
            channels = tuple(registry.gate.resolve_channel(identity, c) for c in channels)
        except WagerwireError:
            lease.release()
            raise
        return DataStreamSseConnection(registry, channels, since, lease)

    return factory


# -- TrackerSino --------------------------------------------------------------------------------

TRACKERSINO_PING_S = 25.0


class TrackerSinoWsConnection(ReceiveOnlyWsConnection):
    """``/v1-beta/stream``: finalised crash rounds only; a Ping frame every 25 s."""

    __slots__ = ("next_ping",)

    def __init__(
        self, registry: StreamRegistry, channels: tuple[str, ...], lease: StreamLease
    ) -> None:
        super().__init__(registry, TRACKERSINO_WS, channels, lease)
        self.next_ping = 0.0

    def started(self, request: Any) -> None:
        self.next_ping = self.last_seen + TRACKERSINO_PING_S
        super().started(request)

    def tick(self, now: float, ping: bool) -> None:
        timeout = TRACKERSINO_PING_S + self.registry.config.pong_timeout
        if now - self.last_seen > timeout:
            self.close(CloseCode.HEARTBEAT_TIMEOUT, "no pong or data within the timeout")
        elif now >= self.next_ping:
            self.send_now(ping_frame())
            self.next_ping = now + TRACKERSINO_PING_S


def trackersino_ws_factory(catalog: Catalog) -> Factory:
    """Factory for ``/v1-beta/stream?games=``: 401 bad key, 404/422 bad games, 403 plan."""

    def factory(request: HttpRequest, registry: StreamRegistry) -> StreamConnection:
        games = trackersino.parse_games(request.query_one("games"), catalog)
        gate = registry.gate
        identity = gate.authenticate(request.headers, None)
        channels: list[str] = []
        if games is None:
            for game in trackersino.crash_games(catalog):
                try:
                    channels.append(gate.resolve_channel(identity, game.channel))
                except Forbidden:
                    continue  # "every game on your tier": the others are left out
            if not channels:
                raise Forbidden("your plan includes no crash game")
        else:
            channels = [gate.resolve_channel(identity, g.channel) for g in games]
        lease = gate.open_stream(identity, "ws")
        return TrackerSinoWsConnection(registry, tuple(channels), lease)

    return factory


# -- Stake --------------------------------------------------------------------------------------

DEFAULT_STAKE_ORIGINS: tuple[str, ...] = (
    "https://stake.com",
    r"re:https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?",
)


def _origin_allowed(origin: str | None, allowed: Iterable[str]) -> bool:
    if origin is None:
        return True  # not a browser: the access token is the credential
    for rule in allowed:
        if rule == "*" or rule == origin:
            return True
        if rule.startswith("re:") and re.fullmatch(rule[3:], origin):
            return True
    return False


class StakeWsConnection(WsConnection):
    """``/_api/websocket``: ``subscribe``/``unsubscribe`` messages, ``{channel, payload}`` frames."""

    __slots__ = ("identity", "lease", "catalog", "_hub_names")

    def __init__(
        self,
        registry: StreamRegistry,
        identity: Identity,
        lease: StreamLease,
        catalog: Catalog,
    ) -> None:
        super().__init__(registry, STAKE_WS)
        self.identity = identity
        self.lease = lease
        self.catalog = catalog
        self._hub_names: dict[str, str] = {}  # the client's name -> hub channel

    def on_text(self, text: str) -> None:
        try:
            op = stake.parse_message(text)
        except WagerwireError as exc:
            self.send_error(exc)
            return
        match op:
            case stake.Subscribe(channel=name):
                self.run_in_order(lambda: self._subscribe(name))
            case stake.Unsubscribe(channel=name):
                self.run_in_order(lambda: self._unsubscribe(name))

    def _resolve(self, name: str) -> str:
        hub = self.registry.hub
        known = (name,) if hub.broker.position(name) is not None else ()
        stake.validate_name(name, self.catalog, known)
        gate = self.registry.gate
        return stake.user_channel(gate.resolve_channel(self.identity, name),
                                  self.identity.user_id)

    async def _subscribe(self, name: str) -> None:
        try:
            channel = self._resolve(name)
        except WagerwireError as exc:
            self.send_error(exc, name)
            return
        hub = self.registry.hub
        since: dict[str, Position] | None = None
        if name == stake.BALANCES and channel not in hub.subscriptions(self):
            since = await self._balance_snapshot(channel)
        self._hub_names[name] = channel
        try:
            await hub.subscribe(self, [channel], since=since)
        except WagerwireError as exc:
            self._hub_names.pop(name, None)
            self.send_error(exc, name)

    async def _balance_snapshot(self, channel: str) -> dict[str, Position] | None:
        """Send the current balance of each currency; returns where live delivery resumes."""
        recent = await self.registry.hub.store.read_last(channel, 1000)
        if not recent:
            return None
        latest: dict[str, Message] = {}
        for message in recent:
            try:
                data = orjson.loads(message.data)
            except orjson.JSONDecodeError:
                continue
            currency = data.get("currency") if isinstance(data, dict) else None
            latest[str(currency)] = message
        for message in sorted(latest.values(), key=lambda m: m.offset):
            self.send_now(STAKE_WS.encode(message))
        return {channel: recent[-1].position}

    async def _unsubscribe(self, name: str) -> None:
        channel = self._hub_names.pop(name, None)
        if channel is not None and channel not in self._hub_names.values():
            await self.registry.hub.unsubscribe(self, [channel])

    def send_error(self, error: WagerwireError, channel: str | None = None) -> None:
        self.send_text(stake.encode_error(error, channel))

    def on_closed(self) -> None:
        super().on_closed()
        self.lease.release()


def stake_ws_factory(catalog: Catalog, origins: Iterable[str] = DEFAULT_STAKE_ORIGINS) -> Factory:
    """Factory for ``/_api/websocket``: 403 for an Origin not allowed, 401 for a bad token."""
    allowed = tuple(origins)

    def factory(request: HttpRequest, registry: StreamRegistry) -> StreamConnection:
        origin = request.headers.get("origin")
        if not _origin_allowed(origin, allowed):
            raise Forbidden(f"Origin {str(origin)[:80]!r} is not allowed on this server")
        identity, lease = _identity(request, registry, "ws")
        return StakeWsConnection(registry, identity, lease, catalog)

    return factory
