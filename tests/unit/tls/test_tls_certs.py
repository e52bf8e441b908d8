"""Certificates as values: the development certificate's rules, parsing, the hash."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tlsutil import TestCA
from wagerwire.tls import (
    MAX_HASHABLE_LIFETIME,
    CertificateError,
    dev_certificate_pem,
    material_from_pem,
)
from wagerwire.tls.source import split_pem

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def test_dev_certificate_follows_the_browser_hash_rules() -> None:
    cert, key = split_pem(dev_certificate_pem(NOW))
    m = material_from_pem(cert, key)
    pub = m.certificate.public_key()
    assert isinstance(pub, ec.EllipticCurvePublicKey) and isinstance(pub.curve, ec.SECP256R1)
    assert m.not_after - m.not_before <= MAX_HASHABLE_LIFETIME
    assert m.not_before <= NOW < m.not_after
    assert m.hashable
    sans = m.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    der = m.certificate.public_bytes(serialization.Encoding.DER)
    assert m.sha256 == hashlib.sha256(der).digest()
    assert m.server_certificate_hash() == {
        "algorithm": "sha-256", "value": base64.b64encode(hashlib.sha256(der).digest()).decode()}


def test_dev_certificate_refuses_more_than_fourteen_days() -> None:
    with pytest.raises(ValueError):
        dev_certificate_pem(NOW, lifetime=timedelta(days=15))


def test_operator_chain_and_key(tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    leaf = ca.issue()
    chain = leaf.cert.read_bytes() + ca.path.read_bytes()
    m = material_from_pem(chain, leaf.key.read_bytes())
    assert m.sha256 == hashlib.sha256(leaf.der).digest()
    assert [c.subject for c in m.chain] == [ca.cert.subject]
    assert m.hashable  # ECDSA P-256, 10 days


@pytest.mark.parametrize("case", ["mismatch", "no-cert", "no-key"])
def test_bad_pairs_are_refused(tmp_path: Path, case: str) -> None:
    ca = TestCA(tmp_path)
    one, two = ca.issue(), ca.issue()
    cert, key = one.cert.read_bytes(), one.key.read_bytes()
    if case == "mismatch":
        key = two.key.read_bytes()
    elif case == "no-cert":
        cert = b"not a certificate"
    else:
        key = cert
    with pytest.raises(CertificateError):
        material_from_pem(cert, key)
