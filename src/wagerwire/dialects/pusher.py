"""Pusher Channels protocol (versions 5-7), sans-I/O: ``/app/{key}`` on the hub.

A Pusher channel ``X`` of app ``A`` is the hub channel ``pusher:A:<escaped X>``
(:mod:`wagerwire.dialects.pusher_names`). Every Pusher event is one hub message whose data is
the *envelope* ``{"event": <name>, "data": <string>, "user_id"?: <id>, "channel"?: <X>}``
(``channel`` only for hashed hub names); a message without an envelope (published on the
native API) is the event ``message`` with the message's JSON as its data string. The frame
of a message, ``{"event", "channel", "data"}`` with ``data`` a JSON *string*, is made once by
:class:`PusherEncoder` and shared by every subscriber; a connection that must not receive a
message (the sender of a client event, a socket excluded by the HTTP API's ``socket_id``)
drops it by the message's ``pusher_socket`` attribute (:meth:`PusherSession.select`).

Connection: ``pusher:connection_established`` (``data`` a JSON string with ``socket_id`` and
``activity_timeout``) right after the upgrade; refusals are a ``pusher:error`` then a close
with the same code: 4001 unknown app key, 4006 a protocol that is not a number, 4007 a
protocol outside 5-7, 4008 none, 4003 a disabled app (``enabled = false``), 4004 an app at
its ``max_connections`` (counted on every node), 4100 a node at its capacity
(``pusher_max_connections``: pusher-js retries after a back-off). ``pusher:ping`` is
answered ``pusher:pong``; after ``activity_timeout`` seconds without a client frame the
server sends ``pusher:ping`` and closes with 4201 when nothing arrives within
:data:`PONG_TIMEOUT` seconds. A server shutting down sends ``pusher:error`` 4200 and closes
with 4200 (pusher-js reconnects at once).

Channels: public; ``private-`` and ``private-encrypted-`` (``auth`` = ``key:HMAC(socket_id:
channel)``); ``presence-`` (``auth`` over ``socket_id:channel:channel_data``; members are
kept by the :class:`Cluster` for every node, joins and leaves are hub messages
``pusher_internal:member_added``/``_removed``);
``cache-`` (the channel's last event right after ``subscription_succeeded``, else
``pusher:cache_miss``). A subscription refused answers ``pusher:subscription_error``
``{"type", "error", "status"}``. Client events (``client-*``) go to the other subscribers
of a private or presence channel the sender is subscribed to, at most
``max_client_events`` per second per connection (more: ``pusher:error`` 4301, dropped).
"""

from __future__ import annotations

import hmac
import secrets
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import orjson

from wagerwire.auth.identity import Identity
from wagerwire.core.messages import Message, Position, SubscribeReply
from wagerwire.dialects import base
from wagerwire.dialects.base import (
    Await,
    Awaited,
    Close,
    Directory,
    HubEvent,
    LatestRead,
    OpFailed,
    Publish,
    ReadLatest,
    Session,
    StreamRequest,
    Subscribed,
)
from wagerwire.dialects.pusher_apps import PusherApp, PusherApps, check_channel_auth, user_auth
from wagerwire.dialects.pusher_names import (
    USER_PREFIX,
    hub_channel,
    is_hashed,
    pusher_name,
    valid_name,
)
from wagerwire.wire.websocket import text_frame

__all__ = [
    "ACTIVITY_TIMEOUT",
    "EXCLUDE",
    "Cluster",
    "Hook",
    "MAX_CLIENT_EVENT_BYTES",
    "PONG_TIMEOUT",
    "Pusher",
    "PusherEncoder",
    "PusherSession",
    "Users",
    "envelope",
    "error_frame",
    "event_payload",
]

ACTIVITY_TIMEOUT = 120  # seconds, sent in connection_established (Pusher's own value)
PONG_TIMEOUT = 30  # seconds the server waits for any frame after its pusher:ping
MAX_CLIENT_EVENT_BYTES = 10240
EXCLUDE = "pusher_socket"  # message attribute: the socket that must not receive it
PROTOCOLS = (5, 6, 7)


