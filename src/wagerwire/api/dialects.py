"""REST routes the seed dialects rely on: TrackerSino's backfill and Stake's balance query.

* ``GET /v1-beta/games/{slug}/rounds?since=<finalized_at>&limit=`` (TrackerSino, header
  ``Authorization: Bearer``): a JSON array of round objects with exactly the stream's fields,
  ascending, ``finalized_at >= since`` (inclusive: timestamps have 1 s resolution, so a
  client de-duplicates by ``round_id``). Without ``since``: the latest ``limit`` rounds.
* ``POST /_api/graphql`` (Stake, header ``x-access-token``): the ``UserBalances`` query,
  answered as ``{"data": {"user": {"id", "balances": [{"available": {"amount",
  "currency"}, "vault": {…}}]}}}``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from wagerwire.api.deps import Services, services
from wagerwire.api.params import Digits
from wagerwire.api.responses import JsonResponse
from wagerwire.api.schemas import ErrorResponse
from wagerwire.core.messages import Message
from wagerwire.core.store import Store
from wagerwire.dialects import stake, trackersino
from wagerwire.dialects.catalog import Catalog
from wagerwire.errors import BadParameter, WagerwireError

__all__ = ["dialect_router"]

MAX_ROUNDS = 1000
_ERR = {"model": ErrorResponse}
BACKFILL_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {**_ERR, "description": "missing or invalid key"},
    403: {**_ERR, "description": "the key's plan does not include this game"},
    404: {**_ERR, "description": "unknown game"},
    422: {**_ERR, "description": "not a crash or slide game, or since/limit out of range"},
}
GRAPHQL_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "not JSON, or not the UserBalances query (GraphQL errors body)"},
    401: {**_ERR, "description": "invalid x-access-token"},
    403: {"description": "the token has no user (GraphQL errors body)"},
}
BALANCE_SCAN = 1000


def _parse_since(value: str) -> str:
    """An RFC 3339 time as the frames' ``finalized_at`` text (UTC, seconds, ``Z``)."""
    try:
        moment = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError as exc:
        raise BadParameter(
            f"since must be an RFC 3339 time like 2026-05-28T15:05:15Z, got {value[:40]!r}"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        moment = moment.astimezone(UTC)  # year 1 at +01:00 or 9999 at -01:00 falls outside
    except OverflowError as exc:
        raise BadParameter(
            f"since {value[:40]!r} is outside years 1-9999 once converted to UTC"
        ) from exc
    # Not strftime: its %Y drops the leading zeros of years before 1000 on glibc.
    return (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
            f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}Z")


def _frame(message: Message) -> dict[str, Any] | None:
    try:
        data = orjson.loads(message.data)
    except orjson.JSONDecodeError:
        return None
    return trackersino.round_frame(data) if isinstance(data, dict) else None


async def _first_offset_since(store: Store, channel: str, since: str) -> int | None:
    """Binary search for the first retained offset whose round finished at/after ``since``."""
    info = await store.channel_info(channel)
    if info is None or info.first_offset is None:
        return None
    lo, hi = info.first_offset, info.last_offset + 1
    while lo < hi:
        mid = (lo + hi) // 2
        page = await store.read(channel, mid - 1, 1)
        frame = _frame(page[0]) if page else None
        if frame is not None and frame["finalized_at"] >= since:
            hi = mid
        else:
            lo = mid + 1
    return lo if lo <= info.last_offset else None


def dialect_router(catalog: Catalog) -> APIRouter:
    """The dialects' REST routes over ``catalog``."""
    router = APIRouter(tags=["dialects"])

    @router.get(
        "/v1-beta/games/{slug}/rounds",
        summary="TrackerSino backfill: finalised rounds since a finalized_at",
        responses=BACKFILL_ERRORS,
    )
    async def trackersino_rounds(
        slug: str,
        request: Request,
        svc: Annotated[Services, Depends(services)],
        since: Annotated[str | None, Query(description="RFC 3339; inclusive")] = None,
        limit: Annotated[int, Digits, Query(ge=1, le=MAX_ROUNDS)] = 100,
    ) -> Response:
        identity = svc.gate.authenticate(dict(request.headers), None)
        games = trackersino.parse_games(slug, catalog)
        assert games is not None
        channel = svc.gate.resolve_channel(identity, games[0].channel)
        store = svc.hub.store
        if since is None:
            messages = await store.read_last(channel, limit)
        else:
            first = await _first_offset_since(store, channel, _parse_since(since))
            messages = [] if first is None else await store.read(channel, first - 1, limit)
        frames = [f for f in map(_frame, messages) if f is not None]
        return JsonResponse(frames)

    @router.post("/_api/graphql", summary="Stake GraphQL: the UserBalances query",
                 responses=GRAPHQL_ERRORS)
    async def stake_graphql(
        request: Request, svc: Annotated[Services, Depends(services)]
    ) -> Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return Response(stake.graphql_error("body is not JSON", "bad_request"), 400,
                            media_type="application/json")
        if not stake.is_balances_query(body):
            return Response(
                stake.graphql_error("only the UserBalances query is supported", "bad_request"),
                400, media_type="application/json",
            )
        try:
            identity = svc.gate.authenticate(dict(request.headers), None)
            channel = stake.user_channel(
                svc.gate.resolve_channel(identity, stake.BALANCES), identity.user_id
            )
        except WagerwireError as exc:
            return Response(stake.graphql_error(exc.message, exc.code), exc.status,
                            media_type="application/json")
        recent = await svc.hub.store.read_last(channel, BALANCE_SCAN)
        datas = []
        for message in recent:
            try:
                data = orjson.loads(message.data)
            except orjson.JSONDecodeError:
                continue
            if isinstance(data, dict):
                datas.append(data)
        user = channel.split(":")[1]
        return Response(stake.graphql_balances(user, stake.balances_from(datas)),
                        media_type="application/json")
    return router
