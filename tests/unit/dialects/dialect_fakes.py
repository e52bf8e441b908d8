"""What the dialect session tests share: a dictionary-backed Directory, a catalog, exact
WebSocket frame bytes built by hand (independent of wire/websocket.py), and messages."""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import orjson

from wagerwire.auth.identity import ANONYMOUS, Identity
from wagerwire.core.messages import Message, Position
from wagerwire.dialects.base import DialectOp, Session
from wagerwire.dialects.catalog import Catalog, CatalogGame
from wagerwire.errors import Forbidden, Unauthorized

CATALOG = Catalog([
    CatalogGame("crash", "crash", "multiplier", "hypetech"),
    CatalogGame("double", "double", "color", "hypetech"),
    CatalogGame("slot", "slot", "multiplier", "hypetech"),
    CatalogGame("stake-crash", "crash", "multiplier", "stake"),
    CatalogGame("roobet-crash", "crash", "multiplier", "roobet"),
])

USER = Identity(key_id="k1", role="reader", plan="allstar", user_id="u1")
READER = Identity(key_id="k2", role="reader", plan="allstar")
LIMITED = Identity(key_id="k3", role="reader", plan="stakeonly", channels=("game:stake-*",))


@dataclass
class FakeDirectory:
    """Tokens map to identities; an identity reads the channels its plan's patterns allow."""

    tokens: dict[str, Identity] = field(default_factory=lambda: {
        "user-token": USER, "reader-token": READER, "limited-token": LIMITED,
    })
    existing: set[str] = field(default_factory=set)
    calls: list[tuple[str, object]] = field(default_factory=list)

    def authenticate(self, headers: Mapping[str, str], query_token: str | None) -> Identity:
        self.calls.append(("authenticate", query_token))
        token = headers.get("x-access-token") or query_token
        bearer = headers.get("authorization", "")
        if bearer.startswith("Bearer "):
            token = bearer[7:]
        if token is None:
            return ANONYMOUS
        identity = self.tokens.get(token)
        if identity is None:
            raise Unauthorized("invalid key")
        return identity

    def resolve_channel(self, identity: Identity, channel: str) -> str:
        if channel == "user:balances" and identity.user_id is None:
            raise Forbidden("user:balances is private")
        allowed = identity.channels
        if "*" not in allowed and not any(
            channel.startswith(p.rstrip("*")) for p in allowed
        ):
            raise Forbidden(f"{channel} is not on your plan")
        return channel

    def channel_exists(self, channel: str) -> bool:
        return channel in self.existing

    def validate_subscription(
        self, channels: Sequence[str], since: Mapping[str, Position] | None
    ) -> None:
        self.calls.append(("validate_subscription", (tuple(channels), since)))


def ws_text(payload: bytes) -> bytes:
    """An unmasked final text frame, built by hand from RFC 6455."""
    n = len(payload)
    if n < 126:
        return bytes([0x81, n]) + payload
    if n < 65536:
        return bytes([0x81, 126]) + struct.pack("!H", n) + payload
    return bytes([0x81, 127]) + struct.pack("!Q", n) + payload


WS_PING = b"\x89\x00"


def message(channel: str, offset: int, data: object, *, epoch: str = "e1",
            ts: int = 1_700_000_000_000) -> Message:
    return Message(channel, offset, epoch, ts, orjson.dumps(data))


def drain(session: Session) -> tuple[list[DialectOp], list[bytes]]:
    """Everything the session wants done since the last call: (ops, bytes to write)."""
    return session.ops_received(), session.data_to_send()


def crash_round(slug: str = "stake-crash", index: int = 7, multiplier: object = "2.5"
                ) -> dict[str, object]:
    """A canonical crash round as the simulators publish it."""
    return {
        "game_slug": slug, "game_id": 3, "index": index, "category": "multiplier",
        "result": {"multiplier": multiplier}, "extras": {"point": "2.50"},
        "finished_at": "2026-05-28T15:05:15.123Z", "provider": "stake",
        "raw": {"id": "c2caaf8a-34b3-42b0-8d44-c01cb879049d"},
    }


def ws_payload(frame: bytes) -> bytes:
    """The payload of one unmasked text frame (checks the header is exactly that)."""
    n = frame[1]
    start = 2 if n < 126 else 4 if n == 126 else 10
    payload = frame[start:]
    assert frame == ws_text(payload)
    return payload