def envelope(event: str, data: object, *, user_id: str | None = None,
             channel: str | None = None, hub: str | None = None) -> dict[str, Any]:
    """The hub message data of one Pusher event (``data`` becomes a JSON string)."""
    env: dict[str, Any] = {
        "event": event,
        "data": data if isinstance(data, str) else orjson.dumps(data).decode(),
    }
    if user_id is not None:
        env["user_id"] = user_id
    if channel is not None and hub is not None and is_hashed(hub):
        env["channel"] = channel
    return env


def event_payload(message: Message) -> bytes:
    """The JSON text of a message's Pusher event (no WebSocket header)."""
    try:
        env = orjson.loads(message.data)
    except orjson.JSONDecodeError:
        env = None
    frame: dict[str, Any]
    if isinstance(env, dict) and isinstance(env.get("event"), str):
        data = env.get("data")
        name = env.get("channel")
        frame = {
            "event": env["event"],
            "channel": name if isinstance(name, str) else
            (pusher_name(message.channel) or message.channel),
            "data": data if isinstance(data, str) else orjson.dumps(data).decode(),
        }
        user_id = env.get("user_id")
        if isinstance(user_id, str):
            frame["user_id"] = user_id
    else:
        frame = {"event": "message",
                 "channel": pusher_name(message.channel) or message.channel,
                 "data": message.data.decode()}
    return orjson.dumps(frame)


class PusherEncoder:
    """A message as one complete WebSocket text frame, shared by every subscriber."""

    __slots__ = ()

    def encode(self, message: Message) -> bytes:
        return text_frame(event_payload(message))


ENCODER = PusherEncoder()


def _frame(obj: Mapping[str, Any]) -> bytes:
    return text_frame(orjson.dumps(obj))


def error_frame(code: int | None, message: str) -> bytes:
    """``pusher:error`` with ``data`` an object (what every client library reads)."""
    return _frame({"event": "pusher:error", "data": {"code": code, "message": message}})


PONG = _frame({"event": "pusher:pong", "data": {}})
PING = _frame({"event": "pusher:ping", "data": {}})


class Cluster(Protocol):
    """Occupancy, presence members and app connection counts of every node
    (:mod:`wagerwire.node.pusher_state`: in this process, or in Redis for a scale-out hub).

    Calls are synchronous and queued in order; the cluster sends the webhooks
    (``channel_occupied``/``vacated``, ``member_added``/``removed``) and publishes
    ``pusher_internal:member_added``/``member_removed`` when the user's first connection
    anywhere joins or its last one leaves."""

    def occupy(self, app: PusherApp, name: str, hub: str, delta: int) -> None: ...

    def join(self, app: PusherApp, name: str, hub: str, user_id: str, info: object,
             socket_id: str) -> Awaitable[dict[str, Any]]:
        """Add a connection of ``user_id``; resolves to every member (id → user_info)."""
        ...

    def leave(self, app: PusherApp, name: str, hub: str, user_id: str) -> None: ...

    def connections(self, app: PusherApp) -> int:
        """The app's open connections on every node (other nodes' as last seen)."""
        ...

    def connected(self, app: PusherApp, delta: int) -> None: ...


@dataclass(slots=True)
class Users:
    """Signed-in connections of this node: (app id, user id) → sessions."""

    sessions: dict[tuple[str, str], set[PusherSession]] = field(default_factory=dict)

    def add(self, app_id: str, user_id: str, session: PusherSession) -> None:
        self.sessions.setdefault((app_id, user_id), set()).add(session)

    def remove(self, app_id: str, user_id: str, session: PusherSession) -> None:
        found = self.sessions.get((app_id, user_id))
        if found is not None:
            found.discard(session)
            if not found:
                del self.sessions[(app_id, user_id)]

    def terminate(self, app_id: str, user_id: str) -> int:
        """End every connection of a user (``pusher:error`` 4009, close 4009); how many."""
        found = list(self.sessions.get((app_id, user_id), ()))
        for session in found:
            session.terminate()
        return len(found)


