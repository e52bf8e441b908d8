"""WebSocket connections: the frame reader in, shared pre-built frames out.

:class:`WsConnection` is the transport half (RFC 6455 via :mod:`wagerwire.wire.websocket`,
pings, close handshake, slow-consumer close); a dialect subclasses it and implements
:meth:`WsConnection.on_text`. :class:`NativeWsConnection` speaks the native protocol v1.

Ops that await the hub (subscribe, unsubscribe) run one after another on a per-connection
chain, so they apply in the order the client sent them; publishes run concurrently, so a
publisher can keep many in flight (each is acknowledged once durable).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from wagerwire.auth.identity import ANONYMOUS, NO_SLOT, Gate, Identity, StreamSlot
from wagerwire.core.channels import validate_channel, validate_pattern
from wagerwire.core.conflation import Superseded
from wagerwire.core.hub import FrameEncoder
from wagerwire.core.messages import Message
from wagerwire.dialects import native
from wagerwire.errors import CloseCode, Forbidden, InternalError, WagerwireError
from wagerwire.transports.http import HttpRequest
from wagerwire.transports.stream import StreamConnection, StreamRegistry
from wagerwire.transports.url_subscription import UrlSubscription, url_subscription
from wagerwire.wire.websocket import (
    BinaryMessage,
    CloseReceived,
    FrameReader,
    Ping,
    Pong,
    TextMessage,
    WsProtocolError,
    close_frame,
    ping_frame,
    pong_frame,
    text_frame,
)

__all__ = ["NativeWsConnection", "NativeWsEncoder", "WsConnection"]

log = logging.getLogger("wagerwire.transports.websocket")

SHUTDOWN_REASON = "server restarting; reconnect and resume with your last token"


class NativeWsEncoder:
    """Native ``message`` frames as complete WebSocket text frames (shared by all)."""

    __slots__ = ()

    def encode(self, message: Message) -> bytes:
        return text_frame(native.encode_message(message))

    def encode_image(self, message: Message) -> bytes:
        return text_frame(native.encode_image(message))


NATIVE_WS = NativeWsEncoder()


class WsConnection(StreamConnection):
    """One WebSocket connection after the 101 handshake."""

    __slots__ = ("_reader", "_chain", "_chain_task")

    transport_kind = "ws"

    def __init__(self, registry: StreamRegistry, encoder: FrameEncoder) -> None:
        super().__init__(registry, encoder)
        self._reader = FrameReader(registry.config.max_frame_bytes)
        self._chain: deque[Callable[[], Awaitable[None]]] | None = None
        self._chain_task: asyncio.Task[None] | None = None

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_seen = self.registry.loop.time()
        reader = self._reader
        try:
            reader.receive_data(data)
        except WsProtocolError as exc:
            self.close(exc.close_code, exc.message)
            return
        for event in reader.events_received():
            if self.closed:
                return
            match event:
                case TextMessage(text=text):
                    self.on_text(text)
                case Ping(payload=payload):
                    self.send_now(pong_frame(payload))
                case Pong():
                    pass
                case BinaryMessage():
                    self.close(CloseCode.UNSUPPORTED_DATA, "binary frames are not supported")
                case CloseReceived(code=code):
                    self.close(code if code is not None else CloseCode.NORMAL, "")

    def eof_received(self) -> bool | None:
        self.close_transport()
        return None

    def on_text(self, text: str) -> None:
        """Handle one complete text message (the dialect's job)."""
        raise NotImplementedError

    def send_text(self, payload: bytes) -> None:
        self.send_now(text_frame(payload))

    def send_error(self, error: WagerwireError) -> None:
        self.registry.errors["ws", "error", error.code] += 1
        self.send_text(native.encode_error(error))

    def close(self, code: int, reason: str) -> None:
        """Send a Close frame after what is queued, then close the TCP connection."""
        if not self.closed:
            self.registry.errors["ws", "close", str(int(code))] += 1
        self.close_transport(close_frame(code, reason))

    def close_stream_slow(self) -> None:
        self.close(CloseCode.SLOW_CONSUMER, "slow consumer: resume from your last token")

    def tick(self, now: float, ping: bool) -> None:
        config = self.registry.config
        if now - self.last_seen > config.ping_interval + config.pong_timeout:
            self.close(CloseCode.HEARTBEAT_TIMEOUT, "no pong or data within the timeout")
        elif ping:
            self.send_now(ping_frame())

    def shutdown(self) -> None:
        self.close(CloseCode.GOING_AWAY, SHUTDOWN_REASON)

    def revoke(self) -> None:
        self.close(CloseCode.UNAUTHORIZED, "API key revoked")

    def expire(self) -> None:
        self.close(CloseCode.UNAUTHORIZED, "stream token expired: get a new one and resume")

    # -- op chain --------------------------------------------------------------------------

    def run_in_order(self, op: Callable[[], Awaitable[None]]) -> None:
        """Run ``op`` after every earlier ordered op of this connection has finished."""
        if self._chain is None:
            self._chain = deque()
        self._chain.append(op)
        if self._chain_task is None:
            self._chain_task = self.registry.loop.create_task(self._run_chain())

    async def _run_chain(self) -> None:
        chain = self._chain
        try:
            while chain and not self.closed:
                await self.guarded(chain.popleft())
        finally:
            self._chain_task = None
            self._chain = None

    async def guarded(self, op: Callable[[], Awaitable[None]]) -> None:
        """Run ``op``; a client error becomes an error frame, anything else is logged."""
        try:
            await op()
        except WagerwireError as exc:
            self.send_error(exc)
        except Exception:
            log.exception("op failed on connection %s", id(self))
            self.send_error(InternalError("internal error; the server logged it"))

    def spawn(self, op: Callable[[], Awaitable[None]]) -> None:
        """Run ``op`` concurrently with the others (publishes)."""
        self.registry.loop.create_task(self.guarded(op))

    def on_closed(self) -> None:
        task = self._chain_task
        if task is not None and not task.done():
            task.cancel()


class NativeWsConnection(WsConnection):
    """The native protocol v1 on ``/v1/ws`` (optionally subscribed by its URL's query)."""

    __slots__ = ("identity", "slot", "initial")

    def encode_superseded(self, notice: Superseded) -> bytes:
        return text_frame(native.encode_superseded(notice))

    def __init__(
        self,
        registry: StreamRegistry,
        identity: Identity = ANONYMOUS,
        slot: StreamSlot = NO_SLOT,
        initial: UrlSubscription | None = None,
    ) -> None:
        super().__init__(registry, NATIVE_WS)
        self.identity = identity
        self.slot = slot
        self.initial = initial

    @classmethod
    def from_request(cls, request: HttpRequest, registry: StreamRegistry) -> NativeWsConnection:
        """Authenticate, and check a ``?channels=…`` subscription, before the upgrade: bad
        credentials or a bad query are a plain HTTP 4xx."""
        gate = registry.gate
        identity = gate.authenticate(request.headers, request.query_one("token"))
        initial = url_subscription(request, gate, registry.hub, identity)
        slot = gate.open_stream(identity, "ws")
        return cls(registry, identity, slot, initial)

    def started(self, request: object) -> None:
        """Apply the URL's subscription as if it were the first frame."""
        initial = self.initial
        if initial is not None:
            self.initial = None
            self._subscribe(native.Subscribe(initial.channels, initial.filter, initial.since,
                                             initial.image, initial.conflate_ms))

    def on_closed(self) -> None:
        super().on_closed()
        self.slot.release()

    def on_text(self, text: str) -> None:
        try:
            op = native.parse_op(text)
        except WagerwireError as exc:
            self.send_error(exc)
            return
        hub = self.registry.hub
        match op:
            case native.Subscribe():
                self._subscribe(op)
            case native.Unsubscribe():
                unsub = op

                async def unsubscribe() -> None:
                    hub.check_channel_count(unsub.channels)
                    channels = _resolve(self.registry.gate, self.identity, unsub.channels)
                    removed = await hub.unsubscribe(self, channels)
                    self.send_text(native.encode_unsubscribed(removed))

                self.run_in_order(unsubscribe)
            case native.Ping():
                self.send_text(native.encode_pong())
            case native.Publish():
                self._publish(op)

    def _subscribe(self, sub: native.Subscribe) -> None:
        """Resolve the channels once (auth), then subscribe: synchronously when nothing needs
        awaiting (no resume, channels already live here), else on the ordered op chain."""
        gate = self.registry.gate
        hub = self.registry.hub
        try:
            limit = gate.max_subscriptions(self.identity)
            hub.check_channel_count(sub.channels, limit)  # before any name costs anything
            channels = _resolve(gate, self.identity, sub.channels)
            rate = gate.delivery_rate(self.identity, sub.conflate_ms)
            if sub.since is None and not sub.image and self._chain_task is None:
                replies = hub.subscribe_live(self, channels, filter=sub.filter,
                                             max_channels=limit, rate=rate)
                if replies is not None:
                    for reply in replies:
                        self.send_text(native.encode_subscribed(reply))
                    return
        except WagerwireError as exc:
            self.send_error(exc)
            return

        async def subscribe() -> None:
            await hub.subscribe(
                self,
                channels,
                filter=sub.filter,
                since=sub.since,
                announce=lambda r: self.send_text(native.encode_subscribed(r)),
                max_channels=limit,
                image=sub.image,
                rate=rate,
            )

        self.run_in_order(subscribe)

    def _publish(self, op: native.Publish) -> None:
        hub = self.registry.hub
        try:
            validate_channel(op.channel)  # a malformed name is invalid_channel, not forbidden
            self.registry.gate.check_publish(self.identity, op.channel)
        except WagerwireError as exc:
            self.send_error(exc)
            return

        async def publish() -> None:
            result = await hub.publish(
                op.channel, op.data, attrs=op.attrs, idempotency_key=op.idempotency_key
            )
            self.send_text(native.encode_published(result, op.idempotency_key))

        self.spawn(publish)


def _resolve(gate: Gate, identity: Identity, channels: object) -> list[object]:
    """The gate's resolution of a subscription's channels; a malformed name among them is
    reported as ``invalid_channel`` rather than as whatever the gate refused (a newline makes
    ``user:1`` someone else's channel and ``game:crash`` one no plan lists). Names are
    checked only on that error path: the hub validates them again anyway."""
    try:
        return gate.resolve_channels(identity, channels)
    except Forbidden:
        if isinstance(channels, list):
            for name in channels:
                validate_pattern(name)
        raise
