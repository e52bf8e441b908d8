"""Certificates as values: parse an operator's PEM files, make a development certificate,
hash a certificate the way ``serverCertificateHashes`` wants it.

No files and no clock here: bytes and ``now`` come in, :class:`CertificateMaterial` comes out.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "DEV_HOSTS",
    "DEV_LIFETIME",
    "MAX_HASHABLE_LIFETIME",
    "CertificateError",
    "CertificateMaterial",
    "dev_certificate_pem",
    "material_from_pem",
]

#: Chromium accepts a certificate by its hash only if its whole validity is at most 14 days.
MAX_HASHABLE_LIFETIME = timedelta(days=14)
#: A development certificate's validity: under the limit, with room for back-dating.
DEV_LIFETIME = timedelta(days=13)
#: How far a development certificate's ``not_before`` lies before its creation (clock skew).
DEV_BACKDATE = timedelta(minutes=10)
DEV_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")


class CertificateError(ValueError):
    """PEM that does not hold a certificate and its matching private key."""


@dataclass(frozen=True, slots=True)
class CertificateMaterial:
    """One certificate (leaf first, then its chain) and its private key.

    ``version`` grows by one each time a source loads a different certificate;
    ``sha256`` is the SHA-256 of the leaf's DER encoding (``serverCertificateHashes``).
    """

    cert_pem: bytes  # the leaf and its chain, PEM
    key_pem: bytes  # the private key, unencrypted PKCS#8 PEM
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # the certificates after the leaf
    private_key: CertificateIssuerPrivateKeyTypes = field(repr=False)
    sha256: bytes
    version: int = 0

    @property
    def not_before(self) -> datetime:
        return self.certificate.not_valid_before_utc

    @property
    def not_after(self) -> datetime:
        return self.certificate.not_valid_after_utc

    @property
    def sha256_b64(self) -> str:
        return base64.b64encode(self.sha256).decode("ascii")

    @property
    def hashable(self) -> bool:
        """Whether a browser may accept it by hash: ECDSA P-256, validity ≤ 14 days."""
        key = self.certificate.public_key()
        p256 = isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
        return p256 and self.not_after - self.not_before <= MAX_HASHABLE_LIFETIME

    def server_certificate_hash(self) -> dict[str, str]:
        """``{"algorithm": "sha-256", "value": <base64 of the DER's SHA-256>}``."""
        return {"algorithm": "sha-256", "value": self.sha256_b64}

    def with_version(self, version: int) -> CertificateMaterial:
        return CertificateMaterial(self.cert_pem, self.key_pem, self.certificate, self.chain,
                                   self.private_key, self.sha256, version)


def material_from_pem(cert_pem: bytes, key_pem: bytes, version: int = 0) -> CertificateMaterial:
    """Parse a PEM certificate chain (leaf first) and an unencrypted PEM private key.

    Raises:
        CertificateError: no certificate, no key, an encrypted key, or a key that is not the
            leaf's.
    """
    try:
        certs = x509.load_pem_x509_certificates(cert_pem)
    except ValueError as exc:
        raise CertificateError(f"no PEM certificate: {exc}") from exc
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"no unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
                      | ed25519.Ed25519PrivateKey):
        raise CertificateError(f"unsupported private key type {type(key).__name__}")
    leaf = certs[0]
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, public) != leaf.public_key().public_bytes(der, public):
        raise CertificateError("the private key does not match the certificate")
    pkcs8 = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    leaf_der = leaf.public_bytes(serialization.Encoding.DER)
    return CertificateMaterial(
        cert_pem=b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs),
        key_pem=pkcs8, certificate=leaf, chain=tuple(certs[1:]), private_key=key,
        sha256=hashlib.sha256(leaf_der).digest(), version=version,
    )


def dev_certificate_pem(
    now: datetime,
    hosts: Sequence[str] = DEV_HOSTS,
    lifetime: timedelta = DEV_LIFETIME,
    backdate: timedelta = DEV_BACKDATE,
) -> bytes:
    """A self-signed ECDSA P-256 certificate for ``hosts`` (names and IP addresses) and its
    key, in one PEM (certificate first), valid from ``now - backdate`` for ``lifetime``
    (at most 14 days, so browsers accept it by its hash)."""
    if lifetime > MAX_HASHABLE_LIFETIME:
        raise ValueError("a development certificate may be valid for 14 days at most")
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0] if hosts else "x"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "wagerwire development")])
    start = now - backdate
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + lifetime)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