def check_user_auth(app: PusherApp, socket_id: str, user_data: str, auth: str) -> bool:
    return hmac.compare_digest(auth.encode(), user_auth(app, socket_id, user_data).encode())


Hook = Callable[[PusherApp, dict[str, Any]], None]
"""Takes one webhook event (``{"name": "channel_occupied", "channel": …}``…) of an app."""


def _socket_id() -> str:
    return f"{secrets.randbelow(10**9)}.{secrets.randbelow(10**9)}"


class Pusher:
    """``/app/{key}``: always upgrades; a bad key or protocol is refused on the socket."""

    __slots__ = ("apps", "cluster", "users", "activity_timeout", "socket_ids", "clock",
                 "encoder", "hook", "ping_interval", "max_connections", "sessions",
                 "_identities", "_batch", "_excluded")
    transport: Literal["ws", "sse"] = "ws"

    def __init__(
        self,
        apps: PusherApps,
        *,
        clock: Callable[[], float],
        cluster: Cluster,
        users: Users | None = None,
        activity_timeout: int = ACTIVITY_TIMEOUT,
        socket_ids: Callable[[], str] = _socket_id,
        hook: Hook | None = None,
        max_connections: int = 0,
    ) -> None:
        """``clock`` (monotonic seconds) paces client events; the composition root passes
        ``time.monotonic``. ``max_connections`` (0: no limit) is this node's capacity for
        Pusher connections: beyond it a connection is refused with 4100 (over capacity,
        pusher-js retries after a back-off)."""
        self.apps = apps
        self.cluster = cluster
        self.users = users if users is not None else Users()
        self.hook = hook  # webhook events of apps with a webhook_url (queued, sent elsewhere)
        self.max_connections = max_connections
        self.sessions = 0  # this node's open, accepted Pusher connections
        self._identities: dict[str, Identity] = {}
        self._batch: list[Message] | None = None  # the batch whose exclusions are known
        self._excluded: frozenset[str] | None = None
        self.activity_timeout = activity_timeout
        self.ping_interval = float(activity_timeout + PONG_TIMEOUT + 10)  # one shared float
        self.socket_ids = socket_ids
        self.clock = clock
        self.encoder = ENCODER

    def excluded(self, messages: list[Message]) -> frozenset[str] | None:
        """The sockets excluded from any message of a batch; None for none. Computed once
        per batch: every subscriber of a channel is handed the same list."""
        if messages is self._batch:
            return self._excluded
        found = None
        for message in messages:
            attrs = message.attrs
            if attrs is not None and EXCLUDE in attrs:
                found = (found or set()) | {attrs[EXCLUDE]}
        self._batch = messages  # held, so the identity test cannot meet a recycled list
        self._excluded = frozenset(found) if found else None
        return self._excluded

    def notify(self, app: PusherApp, event: dict[str, Any]) -> None:
        """Hand one webhook event of ``app`` to the hook (apps without a URL: nothing)."""
        if app.webhook_url and self.hook is not None:
            self.hook(app, event)

    def refusal(self, app: PusherApp | None, key: str, protocol: str | None
                ) -> tuple[int, str] | None:
        """Why a connection is refused (code, message), in Pusher's order; None: accepted."""
        if app is None:
            return 4001, f"App key {key[:60]} not in this cluster"
        if not app.enabled:
            return 4003, f"App {app.app_id} is disabled"
        if protocol is None:
            return 4008, "No protocol version supplied: add ?protocol=7"
        if not protocol.isdigit():
            return 4006, f"Invalid version string format: {protocol[:20]!r}"
        if int(protocol) not in PROTOCOLS:
            return 4007, f"Unsupported protocol version {protocol[:20]}; use 5 to 7"
        if app.max_connections and self.cluster.connections(app) >= app.max_connections:
            return 4004, (f"App {app.app_id} is over its connection quota "
                          f"({app.max_connections})")
        if self.max_connections and self.sessions >= self.max_connections:
            return 4100, "Over capacity: retry later"
        return None

    def accept(self, request: StreamRequest, directory: Directory) -> PusherSession:
        key = request.params.get("key", "")
        app = self.apps.by_key.get(key)
        refusal = self.refusal(app, key, request.query_one("protocol"))
        plan = app.plan if app is not None else "open"
        identity = self._identities.get(plan)
        if identity is None:  # one per plan, shared by every connection
            identity = self._identities[plan] = Identity(None, "anonymous", plan)
        return PusherSession(identity, self, app, self.socket_ids(), refusal)


