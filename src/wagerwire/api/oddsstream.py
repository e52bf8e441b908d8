"""OddsStream's REST routes (seed 003), every one with ``X-Api-Key`` (any key form).

* ``POST /api/stream/token`` → ``{"token", "expires_in"}``: a signed, single-use stream token
  valid for 5 minutes; each call counts against the key's daily token quota (Free: 30, every
  attempt counts: 429 with ``Retry-After`` beyond), 403 for a plan without WebSocket (Pro).
* ``GET /api/sports``: sports with their competitions' codes; ``GET /api/bookmakers``.
* ``GET /api/odds?sport=&competition=&bookmaker=``: every current takeable price as the
  stream's frame object (same filters, same names and codes).
* ``GET /api/value-bets?sport=&competition=&bookmaker=&min_edge=``: best prices above the
  consensus fair price by more than ``min_edge`` (default 0.02; see :mod:`wagerwire.dialects.oddsstream_rest`).

Errors are the server's JSON errors: 401 missing or bad key, 403 a plan that excludes the
odds channels or streaming, 422 an unknown or over-long filter value, 429 a quota or rate.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from wagerwire.api.auth import caller
from wagerwire.api.deps import services
from wagerwire.api.domain import domain
from wagerwire.api.responses import JsonResponse
from wagerwire.api.schemas import ErrorResponse
from wagerwire.auth.identity import Identity
from wagerwire.dialects.oddsstream import OddsCatalog, OddsFilters
from wagerwire.dialects.oddsstream_rest import (
    VALUE_EDGE,
    bookmaker_list,
    current_prices,
    sport_list,
    value_bet_frames,
)
from wagerwire.domain.feed import DomainFeed
from wagerwire.errors import Unauthorized

__all__ = ["oddsstream_router"]

_ERR = {"model": ErrorResponse}
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {**_ERR, "description": "missing or invalid X-Api-Key"},
    403: {**_ERR, "description": "the key's plan does not include the odds"},
    422: {**_ERR, "description": "unknown or over-long sport, competition or bookmaker"},
    429: {**_ERR, "description": "the plan's REST rate; see Retry-After"},
}
TOKEN_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {**_ERR, "description": "missing or invalid X-Api-Key"},
    403: {**_ERR, "description": "the key's plan does not include WebSocket (Pro)"},
    429: {**_ERR, "description": "daily token quota (Free: 30); see Retry-After"},
}
Filter = Annotated[str | None, Query(description="a name or code from /api/sports, "
                                                 "/api/bookmakers")]


class StreamTokenOut(BaseModel):
    token: str = Field(description="pass as ?token= on /api/stream; one connection, 5 minutes")
    expires_in: int


def _keyed(request: Request) -> Identity:
    identity = caller(request)
    if identity.key_id is None:
        raise Unauthorized("send your API key (os_live_…) as X-Api-Key")
    return identity


def _readable(request: Request) -> Identity:
    identity = _keyed(request)
    services(request).gate.resolve_channel(identity, "odds:*")  # Forbidden off the plan
    return identity


def oddsstream_router(catalog: OddsCatalog) -> APIRouter:
    """The OddsStream REST routes over ``catalog``."""
    router = APIRouter(prefix="/api", tags=["oddsstream"])

    def filters(request: Request) -> OddsFilters:
        return OddsFilters.parse(dict(request.query_params), catalog)

    @router.post("/stream/token", response_model=StreamTokenOut, responses=TOKEN_ERRORS,
                 summary="OddsStream: exchange the API key for a 5-minute stream token")
    async def stream_token(request: Request) -> Response:
        identity = _keyed(request)
        gate = services(request).gate
        gate.check_stream(identity)
        token, _ = await gate.issue_token(identity)
        return JsonResponse({"token": token, "expires_in": gate.token_ttl})

    @router.get("/sports", responses=ERRORS, summary="OddsStream: sports and competition codes")
    async def sports(request: Request) -> Response:
        _readable(request)
        return JsonResponse(sport_list(catalog))

    @router.get("/bookmakers", responses=ERRORS, summary="OddsStream: bookmaker names")
    async def bookmakers(request: Request) -> Response:
        _readable(request)
        return JsonResponse(bookmaker_list(catalog))

    @router.get("/odds", responses=ERRORS,
                summary="OddsStream: current prices as stream frames, same filters")
    async def odds(
        request: Request, feed: Annotated[DomainFeed, Depends(domain)],
        sport: Filter = None, competition: Filter = None, bookmaker: Filter = None,
    ) -> Response:
        _readable(request)
        return JsonResponse(current_prices(feed.state, filters(request), catalog))

    @router.get("/value-bets", responses=ERRORS,
                summary="OddsStream: best prices above the consensus fair price (edge over 2 %)")
    async def value_bets(
        request: Request, feed: Annotated[DomainFeed, Depends(domain)],
        sport: Filter = None, competition: Filter = None, bookmaker: Filter = None,
        min_edge: Annotated[float, Query(
            ge=0, le=1, allow_inf_nan=False,
            description="edge threshold, fair_probability × odds − 1 (0.02 = 2 %)")
        ] = VALUE_EDGE,
    ) -> Response:  # fmt: skip
        _readable(request)
        return JsonResponse(value_bet_frames(feed.state, filters(request), catalog, min_edge))

    return router
