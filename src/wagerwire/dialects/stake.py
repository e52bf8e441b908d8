"""Stake WebSocket (seed 000), sans-I/O: ``subscribe`` messages in, ``{channel, payload}`` out.

WebSocket ``/_api/websocket`` with header ``x-access-token``. Client text frames::

    {"type": "subscribe", "channel": "user:balances"}
    {"type": "unsubscribe", "channel": "game:crash"}

Channels: ``user:balances`` (the token holder's own balances; hub channel
``user:{id}:balances``), ``game:{slug}`` and ``sports:event:{id}``. Server frames are
``{"channel": <the name the client subscribed>, "payload": <message data>}``; there are no
acknowledgements. The seed defines no error message, and its handlers read ``payload`` of any
frame whose channel contains ``balances`` or ``game:``, so an error is a frame *without* a
``channel`` key: ``{"type": "error", "payload": {"code", "message", "channel"?}}``.

Subscribing to ``user:balances`` first sends the current balance of each currency (the latest
stored message per ``currency``), then live updates from there, so a reconnecting client
loses no balance state. Client frames are handled one after another: while a subscription's
snapshot or subscribe is running, later frames wait (parse errors are answered at once).
The upgrade is refused with 403 for an ``Origin`` not allowed (:data:`DEFAULT_ORIGINS`:
stake.com and loopback pages; exact origins, ``re:<regex>`` or ``*``), 401 for a bad token.

The REST side (the seed's "combine WebSocket with REST") is Stake's GraphQL endpoint
``POST /_api/graphql``; :func:`graphql_balances` answers its ``UserBalances`` query.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from wagerwire.auth.identity import Identity
from wagerwire.core.channels import validate_channel
from wagerwire.core.messages import Message, Position
from wagerwire.dialects import base
from wagerwire.dialects.base import (
    DialectOp,
    Directory,
    HubEvent,
    LatestRead,
    OpFailed,
    ReadLatest,
    Session,
    StreamRequest,
    Subscribed,
    Unsubscribed,
)
from wagerwire.dialects.catalog import Catalog
from wagerwire.errors import (
    Forbidden,
    InvalidChannel,
    MalformedJson,
    UnknownOp,
    WagerwireError,
)
from wagerwire.wire.websocket import text_frame

__all__ = [
    "BALANCES",
    "BALANCE_SCAN",
    "DEFAULT_ORIGINS",
    "ENCODER",
    "FrameEncoder",
    "Stake",
    "StakeSession",
    "origin_allowed",
    "StakeOp",
    "Subscribe",
    "Unsubscribe",
    "balances_from",
    "encode_error",
    "encode_frame",
    "graphql_balances",
    "graphql_error",
    "is_balances_query",
    "latest_per_currency",
    "parse_message",
    "public_name",
    "user_channel",
    "validate_name",
]

BALANCES = "user:balances"
BALANCE_SCAN = 1000  # stored balance messages read for the snapshot
DEFAULT_ORIGINS: tuple[str, ...] = (
    "https://stake.com",
    r"re:https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?",
)
_USER_BALANCES = re.compile(r"user:[^:]+:balances")


class StakeOp:
    """Base of the client messages."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Subscribe(StakeOp):
    channel: str


@dataclass(frozen=True, slots=True)
class Unsubscribe(StakeOp):
    channel: str


def parse_message(text: str | bytes) -> StakeOp:
    """Decode one client frame.

    Raises:
        MalformedJson: not a JSON object with string ``type`` and ``channel``.
        UnknownOp: ``type`` is neither ``subscribe`` nor ``unsubscribe``.
    """
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise MalformedJson(f"message is not valid JSON: {exc}") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise MalformedJson('message must be a JSON object with a string "type"')
    kind = obj["type"]
    if kind not in ("subscribe", "unsubscribe"):
        raise UnknownOp(f"unknown type {kind[:40]!r}; expected subscribe or unsubscribe")
    channel = obj.get("channel")
    if not isinstance(channel, str) or not channel:
        raise MalformedJson(f'{kind} needs a string "channel"')
    return Subscribe(channel) if kind == "subscribe" else Unsubscribe(channel)


