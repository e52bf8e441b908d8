"""Where the server's certificate comes from, and how a new one reaches new handshakes.

:class:`FileCertificateSource` reads the operator's certificate and key files and reloads them
when they change on disk (``check()``: polled, and on SIGHUP). :class:`DevCertificateSource`
keeps a generated ECDSA P-256 certificate (≤ 14 days) in a directory, prepares the next one at
half its lifetime (published beside the current one from then on) and switches to it at 2/3.

Both hand out the same things (see the package docstring): the current
:class:`~wagerwire.tls.certs.CertificateMaterial`, the hashes to publish, a version counter,
change callbacks, and one stable :class:`ssl.SSLContext` whose handshakes always use the
current certificate (connections already open keep theirs).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import ssl
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from wagerwire.tls.certs import (
    DEV_HOSTS,
    DEV_LIFETIME,
    CertificateError,
    CertificateMaterial,
    dev_certificate_pem,
    material_from_pem,
)

__all__ = [
    "CertificateSource",
    "DevCertificateSource",
    "FileCertificateSource",
    "split_pem",
]

log = logging.getLogger("wagerwire.tls")

Listener = Callable[[CertificateMaterial], None]
Signature = tuple[tuple[int, int, int], ...]

DEFAULT_POLL_S = 5.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


def split_pem(data: bytes) -> tuple[bytes, bytes]:
    """(certificate blocks, private key block) of one PEM that holds both."""
    certs: list[bytes] = []
    keys: list[bytes] = []
    for block in data.split(b"-----BEGIN ")[1:]:
        block = b"-----BEGIN " + block.strip() + b"\n"
        (keys if b"PRIVATE KEY-----" in block.split(b"\n", 1)[0] else certs).append(block)
    return b"".join(certs), b"".join(keys)


def _context_for(material: CertificateMaterial, alpn: Sequence[str]) -> ssl.SSLContext:
    """A server context holding ``material`` (loaded through a private temporary file,
    since :mod:`ssl` reads certificates from files only)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    fd, name = tempfile.mkstemp(prefix="wagerwire-tls-", suffix=".pem")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(material.cert_pem + material.key_pem)
        ctx.load_cert_chain(name)
    except ssl.SSLError as exc:
        raise CertificateError(f"OpenSSL refused the certificate: {exc}") from exc
    finally:
        os.unlink(name)
    return ctx


class CertificateSource:
    """The current certificate, the hashes to publish, change notification, a TLS context.

    Subclasses implement :meth:`_refresh` (look at the files, return the material to serve and
    the ones to publish beside it) and may hold files of their own (:meth:`close`).
    """

    mode = "none"

    def __init__(self, alpn: Sequence[str] = ("http/1.1",),
                 clock: Callable[[], datetime] = _utcnow) -> None:
        self.alpn = tuple(alpn)
        self.clock = clock
        self._listeners: list[Listener] = []
        self._current: CertificateMaterial | None = None
        self._upcoming: tuple[CertificateMaterial, ...] = ()
        self._context: ssl.SSLContext | None = None  # the current material's context
        self._front: ssl.SSLContext | None = None  # the stable one handed to listeners
        self._task: asyncio.Task[None] | None = None

    # -- what callers use -----------------------------------------------------------------

    def current(self) -> CertificateMaterial:
        """The certificate new handshakes get (loaded at construction: never missing)."""
        assert self._current is not None
        return self._current

    @property
    def version(self) -> int:
        """1 for the first certificate, +1 at every change."""
        return self.current().version

    def published(self) -> tuple[CertificateMaterial, ...]:
        """The current certificate, then any prepared to replace it soon (dev rotation)."""
        return (self.current(), *self._upcoming)

    def server_certificate_hashes(self) -> list[dict[str, str]]:
        """``[{"algorithm": "sha-256", "value": <base64>}, …]`` for :meth:`published`."""
        return [m.server_certificate_hash() for m in self.published()]

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(material)`` after each change of the current certificate (in the
        thread that ran :meth:`check`, the event loop's when polled); returns an
        unsubscribe function."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return unsubscribe

    def ssl_context(self) -> ssl.SSLContext:
        """One server context for ``loop.create_server(ssl=…)``: every handshake it starts
        switches to the current certificate's context (``sni_callback``, called with or
        without SNI), so a reload needs no new listener."""
        if self._front is None:
            front = _context_for(self.current(), self.alpn)

            def pick(sslobj: ssl.SSLObject | ssl.SSLSocket, _name: str | None,
                     _ctx: ssl.SSLContext) -> None:
                latest = self._context
                if latest is not None and sslobj.context is not latest:
                    sslobj.context = latest

            front.sni_callback = pick
            self._front = front
        return self._front

    def check(self) -> bool:
        """Look for a changed certificate now; True when the current one changed.

        A certificate that fails to load is logged and the previous one kept.
        """
        previous = self._current
        try:
            material, upcoming = self._refresh(self.clock(), previous)
        except (OSError, CertificateError) as exc:
            if previous is None:
                raise
            log.warning("TLS certificate not reloaded, keeping version %d: %s",
                        previous.version, exc)
            return False
        self._upcoming = upcoming
        if previous is not None and material.sha256 == previous.sha256:
            return False
        material = material.with_version(1 if previous is None else previous.version + 1)
        try:
            context = _context_for(material, self.alpn)
        except CertificateError as exc:
            if previous is None:
                raise
            log.warning("TLS certificate not reloaded, keeping version %d: %s",
                        previous.version, exc)
            return False
        self._current, self._context = material, context
        if previous is not None:
            log.info("TLS certificate version %d loaded (sha-256 %s, valid until %s)",
                     material.version, material.sha256_b64, material.not_after.isoformat())
            for listener in list(self._listeners):
                try:
                    listener(material)
                except Exception:
                    log.exception("TLS certificate listener %r failed", listener)
        return True

    def start(self, interval: float = DEFAULT_POLL_S) -> None:
        """Poll with :meth:`check` every ``interval`` seconds in the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._poll(interval))

    async def _poll(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                self.check()
            except Exception:
                log.exception("TLS certificate check failed")

    async def aclose(self) -> None:
        """Stop polling and remove any files the source made itself."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.close()

    def close(self) -> None:
        """Remove files the source made itself (nothing for operator files)."""

    # -- what subclasses implement ------------------------------------------------------------

    def _refresh(self, now: datetime, previous: CertificateMaterial | None
                 ) -> tuple[CertificateMaterial, tuple[CertificateMaterial, ...]]:
        raise NotImplementedError


def _signature(paths: Sequence[Path]) -> Signature:
    out = []
    for path in paths:
        st = path.stat()
        out.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


class FileCertificateSource(CertificateSource):
    """The operator's PEM certificate chain and PEM private key (unencrypted; one file may
    hold both: give it as both paths). Reloaded when either file's mtime, size or inode
    changes (an atomic rename, a copy, an edit in place)."""

    mode = "files"

    def __init__(self, cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str],
                 alpn: Sequence[str] = ("http/1.1",),
                 clock: Callable[[], datetime] = _utcnow) -> None:
        super().__init__(alpn, clock)
        self.cert_path = Path(cert_path)
        self.key_path = Path(key_path)
        self._seen: Signature | None = None
        self._seen_material: CertificateMaterial | None = None
        self.check()

    def _refresh(self, now: datetime, previous: CertificateMaterial | None
                 ) -> tuple[CertificateMaterial, tuple[CertificateMaterial, ...]]:
        signature = _signature((self.cert_path, self.key_path))
        if signature == self._seen and self._seen_material is not None:
            return self._seen_material, ()
        self._seen = signature  # a broken pair is not retried until a file changes again
        cert = self.cert_path.read_bytes()
        key = self.key_path.read_bytes()
        if self.key_path == self.cert_path:
            cert, key = split_pem(cert)
        material = material_from_pem(cert, key)
        self._seen_material = material
        return material, ()


