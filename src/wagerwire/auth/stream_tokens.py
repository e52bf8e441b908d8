"""Short-lived stream tokens: ``wwt1.<kid>.<payload>.<signature>``.

The payload (base64url JSON) binds the token to its key, role, plan and user, with an expiry;
the signature is HMAC-SHA256 with the signing key named by ``kid``, so signing keys rotate
without invalidating tokens already handed out. Browsers pass it as ``?token=`` (EventSource
and WebSocket cannot set headers); servers may send ``Authorization: Bearer``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass

from wagerwire.errors import Unauthorized

__all__ = ["TOKEN_PREFIX", "TOKEN_TTL_S", "TokenClaims", "sign_token", "verify_token"]

TOKEN_PREFIX = "wwt1"
TOKEN_TTL_S = 300


@dataclass(frozen=True, slots=True)
class TokenClaims:
    key_id: str
    role: str
    plan: str
    user_id: str | None
    issued_at: int
    expires_at: int
    nonce: str | None = None  # makes every token unique (single-use tokens are spent by it)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_token(claims: TokenClaims, kid: str, secret: bytes) -> str:
    payload = _b64(json.dumps({
        "k": claims.key_id, "r": claims.role, "p": claims.plan, "u": claims.user_id,
        "iat": claims.issued_at, "exp": claims.expires_at,
        **({} if claims.nonce is None else {"n": claims.nonce}),
    }, separators=(",", ":")).encode())
    head = f"{TOKEN_PREFIX}.{kid}.{payload}"
    sig = hmac.new(secret, head.encode(), hashlib.sha256).digest()
    return f"{head}.{_b64(sig)}"


def verify_token(token: str, secrets: Mapping[str, bytes], now: float) -> TokenClaims:
    """Check signature and expiry.

    Raises:
        Unauthorized: malformed, signed with an unknown key, forged, or expired.
    """
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != TOKEN_PREFIX:
        raise Unauthorized("stream token is malformed")
    _, kid, payload, sig = parts
    secret = secrets.get(kid)
    if secret is None:
        raise Unauthorized("stream token was signed with an unknown or retired key")
    expected = hmac.new(secret, f"{TOKEN_PREFIX}.{kid}.{payload}".encode(),
                        hashlib.sha256).digest()
    try:
        given = _unb64(sig)
        data = json.loads(_unb64(payload))
        claims = TokenClaims(str(data["k"]), str(data["r"]), str(data["p"]),
                             None if data.get("u") is None else str(data["u"]),
                             int(data["iat"]), int(data["exp"]),
                             None if data.get("n") is None else str(data["n"]))
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise Unauthorized("stream token is malformed") from exc
    if not hmac.compare_digest(expected, given):
        raise Unauthorized("stream token signature is invalid")
    if now >= claims.expires_at:
        raise Unauthorized("stream token expired; request a new one from POST /v1/tokens")
    return claims