def validate_name(channel: str, catalog: Catalog, known: Iterable[str] = ()) -> str:
    """Check a Stake channel name; returns it (``user:balances`` is resolved by the caller).

    ``known`` are hub channels that exist (a game outside the catalog is accepted once it
    has published).

    Raises:
        InvalidChannel: not one of ``user:balances``, ``game:{slug}``, ``sports:event:{id}``.
        NotFound: ``game:{slug}`` of a game this server does not have.
    """
    if channel == BALANCES:
        return channel
    if channel.startswith("game:"):
        validate_channel(channel)
        slug = channel[5:]
        if slug not in catalog.games and channel not in set(known):
            catalog.game(slug)
        return channel
    if channel.startswith("sports:event:") and len(channel) > 13:
        return validate_channel(channel)
    raise InvalidChannel(
        f"unknown channel {channel[:80]!r}; use user:balances, game:{{slug}} or "
        "sports:event:{id}"
    )


def user_channel(resolved: str, user_id: str | None) -> str:
    """The hub channel for a resolved name: ``user:balances`` → ``user:{id}:balances``.

    Raises:
        Forbidden: ``user:balances`` without a user behind the token.
    """
    if resolved != BALANCES:
        return resolved
    if user_id is None:
        raise Forbidden("user:balances needs the x-access-token of a user")
    return f"user:{user_id}:balances"


def public_name(channel: str) -> str:
    """The name a frame carries: the holder's ``user:{id}:balances`` is ``user:balances``."""
    return BALANCES if _USER_BALANCES.fullmatch(channel) else channel


def encode_frame(channel: str, data: bytes) -> bytes:
    """``{"channel": …, "payload": <data>}``; channel names need no escaping."""
    return b'{"channel":"' + public_name(channel).encode() + b'","payload":' + data + b"}"


def encode_error(error: WagerwireError, channel: str | None = None) -> bytes:
    payload: dict[str, Any] = {"code": error.code, "message": error.message}
    if channel is not None:
        payload["channel"] = channel
    return orjson.dumps({"type": "error", "payload": payload})


# -- the WebSocket session ----------------------------------------------------------------------


class FrameEncoder:
    """``{"channel", "payload"}`` as a complete WebSocket text frame."""

    __slots__ = ()

    def encode(self, message: Message) -> bytes:
        return text_frame(encode_frame(message.channel, message.data))


ENCODER = FrameEncoder()


def origin_allowed(origin: str | None, allowed: Iterable[str]) -> bool:
    """Whether a browser's ``Origin`` may connect; no ``Origin`` (not a browser) may."""
    if origin is None:
        return True  # the access token is the credential
    for rule in allowed:
        if rule == "*" or rule == origin:
            return True
        if rule.startswith("re:") and re.fullmatch(rule[3:], origin):
            return True
    return False


class Stake:
    """``/_api/websocket``: 403 for an ``Origin`` not allowed, 401 for a bad token."""

    __slots__ = ("catalog", "origins", "encoder")
    transport: Literal["ws", "sse"] = "ws"

    def __init__(self, catalog: Catalog, origins: Iterable[str] = DEFAULT_ORIGINS) -> None:
        self.catalog = catalog
        self.origins = tuple(origins)
        self.encoder = ENCODER

    def accept(self, request: StreamRequest, directory: Directory) -> StakeSession:
        origin = request.headers.get("origin")
        if not origin_allowed(origin, self.origins):
            raise Forbidden(f"Origin {str(origin)[:80]!r} is not allowed on this server")
        identity = directory.authenticate(request.headers, request.query_one("token"))
        return StakeSession(identity, self.catalog, directory)


