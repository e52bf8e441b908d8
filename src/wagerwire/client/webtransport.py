"""The WebTransport driver: the native protocol on ``https://HOST:4433/v1/wt`` over aioquic.

One subscription is one QUIC connection, one WebTransport session (an extended CONNECT,
credentials in ``Authorization``, never in the URL) and one bidirectional stream that the
client opens: newline-delimited JSON both ways, the ops and frames of ``/v1/ws`` (so the
:class:`~wagerwire.client.protocol.ClientProtocol` is the WebSocket one, ``wire="wt"``). A
subscription on the datagram lane gets its messages as datagrams instead
(:meth:`ClientProtocol.datagram_received`). A refused CONNECT is a plain HTTP/3 status with
the JSON error body; a session the server ends carries a close capsule whose code is the
WebSocket close code of the same cause, so errors map exactly as on WebSocket.

TLS: HTTP/3 is always TLS. The server's certificate is checked against the system CAs, a CA
file or the CAs of an :class:`ssl.SSLContext` (:class:`WtTrust`), or pinned by its SHA-256
(what ``GET /v1/tls/certificate-hashes`` publishes for a generated development certificate,
as a browser's ``serverCertificateHashes``): the hash is checked once the handshake is done
and before anything (credentials included) is sent. A pinned hash that does not match ends
the subscription with :class:`CertificateError` (no retry loop); with ``"served"`` pins the
hashes are fetched again once first (the development certificate rotates).

The byte formats (lines, capsules) are :mod:`wagerwire.wire.webtransport`'s, sans-I/O; this
module is only the aioquic adapter.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Unpack
from urllib.parse import urlsplit

import orjson
from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import (
    DatagramReceived,
    DataReceived,
    HeadersReceived,
    WebTransportStreamDataReceived,
)
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import (
    ConnectionTerminated,
    QuicEvent,
    StopSendingReceived,
    StreamDataReceived,
    StreamReset,
)
from cryptography.hazmat.primitives.serialization import Encoding

from wagerwire.client.connection import DriverOptions, StreamDriver
from wagerwire.client.errors import CertificateError, SdkError, TransportError
from wagerwire.client.protocol import ClientProtocol
from wagerwire.client.rest import error_from_response
from wagerwire.types import Json
from wagerwire.wire.webtransport import (
    CLOSE_SESSION,
    CapsuleReader,
    LineReader,
    LineTooLong,
    decode_close,
    encode_close,
)

__all__ = [
    "DEFAULT_PORT",
    "WebTransportDriver",
    "WtTrust",
    "parse_hash",
    "webtransport_url",
]

DEFAULT_PORT = 4433


def parse_hash(value: str | bytes) -> bytes:
    """A SHA-256 as 32 bytes, from bytes, hex (colons allowed) or base64 (as served).

    Raises:
        ValueError: not a SHA-256 in any of those forms.
    """
    if isinstance(value, bytes):
        raw = value
    else:
        text = value.strip().replace(":", "")
        try:
            raw = bytes.fromhex(text) if len(text) == 64 else base64.b64decode(text, validate=True)
        except (ValueError, binascii.Error):
            raw = b""
    if len(raw) != 32:
        raise ValueError(f"not a SHA-256 certificate hash: {value!r:.80}")
    return raw


@dataclass(frozen=True, slots=True)
class WtTrust:
    """How the WebTransport client trusts the server's certificate.

    ``ca``: a CA file (PEM) or an :class:`ssl.SSLContext` whose CA certificates (and
    ``verify_mode``) are used; ``None``: the system's CAs. ``pins``: SHA-256 hashes of the
    certificate itself; when given, the CAs are not consulted. ``served``: the pins come from
    the server's ``GET /v1/tls/certificate-hashes`` (trust on first use, for development).
    """

    ca: str | os.PathLike[str] | ssl.SSLContext | None = None
    pins: tuple[bytes, ...] = ()
    served: bool = False

    @classmethod
    def of(
        cls,
        ca: str | os.PathLike[str] | ssl.SSLContext | None,
        cert_hashes: Sequence[str | bytes] | Literal["served"] | None,
    ) -> WtTrust:
        if cert_hashes == "served":
            return cls(ca, (), True)
        if isinstance(cert_hashes, str | bytes):
            raise ValueError("cert_hashes is a list of hashes (or 'served')")
        return cls(ca, tuple(parse_hash(h) for h in cert_hashes or ()))

    def configuration(self, server_name: str, pins: Sequence[bytes]) -> QuicConfiguration:
        config = QuicConfiguration(
            is_client=True,
            alpn_protocols=H3_ALPN,
            max_datagram_frame_size=65536,
            server_name=server_name,
        )
        if pins:
            config.verify_mode = ssl.CERT_NONE  # the hash is checked after the handshake
        elif isinstance(self.ca, ssl.SSLContext):
            config.verify_mode = self.ca.verify_mode
            cas = self.ca.get_ca_certs(binary_form=True)
            if cas:
                config.cadata = "".join(ssl.DER_cert_to_PEM_cert(der) for der in cas).encode()
        elif self.ca is not None:
            config.cafile = os.fspath(self.ca)
        return config


def webtransport_url(http_base: str, port: int = DEFAULT_PORT) -> str:
    """``https://HOST:port{base path}/v1/wt`` for a server whose REST base is ``http_base``."""
    parts = urlsplit(http_base)
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"https://{host}:{port}{parts.path.rstrip('/')}/v1/wt"


