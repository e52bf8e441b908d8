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

The REST side (the seed's "combine WebSocket with REST") is Stake's GraphQL endpoint
``POST /_api/graphql``; :func:`graphql_balances` answers its ``UserBalances`` query.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from wagerwire.core.channels import validate_channel
from wagerwire.dialects.datastream import Catalog
from wagerwire.errors import (
    Forbidden,
    InvalidChannel,
    MalformedJson,
    UnknownOp,
    WagerwireError,
)

__all__ = [
    "BALANCES",
    "StakeOp",
    "Subscribe",
    "Unsubscribe",
    "balances_from",
    "encode_error",
    "encode_frame",
    "graphql_balances",
    "graphql_error",
    "is_balances_query",
    "parse_message",
    "public_name",
    "user_channel",
    "validate_name",
]

BALANCES = "user:balances"
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
