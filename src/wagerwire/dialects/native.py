"""The native protocol v1 (DESIGN.md "Native API v1"): client ops in, server frames out.

Pure functions and frozen op dataclasses; the transports feed text in and write bytes out.
Message frames are built by string concatenation around the already-encoded ``data`` bytes,
so a message is never re-serialised on the delivery path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from wagerwire.core.channels import Filter
from wagerwire.core.conflation import MAX_CONFLATE_MS, Superseded
from wagerwire.core.messages import Message, Position, PublishResult, SubscribeReply
from wagerwire.core.tokens import decode_token, encode_position
from wagerwire.errors import BadParameter, MalformedJson, UnknownOp, WagerwireError
from wagerwire.types import Json

__all__ = [
    "NativeOp",
    "Ping",
    "Publish",
    "Subscribe",
    "Unsubscribe",
    "encode_error",
    "encode_image",
    "encode_message",
    "encode_pong",
    "encode_published",
    "encode_subscribed",
    "encode_superseded",
    "encode_unsubscribed",
    "parse_op",
]


class NativeOp:
    """Base of the client ops."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Subscribe(NativeOp):
    channels: list[Any]
    filter: Filter | None
    since: dict[str, Position] | None
    image: bool = False  # on conflating channels: the latest message per key first
    conflate_ms: int = 0  # at most one update per key per interval (0-120000)


@dataclass(frozen=True, slots=True)
class Unsubscribe(NativeOp):
    channels: list[Any]


@dataclass(frozen=True, slots=True)
class Ping(NativeOp):
    pass


@dataclass(frozen=True, slots=True)
class Publish(NativeOp):
    channel: Any
    data: Json
    attrs: Mapping[str, str] | None
    idempotency_key: str | None


# Subscribe frames without a resume token repeat verbatim across a connect storm (every
# client of one app sends the same one): their parse is remembered by text.
_SUBSCRIBES: dict[str | bytes, tuple[tuple[str, ...], Filter | None, bool, int]] = {}
_SUBSCRIBES_MAX = 1024
_SUBSCRIBE_TEXT_MAX = 2048


def parse_op(text: str | bytes) -> NativeOp:
    """Decode one client frame into an op.

    Raises:
        MalformedJson: not JSON, or not an object with a string ``op``.
        UnknownOp: ``op`` is not one of subscribe, unsubscribe, ping, publish.
        BadParameter, BadResumeToken: a field has the wrong type or does not decode.
    """
    known = _SUBSCRIBES.get(text)
    if known is not None:
        return Subscribe(list(known[0]), known[1], None, known[2], known[3])
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise MalformedJson(f"frame is not valid JSON: {exc}") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("op"), str):
        raise MalformedJson('frame must be a JSON object with a string "op"')
    op = obj["op"]
    if op == "subscribe":
        channels = _channel_list(obj)
        since = obj.get("since")
        if since is not None and not isinstance(since, str):
            raise BadParameter('"since" must be a resume token string')
        flt = Filter.parse(obj.get("filter"))
        image, interval = _delivery_options(obj)
        if not since and len(text) <= _SUBSCRIBE_TEXT_MAX and all(
            isinstance(c, str) for c in channels
        ):
            if len(_SUBSCRIBES) >= _SUBSCRIBES_MAX:
                _SUBSCRIBES.clear()
            _SUBSCRIBES[text] = (tuple(channels), flt, image, interval)
        return Subscribe(channels, flt, decode_token(since) if since else None, image, interval)
    if op == "unsubscribe":
        return Unsubscribe(_channel_list(obj))
    if op == "ping":
        return Ping()
    if op == "publish":
        if "data" not in obj:
            raise BadParameter('publish needs "data"')
        key = obj.get("idempotency_key")
        if key is not None and not isinstance(key, str):
            raise BadParameter('"idempotency_key" must be a string')
        attrs = obj.get("attrs")
        if attrs is not None and not isinstance(attrs, dict):
            raise BadParameter('"attrs" must be an object')
        return Publish(obj.get("channel"), obj["data"], attrs, key)
    raise UnknownOp(f"unknown op {op[:40]!r}; expected subscribe, unsubscribe, ping or publish")


def _delivery_options(obj: Mapping[str, Any]) -> tuple[bool, int]:
    """A subscribe's ``image`` and ``conflate_ms``, checked."""
    image = obj.get("image", False)
    if not isinstance(image, bool):
        raise BadParameter('"image" must be true or false')
    interval = obj.get("conflate_ms", 0)
    if (not isinstance(interval, int) or isinstance(interval, bool)
            or not 0 <= interval <= MAX_CONFLATE_MS):
        raise BadParameter(f'"conflate_ms" must be an integer from 0 to {MAX_CONFLATE_MS}')
    return image, interval


def _channel_list(obj: Mapping[str, Any]) -> list[Any]:
    channels = obj.get("channels")
    if not isinstance(channels, list):
        raise BadParameter('"channels" must be a list of channel names or patterns')
    return channels


def encode_message(message: Message) -> bytes:
    """The ``message`` frame's JSON; channel and epoch need no escaping by construction."""
    ch = message.channel
    return b"".join(
        (
            b'{"op":"message","channel":"',
            ch.encode(),
            b'","offset":',
            str(message.offset).encode(),
            b',"epoch":"',
            message.epoch.encode(),
            b'","ts":',
            str(message.ts).encode(),
            b',"data":',
            message.data,
            b',"token":"',
            encode_position(ch, message.epoch, message.offset).encode(),
            b'"}',
        )
    )


def encode_image(message: Message) -> bytes:
    """A ``message`` frame that belongs to a snapshot image (``"image":true``): the latest
    message of its key, sent before live data; offsets between images are not gaps."""
    frame = encode_message(message)
    return frame[:-1] + b',"image":true}'


def encode_superseded(notice: Superseded) -> bytes:
    """``{"op":"superseded","channel","epoch","offsets":[[first,last],…]}``: queued messages
    replaced by a newer message of the same key; a client skips them (no gap, no backfill)."""
    return orjson.dumps({"op": "superseded", "channel": notice.channel, "epoch": notice.epoch,
                         "offsets": notice.ranges})


def encode_subscribed(reply: SubscribeReply) -> bytes:
    obj: dict[str, Any] = {
        "op": "subscribed",
        "channel": reply.channel,
        "epoch": reply.epoch,
        "offset": reply.offset,
        "recovered": reply.recovered,
    }
    if reply.pattern:
        obj["pattern"] = True
    if reply.image:
        obj["image"] = True
    if reply.conflate_ms:
        obj["conflate_ms"] = reply.conflate_ms
    if reply.delay_ms:
        obj["delay_ms"] = reply.delay_ms
    return orjson.dumps(obj)


def encode_unsubscribed(channels: list[str]) -> bytes:
    return orjson.dumps({"op": "unsubscribed", "channels": channels})


def encode_published(result: PublishResult, ref: str | None = None) -> bytes:
    msg = result.message
    obj: dict[str, Any] = {
        "op": "published",
        "channel": msg.channel,
        "epoch": msg.epoch,
        "offset": msg.offset,
        "duplicate": result.duplicate,
    }
    if ref is not None:
        obj["idempotency_key"] = ref
    return orjson.dumps(obj)


_PONG = b'{"op":"pong"}'


def encode_pong() -> bytes:
    return _PONG


def encode_error(error: WagerwireError) -> bytes:
    return orjson.dumps({"op": "error", "code": error.code, "message": error.message})