class StakeSession(Session):
    """``subscribe``/``unsubscribe`` frames in, hub ops out, one client frame at a time."""

    __slots__ = ("catalog", "directory", "names", "_backlog", "_waiting")

    def __init__(self, identity: Identity, catalog: Catalog, directory: Directory) -> None:
        super().__init__(identity, ENCODER)
        self.catalog = catalog
        self.directory = directory
        self.names: dict[str, str] = {}  # the client's name -> hub channel
        self._backlog: deque[StakeOp] = deque()
        self._waiting: tuple[str, DialectOp] | None = None  # (client name, op in flight)

    def receive_text(self, text: str) -> None:
        try:
            op = parse_message(text)
        except WagerwireError as exc:
            self.send_error(exc)
            return
        self._backlog.append(op)
        self._advance()

    def receive_event(self, event: HubEvent) -> None:
        waiting = self._waiting
        self._waiting = None
        if waiting is None:
            return
        name = waiting[0]
        match event:
            case LatestRead(op=op, messages=messages):
                channel = op.channels[0]
                recent = messages.get(channel, ())
                since: dict[str, Position] | None = None
                if recent:
                    for message in latest_per_currency(recent):
                        self.send(self.encoder.encode(message))
                    since = {channel: recent[-1].position}
                self._subscribe(name, channel, since)
            case OpFailed(op=base.Subscribe(), error=error):
                self.names.pop(name, None)
                self.send_error(error, name)
            case OpFailed(error=error):
                self.send_error(error)
            case Subscribed() | Unsubscribed():
                pass
        self._advance()

    def _advance(self) -> None:
        """Handle queued client frames until one needs the hub's answer."""
        while self._waiting is None and self._backlog:
            match self._backlog.popleft():
                case Subscribe(channel=name):
                    self._start_subscribe(name)
                case Unsubscribe(channel=name):
                    channel = self.names.pop(name, None)
                    if channel is not None and channel not in self.names.values():
                        self._wait(name, base.Unsubscribe((channel,)))

    def _start_subscribe(self, name: str) -> None:
        directory = self.directory
        try:
            known = (name,) if directory.channel_exists(name) else ()
            validate_name(name, self.catalog, known)
            channel = user_channel(directory.resolve_channel(self.identity, name),
                                   self.identity.user_id)
        except WagerwireError as exc:
            self.send_error(exc, name)
            return
        if name == BALANCES and channel not in self.names.values():
            self._wait(name, ReadLatest((channel,), BALANCE_SCAN))
        else:
            self._subscribe(name, channel, None)

    def _subscribe(self, name: str, channel: str, since: dict[str, Position] | None) -> None:
        self.names[name] = channel
        self._wait(name, base.Subscribe((channel,), since))

    def _wait(self, name: str, op: DialectOp) -> None:
        self._waiting = (name, op)
        self.emit(op)

    def send_error(self, error: WagerwireError, channel: str | None = None) -> None:
        self.send(text_frame(encode_error(error, channel)))

    def fail(self, error: WagerwireError) -> None:
        self.send_error(error)


def latest_per_currency(messages: Iterable[Message]) -> list[Message]:
    """The newest balance message of each ``currency`` (by offset), oldest first."""
    latest: dict[str, Message] = {}
    for message in messages:
        try:
            data = orjson.loads(message.data)
        except orjson.JSONDecodeError:
            continue
        currency = data.get("currency") if isinstance(data, dict) else None
        latest[str(currency)] = message
    return sorted(latest.values(), key=lambda m: m.offset)


# -- REST: GraphQL UserBalances ---------------------------------------------------------------


def is_balances_query(body: object) -> bool:
    """Whether a GraphQL request body asks for ``user { balances … }``."""
    if not isinstance(body, Mapping):
        return False
    query = body.get("query")
    name = body.get("operationName")
    if name == "UserBalances":
        return True
    return isinstance(query, str) and "user" in query and "balances" in query


def balances_from(messages: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The latest balance per currency from balance messages' data (oldest first)."""
    latest: dict[str, Any] = {}
    for data in messages:
        currency = data.get("currency")
        if isinstance(currency, str) and "amount" in data:
            latest[currency] = data["amount"]
    return latest


def graphql_balances(user_id: str, balances: Mapping[str, Any]) -> bytes:
    """Stake's ``UserBalances`` answer: ``data.user.balances[].available{amount,currency}``."""
    return orjson.dumps({
        "data": {
            "user": {
                "id": user_id,
                "balances": [
                    {
                        "available": {"amount": amount, "currency": currency,
                                      "__typename": "Balance"},
                        "vault": {"amount": 0, "currency": currency, "__typename": "Balance"},
                        "__typename": "UserBalance",
                    }
                    for currency, amount in sorted(balances.items())
                ],
                "__typename": "User",
            }
        }
    })


def graphql_error(message: str, error_type: str) -> bytes:
    """A GraphQL error body (``{"data": null, "errors": [...]}``)."""
    return orjson.dumps({
        "data": None,
        "errors": [{"message": message, "path": ["user"], "errorType": error_type}],
    })
