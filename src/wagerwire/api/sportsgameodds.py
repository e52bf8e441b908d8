"""SportsGameOdds REST (seed 002): the stream bootstrap and the Event lookup.

* ``GET /v2/stream/events?feed=events:live|events:upcoming&leagueID=|events:byid&eventID=``
  → ``{"success": true, "data": [Event…], "pusherKey", "pusherOptions", "channel", "user"}``;
  ``pusherOptions`` point a stock pusher-js at this server (``wsHost``/``wsPort`` from the
  request's ``Host``, plain ``ws``, the auth endpoint with the caller's key). ``channel``
  is the caller's per-key name of the feed's channel (``<feed channel>@<key id>@<tag>``,
  :func:`~wagerwire.dialects.sportsgameodds.key_channel`): subscribing to it holds one of the
  key's concurrent streams.
* ``GET /v2/events?eventIDs=a,b`` (or ``leagueID=``, ``live=true``) → ``{"success": true,
  "data": [Event…], "nextCursor": null}``.

The key goes in ``x-api-key`` (or ``apiKey=``, as the official SDK may send it). Errors are
``{"success": false, "error": "<message>"}``: 401 a missing or bad key, 403 a plan without
streaming (streams are for ``allstar``, ``internal`` and custom plans), 400 a bad feed or
missing ``leagueID``/``eventID``, 429 a limit. CORS is open (the key in a header is the
credential).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from wagerwire.api.deps import services
from wagerwire.api.domain import domain
from wagerwire.api.pusher import CORS_HEADERS
from wagerwire.api.responses import JsonResponse
from wagerwire.auth.identity import Identity
from wagerwire.dialects import sportsgameodds as sgo
from wagerwire.dialects.pusher_apps import PusherApp
from wagerwire.errors import BadParameter, Forbidden, Unauthorized, WagerwireError

__all__ = ["STREAM_PLANS", "sgo_router"]

STREAM_PLANS = sgo.STREAM_PLANS  # plus every plan not among the defaults (custom)
MAX_IDS = 100


def _error(exc: WagerwireError) -> Response:
    headers = dict(CORS_HEADERS)
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    status = 400 if isinstance(exc, BadParameter) else exc.status  # as SportsGameOdds
    return Response(orjson.dumps({"success": False, "error": exc.message}), status,
                    headers=headers, media_type="application/json")


def _ok(body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), 200, headers=CORS_HEADERS, media_type="application/json")


async def _identity(request: Request) -> tuple[Identity, str]:
    key = request.headers.get("x-api-key") or request.query_params.get("apiKey")
    if not key:
        raise Unauthorized("send your API key in the x-api-key header")
    svc = services(request)
    identity = svc.gate.authenticate({"x-api-key": key}, None)
    if identity.key_id is None:
        raise Unauthorized("send your API key in the x-api-key header")
    check = getattr(svc.gate, "check_rest", None)
    if check is not None:
        await check(identity)
    return identity, key


def _may_stream(identity: Identity) -> None:
    if sgo.may_stream(identity.plan):
        return
    raise Forbidden(f"streaming is for AllStar and custom plans; plan {identity.plan!r} "
                    "does not include it")


def sgo_router(current: Callable[[], PusherApp]) -> APIRouter:
    """The SportsGameOdds routes; streams ride the Pusher app ``current()`` answers (its
    secret may change once, to the one every node shares)."""
    router = APIRouter(tags=["sportsgameodds"])

    @router.options("/v2/stream/events", summary="CORS preflight (SportsGameOdds)")
    @router.options("/v2/events", summary="CORS preflight (SportsGameOdds)")
    async def preflight() -> Response:
        return JsonResponse({}, headers=CORS_HEADERS)  # 200 {}: a documented JSON body

    @router.get("/v2/stream/events", summary="SportsGameOdds: stream bootstrap")
    async def stream_events(request: Request) -> Response:
        try:
            identity, key = await _identity(request)
            _may_stream(identity)
            q = request.query_params
            feed_name = q.get("feed")
            channel = sgo.feed_channel(feed_name, q.get("leagueID"), q.get("eventID"))
            feed = await domain(request)
            state = feed.state
            if feed_name == "events:live":
                events = state.events(live=True)
            elif feed_name == "events:upcoming":
                events = [e for e in state.events(league=q.get("leagueID"))
                          if e.get("status") == "upcoming"]
            else:
                one = state.event(q.get("eventID") or "")
                events = [one] if one is not None else []
        except WagerwireError as exc:
            return _error(exc)
        app = current()
        host = request.url.hostname or "127.0.0.1"
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        base = f"{request.url.scheme}://{request.url.netloc}"
        return _ok({
            "success": True,
            "data": [sgo.sgo_event(e, state.odds(str(e.get("event_id", "")))) for e in events],
            "pusherKey": app.key,
            "pusherOptions": {
                "cluster": "wagerwire", "wsHost": host, "wsPort": port, "wssPort": port,
                "httpHost": host, "httpPort": port, "httpsPort": port,
                "forceTLS": request.url.scheme == "https", "enabledTransports": ["ws", "wss"],
                "disableStats": True,
                "channelAuthorization": {
                    "endpoint": f"{base}/pusher/auth?app_id={app.app_id}",
                    "transport": "ajax", "headers": {"x-api-key": key},
                },
            },
            # the key's own name for the feed's shared channel: its subscription holds
            # one of the key's concurrent streams
            "channel": sgo.key_channel(channel, identity.key_id or "", app.secret),
            "user": identity.user_id or identity.key_id,
        })

    @router.get("/v2/events", summary="SportsGameOdds: Event objects by id, league or live")
    async def events(request: Request) -> Response:
        try:
            await _identity(request)
            q = request.query_params
            state = (await domain(request)).state
            ids = [i for i in (q.get("eventIDs") or q.get("eventID") or "").split(",") if i]
            if len(ids) > MAX_IDS:
                raise BadParameter(f"at most {MAX_IDS} eventIDs per request")
            if ids:
                found = [e for e in (state.event(i) for i in ids) if e is not None]
            else:
                live = q.get("live")
                found = state.events(league=q.get("leagueID"),
                                     live=None if live is None else live == "true")
        except WagerwireError as exc:
            return _error(exc)
        return _ok({"success": True, "nextCursor": None, "data": [
            sgo.sgo_event(e, state.odds(str(e.get("event_id", "")))) for e in found[:MAX_IDS]
        ]})

    return router
