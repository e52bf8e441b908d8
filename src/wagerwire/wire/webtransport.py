"""WebTransport byte formats, sans-I/O: session-close capsules and newline-delimited frames.

* The **session close capsule** (WebTransport over HTTP/3, ``CLOSE_WEBTRANSPORT_SESSION``,
  type ``0x2843``) travels in the CONNECT stream's body: a QUIC varint type, a varint length,
  then a 32-bit application error code and a UTF-8 reason of at most 1024 bytes. A browser
  shows them as ``WebTransportCloseInfo.closeCode`` / ``.reason``. wagerwire uses the same
  numbers as its WebSocket close codes (4001 unauthorized, 1001 going away, ...).
* **Lines**: the native ``/v1/wt`` protocol writes one JSON object per line (``\\n``) on its
  streams. :class:`LineReader` splits a byte stream into lines with a length bound; an
  over-long line is reported once and skipped up to its newline, so the stream stays usable.

No I/O and no clock; the WebTransport adapter (transports/webtransport.py) feeds bytes in.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CLOSE_SESSION",
    "DATAGRAM_MAX",
    "MAX_REASON_BYTES",
    "Capsule",
    "CapsuleReader",
    "LineReader",
    "LineTooLong",
    "decode_close",
    "decode_varint",
    "encode_capsule",
    "encode_close",
    "encode_varint",
]

CLOSE_SESSION = 0x2843
MAX_REASON_BYTES = 1024
DATAGRAM_MAX = 1100
"""The largest payload wagerwire puts in one datagram. QUIC packets are at most 1200 bytes
here (aioquic's default, the minimum every path carries); packet header, AEAD tag, frame
header and the HTTP/3 session prefix take up to ~60 of them. Bigger payloads go on a
stream."""

_MAX_CAPSULE = 64 * 1024


def encode_varint(value: int) -> bytes:
    """A QUIC variable-length integer (RFC 9000 §16)."""
    if value < 0x40:
        return bytes((value,))
    if value < 0x4000:
        return (value | 0x4000).to_bytes(2, "big")
    if value < 0x4000_0000:
        return (value | 0x8000_0000).to_bytes(4, "big")
    if value < 0x4000_0000_0000_0000:
        return (value | 0xC000_0000_0000_0000).to_bytes(8, "big")
    raise ValueError(f"{value} does not fit a QUIC varint")


def decode_varint(data: bytes | bytearray, pos: int = 0) -> tuple[int, int] | None:
    """``(value, next position)``, or None when ``data`` ends inside the integer."""
    if pos >= len(data):
        return None
    first = data[pos]
    size = 1 << (first >> 6)
    if pos + size > len(data):
        return None
    value = first & 0x3F
    for i in range(1, size):
        value = (value << 8) | data[pos + i]
    return value, pos + size


def encode_capsule(kind: int, payload: bytes) -> bytes:
    return encode_varint(kind) + encode_varint(len(payload)) + payload


def encode_close(code: int, reason: str) -> bytes:
    """The ``CLOSE_WEBTRANSPORT_SESSION`` capsule; the reason is cut at 1024 UTF-8 bytes
    (never inside a character)."""
    raw = reason.encode()[:MAX_REASON_BYTES].decode("utf-8", "ignore").encode()
    return encode_capsule(CLOSE_SESSION, (code & 0xFFFF_FFFF).to_bytes(4, "big") + raw)


def decode_close(payload: bytes) -> tuple[int, str]:
    """``(code, reason)`` of a close capsule's payload (a short one counts as code 0)."""
    if len(payload) < 4:
        return 0, ""
    return int.from_bytes(payload[:4], "big"), payload[4:].decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class Capsule:
    kind: int
    payload: bytes


class CapsuleReader:
    """Splits a CONNECT stream's body into capsules (``ValueError`` if one is too big)."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Capsule]:
        buf = self._buf
        buf += data
        out: list[Capsule] = []
        while True:
            head = decode_varint(buf)
            if head is None:
                break
            kind, pos = head
            size = decode_varint(buf, pos)
            if size is None:
                break
            length, pos = size
            if length > _MAX_CAPSULE:
                raise ValueError(f"capsule of {length} bytes is over {_MAX_CAPSULE}")
            if pos + length > len(buf):
                break
            out.append(Capsule(kind, bytes(buf[pos:pos + length])))
            del buf[:pos + length]
        return out


class LineTooLong:
    """Marker in :meth:`LineReader.feed`'s output: a line went over the bound (skipped)."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        self.size = size


class LineReader:
    """Newline-delimited frames from a byte stream, each at most ``max_bytes`` long.

    ``feed`` answers the complete lines (without ``\\n``; a ``\\r`` before it is dropped;
    empty lines are skipped) and a :class:`LineTooLong` where a line went over the bound.
    """

    __slots__ = ("max_bytes", "_buf", "_skipping", "_skipped")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._buf = bytearray()
        self._skipping = False
        self._skipped = 0

    def feed(self, data: bytes) -> list[bytes | LineTooLong]:
        out: list[bytes | LineTooLong] = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            self._take(data[start:end], out, complete=True)
            start = end + 1
        if start < len(data):
            self._take(data[start:], out, complete=False)
        return out

    def _take(self, chunk: bytes, out: list[bytes | LineTooLong], complete: bool) -> None:
        if self._skipping:
            self._skipped += len(chunk)
            if complete:
                self._skipping = False
            return
        buf = self._buf
        if len(buf) + len(chunk) > self.max_bytes:
            out.append(LineTooLong(len(buf) + len(chunk)))
            buf.clear()
            self._skipping = not complete
            return
        if not complete:
            buf += chunk
            return
        line = bytes(buf) + chunk if buf else chunk
        buf.clear()
        if line.endswith(b"\r"):
            line = line[:-1]
        if line.strip():
            out.append(line)

    @property
    def pending(self) -> int:
        """Bytes of an unfinished line held."""
        return len(self._buf)