_Sub = str | tuple[str]
"""A subscription's hub channel: the string once live (occupancy counted), a 1-tuple while
the hub subscribes (one dict for both: an idle connection's state stays small)."""


class PusherSession(Session):
    """One Pusher connection: its socket id, channels, presence memberships, heartbeat."""

    __slots__ = (
        "dialect", "app", "socket_id", "refusal", "subs", "members", "_pending",
        "ping_interval", "_active", "_last", "_pinged", "_window", "_count", "_cached",
        "user", "_counted",
    )
    selects = True

    def __init__(self, identity: Identity, dialect: Pusher, app: PusherApp | None,
                 socket_id: str, refusal: tuple[int, str] | None) -> None:
        super().__init__(identity, dialect.encoder)
        self.dialect = dialect
        self.app = app
        self.socket_id = socket_id
        self.refusal = refusal
        self.ping_interval = dialect.ping_interval
        # Pusher name -> hub channel (a str once live, a 1-tuple while subscribing)
        self.subs: dict[str, _Sub] = {}
        # presence name -> (user id, info); None until a presence channel is joined
        self.members: dict[str, tuple[str, object]] | None = None
        self._pending: list[tuple[str, str]] | None = None  # (kind, name) per op emitted
        self._active = False
        self._last = 0.0
        self._pinged: float | None = None
        self._window = 0.0
        self._count = 0
        self._cached: dict[str, Message | None] | None = None  # cache channel -> last event
        self.user: str | None = None  # the signed-in user's id
        self._counted = False  # counted in the app's and the node's connections

    def _hub(self, name: str) -> str | None:
        sub = self.subs.get(name)
        return sub if sub is None or isinstance(sub, str) else sub[0]

    def _live(self, name: str) -> bool:
        return isinstance(self.subs.get(name), str)

    # -- connection ----------------------------------------------------------------------

    def start(self, now: float) -> None:
        self._last = now
        if self.refusal is not None:
            code, text = self.refusal
            self.send(error_frame(code, text))
            self.emit(Close(code, text[:120]))
            return
        assert self.app is not None
        self._counted = True
        self.dialect.sessions += 1
        self.dialect.cluster.connected(self.app, 1)
        data = orjson.dumps({"socket_id": self.socket_id,
                             "activity_timeout": self.dialect.activity_timeout}).decode()
        self.send(_frame({"event": "pusher:connection_established", "data": data}))

    def tick(self, now: float) -> None:
        if self._active:
            self._active = False
            self._last = now
            self._pinged = None
            return
        if self._pinged is not None:
            if now - self._pinged >= PONG_TIMEOUT:
                self.send(error_frame(4201, "Pong reply not received"))
                self.emit(Close(4201, "Pong reply not received"))
        elif now - self._last >= self.dialect.activity_timeout:
            self._pinged = now
            self.send(PING)

    def shutdown(self) -> bool:
        self.send(error_frame(4200, "Server restarting: reconnect"))
        self.emit(Close(4200, "Server restarting"))
        return True

    def stop(self) -> None:
        app = self.app
        if app is None:
            return
        cluster = self.dialect.cluster
        for name, sub in list(self.subs.items()):
            if isinstance(sub, str):
                self._leave(name, sub)
                cluster.occupy(app, name, sub, -1)
        self.subs = {}
        if self.user is not None:
            self.dialect.users.remove(app.app_id, self.user, self)
        if self._counted:
            self._counted = False
            self.dialect.sessions -= 1
            cluster.connected(app, -1)

    def terminate(self) -> None:
        """The HTTP API ended this user's connections."""
        self.send(error_frame(4009, "Connection terminated by the server"))
        self.emit(Close(4009, "Connection terminated by the server"))
        self.wake()

    def select(self, frames: list[bytes], joined: bytes, messages: list[Message]) -> bytes:
        excluded = self.dialect.excluded(messages)
        sid = self.socket_id
        if excluded is None or sid not in excluded:
            return joined
        return b"".join(
            frame for frame, message in zip(frames, messages, strict=True)
            if message.attrs is None or message.attrs.get(EXCLUDE) != sid
        )

    # -- client frames -------------------------------------------------------------------

    def receive_text(self, text: str) -> None:
        self._active = True
        if self.app is None or self.refusal is not None:
            return
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError:
            self.send(error_frame(None, "Invalid JSON: every frame is a JSON object"))
            return
        event = obj.get("event") if isinstance(obj, dict) else None
        if not isinstance(event, str):
            self.send(error_frame(None, 'Every frame needs a string "event"'))
            return
        data = obj.get("data")
        if isinstance(data, str) and event in ("pusher:subscribe", "pusher:unsubscribe"):
            try:
                data = orjson.loads(data)
            except orjson.JSONDecodeError:
                data = None
        if event == "pusher:ping":
            self.send(PONG)
        elif event == "pusher:pong":
            pass
        elif event == "pusher:subscribe":
            self._subscribe(data if isinstance(data, dict) else {})
        elif event == "pusher:unsubscribe":
            name = data.get("channel") if isinstance(data, dict) else None
            if isinstance(name, str):
                self._unsubscribe(name)
        elif event.startswith("client-"):
            self._client_event(event, obj.get("channel"), data)
        elif event == "pusher:signin":
            self._signin(data if isinstance(data, dict) else {})
        else:
            self.send(error_frame(None, f"Unknown event {event[:60]!r}"))

    def _signin(self, data: Mapping[str, Any]) -> None:
        app = self.app
        assert app is not None
        user_data, auth = data.get("user_data"), data.get("auth")
        ok = isinstance(user_data, str) and isinstance(auth, str) and \
            check_user_auth(app, self.socket_id, user_data, auth)
        try:
            user = orjson.loads(user_data) if ok else None  # type: ignore[arg-type]
        except orjson.JSONDecodeError:
            user = None
        uid = user.get("id") if isinstance(user, dict) else None
        if not isinstance(uid, str) or not uid or self.user is not None:
            text = "Invalid signin: sign socket_id::user::user_data; user_data needs an id"
            if self.user is not None:
                text = "Already signed in"
            self.send(error_frame(4009, text))
            self.emit(Close(4009, text[:120]))
            return
        self.user = uid
        self.dialect.users.add(app.app_id, uid, self)
        self.send(_frame({"event": "pusher:signin_success", "data": {"user_data": user_data}}))

    def _sub_error(self, name: str, kind: str, error: str, status: int) -> None:
        self.send(_frame({"event": "pusher:subscription_error", "channel": name,
                          "data": {"type": kind, "error": error, "status": status}}))

    def _subscribe(self, data: Mapping[str, Any]) -> None:
        app = self.app
        assert app is not None
        name = data.get("channel")
        if not isinstance(name, str) or not valid_name(name):
            self.send(error_frame(None, "Invalid channel name: 1-164 characters of "
                                        "A-Za-z0-9_-=@,.;"))
            return
        if name in self.subs:
            return  # already subscribing or subscribed
        auth = data.get("auth")
        if name.startswith(USER_PREFIX):
            if name != USER_PREFIX + (self.user or "\0"):
                self._sub_error(name, "AuthError", "only the signed-in user subscribes to its "
                                "#server-to-user- channel", 403)
                return
        elif name.startswith("presence-"):
            channel_data = data.get("channel_data")
            if not isinstance(channel_data, str) or not check_channel_auth(
                app, self.socket_id, name, auth, channel_data
            ):
                self._sub_error(name, "AuthError", "Invalid signature for presence channel "
                                f"{name}: sign socket_id:channel:channel_data", 401)
                return
            try:
                member = orjson.loads(channel_data)
            except orjson.JSONDecodeError:
                member = None
            uid = member.get("user_id") if isinstance(member, dict) else None
            if isinstance(uid, int) and not isinstance(uid, bool):
                uid = str(uid)
            if not isinstance(uid, str) or not uid:
                self._sub_error(name, "AuthError", "channel_data must be a JSON object with "
                                "a user_id", 400)
                return
            assert isinstance(member, dict)
            if self.members is None:
                self.members = {}
            self.members[name] = (uid, member.get("user_info"))
        elif name.startswith("private-") and not check_channel_auth(
            app, self.socket_id, name, auth
        ):
            self._sub_error(name, "AuthError", f"Invalid signature for private channel {name}: "
                            "sign socket_id:channel with the app secret", 401)
            return
        name = sys.intern(name)  # one string per channel, not one per connection
        hub = sys.intern(hub_channel(app.app_id, name))
        self.subs[name] = (hub,)
        if name.startswith("cache-") or name.startswith("private-cache-") or \
                name.startswith("presence-cache-"):
            self._emit("cache", name, ReadLatest((hub,), 1))
        else:
            self._emit("sub", name, base.Subscribe((hub,)))

    def _unsubscribe(self, name: str) -> None:
        sub = self.subs.pop(name, None)
        if sub is None:
            return
        if isinstance(sub, str):
            self._leave(name, sub)
            if self.app is not None:
                self.dialect.cluster.occupy(self.app, name, sub, -1)
            self._emit("unsub", name, base.Unsubscribe((sub,)))
        elif self.members:  # still subscribing: the hub's answer unsubscribes
            self.members.pop(name, None)

    def _leave(self, name: str, hub: str) -> None:
        """Drop this connection's presence membership of a live channel (the cluster says
        whether it was the user's last connection and publishes ``member_removed``)."""
        member = self.members.pop(name, None) if self.members else None
        if member is not None and self.app is not None:
            self.dialect.cluster.leave(self.app, name, hub, member[0])

    def _client_event(self, event: str, name: object, data: object) -> None:
        app = self.app
        assert app is not None
        if not isinstance(name, str) or not self._live(name):
            self.send(error_frame(None, "Client event rejected: subscribe to the channel "
                                        "first"))
            return
        if not app.client_events:
            self.send(error_frame(None, "Client events are not enabled for this app"))
            return
        if not (name.startswith("private-") or name.startswith("presence-")) or \
                name.startswith("private-encrypted-"):
            self.send(error_frame(None, "Client event rejected: only private and presence "
                                        "channels take client events"))
            return
        now = self.dialect.clock()
        if now - self._window >= 1.0:
            self._window = now
            self._count = 0
        self._count += 1
        if self._count > app.max_client_events:
            self.send(error_frame(4301, f"Client event rejected: only {app.max_client_events} "
                                        "accepted per second"))
            return
        text = data if isinstance(data, str) else orjson.dumps(data).decode()
        if len(text) > MAX_CLIENT_EVENT_BYTES:
            self.send(error_frame(None, f"Client event rejected: data over "
                                        f"{MAX_CLIENT_EVENT_BYTES} bytes"))
            return
        hub = self.subs[name]
        assert isinstance(hub, str)
        member = self.members.get(name) if self.members else None
        env = envelope(event, text, user_id=member[0] if member else None, channel=name, hub=hub)
        self._emit("pub", name, Publish(hub, env, {EXCLUDE: self.socket_id}))
        hook: dict[str, Any] = {"name": "client_event", "channel": name, "event": event,
                                "data": text, "socket_id": self.socket_id}
        if member is not None:
            hook["user_id"] = member[0]
        self.dialect.notify(app, hook)

    def _emit(self, kind: str, name: str, op: base.DialectOp) -> None:
        if self._pending is None:
            self._pending = []
        self._pending.append((kind, name))
        self.emit(op)

    # -- hub results ---------------------------------------------------------------------

    def receive_event(self, event: HubEvent) -> None:
        if not self._pending:
            return
        kind, name = self._pending.pop(0)
        match event:
            case LatestRead(op=op, messages=messages):
                hub = op.channels[0]
                if self._hub(name) != hub:
                    return
                recent = messages.get(hub, ())
                since: dict[str, Position] | None = None
                if recent:
                    since = {hub: recent[-1].position}
                if self._cached is None:
                    self._cached = {}
                self._cached[name] = recent[-1] if recent else None
                self._emit("cached", name, base.Subscribe((hub,), since, announce=True))
            case Subscribed(op=op):
                self._subscribed(name, op)
            case Awaited(value=value):
                self._joined(name, value)
            case OpFailed(error=error):
                if kind in ("sub", "cache", "cached"):
                    sub = self.subs.get(name)
                    if sub is not None and not isinstance(sub, str):
                        self.subs.pop(name, None)
                        if self.members:
                            self.members.pop(name, None)
                        self._sub_error(name, "SubscriptionError", error.message, error.status)
                elif kind == "join":
                    self._sub_error(name, "SubscriptionError", error.message, error.status)
                elif kind == "pub":
                    self.send(error_frame(None, f"Event not published: {error.message}"))
            case _:
                pass

    def receive_reply(self, reply: SubscribeReply) -> None:
        """A cache channel is subscribed (before anything after its last event is replayed):
        ``subscription_succeeded``, then that event or ``pusher:cache_miss``."""
        if not self._pending:
            return
        kind, name = self._pending[0]
        if kind != "cached" or self.subs.get(name) != (reply.channel,):
            return
        self._succeeded(name, reply.channel)
        last = self._cached.pop(name, None) if self._cached else None
        if last is not None:
            self.send(self.encoder.encode(last))
        else:
            self.send(_frame({"event": "pusher:cache_miss", "channel": name}))
            if self.app is not None:
                self.dialect.notify(self.app, {"name": "cache_miss", "channel": name})

    def _subscribed(self, name: str, op: base.Subscribe) -> None:
        hub = op.channels[0]
        if self._cached:
            self._cached.pop(name, None)
        if self.subs.get(name) != (hub,):  # unsubscribed meanwhile, or live (cache channel)
            if name not in self.subs:
                self._emit("unsub", name, base.Unsubscribe((hub,)))
            return
        self._succeeded(name, hub)

    def _succeeded(self, name: str, hub: str) -> None:
        """The hub subscribed: the channel is live (counted); presence waits for the
        cluster's member list before its ``subscription_succeeded``."""
        self.subs[name] = hub
        app = self.app
        assert app is not None
        cluster = self.dialect.cluster
        cluster.occupy(app, name, hub, 1)
        member = self.members.get(name) if self.members else None
        if member is not None:
            uid, info = member
            self._emit("join", name, Await(cluster.join(app, name, hub, uid, info,
                                                        self.socket_id)))
        else:
            self.send(_frame({"event": "pusher_internal:subscription_succeeded",
                              "channel": name, "data": "{}"}))

    def _joined(self, name: str, members: object) -> None:
        if not self._live(name) or not self.members or name not in self.members:
            return  # left before the cluster answered (its leave is queued after the join)
        hash_ = dict(members) if isinstance(members, Mapping) else {}
        data = orjson.dumps({"presence": {"ids": list(hash_), "hash": hash_,
                                          "count": len(hash_)}}).decode()
        self.send(_frame({"event": "pusher_internal:subscription_succeeded",
                          "channel": name, "data": data}))
