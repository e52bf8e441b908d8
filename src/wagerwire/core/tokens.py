"""Resume tokens: compact, URL-safe encodings of a subscription's positions.

A token is one segment per channel, joined by ``.``; a segment is the unpadded base64url of
``channel,epoch,offset``. Segments concatenate: a client that keeps the latest single-channel
token of each channel (the ``token`` of each WebSocket message) and joins them with ``.`` holds
a valid multi-channel token, as does the SSE ``id:`` line, which always covers every channel of
the stream. Tokens are not secret and not signed: they only say where a reader stands.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping

from wagerwire.core.messages import Position
from wagerwire.errors import BadResumeToken

__all__ = ["MAX_TOKEN_LENGTH", "decode_token", "encode_position", "encode_positions"]

MAX_TOKEN_LENGTH = 16384
_EPOCH = re.compile(r"[a-z0-9]{1,32}")
_CHANNEL = re.compile(r"[a-z0-9][a-z0-9:_.\-]{0,199}")
_SEGMENT = re.compile(r"[A-Za-z0-9_\-]+")  # unpadded base64url, nothing else
_OFFSET = re.compile(r"0|[1-9][0-9]{0,18}")  # ASCII digits, at most 19 (2**63 fits)


def encode_position(channel: str, epoch: str, offset: int) -> str:
    """One channel's segment."""
    raw = f"{channel},{epoch},{offset}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def encode_positions(positions: Mapping[str, Position]) -> str:
    """A multi-channel token, channels in sorted order so equal states give equal tokens."""
    return ".".join(
        encode_position(ch, pos.epoch, pos.offset) for ch, pos in sorted(positions.items())
    )


def decode_token(token: str) -> dict[str, Position]:
    """Decode a (multi-channel) token; raise :class:`BadResumeToken` with the reason."""
    if not isinstance(token, str) or not token:
        raise BadResumeToken("resume token must be a non-empty string")
    if len(token) > MAX_TOKEN_LENGTH:
        raise BadResumeToken(f"resume token longer than {MAX_TOKEN_LENGTH} characters")
    positions: dict[str, Position] = {}
    for segment in token.split("."):
        # base64's decoder skips characters outside the alphabet and int() takes "1_0", " 5"
        # or "+5": both are checked strictly first, so one position has one spelling.
        try:
            if _SEGMENT.fullmatch(segment) is None:
                raise ValueError("not base64url")
            raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)).decode("ascii")
            channel, epoch, offset_text = raw.split(",")
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise BadResumeToken(f"resume token segment {segment[:40]!r} does not decode") from exc
        if (_CHANNEL.fullmatch(channel) is None or _EPOCH.fullmatch(epoch) is None
                or _OFFSET.fullmatch(offset_text) is None):
            raise BadResumeToken(f"resume token segment {segment[:40]!r} is not a position")
        offset = int(offset_text)
        old = positions.get(channel)
        if old is None or (old.epoch == epoch and offset > old.offset) or old.epoch != epoch:
            positions[channel] = Position(epoch, offset)
    return positions
