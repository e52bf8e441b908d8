"""Server-Sent Events connections: the native stream on ``/v1/sse``.

The message bytes (``data: {…}``) are shared by every SSE subscriber of a message; each
connection only prefixes its own ``id:`` line, the multi-channel resume token of its stream,
which the browser sends back as ``Last-Event-ID`` when it reconnects.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson

from wagerwire.auth.identity import NO_SLOT, StreamSlot
from wagerwire.core.channels import Filter, is_pattern, pattern_matcher
from wagerwire.core.conflation import Superseded
from wagerwire.core.hub import FrameEncoder
from wagerwire.core.messages import Message, Position, SubscribeReply
from wagerwire.core.tokens import encode_position, encode_positions
from wagerwire.dialects import native
from wagerwire.errors import BadParameter, InternalError, WagerwireError
from wagerwire.transports.http import HttpRequest
from wagerwire.transports.stream import StreamConnection, StreamRegistry
from wagerwire.transports.url_subscription import CHANNELS_HINT, url_subscription
from wagerwire.wire.sse import SSE_HEADERS, parse_last_event_id, sse_comment, sse_event, sse_retry

__all__ = ["NativeSseConnection", "NativeSseEncoder", "SseConnection"]

log = logging.getLogger("wagerwire.transports.sse")

RETRY_MS = 1000


class NativeSseEncoder:
    """``data: <native message JSON>`` plus the blank line; the id is added per connection."""

    __slots__ = ()

    def encode(self, message: Message) -> bytes:
        return b"data: " + native.encode_message(message) + b"\n\n"

    def encode_image(self, message: Message) -> bytes:
        return b"data: " + native.encode_image(message) + b"\n\n"


NATIVE_SSE = NativeSseEncoder()


def _head(extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    lines = ["HTTP/1.1 200 OK", *(f"{k}: {v}" for k, v in SSE_HEADERS + extra),
             "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class SseConnection(StreamConnection):
    """An event stream: response head, ``retry:``, events, comment heartbeats."""

    __slots__ = ("next_beat",)

    transport_kind = "sse"

    def __init__(self, registry: StreamRegistry, encoder: FrameEncoder) -> None:
        super().__init__(registry, encoder)
        self.next_beat = 0.0

    def started(self, request: Any) -> None:
        if self.transport is not None:
            self.transport.write(_head() + sse_retry(RETRY_MS))
        self.next_beat = self.last_seen + self.registry.config.sse_heartbeat

    def data_received(self, data: bytes) -> None:
        """Clients send nothing on an event stream; ignore whatever arrives."""

    def eof_received(self) -> bool | None:
        self.close_transport()
        return None

    def tick(self, now: float, ping: bool) -> None:
        if now >= self.next_beat:
            self.send_now(sse_comment(f"heartbeat {int(time.time())}"))
            self.next_beat = now + self.registry.config.sse_heartbeat

    def close_with_error(self, code: str, message: str) -> None:
        """End the stream with an ``error`` event ``{"code","message"}``, counted by code
        (``wagerwire_stream_error_frames_total{transport="sse"}``)."""
        self.registry.errors["sse", "error", code] += 1
        self.close_transport(sse_event(orjson.dumps({"code": code, "message": message}),
                                       event="error"))

    def close_stream_slow(self) -> None:
        self.close_with_error("slow_consumer", "resume with Last-Event-ID")

    def shutdown(self) -> None:
        self.close_transport(sse_event(
            b'{"code":"going_away","message":"server restarting; reconnect to resume"}',
            event="shutdown",
        ))

    def revoke(self) -> None:
        self.close_with_error("unauthorized", "API key revoked")

    def expire(self) -> None:
        self.close_with_error("unauthorized", "stream token expired: get a new one and "
                              "resume with Last-Event-ID")

    def send_event(self, data: bytes, event: str | None = None) -> None:
        self.send_now(sse_event(data, event=event))


class NativeSseConnection(SseConnection):
    """``GET /v1/sse?channels=a,b&since=<token>&filter=<json>``; ``Last-Event-ID`` resumes."""

    __slots__ = ("channels", "filter", "positions", "_since", "_task", "slot", "rate", "image")

    def __init__(
        self,
        registry: StreamRegistry,
        channels: list[str],
        flt: Filter | None,
        since: dict[str, Position] | None,
        slot: StreamSlot = NO_SLOT,
        rate: tuple[int, int] = (0, 0),
        image: bool = False,
    ) -> None:
        super().__init__(registry, NATIVE_SSE)
        self.slot = slot
        self.rate = rate
        self.image = image
        self.channels = channels
        self.filter = flt
        self._since = since
        self.positions: dict[str, Position] = {
            ch: pos for ch, pos in (since or {}).items() if _covered(ch, channels)
        }
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_request(cls, request: HttpRequest, registry: StreamRegistry) -> NativeSseConnection:
        """Validate the request before any byte of the stream is sent.

        Raises:
            BadParameter, InvalidChannel, BadResumeToken, MalformedJson: answered as HTTP 4xx.
        """
        gate = registry.gate
        identity = gate.authenticate(request.headers, request.query_one("token"))
        sub = url_subscription(request, gate, registry.hub, identity,
                               token=parse_last_event_id(request.headers.get("last-event-id")))
        if sub is None:
            raise BadParameter(CHANNELS_HINT)
        slot = gate.open_stream(identity, "sse")
        return cls(registry, sub.channels, sub.filter, sub.since, slot,
                   gate.delivery_rate(identity, sub.conflate_ms), sub.image)

    def started(self, request: Any) -> None:
        super().started(request)
        self._task = asyncio.get_running_loop().create_task(self._subscribe())

    async def _subscribe(self) -> None:
        try:
            await self.registry.hub.subscribe(
                self, self.channels, filter=self.filter, since=self._since,
                announce=self._announce, rate=self.rate, image=self.image,
            )
        except WagerwireError as exc:
            self.close_with_error(exc.code, exc.message)
        except Exception:
            log.exception("SSE subscribe failed")
            err = InternalError("internal error; the server logged it")
            self.close_with_error(err.code, err.message)

    def encode_superseded(self, notice: Superseded) -> bytes:
        return sse_event(native.encode_superseded(notice), event="superseded")

    def _announce(self, reply: SubscribeReply) -> None:
        self.send_event(native.encode_subscribed(reply), event="subscribed")

    def deliver(self, frame: bytes, message: Message) -> None:
        if self._lag is not None and self.lag_drops(message):
            return  # before the id: a position it never got must not enter the token
        positions = self.positions
        positions[message.channel] = Position(message.epoch, message.offset)
        if len(positions) == 1:
            token = encode_position(message.channel, message.epoch, message.offset)
        else:
            token = encode_positions(positions)
        super().deliver(b"id: " + token.encode() + b"\n" + frame, message)

    def on_closed(self) -> None:
        self.slot.release()
        task = self._task
        if task is not None and not task.done():
            task.cancel()


def _covered(channel: str, names: list[str]) -> bool:
    return any(
        pattern_matcher(n).fullmatch(channel) if is_pattern(n) else n == channel for n in names
    )
