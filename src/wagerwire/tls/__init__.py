"""TLS for the listeners: the certificate, its hash for browsers, reload without restart.

API (stable; the TCP front door and the WebTransport listener both use it)::

    source = open_certificate_source(cert="cert.pem", key="key.pem")  # operator's files
    source = open_certificate_source(dev=True)        # generated ECDSA P-256, ≤ 14 days

    m = source.current()          # CertificateMaterial of the certificate new handshakes get
    m.cert_pem, m.key_pem         # bytes: leaf + chain PEM, unencrypted PKCS#8 key PEM
    m.certificate, m.chain        # cryptography x509.Certificate, tuple of the rest
    m.private_key                 # cryptography private key object
    m.sha256, m.sha256_b64        # SHA-256 of the leaf's DER (bytes / base64)
    m.version                     # 1, 2, … (+1 at every change); also source.version
    m.not_before, m.not_after     # aware UTC datetimes
    source.published()            # (current, *prepared next): hashes to publish
    source.server_certificate_hashes()  # [{"algorithm": "sha-256", "value": <b64>}, …]
    unsubscribe = source.subscribe(lambda m: ...)     # called after each change
    source.ssl_context()          # one stable ssl.SSLContext (ALPN http/1.1) for
                                  # create_server(ssl=…); new handshakes get the current cert
    source.check()                # look now (SIGHUP); True if the certificate changed
    source.start(interval=5.0)    # poll in the running loop; await source.aclose() at the end

For aioquic: ``QuicConfiguration(certificate=m.certificate,
certificate_chain=list(m.chain), private_key=m.private_key)`` per new connection (or
``load_cert_chain`` on files holding ``m.cert_pem``/``m.key_pem``); sessions already open
keep the certificate they started with.

Operator files are reloaded when their mtime, size or inode changes; a pair that does not load
(e.g. the certificate written, the key not yet) is logged and the previous one kept. The dev
certificate (``mode == "dev"``) is valid 13 days (Chromium takes at most 14 by hash), the
next one is made and published at 1/2 of its lifetime and served from 2/3.
"""

from __future__ import annotations

import os

from wagerwire.tls.certs import (
    DEV_HOSTS,
    DEV_LIFETIME,
    MAX_HASHABLE_LIFETIME,
    CertificateError,
    CertificateMaterial,
    dev_certificate_pem,
    material_from_pem,
)
from wagerwire.tls.source import CertificateSource, DevCertificateSource, FileCertificateSource

__all__ = [
    "DEV_HOSTS",
    "DEV_LIFETIME",
    "MAX_HASHABLE_LIFETIME",
    "CertificateError",
    "CertificateMaterial",
    "CertificateSource",
    "DevCertificateSource",
    "FileCertificateSource",
    "dev_certificate_pem",
    "material_from_pem",
    "open_certificate_source",
]


def open_certificate_source(
    cert: str | os.PathLike[str] | None = None,
    key: str | os.PathLike[str] | None = None,
    *,
    dev: bool = False,
    dev_dir: str | os.PathLike[str] | None = None,
) -> CertificateSource | None:
    """The operator's files (``cert`` and ``key``; ``key`` may be omitted when ``cert`` holds
    both), else a development certificate when ``dev``, else None (no TLS).

    Raises:
        CertificateError: the files do not hold a certificate and its key (OSError: unreadable).
    """
    if cert:
        return FileCertificateSource(cert, key or cert)
    if key:
        raise CertificateError("a TLS key needs its certificate (--tls-cert)")
    if dev:
        return DevCertificateSource(dev_dir or None)
    return None
