"""Certificate sources: operator files reloaded on change, the dev certificate rotated, and
the one TLS context that hands new handshakes the current certificate (real loopback
handshakes)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tlsutil import TestCA
from wagerwire.tls import (
    CertificateError,
    CertificateMaterial,
    DevCertificateSource,
    FileCertificateSource,
    open_certificate_source,
)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def replace_files(src_cert: Path, src_key: Path, cert: Path, key: Path) -> None:
    """Install a new pair the way an operator's tool does: write aside, rename over."""
    for src, dst in ((src_cert, cert), (src_key, key)):
        tmp = dst.with_suffix(".tmp")
        tmp.write_bytes(src.read_bytes())
        os.replace(tmp, dst)


def test_file_source_reloads_on_change(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    one, two = ca.issue(), ca.issue()
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    replace_files(one.cert, one.key, cert, key)
    source = FileCertificateSource(cert, key)
    seen: list[CertificateMaterial] = []
    source.subscribe(seen.append)
    assert source.version == 1 and source.current().sha256 == hashlib.sha256(one.der).digest()
    assert source.check() is False and seen == []
    replace_files(two.cert, two.key, cert, key)
    assert source.check() is True
    assert source.version == 2 and source.current().sha256 == hashlib.sha256(two.der).digest()
    assert [m.version for m in seen] == [2]
    assert source.server_certificate_hashes() == [source.current().server_certificate_hash()]


def test_a_half_written_pair_keeps_the_previous_certificate(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    one, two = ca.issue(), ca.issue()
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    replace_files(one.cert, one.key, cert, key)
    source = FileCertificateSource(cert, key)
    cert.write_bytes(two.cert.read_bytes())  # the key is not there yet
    assert source.check() is False and source.version == 1
    key.write_bytes(two.key.read_bytes())
    assert source.check() is True and source.version == 2


def test_one_file_with_both(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    leaf = ca.issue()
    both = tmp_path / "both.pem"
    both.write_bytes(leaf.key.read_bytes() + leaf.cert.read_bytes())
    source = open_certificate_source(both)
    assert source is not None and source.mode == "files"
    assert source.current().sha256 == hashlib.sha256(leaf.der).digest()


def test_startup_errors(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        open_certificate_source(tmp_path / "missing.crt", tmp_path / "missing.key")
    with pytest.raises(CertificateError):
        open_certificate_source(None, tmp_path / "key.pem")
    (tmp_path / "junk.pem").write_text("junk")
    with pytest.raises(CertificateError):
        open_certificate_source(tmp_path / "junk.pem")
    assert open_certificate_source() is None


def test_dev_certificate_rotates_before_expiry(tmp_path: Path) -> None:
    clock = Clock()
    source = DevCertificateSource(tmp_path / "dev", clock=clock)
    seen: list[CertificateMaterial] = []
    source.subscribe(seen.append)
    first = source.current()
    assert first.hashable and source.mode == "dev" and len(source.published()) == 1
    clock.now += timedelta(days=4)
    assert source.check() is False and len(source.published()) == 1
    clock.now += timedelta(days=3)  # past half its lifetime: the next one is published
    assert source.check() is False
    published = source.published()
    assert len(published) == 2 and published[0].sha256 == first.sha256
    upcoming = published[1]
    assert upcoming.hashable and upcoming.not_before <= clock.now
    clock.now += timedelta(days=2)  # past 2/3: the prepared one is served
    assert source.check() is True
    assert source.current().sha256 == upcoming.sha256 and source.version == 2
    assert [m.sha256 for m in seen] == [upcoming.sha256]
    assert source.current().not_before <= clock.now < source.current().not_after


def test_dev_certificate_after_a_long_sleep_is_new(tmp_path: Path) -> None:
    clock = Clock()
    source = DevCertificateSource(tmp_path / "dev", clock=clock)
    first = source.current()
    clock.now += timedelta(days=30)
    assert source.check() is True
    assert source.current().sha256 != first.sha256
    assert source.current().not_before <= clock.now < source.current().not_after


def test_dev_sources_sharing_a_directory_agree(tmp_path: Path) -> None:
    one = DevCertificateSource(tmp_path / "dev")
    two = DevCertificateSource(tmp_path / "dev")
    assert one.current().sha256 == two.current().sha256
    (tmp_path / "dev" / "current.pem").unlink()
    assert one.check() is True
    assert two.check() is True and one.current().sha256 == two.current().sha256


def test_own_temporary_directory_is_removed(tmp_path: Path) -> None:
    source = DevCertificateSource()
    directory = source.directory
    assert (directory / "current.pem").exists()
    source.close()
    assert not directory.exists()


async def peer_der(port: int, ca: ssl.SSLContext | None) -> bytes:
    ctx = ca or ssl._create_unverified_context()  # noqa: S323 - looking at the dev cert
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    return bytes(der)


async def test_new_handshakes_get_the_new_certificate(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    one, two = ca.issue(), ca.issue()
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    replace_files(one.cert, one.key, cert, key)
    source = FileCertificateSource(cert, key)
    open_writers: list[asyncio.StreamWriter] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        open_writers.append(writer)
        while data := await reader.read(100):
            writer.write(data)

    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=source.ssl_context())
    port = server.sockets[0].getsockname()[1]
    try:
        assert await peer_der(port, ca.client_context()) == one.der
        reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                       ssl=ca.client_context())
        replace_files(two.cert, two.key, cert, key)
        assert source.check()
        assert await peer_der(port, ca.client_context()) == two.der
        writer.write(b"still here")  # the connection made before the reload goes on
        assert await asyncio.wait_for(reader.readexactly(10), 10) == b"still here"
        assert writer.get_extra_info("ssl_object").getpeercert(binary_form=True) == one.der
        writer.close()
    finally:
        server.close()
        for w in open_writers:
            w.close()
        await server.wait_closed()


async def test_dev_context_serves_the_hashed_certificate() -> None:
    source = DevCertificateSource()
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0,
                                        ssl=source.ssl_context())
    try:
        der = await peer_der(server.sockets[0].getsockname()[1], None)
        assert hashlib.sha256(der).digest() == source.current().sha256
    finally:
        server.close()
        await server.wait_closed()
        await source.aclose()