class DevCertificateSource(CertificateSource):
    """A generated certificate for development: ECDSA P-256, self-signed, valid for
    ``lifetime`` (≤ 14 days) so browsers accept it by hash (``serverCertificateHashes``).

    Kept in ``directory`` as ``current.pem`` (certificate + key); ``next.pem`` is made at half
    the lifetime and published from then on; it replaces ``current.pem`` at 2/3. Processes
    sharing the directory (workers) converge on the same files by polling; a fresh temporary
    directory is used (and removed on close) when none is given.
    """

    mode = "dev"

    def __init__(self, directory: str | os.PathLike[str] | None = None,
                 hosts: Sequence[str] = DEV_HOSTS, lifetime: timedelta = DEV_LIFETIME,
                 alpn: Sequence[str] = ("http/1.1",),
                 clock: Callable[[], datetime] = _utcnow) -> None:
        super().__init__(alpn, clock)
        self._own_dir = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="wagerwire-tls-dev-"))
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.hosts = tuple(hosts)
        self.lifetime = lifetime
        self.check()

    @property
    def current_path(self) -> Path:
        return self.directory / "current.pem"

    @property
    def next_path(self) -> Path:
        return self.directory / "next.pem"

    def _read(self, path: Path) -> CertificateMaterial | None:
        try:
            cert, key = split_pem(path.read_bytes())
            return material_from_pem(cert, key)
        except (OSError, CertificateError):
            return None

    def _write(self, path: Path, now: datetime) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".new-", suffix=".pem")
        with os.fdopen(fd, "wb") as fh:
            fh.write(dev_certificate_pem(now, self.hosts, self.lifetime))
        os.replace(tmp, path)

    def _switch_at(self, m: CertificateMaterial) -> datetime:
        return m.not_before + (m.not_after - m.not_before) * 2 / 3

    def _prepare_at(self, m: CertificateMaterial) -> datetime:
        return m.not_before + (m.not_after - m.not_before) / 2

    def _refresh(self, now: datetime, previous: CertificateMaterial | None
                 ) -> tuple[CertificateMaterial, tuple[CertificateMaterial, ...]]:
        current = self._read(self.current_path)
        if current is None or now >= self._switch_at(current) or now < current.not_before:
            upcoming = self._read(self.next_path)
            if upcoming is not None and upcoming.not_before <= now < self._switch_at(upcoming):
                with contextlib.suppress(FileNotFoundError):  # another worker was quicker
                    os.replace(self.next_path, self.current_path)
            else:
                self._write(self.current_path, now)
                self.next_path.unlink(missing_ok=True)
            current = self._read(self.current_path)
            if current is None:
                raise CertificateError(f"cannot read back {self.current_path}")
        upcoming = None
        if now >= self._prepare_at(current):
            upcoming = self._read(self.next_path)
            if upcoming is None or upcoming.not_after <= current.not_after:
                self._write(self.next_path, now)
                upcoming = self._read(self.next_path)
        return current, (upcoming,) if upcoming is not None else ()

    def close(self) -> None:
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)
