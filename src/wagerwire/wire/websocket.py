"""WebSocket (RFC 6455) server side, sans-I/O: handshake checks, frame encoders, frame reader.

Server frames are unmasked, so a frame depends only on its payload: the fan-out path builds it
once with :func:`text_frame` and writes the same bytes to every subscriber. No extension is ever
negotiated here, so every RSV bit a client sets is a protocol error.

The reader follows "feed, then drain": pass bytes to :meth:`FrameReader.receive_data`, then take
the decoded events from :meth:`FrameReader.events_received`.
"""

from __future__ import annotations

import binascii
import codecs
import hashlib
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from wagerwire.errors import ClientError, CloseCode

__all__ = [
    "BinaryMessage",
    "CloseReceived",
    "FrameReader",
    "HandshakeError",
    "Ping",
    "Pong",
    "TextMessage",
    "WsEvent",
    "WsProtocolError",
    "accept_key",
    "binary_frame",
    "close_frame",
    "handshake_response",
    "has_token",
    "ping_frame",
    "pong_frame",
    "text_frame",
    "validate_handshake",
]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

MAX_CONTROL_PAYLOAD = 125
MAX_CLOSE_REASON = 123  # 125 minus the two-byte status code


# --------------------------------------------------------------------------- errors


class HandshakeError(ClientError):
    """The opening handshake is not a valid WebSocket upgrade; answer with ``status``.

    ``headers`` are the extra response headers the RFC asks for (``Sec-WebSocket-Version: 13``
    with 426 on a version mismatch, ``Allow: GET`` with 405).
    """

    _CODES = {426: "upgrade_required", 405: "method_not_allowed"}

    def __init__(self, status: int, message: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.code = self._CODES.get(status, "bad_request")  # documented codes only
        self.headers = tuple(headers)


class WsProtocolError(ClientError):
    """The client broke RFC 6455; send ``close_frame(close_code)`` and drop the connection.

    ``close_code`` is 1002 (protocol error), 1007 (text or close reason not UTF-8) or
    1009 (message over ``max_message_size``).
    """

    code = "ws_protocol_error"
    close_code: CloseCode

    def __init__(self, close_code: int, message: str) -> None:
        super().__init__(message)
        self.close_code = CloseCode(close_code)


# --------------------------------------------------------------------------- handshake


def accept_key(sec_websocket_key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value proving we read the client's key (RFC 6455 §4.2.2)."""
    digest = hashlib.sha1(sec_websocket_key.encode("ascii") + _GUID).digest()
    return binascii.b2a_base64(digest, newline=False).decode("ascii")


def has_token(value: str, token: str) -> bool:
    """Whether a comma-separated header value lists ``token`` (case-insensitive)."""
    value = value.lower()
    if value == token:  # the usual single-token header
        return True
    return any(part.strip() == token for part in value.split(","))


def validate_handshake(method: str, headers: Mapping[str, str]) -> str:
    """Check an upgrade request and return its ``Sec-WebSocket-Key``.

    Args:
        method: the request method.
        headers: request headers with lower-case names; repeated headers joined with ``", "``.

    Returns:
        The client key; pass it to :func:`handshake_response`.

    Raises:
        HandshakeError: answer with its ``status`` and ``headers`` and close the connection.
    """
    if method != "GET":
        raise HandshakeError(405, "WebSocket upgrade requires GET", (("Allow", "GET"),))
    if not has_token(headers.get("upgrade", ""), "websocket"):
        raise HandshakeError(
            426, "missing 'Upgrade: websocket' header", (("Upgrade", "websocket"),)
        )
    if not has_token(headers.get("connection", ""), "upgrade"):
        raise HandshakeError(400, "missing 'Connection: Upgrade' header")
    if headers.get("sec-websocket-version", "").strip() != "13":
        raise HandshakeError(
            426, "unsupported WebSocket version; use 13", (("Sec-WebSocket-Version", "13"),)
        )
    key = headers.get("sec-websocket-key", "").strip()
    try:
        raw = binascii.a2b_base64(key.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        raw = b""
    if len(raw) != 16:
        raise HandshakeError(400, "invalid Sec-WebSocket-Key")
    return key


_101_HEAD = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Accept: ")


def _refuse_header_injection(text: str) -> None:
    if "\r" in text or "\n" in text or "\0" in text:
        raise ValueError(f"header text contains CR, LF or NUL: {text!r}")


def handshake_response(key: str, extra_headers: Sequence[tuple[str, str]] = ()) -> bytes:
    """The whole ``101 Switching Protocols`` response for a key from :func:`validate_handshake`.

    ``extra_headers`` (e.g. ``Sec-WebSocket-Protocol``) are appended as given; CR, LF or NUL in
    them raises ValueError so a caller cannot inject headers.
    """
    if not extra_headers:
        return _101_HEAD + accept_key(key).encode("ascii") + b"\r\n\r\n"
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(key)}",
    ]
    for name, value in extra_headers:
        _refuse_header_injection(name)
        _refuse_header_injection(value)
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# --------------------------------------------------------------------------- encoders

# One header per short length and opcode: a small frame is a list index plus one concatenation.
_SHORT_HEADERS: dict[int, tuple[bytes, ...]] = {
    op: tuple(bytes((0x80 | op, n)) for n in range(126))
    for op in (OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG)
}
_TEXT_SHORT = _SHORT_HEADERS[OP_TEXT]
_BINARY_SHORT = _SHORT_HEADERS[OP_BINARY]
_pack16 = struct.Struct("!BBH").pack
_pack64 = struct.Struct("!BBQ").pack
_pack_code = struct.Struct("!H").pack


def text_frame(payload: bytes) -> bytes:
    """One unfragmented, unmasked text frame; ``payload`` must already be UTF-8."""
    n = len(payload)
    if n < 126:
        return _TEXT_SHORT[n] + payload
    if n < 65536:
        return _pack16(0x81, 126, n) + payload
    return _pack64(0x81, 127, n) + payload


def binary_frame(payload: bytes) -> bytes:
    """One unfragmented, unmasked binary frame."""
    n = len(payload)
    if n < 126:
        return _BINARY_SHORT[n] + payload
    if n < 65536:
        return _pack16(0x82, 126, n) + payload
    return _pack64(0x82, 127, n) + payload


def _control_frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n > MAX_CONTROL_PAYLOAD:
        raise ValueError(f"control frame payload is {n} bytes; the limit is 125")
    return _SHORT_HEADERS[opcode][n] + payload


def ping_frame(payload: bytes = b"") -> bytes:
    """A Ping; the client must answer with a Pong echoing ``payload`` (≤ 125 bytes)."""
    return _control_frame(OP_PING, payload)


def pong_frame(payload: bytes) -> bytes:
    """A Pong echoing a received Ping's payload (or unsolicited, as a one-way heartbeat)."""
    return _control_frame(OP_PONG, payload)


def _code_is_valid(code: int) -> bool:
    """Close codes allowed on the wire (RFC 6455 §7.4 plus the IANA registry, 1012–1014)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def close_frame(code: int | None, reason: str = "") -> bytes:
    """A Close frame; ``reason`` is cut to 123 UTF-8 bytes on a character boundary.

    ``code=None`` sends an empty Close (the echo for a Close that carried no code).

    Raises:
        ValueError: ``code`` may not be sent (1004–1006, 1015, out of range) or a reason was
            given without a code.
    """
    if code is None:
        if reason:
            raise ValueError("a close reason needs a close code")
        return _control_frame(OP_CLOSE, b"")
    if not _code_is_valid(code):
        raise ValueError(f"close code {code} may not be sent")
    raw = reason.encode("utf-8")
    if len(raw) > MAX_CLOSE_REASON:
        cut = MAX_CLOSE_REASON
        while raw[cut] & 0xC0 == 0x80:  # back up to the start of the split character
            cut -= 1
        raw = raw[:cut]
    return _control_frame(OP_CLOSE, _pack_code(code) + raw)


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class WsEvent:
    """Base of everything :class:`FrameReader` decodes; dispatch on the subclass with ``match``."""


@dataclass(frozen=True, slots=True)
class TextMessage(WsEvent):
    """A complete text message (fragments joined, UTF-8 checked)."""

    text: str


@dataclass(frozen=True, slots=True)
class BinaryMessage(WsEvent):
    """A complete binary message (fragments joined)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Ping(WsEvent):
    """A Ping; answer with ``pong_frame(payload)``."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong(WsEvent):
    """A Pong; proof the client is alive."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class CloseReceived(WsEvent):
    """The client's Close; ``code`` is None when it sent no status. The reader stops here.

    Answer with ``close_frame(code)`` (or ``close_frame(None)``) and close the transport.
    """

    code: int | None
    reason: str


# --------------------------------------------------------------------------- reader


_from_bytes = int.from_bytes


def _unmask(payload: bytes | bytearray, mask: bytes | bytearray) -> bytes:
    """XOR with the 4-byte mask as one big integer: linear, no per-byte Python loop."""
    n = len(payload)
    key = (mask * ((n >> 2) + 1))[:n]
    return (_from_bytes(payload, "little") ^ _from_bytes(key, "little")).to_bytes(n, "little")


def _parse_close(payload: bytes) -> CloseReceived:
    if not payload:
        return CloseReceived(None, "")
    if len(payload) == 1:
        raise WsProtocolError(1002, "close payload of one byte")
    code = int.from_bytes(payload[:2], "big")
    if not _code_is_valid(code):
        raise WsProtocolError(1002, f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise WsProtocolError(1007, "close reason is not valid UTF-8") from None
    return CloseReceived(code, reason)


_Utf8Decoder = codecs.getincrementaldecoder("utf-8")


class FrameReader:
    """Decodes client frames into :class:`WsEvent` objects; feed, then drain.

    Call :meth:`receive_data` with every chunk read from the socket, in order and split
    anywhere, then :meth:`events_received` for what those bytes completed. A protocol violation
    raises :class:`WsProtocolError` from :meth:`receive_data`; events completed before the
    violation stay queued. After an error or a :class:`CloseReceived` the reader ignores all
    further data.

    A frame whose header announces a message (or a running fragmented total) over
    ``max_message_size`` is rejected with 1009 before any of its payload is buffered.
    """

    __slots__ = (
        "_buf",
        "_done",
        "_events",
        "_frag_decoder",
        "_frag_opcode",
        "_frag_parts",
        "_frag_size",
        "_frag_text",
        "_need",
        "max_message_size",
    )

    def __init__(self, max_message_size: int = 65536) -> None:
        self.max_message_size = max_message_size
        self._buf = bytearray()
        self._need = 2  # bytes ``_buf`` must hold before parsing can make progress
        self._events: list[WsEvent] = []
        self._done = False
        self._frag_opcode = 0  # 0: no fragmented message in progress
        # Made when a fragmented message starts: most connections never send one.
        self._frag_parts: list[bytes] | None = None
        self._frag_text: list[str] | None = None
        self._frag_size = 0
        self._frag_decoder: codecs.IncrementalDecoder | None = None

    @property
    def closed(self) -> bool:
        """True after a Close or a protocol error: further data is ignored."""
        return self._done

    def events_received(self) -> list[WsEvent]:
        """Return and forget the events decoded so far, oldest first."""
        events = self._events
        self._events = []
        return events

    def receive_data(self, data: bytes) -> None:
        """Take the next bytes from the client; then call :meth:`events_received`.

        Raises:
            WsProtocolError: send ``close_frame(err.close_code)`` and close the transport.
        """
        if self._done or not data:
            return
        buf: bytes | bytearray
        if self._buf:
            self._buf += data
            if len(self._buf) < self._need:
                return
            buf = self._buf
        else:
            buf = data
        try:
            pos = self._parse(buf)
        except WsProtocolError:
            self._done = True
            self._buf = bytearray()
            raise
        if buf is self._buf:
            del buf[:pos]  # everything before ``pos`` was copied out already
        elif pos < len(buf):
            self._buf = bytearray(buf[pos:])
        if self._done:
            self._buf.clear()

    def _parse(self, buf: bytes | bytearray) -> int:
        """Decode every complete frame in ``buf``; return how many bytes were consumed.

        Unfragmented text and binary frames take the short path; everything else goes through
        :meth:`_check_frame_header` and :meth:`_deliver`.
        """
        pos = 0
        end = len(buf)
        events = self._events
        while end - pos >= 2:
            b0 = buf[pos]
            length = buf[pos + 1] ^ 0x80  # 0..127 when the mask bit is set, else >= 128
            if length < 126:
                start = pos + 6
            elif length == 126:
                if end - pos < 4:
                    self._need = 4
                    return pos
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                start = pos + 8
            elif length == 127:
                if end - pos < 10:
                    self._need = 10
                    return pos
                length = _from_bytes(buf[pos + 2 : pos + 10], "big")
                if length >> 63:
                    raise WsProtocolError(1002, "frame length has its top bit set")
                start = pos + 14
            else:
                raise WsProtocolError(1002, "client frame is not masked")
            # Reject from the header alone, before any of the payload is buffered.
            if (b0 != 0x81 and b0 != 0x82) or self._frag_opcode or length > self.max_message_size:
                self._check_frame_header(b0, length)
            stop = start + length
            if stop > end:
                self._need = stop - pos
                return pos
            payload = _unmask(buf[start:stop], buf[start - 4 : start]) if length else b""
            pos = stop
            if b0 == 0x81:
                try:
                    events.append(TextMessage(payload.decode("utf-8")))
                except UnicodeDecodeError:
                    raise WsProtocolError(1007, "text message is not valid UTF-8") from None
            elif b0 == 0x82:
                events.append(BinaryMessage(payload))
            elif self._deliver(b0, payload):
                return pos
        self._need = 2
        return pos

    def _check_frame_header(self, b0: int, length: int) -> None:
        """Raise if a frame header breaks a rule; the short path skips this for plain frames."""
        if b0 & 0x70:
            raise WsProtocolError(1002, "RSV bit set but no extension was negotiated")
        opcode = b0 & 0x0F
        if opcode >= 8:
            if opcode > OP_PONG:
                raise WsProtocolError(1002, f"reserved opcode {opcode:#x}")
            if not b0 & 0x80:
                raise WsProtocolError(1002, "fragmented control frame")
            if length > MAX_CONTROL_PAYLOAD:
                raise WsProtocolError(1002, "control frame payload over 125 bytes")
        elif opcode == OP_CONT:
            if not self._frag_opcode:
                raise WsProtocolError(1002, "continuation frame without a message to continue")
            if self._frag_size + length > self.max_message_size:
                raise WsProtocolError(1009, "message over max_message_size")
        elif opcode <= OP_BINARY:
            if self._frag_opcode:
                raise WsProtocolError(1002, "new message before the last one finished")
            if length > self.max_message_size:
                raise WsProtocolError(1009, "message over max_message_size")
        else:
            raise WsProtocolError(1002, f"reserved opcode {opcode:#x}")

    def _deliver(self, b0: int, payload: bytes) -> bool:
        """Handle a frame that passed :meth:`_check_frame_header`; True when it was the Close."""
        opcode = b0 & 0x0F
        if opcode == OP_PING:
            self._events.append(Ping(payload))
        elif opcode == OP_PONG:
            self._events.append(Pong(payload))
        elif opcode == OP_CLOSE:
            self._events.append(_parse_close(payload))
            self._done = True
            return True
        elif opcode == OP_CONT:
            self._continue_fragments(payload, b0 & 0x80)
        else:
            self._start_fragments(opcode, payload)
        return False

    def _start_fragments(self, opcode: int, payload: bytes) -> None:
        self._frag_opcode = opcode
        self._frag_size = len(payload)
        if opcode == OP_TEXT:
            self._frag_decoder = _Utf8Decoder()
            self._frag_text = [self._decode_fragment(payload, final=False)]
        else:
            self._frag_parts = [payload]

    def _continue_fragments(self, payload: bytes, fin: int) -> None:
        self._frag_size += len(payload)
        if self._frag_opcode == OP_TEXT:
            text = self._frag_text
            assert text is not None
            text.append(self._decode_fragment(payload, final=bool(fin)))
            if fin:
                self._events.append(TextMessage("".join(text)))
        else:
            parts = self._frag_parts
            assert parts is not None
            parts.append(payload)
            if fin:
                self._events.append(BinaryMessage(b"".join(parts)))
        if fin:
            self._frag_opcode = 0
            self._frag_size = 0
            self._frag_parts = None
            self._frag_text = None
            self._frag_decoder = None

    def _decode_fragment(self, payload: bytes, *, final: bool) -> str:
        """Decode as fragments arrive so bad UTF-8 fails fast, not after the whole message."""
        decoder = self._frag_decoder
        assert decoder is not None
        try:
            return decoder.decode(payload, final)
        except UnicodeDecodeError:
            raise WsProtocolError(1007, "text message is not valid UTF-8") from None
