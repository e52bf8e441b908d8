"""``GET /v1/tls/certificate-hashes``: what a page passes to ``new WebTransport(url,
{serverCertificateHashes})`` to trust this server's certificate without a CA.

Public (no key): anyone who connects sees the certificate anyway, and a page needs the hash
before it holds any token. Each item is ``{"algorithm": "sha-256", "value": <base64 of the
SHA-256 of the certificate's DER>}``; the page turns ``value`` into bytes. During a dev
certificate's rotation the list holds the one served now and the one prepared to replace it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from starlette.responses import Response

from wagerwire.api.deps import Services, services
from wagerwire.api.responses import JsonResponse

__all__ = ["CERTIFICATE_HASHES_PATH", "router"]

CERTIFICATE_HASHES_PATH = "/v1/tls/certificate-hashes"

router = APIRouter(tags=["tls"])


class CertificateHash(BaseModel):
    algorithm: str = Field(description='always "sha-256"')
    value: str = Field(description="base64 of the SHA-256 of the certificate's DER encoding")


class CertificateInfo(BaseModel):
    sha256: str = Field(description="base64, as in the matching hashes item")
    not_before: str = Field(description="ISO 8601, UTC")
    not_after: str = Field(description="ISO 8601, UTC")
    serving: bool = Field(description="true: new handshakes get it now; false: prepared next")
    hashable: bool = Field(description="ECDSA P-256 and valid ≤ 14 days: usable by hash")


class CertificateHashes(BaseModel):
    tls: bool = Field(description="false when this server has no TLS (then hashes is empty)")
    mode: str = Field(description='"files" (the operator\'s), "dev" (generated) or "none"')
    version: int = Field(description="+1 at every certificate change (0 without TLS)")
    hashes: list[CertificateHash] = Field(description="pass as serverCertificateHashes")
    certificates: list[CertificateInfo]


@router.get(CERTIFICATE_HASHES_PATH, response_model=CertificateHashes,
            summary="TLS certificate hashes for serverCertificateHashes (WebTransport)")
async def certificate_hashes(svc: Annotated[Services, Depends(services)]) -> Response:
    source = svc.tls
    if source is None:
        body: dict[str, object] = {"tls": False, "mode": "none", "version": 0, "hashes": [],
                                   "certificates": []}
    else:
        published = source.published()
        body = {
            "tls": True, "mode": source.mode, "version": source.version,
            "hashes": [m.server_certificate_hash() for m in published],
            "certificates": [
                {"sha256": m.sha256_b64, "not_before": m.not_before.isoformat(),
                 "not_after": m.not_after.isoformat(), "serving": i == 0,
                 "hashable": m.hashable}
                for i, m in enumerate(published)
            ],
        }
    return JsonResponse(body, headers={"Cache-Control": "no-store",
                                       "Access-Control-Allow-Origin": "*"})
