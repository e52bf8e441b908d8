"""The Pusher HTTP API and channel auth endpoint, on the hub.

Signed with the app's secret as Pusher signs (:func:`~wagerwire.dialects.pusher_apps.
verify_api_request`), so the official server libraries work unchanged but for host and port:

* ``POST /apps/{app_id}/events`` ``{"name", "data", "channels"|"channel", "socket_id"?}``
  → ``{}``: one hub message per channel (``socket_id``'s connection does not get it);
  at most :data:`MAX_CHANNELS` channels, ``data`` at most :data:`MAX_DATA_BYTES` (413),
  ``name`` at most 200 characters.
* ``POST /apps/{app_id}/batch_events`` ``{"batch": [{"channel", "name", "data",
  "socket_id"?}, …]}`` (at most :data:`MAX_BATCH`) → ``{"batch": [{}, …]}``.
* ``GET /apps/{app_id}/channels`` (``filter_by_prefix``), ``/channels/{name}``
  (``occupied``, ``subscription_count``, presence ``user_count``), ``/channels/{name}/users``
  (presence): Pusher subscriptions on every node (:class:`PusherView`).
* ``POST /apps/{app_id}/users/{user_id}/terminate_connections`` → ``{}``: the user's
  connections on every node get ``pusher:error`` 4009 and close with 4009. Also
  served as ``POST /users/{user_id}/terminate_connections`` (the app found by ``auth_key``):
  the path the PyPI ``pusher`` 3.3 library sends.
* ``POST /pusher/user-auth`` (form ``socket_id``; ``pusher:signin``) → ``{"auth",
  "user_data"}``, the user being the key's user (or the key's id).

Malformed requests are 400 ``bad_request`` (as Pusher answers them).

* ``POST /pusher/auth`` (form ``socket_id``, ``channel_name``, ``channel_data``? and
  ``app_id``? unless the server has one configured app; a wagerwire key in ``X-Api-Key`` or
  ``Authorization: Bearer`` whose plan reads the channel's hub name) → ``{"auth"}`` (presence:
  ``{"auth", "channel_data"}``, the user being the key's user or the key's id;
  ``private-encrypted-``: ``{"auth", "shared_secret"}``, the server only relays ciphertext). CORS allowed
  from any origin: the key, sent in a header, is the credential.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from wagerwire.api.deps import Services, services
from wagerwire.api.responses import JsonResponse
from wagerwire.auth.identity import Identity
from wagerwire.core.hub import Hub
from wagerwire.dialects.pusher import EXCLUDE, envelope
from wagerwire.dialects.pusher_apps import (
    PusherApp,
    PusherApps,
    channel_auth,
    shared_secret,
    user_auth,
    verify_api_request,
)
from wagerwire.dialects.pusher_names import hub_channel, valid_name
from wagerwire.errors import (
    ClientError,
    Forbidden,
    MalformedJson,
    PayloadTooLarge,
    Unauthorized,
)

__all__ = ["CORS_HEADERS", "MAX_BATCH", "MAX_CHANNELS", "MAX_DATA_BYTES", "PusherView",
           "pusher_router"]

MAX_CHANNELS = 100
MAX_DATA_BYTES = 10240
MAX_BATCH = 10
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "content-type, x-api-key, authorization",
    "Access-Control-Max-Age": "600",
}


class PusherView(Protocol):
    """Channel state and user connections of every node (the node's ``PusherState``)."""

    async def channels(self, app: PusherApp) -> dict[str, int]: ...
    async def subscriptions(self, app: PusherApp, name: str) -> int: ...
    async def members(self, app: PusherApp, name: str) -> dict[str, Any]: ...
    async def terminate(self, app: PusherApp, user_id: str) -> None: ...


def _query(request: Request) -> dict[str, str]:
    return dict(parse_qsl(request.url.query, keep_blank_values=True))


def _event(obj: object, *, batch: bool) -> tuple[str, str, list[str], str | None]:
    """(name, data, channels, socket_id) of one event body, checked."""
    if not isinstance(obj, dict):
        raise MalformedJson("an event is a JSON object with name, data and channels")
    name, data = obj.get("name"), obj.get("data")
    if not isinstance(name, str) or not 0 < len(name) <= 200:
        raise ClientError("name must be a string of 1-200 characters")
    if not isinstance(data, str):
        data = orjson.dumps(data).decode()
    if len(data.encode()) > MAX_DATA_BYTES:
        raise PayloadTooLarge(f"event data is over {MAX_DATA_BYTES} bytes")
    if batch or "channel" in obj:
        channels = [obj.get("channel")]
    else:
        channels = obj.get("channels")  # type: ignore[assignment]
    if not isinstance(channels, list) or not 0 < len(channels) <= MAX_CHANNELS:
        raise ClientError(f"channels must be a list of 1-{MAX_CHANNELS} channel names")
    for channel in channels:
        if not valid_name(channel):
            raise ClientError(f"invalid channel name {str(channel)[:80]!r}")
    socket_id = obj.get("socket_id")
    if socket_id is not None and not isinstance(socket_id, str):
        raise ClientError("socket_id must be a string")
    return name, data, channels, socket_id


async def _publish(hub: Hub, app: PusherApp, event: tuple[str, str, list[str], str | None]
                   ) -> None:
    name, data, channels, socket_id = event
    attrs = {EXCLUDE: socket_id} if socket_id else None
    for channel in channels:
        hub_name = hub_channel(app.app_id, channel)
        await hub.publish(hub_name, envelope(name, data, channel=channel, hub=hub_name),
                          attrs=attrs)


def pusher_router(apps: PusherApps, view: PusherView,
                  clock: Callable[[], float] = time.time) -> APIRouter:
    """The HTTP API of ``apps`` and ``/pusher/auth``."""
    router = APIRouter(tags=["pusher"])

    async def signed(request: Request, app_id: str) -> tuple[PusherApp, bytes]:
        app = apps.get(app_id)
        body = await request.body()
        verify_api_request(app, request.method, request.url.path, _query(request), body,
                           clock())
        return app, body

    def json_of(body: bytes) -> Any:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise MalformedJson(f"request body is not valid JSON: {exc}") from exc

    @router.post("/apps/{app_id}/events", summary="Pusher HTTP API: trigger an event")
    async def trigger(app_id: str, request: Request) -> Response:
        app, body = await signed(request, app_id)
        event = _event(json_of(body), batch=False)
        await _publish(services(request).hub, app, event)
        return JsonResponse({})

    @router.post("/apps/{app_id}/batch_events", summary="Pusher HTTP API: trigger a batch")
    async def batch(app_id: str, request: Request) -> Response:
        app, body = await signed(request, app_id)
        obj = json_of(body)
        items = obj.get("batch") if isinstance(obj, dict) else None
        if not isinstance(items, list) or not 0 < len(items) <= MAX_BATCH:
            raise ClientError(f"batch must be a list of 1-{MAX_BATCH} events")
        events = [_event(item, batch=True) for item in items]  # all checked before any
        hub = services(request).hub
        for event in events:
            await _publish(hub, app, event)
        return JsonResponse({"batch": [{} for _ in events]})

    _query_routes(router, view, signed)
    _auth_routes(router, apps)

    @router.post("/apps/{app_id}/users/{user_id}/terminate_connections",
                 summary="Pusher HTTP API: end a signed-in user's connections")
    async def terminate(app_id: str, user_id: str, request: Request) -> Response:
        app, _ = await signed(request, app_id)
        await view.terminate(app, user_id)
        return JsonResponse({})

    @router.post("/users/{user_id}/terminate_connections",
                 summary="Pusher HTTP API: terminate_connections as pusher 3.3 sends it")
    async def terminate_by_key(user_id: str, request: Request) -> Response:
        app = apps.by_key.get(_query(request).get("auth_key", ""))
        if app is None:
            raise Unauthorized("auth_key is not the key of an app of this server")
        await signed(request, app.app_id)
        await view.terminate(app, user_id)
        return JsonResponse({})

    return router


Signed = Callable[[Request, str], Awaitable[tuple[PusherApp, bytes]]]


def _query_routes(router: APIRouter, view: PusherView, signed: Signed) -> None:
    @router.get("/apps/{app_id}/channels", summary="Pusher HTTP API: occupied channels")
    async def channels(app_id: str, request: Request) -> Response:
        app, _ = await signed(request, app_id)
        query = _query(request)
        prefix = query.get("filter_by_prefix", "")
        counts = "subscription_count" in query.get("info", "").split(",")
        found = await view.channels(app)
        return JsonResponse({"channels": {
            name: ({"subscription_count": n} if counts else {})
            for name, n in sorted(found.items()) if name.startswith(prefix)
        }})

    @router.get("/apps/{app_id}/channels/{channel_name}",
                summary="Pusher HTTP API: one channel's state")
    async def channel(app_id: str, channel_name: str, request: Request) -> Response:
        app, _ = await signed(request, app_id)
        if not valid_name(channel_name):
            raise ClientError(f"invalid channel name {channel_name[:80]!r}")
        count = await view.subscriptions(app, channel_name)
        info: dict[str, Any] = {"occupied": count > 0, "subscription_count": count}
        if channel_name.startswith("presence-"):
            info["user_count"] = len(await view.members(app, channel_name))
        return JsonResponse(info)

    @router.get("/apps/{app_id}/channels/{channel_name}/users",
                summary="Pusher HTTP API: a presence channel's users")
    async def users(app_id: str, channel_name: str, request: Request) -> Response:
        app, _ = await signed(request, app_id)
        if not channel_name.startswith("presence-") or not valid_name(channel_name):
            raise ClientError("users are listed for presence- channels only")
        members = await view.members(app, channel_name)
        return JsonResponse({"users": [{"id": uid} for uid in members]})


def _auth_routes(router: APIRouter, apps: PusherApps) -> None:
    @router.options("/pusher/auth", summary="CORS preflight of the auth endpoint")
    @router.options("/pusher/user-auth", summary="CORS preflight of the user auth endpoint")
    async def auth_preflight() -> Response:
        return JsonResponse({}, headers=CORS_HEADERS)  # 200 {}: a documented JSON body

    @router.post("/pusher/user-auth", summary="Pusher user authentication (pusher:signin)")
    async def user_authentication(request: Request) -> Response:
        try:
            return JsonResponse(await _authorize_user(request, apps), headers=CORS_HEADERS)
        except (Unauthorized, Forbidden, ClientError) as exc:
            return JsonResponse(exc.to_json(), status_code=exc.status, headers=CORS_HEADERS)

    @router.post("/pusher/auth", summary="Pusher channel authorization (private, presence)")
    async def auth(request: Request) -> Response:
        try:
            return JsonResponse(await _authorize(request, apps), headers=CORS_HEADERS)
        except (Unauthorized, Forbidden, ClientError) as exc:
            return JsonResponse(exc.to_json(), status_code=exc.status, headers=CORS_HEADERS)


async def _form(request: Request) -> dict[str, Any]:
    body = await request.body()
    if len(body) > 16384:
        raise ClientError("auth request body over 16384 bytes")
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    form: dict[str, Any]
    if media == "application/json":
        try:
            form = orjson.loads(body)
        except orjson.JSONDecodeError:
            form = {}
        if not isinstance(form, dict):
            form = {}
    else:
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return {**_query(request), **form}


def _app_of(form: dict[str, Any], apps: PusherApps) -> PusherApp:
    app_id = form.get("app_id")
    configured = [a for a in apps.by_id.values() if not a.builtin]
    if isinstance(app_id, str) and app_id:
        return apps.get(app_id)
    if len(configured) == 1:
        return configured[0]
    raise ClientError("this server has several Pusher apps (or none): send app_id")


async def _key_holder(request: Request) -> tuple[Services, Identity]:
    svc: Services = services(request)
    identity = svc.gate.authenticate(dict(request.headers), None)
    if identity.key_id is None:
        raise Unauthorized("Pusher authorization needs an API key (X-Api-Key)")
    return svc, identity


async def _authorize_user(request: Request, apps: PusherApps) -> dict[str, str]:
    form = await _form(request)
    socket_id = form.get("socket_id")
    if not isinstance(socket_id, str) or not socket_id:
        raise ClientError("socket_id is required")
    app = _app_of(form, apps)
    _, identity = await _key_holder(request)
    user_data = orjson.dumps({"id": identity.user_id or identity.key_id}).decode()
    return {"auth": user_auth(app, socket_id, user_data), "user_data": user_data}


async def _authorize(request: Request, apps: PusherApps) -> dict[str, str]:
    form = await _form(request)
    socket_id, channel = form.get("socket_id"), form.get("channel_name")
    if not isinstance(socket_id, str) or not socket_id or not isinstance(channel, str):
        raise ClientError("socket_id and channel_name are required")
    if not valid_name(channel) or not channel.startswith(("private-", "presence-")):
        raise ClientError(f"{channel[:80]!r} is not a private- or presence- channel")
    app = _app_of(form, apps)
    svc, identity = await _key_holder(request)
    svc.gate.resolve_channel(identity, hub_channel(app.app_id, channel))
    if channel.startswith("private-encrypted-"):
        return {"auth": channel_auth(app, socket_id, channel),
                "shared_secret": shared_secret(app, channel)}
    if not channel.startswith("presence-"):
        return {"auth": channel_auth(app, socket_id, channel)}
    # The member is the key's user (or the key): a client may add user_info, never pick
    # another user_id.
    member: dict[str, Any] = {"user_id": identity.user_id or identity.key_id}
    given = form.get("channel_data")
    if isinstance(given, str) and given:
        try:
            info = orjson.loads(given)
        except orjson.JSONDecodeError:
            info = None
        if isinstance(info, dict) and "user_info" in info:
            member["user_info"] = info["user_info"]
    channel_data = orjson.dumps(member).decode()
    return {"auth": channel_auth(app, socket_id, channel, channel_data),
            "channel_data": channel_data}
