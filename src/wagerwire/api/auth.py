"""Auth on REST: who is calling (every route), stream tokens, and admin key management."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from wagerwire.api.bodies import json_body, parse_json_body
from wagerwire.api.deps import Services, services
from wagerwire.api.responses import JsonResponse
from wagerwire.api.schemas import ErrorResponse
from wagerwire.auth.identity import Identity
from wagerwire.errors import Forbidden, NotFound

__all__ = ["PUBLIC_PATHS", "caller", "rest_guard", "router"]

router = APIRouter(tags=["auth"])

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/",
                          "/v1/tls/certificate-hashes"})


async def rest_guard(request: Request) -> None:
    """Authenticate every REST call and count it against the plan's per-minute rate.

    Public paths (health, metrics, docs, the dashboard page and its assets) need nothing.
    """
    path = request.url.path
    if path in PUBLIC_PATHS or path.startswith("/static/"):
        return
    gate = services(request).gate
    identity = gate.authenticate(request.headers, request.query_params.get("token"))
    await gate.check_rest(identity)
    request.state.identity = identity


def caller(request: Request) -> Identity:
    """The authenticated identity of this request (set by :func:`rest_guard`)."""
    identity = getattr(request.state, "identity", None)
    if identity is None:
        identity = services(request).gate.authenticate(request.headers,
                                                       request.query_params.get("token"))
    assert isinstance(identity, Identity)
    return identity


class TokenOut(BaseModel):
    token: str = Field(description="pass as ?token= on /v1/ws and /v1/sse, or as Bearer")
    expires_at: int = Field(description="seconds since the epoch")
    expires_in: int


class KeyIn(BaseModel):
    role: str = Field(pattern="^(reader|publisher|admin)$")
    plan: str
    user_id: str | None = Field(default=None, pattern="^[a-z0-9_.-]{1,64}$")
    name: str | None = Field(default=None, max_length=200)


class KeyCreated(BaseModel):
    id: str
    key: str = Field(description="shown once; only its hash is stored")


class KeyOut(BaseModel):
    id: str
    prefix: str
    role: str
    plan: str
    user_id: str | None
    name: str | None
    created_at: float
    last_used_at: float | None
    revoked_at: float | None


class KeyList(BaseModel):
    keys: list[KeyOut]


ERRS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "missing, invalid or expired credentials"},
    403: {"model": ErrorResponse, "description": "role or plan forbids it"},
    422: {"model": ErrorResponse, "description": "a parameter is invalid"},
    429: {"model": ErrorResponse, "description": "limit reached; see Retry-After"},
    503: {"model": ErrorResponse, "description": "limits cannot be checked now (Redis down)"},
}


@router.post("/v1/tokens", response_model=TokenOut, responses=ERRS,
             summary="Exchange an API key for a 5-minute stream token")
async def create_token(request: Request, svc: Annotated[Services, Depends(services)],
                       who: Annotated[Identity, Depends(caller)]) -> Response:
    token, expires = await svc.gate.issue_token(who)
    return JsonResponse({"token": token, "expires_at": expires,
                         "expires_in": svc.gate.token_ttl})


def _admin(who: Identity) -> None:
    if who.role != "admin":
        raise Forbidden("key management needs an admin key")
    if who.via_token:  # stream tokens travel in URLs; they never manage keys
        raise Forbidden("key management needs the admin API key itself, not a stream token")


@router.post("/v1/keys", response_model=KeyCreated, responses=ERRS, summary="Create an API key",
             openapi_extra=json_body(KeyIn))
async def create_key(request: Request, svc: Annotated[Services, Depends(services)],
                     who: Annotated[Identity, Depends(caller)]) -> Response:
    _admin(who)
    body = await parse_json_body(request, KeyIn)
    record, key = svc.gate.create_key(body.role, body.plan, body.user_id, body.name)
    return JsonResponse({"id": record.id, "key": key}, status_code=201)


@router.get("/v1/keys", response_model=KeyList, responses=ERRS, summary="List API keys")
async def list_keys(svc: Annotated[Services, Depends(services)],
                    who: Annotated[Identity, Depends(caller)]) -> Response:
    _admin(who)
    return JsonResponse({"keys": [r.public() for r in svc.gate.list_keys()]})


@router.delete("/v1/keys/{key_id}",
               responses={**ERRS, 404: {"model": ErrorResponse, "description": "unknown key"}},
               summary="Revoke an API key (its open streams close within seconds)")
async def revoke_key(svc: Annotated[Services, Depends(services)],
                     who: Annotated[Identity, Depends(caller)],
                     key_id: Annotated[str, Path(max_length=64)]) -> Response:
    _admin(who)
    if not svc.gate.revoke(key_id):
        raise NotFound(f"no active key {key_id}")
    return JsonResponse({"id": key_id, "revoked": True})