# -- what the QUIC side hands the driver -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Line:
    data: bytes


@dataclass(frozen=True, slots=True)
class _Datagram:
    data: bytes


@dataclass(frozen=True, slots=True)
class _Closed:
    code: int | None  # the close capsule's code; None: no capsule (the link went away)
    reason: str


_Inbound = _Line | _Datagram | _Closed


class _WtConnection(QuicConnectionProtocol):
    """One QUIC connection holding one WebTransport session and one bidirectional stream.

    Lines of the stream, datagrams of the session and the end of either go into
    :attr:`inbox` in arrival order. The stream's bytes are read here, not by aioquic's
    HTTP/3 layer (which would parse a stream the client opened as HTTP/3 frames).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic, enable_webtransport=True)
        self.inbox: asyncio.Queue[_Inbound] = asyncio.Queue()
        self.session_id: int | None = None
        self.stream_id: int | None = None
        self.status: int | None = None
        self.retry_after: str | None = None
        self.body = bytearray()
        self.answered = asyncio.Event()  # the CONNECT's status (and a refusal's body) is in
        self.max_line = 16 * 1024 * 1024
        self.max_buffered = 10_000
        self.ended = False
        self._lines = LineReader(self.max_line)
        self._capsules = CapsuleReader()
        self._uni: dict[int, bytearray] = {}  # lane payloads too big for a datagram

    # -- driver side -----------------------------------------------------------------------

    def peer_certificate_sha256(self) -> bytes | None:
        cert = self._quic.tls._peer_certificate
        return None if cert is None else hashlib.sha256(cert.public_bytes(Encoding.DER)).digest()

    def open_session(self, authority: str, path: str, headers: dict[str, str]) -> None:
        sid = self.session_id = self._quic.get_next_available_stream_id()
        self.h3.send_headers(sid, [
            (b":method", b"CONNECT"), (b":protocol", b"webtransport"), (b":scheme", b"https"),
            (b":authority", authority.encode()), (b":path", path.encode()),
            *((k.lower().encode(), v.encode()) for k, v in headers.items()),
        ])
        self.transmit()

    def open_stream(self) -> None:
        assert self.session_id is not None
        self.stream_id = self.h3.create_webtransport_stream(self.session_id)
        self.transmit()

    def send_line(self, data: bytes) -> None:
        if self.stream_id is None or self.ended:
            return
        self._quic.send_stream_data(self.stream_id, data + b"\n")
        self.transmit()

    def close_session(self) -> None:
        """Say goodbye (close capsule with code 0) and close the connection."""
        if self.session_id is not None and not self.ended and self.status == 200:
            with contextlib.suppress(Exception):
                self.h3.send_data(self.session_id, encode_close(0, ""), end_stream=True)
        self.close()

    # -- QUIC side -------------------------------------------------------------------------

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            self._end(None, f"connection closed: {event.reason_phrase or event.error_code}")
            return
        if isinstance(event, StreamDataReceived) and event.stream_id == self.stream_id:
            self._stream_data(event.data, event.end_stream)
            return
        if isinstance(event, StreamReset | StopSendingReceived) and event.stream_id in (
            self.stream_id, self.session_id,
        ):
            self._end(None, f"stream {event.stream_id} reset ({event.error_code})")
            return
        for h3_event in self.h3.handle_event(event):
            if isinstance(h3_event, DatagramReceived):
                if h3_event.stream_id == self.session_id and not self.ended:
                    if self.inbox.qsize() < self.max_buffered:  # lossy by nature
                        self.inbox.put_nowait(_Datagram(h3_event.data))
            elif isinstance(h3_event, WebTransportStreamDataReceived):
                self._uni_data(h3_event)
            elif isinstance(h3_event, HeadersReceived) and h3_event.stream_id == self.session_id:
                head = dict(h3_event.headers)
                self.status = int(head.get(b":status", b"0") or 0)
                retry = head.get(b"retry-after")
                self.retry_after = retry.decode("latin-1") if retry else None
                if self.status == 200 or h3_event.stream_ended:
                    self.answered.set()
                if h3_event.stream_ended and self.status == 200:
                    self._end(None, "session ended")
            elif isinstance(h3_event, DataReceived) and h3_event.stream_id == self.session_id:
                self._session_data(h3_event.data, h3_event.stream_ended)

    def _uni_data(self, event: WebTransportStreamDataReceived) -> None:
        """A server-opened unidirectional stream: one lane message too big for a datagram
        (its JSON, then FIN), handed on like a datagram."""
        if event.session_id != self.session_id or self.ended:
            return
        buf = self._uni.setdefault(event.stream_id, bytearray())
        if len(buf) + len(event.data) > self.max_line:
            self._uni.pop(event.stream_id, None)
            with contextlib.suppress(Exception):
                self._quic.stop_stream(event.stream_id, 0)
            return
        buf += event.data
        if event.stream_ended:
            del self._uni[event.stream_id]
            self.inbox.put_nowait(_Datagram(bytes(buf)))

    def _session_data(self, data: bytes, ended: bool) -> None:
        if self.status != 200:  # a refusal's JSON body
            if len(self.body) < 65536:
                self.body += data[: 65536 - len(self.body)]
            if ended:
                self.answered.set()
            return
        try:
            capsules = self._capsules.feed(data)
        except ValueError:
            self._end(None, "oversized capsule from the server")
            return
        for capsule in capsules:
            if capsule.kind == CLOSE_SESSION:
                code, reason = decode_close(capsule.payload)
                self._end(code, reason)
                return
        if ended:
            self._end(None, "session ended without a close capsule")

    def _stream_data(self, data: bytes, ended: bool) -> None:
        if self.ended:
            return
        for line in self._lines.feed(data):
            if isinstance(line, LineTooLong):
                self._end(None, f"server line of {line.size}+ bytes over {self.max_line}")
                return
            self.inbox.put_nowait(_Line(line))
        if self.inbox.qsize() > self.max_buffered:
            # The application is this far behind: drop the link rather than buffer without
            # bound; the subscription resumes after the last message it delivered.
            self._end(None, f"client fell {self.inbox.qsize()} frames behind")
            self.close()
            return
        if ended:
            self._end(None, "server ended the stream")

    def _end(self, code: int | None, reason: str) -> None:
        if not self.ended:
            self.ended = True
            self.inbox.put_nowait(_Closed(code, reason))
        self.answered.set()


class WebTransportDriver(StreamDriver):
    """Drives the protocol over a WebTransport session (``wire="wt"``), see module docstring.

    Args:
        url: ``https://HOST:PORT/v1/wt``.
        trust: how the server's certificate is checked.
    """

    def __init__(
        self,
        url: str,
        protocol: ClientProtocol,
        *,
        trust: WtTrust | None = None,
        **options: Unpack[DriverOptions],
    ) -> None:
        super().__init__(protocol, **options)
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"a WebTransport URL is https://host:port/v1/wt, not {url!r}")
        self.url = url
        self.host = parts.hostname
        self.port = parts.port or DEFAULT_PORT
        self.path = parts.path or "/v1/wt"
        self.authority = parts.netloc
        self.trust = trust or WtTrust()
        self._pins: tuple[bytes, ...] = self.trust.pins
        self._conn: _WtConnection | None = None
        self._last: _WtConnection | None = None  # the connection of the current attempt

    async def send(self, frame: dict[str, Json]) -> None:
        if self._conn is not None:
            self._conn.send_line(orjson.dumps(frame))

    async def session(self) -> None:
        proto = self.protocol
        fresh = False
        if self.trust.served and not self._pins:
            try:
                self._pins = tuple(await self.rest.certificate_hashes())
            except SdkError as exc:
                self.dispatch(proto.auth_failed(exc, self.now()))  # retryable ones back off
                return
            if not self._pins:
                err: SdkError = CertificateError("the server publishes no certificate hash "
                                       "(GET /v1/tls/certificate-hashes: no TLS?)")
                self.dispatch(proto.auth_failed(err, self.now()))
                return
            fresh = True
        pins = self._pins
        config = self.trust.configuration(self.host, pins)
        try:
            await self._connect_and_read(config, pins, fresh)
        finally:
            # aioquic closes the UDP socket at the end of its own teardown, which a
            # cancellation (the owner closing the subscription) can cut short
            conn = self._last
            self._last = None
            if conn is not None and conn._transport is not None:
                conn._transport.close()

    async def _connect_and_read(self, config: QuicConfiguration, pins: Sequence[bytes],
                                fresh: bool) -> None:
        proto = self.protocol
        async with contextlib.AsyncExitStack() as stack:
            try:
                async with asyncio.timeout(self.open_timeout):
                    conn = await stack.enter_async_context(connect(
                        self.host, self.port, configuration=config,
                        create_protocol=self._made, wait_connected=True))
                    assert isinstance(conn, _WtConnection)
                    stack.callback(conn.close_session)
                    if pins and not self._pinned(conn, pins, fresh):
                        return
                    conn.open_session(self.authority, self.path,
                                      self.auth.header_for(self.credential))
                    await conn.answered.wait()
            except (OSError, TimeoutError, ConnectionError) as exc:
                failure = TransportError(f"connect failed: {exc!r}")
                self.dispatch(proto.connection_failed(failure, self.now()))
                return
            if conn.status != 200:
                err: SdkError
                if conn.status is None:
                    err = TransportError("connection lost before the CONNECT answer")
                else:
                    err = error_from_response(conn.status, bytes(conn.body), conn.retry_after)
                self.dispatch(proto.connection_failed(err, self.now()))
                return
            await self._read(conn)

    def _made(self, *args: Any, **kwargs: Any) -> _WtConnection:
        conn = self._last = _WtConnection(*args, **kwargs)
        return conn

    def _pinned(self, conn: _WtConnection, pins: Sequence[bytes], fresh: bool) -> bool:
        """Whether the certificate is a pinned one; if not, the subscription fails (or, with
        served hashes not fetched just now, retries with fresh ones)."""
        seen = conn.peer_certificate_sha256()
        if seen is not None and seen in pins:
            return True
        if self.trust.served and not fresh:
            self._pins = ()  # rotated: fetch the hashes again before the next attempt
            err: SdkError = TransportError("certificate changed; fetching its hash again")
            self.dispatch(self.protocol.connection_failed(err, self.now()))
            return False
        got = "none" if seen is None else base64.b64encode(seen).decode()
        error = CertificateError(f"the server's certificate (sha-256 {got}) is not pinned")
        self.dispatch(self.protocol.auth_failed(error, self.now()))
        return False

    async def _read(self, conn: _WtConnection) -> None:
        proto = self.protocol
        self._conn = conn
        try:
            conn.open_stream()
            self.dispatch(proto.connection_opened(self.now()))
            await self.flush()
            while self.live():
                item = await self.receive(conn.inbox.get())
                if isinstance(item, _Line):
                    self.dispatch(proto.text_received(item.data, self.now()))
                    await self.flush()
                    await self.sink.writable()
                    continue
                if isinstance(item, _Datagram):
                    self.dispatch(proto.datagram_received(item.data, self.now()))
                    await self.sink.writable()
                    continue
                if isinstance(item, _Closed):
                    self.dispatch(proto.connection_lost(item.code, item.reason, self.now()))
                await self.flush()  # after a tick (it may have queued a ping) or a close
        finally:
            self._conn = None
            self._outgoing.clear()
