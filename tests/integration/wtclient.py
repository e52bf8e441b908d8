"""A small WebTransport client over aioquic for the tests (127.0.0.1 only), and a test
certificate (ECDSA P-256, 10 days: what Chromium accepts by hash).

    async with wt_connect(port) as conn:
        session = await conn.open("/wt/crash?token=…")      # status 200 or the refusal
        datagram = await session.datagram()
        stream = session.open_bidi(); stream.send_line({...}); await stream.line()
        code, reason = await session.closed()
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import ipaddress
import ssl
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, FrameType, H3Connection, H3Stream
from aioquic.h3.events import (
    DatagramReceived,
    DataReceived,
    H3Event,
    HeadersReceived,
    WebTransportStreamDataReceived,
)
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, QuicEvent
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from wagerwire.wire.webtransport import CLOSE_SESSION, CapsuleReader, decode_close

__all__ = ["TestCertificate", "WtConn", "WtSession", "WtStream", "test_certificate",
           "wt_connect"]


class TestCertificate:
    __test__ = False

    def __init__(self, days: float = 10.0) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(key, hashes.SHA256())
        )
        self.certificate = cert
        self.key = key
        self.der = cert.public_bytes(serialization.Encoding.DER)
        self.sha256 = hashlib.sha256(self.der).digest()

    def certified(self) -> tuple[Any, list[Any], Any]:
        return self.certificate, [], self.key


def test_certificate() -> TestCertificate:
    return TestCertificate()


test_certificate.__test__ = False  # type: ignore[attr-defined]


class WtStream:
    def __init__(self, session: WtSession, stream_id: int) -> None:
        self.session = session
        self.stream_id = stream_id
        self.buf = bytearray()
        self.ended = False
        self.changed = asyncio.Event()

    def send(self, data: bytes, end: bool = False) -> None:
        self.session.conn._quic.send_stream_data(self.stream_id, data, end)
        self.session.conn.transmit()

    def send_line(self, obj: Any) -> None:
        self.send(orjson.dumps(obj) + b"\n")

    async def line(self, timeout: float = 20.0) -> dict[str, Any]:
        """The next NDJSON object the server wrote on this stream."""
        async with asyncio.timeout(timeout):
            while b"\n" not in self.buf:
                if self.ended:
                    raise EOFError("stream ended")
                self.changed.clear()
                await self.changed.wait()
        line, _, rest = bytes(self.buf).partition(b"\n")
        self.buf[:] = rest
        obj = orjson.loads(line)
        assert isinstance(obj, dict)
        return obj

    async def read_all(self, timeout: float = 20.0) -> bytes:
        async with asyncio.timeout(timeout):
            while not self.ended:
                self.changed.clear()
                await self.changed.wait()
        return bytes(self.buf)


class WtSession:
    def __init__(self, conn: WtConn, session_id: int) -> None:
        self.conn = conn
        self.session_id = session_id
        self.status: int | None = None
        self.body = bytearray()
        self.ready = asyncio.Event()
        self.datagrams: asyncio.Queue[bytes] = asyncio.Queue()
        self.uni: asyncio.Queue[WtStream] = asyncio.Queue()
        self.streams: dict[int, WtStream] = {}
        self.close_info: tuple[int, str] | None = None
        self.ended = asyncio.Event()
        self.capsules = CapsuleReader()

    async def datagram(self, timeout: float = 20.0) -> bytes:
        async with asyncio.timeout(timeout):
            return await self.datagrams.get()

    def open_bidi(self) -> WtStream:
        assert self.conn.h3 is not None
        sid = self.conn.h3.create_webtransport_stream(self.session_id, is_unidirectional=False)
        # aioquic parses what comes back on a stream it opened as HTTP/3 frames: mark it a
        # WebTransport stream of this session (Chromium knows that by itself)
        h3_stream = self.conn.h3._stream.setdefault(sid, H3Stream(sid))
        h3_stream.frame_type = FrameType.WEBTRANSPORT_STREAM
        h3_stream.session_id = self.session_id
        stream = self.streams[sid] = WtStream(self, sid)
        self.conn.transmit()
        return stream

    def send_datagram(self, data: bytes) -> None:
        assert self.conn.h3 is not None
        self.conn.h3.send_datagram(self.session_id, data)
        self.conn.transmit()

    async def closed(self, timeout: float = 20.0) -> tuple[int, str] | None:
        async with asyncio.timeout(timeout):
            await self.ended.wait()
        return self.close_info

    def close(self, code: int = 0, reason: str = "") -> None:
        from wagerwire.wire.webtransport import encode_close
        assert self.conn.h3 is not None
        self.conn.h3.send_data(self.session_id, encode_close(code, reason), end_stream=True)
        self.conn.transmit()


class WtConn(QuicConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3: H3Connection | None = H3Connection(self._quic, enable_webtransport=True)
        self.sessions: dict[int, WtSession] = {}
        self.owner: dict[int, WtSession] = {}
        self.terminated = asyncio.Event()
        self.port = 0

    async def open(self, path: str, timeout: float = 20.0,
                   origin: str = "http://127.0.0.1") -> WtSession:
        assert self.h3 is not None
        sid = self._quic.get_next_available_stream_id()
        session = self.sessions[sid] = WtSession(self, sid)
        self.h3.send_headers(sid, [
            (b":method", b"CONNECT"), (b":protocol", b"webtransport"), (b":scheme", b"https"),
            (b":authority", f"127.0.0.1:{self.port}".encode()), (b":path", path.encode()),
            (b"sec-webtransport-http3-draft02", b"1"), (b"origin", origin.encode()),
        ])
        self.transmit()
        async with asyncio.timeout(timeout):
            await session.ready.wait()
        if session.status != 200:  # the refusal's body follows the head
            async with asyncio.timeout(timeout):
                await session.ended.wait()
        return session

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            self.terminated.set()
            for s in self.sessions.values():
                s.ended.set()
        if self.h3 is None:
            return
        for h3_event in self.h3.handle_event(event):
            self._h3(h3_event)

    def _h3(self, event: H3Event) -> None:  # noqa: C901
        if isinstance(event, HeadersReceived):
            session = self.sessions.get(event.stream_id)
            if session is not None:
                status = dict(event.headers).get(b":status", b"0")
                session.status = int(status)
                session.ready.set()
                if event.stream_ended:
                    session.ended.set()
        elif isinstance(event, DataReceived):
            session = self.sessions.get(event.stream_id)
            if session is None:
                return
            if session.status == 200:
                for capsule in session.capsules.feed(event.data):
                    if capsule.kind == CLOSE_SESSION:
                        session.close_info = decode_close(capsule.payload)
            else:
                session.body += event.data
            if event.stream_ended:
                session.ended.set()
        elif isinstance(event, DatagramReceived):
            session = self.sessions.get(event.stream_id)
            if session is not None:
                session.datagrams.put_nowait(event.data)
        elif isinstance(event, WebTransportStreamDataReceived):
            session = self.owner.get(event.stream_id) or self.sessions.get(event.session_id)
            if session is None:
                for s in self.sessions.values():
                    if event.stream_id in s.streams:
                        session = s
            if session is None:
                return
            self.owner[event.stream_id] = session
            stream = session.streams.get(event.stream_id)
            if stream is None:
                stream = session.streams[event.stream_id] = WtStream(session, event.stream_id)
                session.uni.put_nowait(stream)
            stream.buf += event.data
            if event.stream_ended:
                stream.ended = True
            stream.changed.set()


@contextlib.asynccontextmanager
async def wt_connect(port: int, cert: TestCertificate | None = None) -> AsyncIterator[WtConn]:
    configuration = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN,
                                      max_datagram_frame_size=65536, server_name="localhost")
    if cert is None:
        configuration.verify_mode = ssl.CERT_NONE
    else:
        configuration.cadata = cert.certificate.public_bytes(serialization.Encoding.PEM)
    async with connect("127.0.0.1", port, configuration=configuration,
                       create_protocol=WtConn, wait_connected=True) as conn:
        assert isinstance(conn, WtConn)
        conn.port = port
        yield conn
