"""Upstream sources of a running node: health for everyone, management for admin keys.

* ``GET /v1/sources/health`` — per source: state, last message age, lag, counters.
* ``GET /v1/sources`` (admin) — every source of the node (configured and stored) with its
  settings (credentials masked) and, where the answering process runs it, its health.
* ``POST /v1/sources`` (admin) — start a source (body: one ``[[sources]]`` entry as JSON).
  It is saved in the node's store (credentials included, masked in listings) and started
  again when the node restarts; a name ``[[sources]]`` of the config has is refused (422).
  Resume positions are saved in the store for every source.
* ``DELETE /v1/sources/{name}`` (admin) — stop a source; one added at run time is deleted
  from the store too, a configured one starts again with the node.

The manager is ``Services.extra["connectors"]`` (set by the composition root); without it
(no ``[[sources]]`` feature) the routes answer 404.
"""

from __future__ import annotations

from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from wagerwire.api.auth import caller
from wagerwire.api.bodies import json_body, parse_json_body
from wagerwire.api.deps import Services, services
from wagerwire.api.responses import JsonResponse
from wagerwire.api.schemas import ErrorResponse
from wagerwire.auth.identity import Identity
from wagerwire.connectors.sources import SourceConfig, parse_source
from wagerwire.errors import Forbidden, NotFound

__all__ = ["Manager", "router"]

router = APIRouter(tags=["sources"])


class Manager(Protocol):
    """What the routes need of :class:`wagerwire.connectors.runner.ConnectorManager`."""

    async def listing(self) -> list[dict[str, Any]]: ...

    def health(self) -> list[dict[str, Any]]: ...

    async def create(self, config: SourceConfig) -> None: ...

    async def delete(self, name: str) -> None: ...


class SourceIn(BaseModel):
    name: str
    url: str
    dialect: str
    credentials: str | None = None
    subscriptions: list[str] = Field(default_factory=list)
    channels: dict[str, str] = Field(default_factory=dict)
    group: str = ""
    start: str = "earliest"
    options: dict[str, Any] = Field(default_factory=dict)


_ERRS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "missing, invalid or expired credentials"},
    403: {"model": ErrorResponse, "description": "needs an admin API key"},
    404: {"model": ErrorResponse, "description": "no such source (or no connectors)"},
    422: {"model": ErrorResponse, "description": "the source entry is invalid"},
    503: {"model": ErrorResponse, "description": "the store (the book of sources) is down"},
}


def _manager(svc: Services) -> Manager:
    manager = svc.extra.get("connectors")
    if manager is None:
        raise NotFound("this node runs no upstream connectors")
    return manager  # type: ignore[no-any-return]


def _admin(who: Identity) -> None:
    if who.role != "admin":
        raise Forbidden("managing sources needs an admin key")
    if who.via_token:
        raise Forbidden("managing sources needs the admin API key itself, not a stream token")


@router.get("/v1/sources/health", responses=_ERRS, summary="Health of every upstream source")
async def sources_health(svc: Annotated[Services, Depends(services)]) -> Response:
    return JsonResponse({"sources": _manager(svc).health()})


@router.get("/v1/sources", responses=_ERRS, summary="Upstream sources (admin)")
async def list_sources(svc: Annotated[Services, Depends(services)],
                       who: Annotated[Identity, Depends(caller)]) -> Response:
    _admin(who)
    return JsonResponse({"sources": await _manager(svc).listing()})


@router.post("/v1/sources", responses=_ERRS, summary="Start an upstream source (admin)",
             openapi_extra=json_body(SourceIn), status_code=201)
async def add_source(request: Request, svc: Annotated[Services, Depends(services)],
                     who: Annotated[Identity, Depends(caller)]) -> Response:
    _admin(who)
    manager = _manager(svc)
    body = await parse_json_body(request, SourceIn)
    config = parse_source(body.model_dump())
    await manager.create(config)
    return JsonResponse({"source": config.public()}, status_code=201)


@router.delete("/v1/sources/{name}", responses=_ERRS, summary="Stop an upstream source (admin)")
async def remove_source(svc: Annotated[Services, Depends(services)],
                        who: Annotated[Identity, Depends(caller)],
                        name: Annotated[str, Path(max_length=40)]) -> Response:
    _admin(who)
    await _manager(svc).delete(name)
    return JsonResponse({"name": name, "removed": True})
