"""Pusher sessions fed by hand: exact frames for the handshake, refusals, ping/pong and the
server's own ping, subscribe/unsubscribe, private/presence auth, client events (exclusion and
rate limit), cache channels, shutdown; the name mapping; the signatures."""

from __future__ import annotations

import hashlib

import orjson
import pytest
from dialect_fakes import FakeDirectory, drain, message, ws_payload, ws_text

from wagerwire.core.messages import Message, Position, SubscribeReply
from wagerwire.dialects.base import (
    Await,
    Awaited,
    Close,
    LatestRead,
    OpFailed,
    Publish,
    ReadLatest,
    StreamRequest,
    Subscribe,
    Subscribed,
    Unsubscribe,
)
from wagerwire.dialects.pusher import ENCODER, EXCLUDE, Pusher, PusherSession, envelope
from wagerwire.dialects.pusher_apps import (
    PusherApp,
    PusherApps,
    channel_auth,
    check_channel_auth,
    sign,
    verify_api_request,
)
from wagerwire.dialects.pusher_names import hub_channel, pusher_name
from wagerwire.errors import TooManyChannels, Unauthorized

APP = PusherApp("42", "278d425bdf160c739803", "7ad3773142a6692b25b8", max_client_events=2)
SID = "1234.1234"


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeCluster:
    """Records the session's calls; ``join`` answers a token the test feeds back."""

    def __init__(self, others: int = 0) -> None:
        self.calls: list[tuple[object, ...]] = []
        self.others = others
        self.local = 0

    def occupy(self, app: PusherApp, name: str, hub: str, delta: int) -> None:
        self.calls.append(("occupy", name, hub, delta))

    def join(self, app: PusherApp, name: str, hub: str, user_id: str, info: object,
             socket_id: str) -> object:
        self.calls.append(("join", name, user_id, info, socket_id))
        return ("joined", name)

    def leave(self, app: PusherApp, name: str, hub: str, user_id: str) -> None:
        self.calls.append(("leave", name, user_id))

    def connections(self, app: PusherApp) -> int:
        return self.local + self.others

    def connected(self, app: PusherApp, delta: int) -> None:
        self.local += delta


def dialect(clock: Clock | None = None, cluster: FakeCluster | None = None,
            apps: list[PusherApp] | None = None, max_connections: int = 0) -> Pusher:
    return Pusher(PusherApps(apps or [APP]), socket_ids=lambda: SID, clock=clock or Clock(),
                  cluster=cluster or FakeCluster(),  # type: ignore[arg-type]
                  max_connections=max_connections)


def frame(obj: object) -> bytes:
    return ws_text(orjson.dumps(obj))


def accept(query: str | None = "7", key: str = APP.key, d: Pusher | None = None
           ) -> PusherSession:
    q = {} if query is None else {"protocol": query}
    return (d or dialect()).accept(StreamRequest({"key": key}, q, {}), FakeDirectory())


def opened(d: Pusher | None = None) -> PusherSession:
    s = accept(d=d)
    s.start(0.0)
    assert drain(s) == ([], [frame({
        "event": "pusher:connection_established",
        "data": '{"socket_id":"1234.1234","activity_timeout":120}'})])
    return s


def send(s: PusherSession, obj: object) -> None:
    s.receive_text(orjson.dumps(obj).decode())


def succeeded(name: str, data: str = "{}") -> bytes:
    return frame({"event": "pusher_internal:subscription_succeeded", "channel": name,
                  "data": data})


def subscribe(s: PusherSession, name: str, **extra: object) -> Subscribe:
    send(s, {"event": "pusher:subscribe", "data": {"channel": name, **extra}})
    ops, out = drain(s)
    assert out == [] and len(ops) == 1 and isinstance(ops[0], Subscribe)
    return ops[0]


# -- names and signatures -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "Odds-NFL", "private-x_y=1@2,3;4.5", "__", "_a",
                                  "Z" * 164, "presence-" + "Ab" * 70])
def test_names_round_trip(name: str) -> None:
    hub = hub_channel("42", name)
    assert len(hub) <= 200
    if hub.startswith("pusher:"):
        assert pusher_name(hub) == name
    else:
        assert hub == "pusherh:42:" + hashlib.sha256(name.encode()).hexdigest()[:40]


def test_name_escaping_is_documented() -> None:
    assert hub_channel("42", "private-Chat=1") == "pusher:42:private-_chat_01"
    assert pusher_name("game:crash") is None


def test_channel_auth_matches_pushers_documented_vector() -> None:
    assert channel_auth(APP, SID, "private-foobar") == (
        "278d425bdf160c739803:"
        "58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4")
    assert not check_channel_auth(APP, SID, "private-foobar", "278d425bdf160c739803:00")


def test_http_api_signature() -> None:
    body = b'{"name":"e","data":"1","channels":["a"]}'
    query = {"auth_key": APP.key, "auth_timestamp": "1000", "auth_version": "1.0",
             "body_md5": hashlib.md5(body).hexdigest()}
    text = "&".join(f"{k}={v}" for k, v in sorted(query.items()))
    query["auth_signature"] = sign(APP.secret, f"POST\n/apps/42/events\n{text}")
    verify_api_request(APP, "POST", "/apps/42/events", query, body, 1000.0)
    with pytest.raises(Unauthorized, match="auth_timestamp"):
        verify_api_request(APP, "POST", "/apps/42/events", query, body, 1601.0)
    with pytest.raises(Unauthorized, match="body_md5"):
        verify_api_request(APP, "POST", "/apps/42/events", query, body + b" ", 1000.0)
    with pytest.raises(Unauthorized, match="signature"):
        verify_api_request(APP, "POST", "/apps/43/events", query, body, 1000.0)


# -- connection ------------------------------------------------------------------------------


@pytest.mark.parametrize(("query", "key", "code"), [
    ("7", "nope", 4001), (None, APP.key, 4008), ("v7", APP.key, 4006), ("4", APP.key, 4007),
])
def test_refusals_are_an_error_then_the_same_close_code(query: str | None, key: str,
                                                        code: int) -> None:
    s = accept(query, key)
    s.start(0.0)
    ops, out = drain(s)
    assert len(out) == 1 and orjson.loads(ws_payload(out[0]))["data"]["code"] == code
    assert ops == [Close(code, orjson.loads(ws_payload(out[0]))["data"]["message"][:120])]
    send(s, {"event": "pusher:ping"})
    assert drain(s) == ([], [])


@pytest.mark.parametrize("protocol", ["5", "6", "7"])
def test_protocols_5_to_7_are_accepted(protocol: str) -> None:
    s = accept(protocol)
    s.start(0.0)
    assert b"connection_established" in drain(s)[1][0]


def test_ping_pong_both_ways_and_pong_timeout() -> None:
    s = opened()
    send(s, {"event": "pusher:ping", "data": {}})
    assert drain(s) == ([], [frame({"event": "pusher:pong", "data": {}})])
    s.receive_text('{"event":"pusher:ping","data":""}')  # the Python clients' ping
    assert drain(s)[1] == [frame({"event": "pusher:pong", "data": {}})]
    s.tick(5.0)  # activity: nothing to do
    s.tick(100.0)
    assert drain(s) == ([], [])
    s.tick(125.0)  # 120 s without a client frame: the server pings
    assert drain(s) == ([], [frame({"event": "pusher:ping", "data": {}})])
    s.tick(150.0)
    assert drain(s) == ([], [])
    s.tick(155.0)  # 30 s without an answer
    assert drain(s) == ([Close(4201, "Pong reply not received")],
                        [frame({"event": "pusher:error",
                                "data": {"code": 4201, "message": "Pong reply not received"}})])


def test_pong_resets_the_heartbeat() -> None:
    s = opened()
    s.tick(125.0)
    drain(s)
    send(s, {"event": "pusher:pong", "data": {}})
    s.tick(130.0)
    s.tick(200.0)
    assert drain(s) == ([], [])


def test_shutdown_is_4200() -> None:
    s = opened()
    assert s.shutdown()
    assert drain(s) == ([Close(4200, "Server restarting")], [frame(
        {"event": "pusher:error",
         "data": {"code": 4200, "message": "Server restarting: reconnect"}})])


def test_malformed_frames_get_an_error_and_keep_the_connection() -> None:
    s = opened()
    for text in ("{", "[]", '{"event":1}'):
        s.receive_text(text)
        ops, out = drain(s)
        assert ops == [] and b'"pusher:error"' in out[0] and b'"code":null' in out[0]
    send(s, {"event": "pusher:subscribe", "data": {"channel": "bad name!"}})
    assert b"Invalid channel name" in drain(s)[1][0]


# -- subscriptions -------------------------------------------------------------------------


def test_public_subscribe_unsubscribe() -> None:
    s = opened()
    op = subscribe(s, "Odds", auth="")
    assert op == Subscribe(("pusher:42:_odds",))
    s.receive_event(Subscribed(op))
    assert drain(s) == ([], [succeeded("Odds")])
    send(s, {"event": "pusher:subscribe", "data": {"channel": "Odds"}})  # twice: ignored
    assert drain(s) == ([], [])
    send(s, {"event": "pusher:unsubscribe", "data": {"channel": "Odds"}})
    assert drain(s) == ([Unsubscribe(("pusher:42:_odds",))], [])


def test_subscribe_failure_is_a_subscription_error() -> None:
    s = opened()
    op = subscribe(s, "a")
    s.receive_event(OpFailed(op, TooManyChannels("too many")))
    assert drain(s) == ([], [frame({"event": "pusher:subscription_error", "channel": "a",
                                     "data": {"type": "SubscriptionError",
                                              "error": "too many", "status": 400}})])


def test_private_channel_needs_the_signature() -> None:
    s = opened()
    send(s, {"event": "pusher:subscribe",
             "data": {"channel": "private-foobar", "auth": APP.key + ":00"}})
    ops, out = drain(s)
    assert ops == [] and orjson.loads(ws_payload(out[0]))["data"]["type"] == "AuthError"
    op = subscribe(s, "private-foobar", auth=channel_auth(APP, SID, "private-foobar"))
    s.receive_event(Subscribed(op))
    assert drain(s)[1] == [succeeded("private-foobar")]


def test_presence_members_join_and_leave() -> None:
    cluster = FakeCluster()
    a = opened(dialect(cluster=cluster))
    cd = '{"user_id":"u1","user_info":{"name":"Ann"}}'
    op = subscribe(a, "presence-room", auth=channel_auth(APP, SID, "presence-room", cd),
                   channel_data=cd)
    a.receive_event(Subscribed(op))
    ops, out = drain(a)
    assert out == [] and ops == [Await(("joined", "presence-room"))]  # type: ignore[arg-type]
    hub = "pusher:42:presence-room"
    assert cluster.calls == [("occupy", "presence-room", hub, 1),
                             ("join", "presence-room", "u1", {"name": "Ann"}, SID)]
    # the cluster's member list (every node's) is the subscription_succeeded's
    a.receive_event(Awaited(ops[0], {"u0": None, "u1": {"name": "Ann"}}))  # type: ignore[arg-type]
    data = {"presence": {"ids": ["u0", "u1"], "hash": {"u0": None, "u1": {"name": "Ann"}},
                         "count": 2}}
    assert drain(a) == ([], [succeeded("presence-room", orjson.dumps(data).decode())])
    a.stop()  # the connection closed
    assert cluster.calls[2:] == [("leave", "presence-room", "u1"),
                                 ("occupy", "presence-room", hub, -1)]
    assert drain(a) == ([], [])


def test_presence_left_before_the_cluster_answered() -> None:
    cluster = FakeCluster()
    a = opened(dialect(cluster=cluster))
    cd = '{"user_id":7}'
    op = subscribe(a, "presence-r", auth=channel_auth(APP, SID, "presence-r", cd),
                   channel_data=cd)
    a.receive_event(Subscribed(op))
    (wait,), _ = drain(a)
    send(a, {"event": "pusher:unsubscribe", "data": {"channel": "presence-r"}})
    ops, _ = drain(a)
    assert ops == [Unsubscribe(("pusher:42:presence-r",))]
    assert ("leave", "presence-r", "7") in cluster.calls  # queued after its join
    a.receive_event(Awaited(wait, {"7": None}))  # type: ignore[arg-type]
    assert drain(a) == ([], [])  # no subscription_succeeded for a channel left


def test_presence_needs_a_user_id() -> None:
    s = opened()
    cd = '{"user_info":{}}'
    send(s, {"event": "pusher:subscribe", "data": {
        "channel": "presence-r", "auth": channel_auth(APP, SID, "presence-r", cd),
        "channel_data": cd}})
    assert b"user_id" in drain(s)[1][0]


def test_client_events_rate_limit_and_exclusion() -> None:
    clock = Clock()
    s = opened(dialect(clock))
    send(s, {"event": "client-typing", "channel": "private-c", "data": {}})
    assert b"subscribe to the channel first" in drain(s)[1][0]
    op = subscribe(s, "private-c", auth=channel_auth(APP, SID, "private-c"))
    s.receive_event(Subscribed(op))
    drain(s)
    for _ in range(2):
        send(s, {"event": "client-typing", "channel": "private-c", "data": {"on": True}})
    ops, out = drain(s)
    assert out == [] and ops == [Publish("pusher:42:private-c", {
        "event": "client-typing", "data": '{"on":true}'}, {EXCLUDE: SID})] * 2
    send(s, {"event": "client-typing", "channel": "private-c", "data": {}})
    assert drain(s) == ([], [frame({"event": "pusher:error", "data": {
        "code": 4301, "message": "Client event rejected: only 2 accepted per second"}})])
    clock.now += 1.0
    send(s, {"event": "client-typing", "channel": "private-c", "data": "x"})
    assert len(drain(s)[0]) == 1
    # the sender does not get its own event back; the others do
    mine = Message("pusher:42:private-c", 1, "e", 0, b'{"event":"client-a","data":"1"}',
                   {EXCLUDE: SID})
    other = Message("pusher:42:private-c", 2, "e", 0, b'{"event":"client-a","data":"2"}')
    frames = [ENCODER.encode(mine), ENCODER.encode(other)]
    assert s.select(frames, b"".join(frames), [mine, other]) == frames[1]
    assert s.select(frames[1:], frames[1], [other]) == frames[1]


def test_client_events_only_on_private_and_presence() -> None:
    s = opened()
    op = subscribe(s, "public")
    s.receive_event(Subscribed(op))
    drain(s)
    send(s, {"event": "client-x", "channel": "public", "data": {}})
    assert b"only private and presence" in drain(s)[1][0]


def test_cache_channel_hit_and_miss() -> None:
    s = opened()
    send(s, {"event": "pusher:subscribe", "data": {"channel": "cache-a"}})
    ops, _ = drain(s)
    assert ops == [ReadLatest(("pusher:42:cache-a",), 1)]
    s.receive_event(LatestRead(ops[0], {"pusher:42:cache-a": []}))
    ops, _ = drain(s)
    assert ops == [Subscribe(("pusher:42:cache-a",), None, announce=True)]
    s.receive_reply(SubscribeReply("pusher:42:cache-a", "e", 0, True))
    assert drain(s)[1] == [succeeded("cache-a"),
                           frame({"event": "pusher:cache_miss", "channel": "cache-a"})]
    s.receive_event(Subscribed(ops[0]))
    assert drain(s) == ([], [])

    send(s, {"event": "pusher:subscribe", "data": {"channel": "cache-b"}})
    ops, _ = drain(s)
    last = Message("pusher:42:cache-b", 7, "e", 0, b'{"event":"tick","data":"9"}')
    s.receive_event(LatestRead(ops[0], {"pusher:42:cache-b": [last]}))
    ops, _ = drain(s)
    assert ops == [Subscribe(("pusher:42:cache-b",), {"pusher:42:cache-b": Position("e", 7)},
                             announce=True)]
    s.receive_reply(SubscribeReply("pusher:42:cache-b", "e", 7, True))
    assert drain(s)[1] == [succeeded("cache-b"), frame(
        {"event": "tick", "channel": "cache-b", "data": "9"})]


# -- the shared encoder ------------------------------------------------------------------


def test_encoder_frames() -> None:
    hub = "pusher:42:_odds"
    m = message(hub, 1, envelope("price", {"a": 1}, channel="Odds", hub=hub))
    assert ENCODER.encode(m) == frame({"event": "price", "channel": "Odds",
                                       "data": '{"a":1}'})
    native = message(hub, 2, {"x": [1, 2]})
    assert ENCODER.encode(native) == frame({"event": "message", "channel": "Odds",
                                            "data": '{"x":[1,2]}'})
    long = "Q" * 164
    hashed = hub_channel("42", long)
    m = message(hashed, 1, envelope("e", "d", channel=long, hub=hashed, user_id="u"))
    assert ENCODER.encode(m) == frame({"event": "e", "channel": long, "data": "d",
                                       "user_id": "u"})


def test_signin_own_user_channel_and_terminate() -> None:
    from wagerwire.dialects.pusher_apps import user_auth

    d = dialect()
    s = opened(d)
    send(s, {"event": "pusher:subscribe", "data": {"channel": "#server-to-user-u1"}})
    assert b'"status":403' in drain(s)[1][0]  # not signed in
    ud = '{"id":"u1"}'
    send(s, {"event": "pusher:signin", "data": {"auth": user_auth(APP, SID, ud),
                                                "user_data": ud}})
    assert drain(s) == ([], [frame({"event": "pusher:signin_success",
                                    "data": {"user_data": ud}})])
    op = subscribe(s, "#server-to-user-u1")
    assert op == Subscribe(("pusher:42:_4server-to-user-u1",))
    send(s, {"event": "pusher:subscribe", "data": {"channel": "#server-to-user-u2"}})
    assert b'"status":403' in drain(s)[1][0]
    woken: list[bool] = []
    s.waker = lambda: woken.append(True)
    assert d.users.terminate("42", "u1") == 1 and woken == [True]
    assert drain(s) == ([Close(4009, "Connection terminated by the server")], [frame(
        {"event": "pusher:error",
         "data": {"code": 4009, "message": "Connection terminated by the server"}})])
    s.stop()
    assert d.users.sessions == {}


def test_signin_with_a_bad_signature_closes_4009() -> None:
    s = opened()
    send(s, {"event": "pusher:signin", "data": {"auth": APP.key + ":00",
                                                "user_data": '{"id":"u1"}'}})
    ops, out = drain(s)
    assert [type(op) for op in ops] == [Close] and ops[0].code == 4009  # type: ignore[attr-defined]
    assert b'"code":4009' in out[0]


def test_webhook_events() -> None:
    """The session reports client events and cache misses; occupancy and members are the
    cluster's (tests/unit/node/test_pusher_state.py)."""
    hooked: list[dict[str, object]] = []
    app = PusherApp("42", APP.key, APP.secret, webhook_url="http://127.0.0.1:1/h")
    d = Pusher(PusherApps([app]), socket_ids=lambda: SID, clock=Clock(),
               cluster=FakeCluster(),  # type: ignore[arg-type]
               hook=lambda a, e: hooked.append(e))
    s = opened(d)
    cd = '{"user_id":"u1"}'
    op = subscribe(s, "presence-r", auth=channel_auth(app, SID, "presence-r", cd),
                   channel_data=cd)
    s.receive_event(Subscribed(op))
    send(s, {"event": "client-x", "channel": "presence-r", "data": "1"})
    s.stop()
    assert hooked == [
        {"name": "client_event", "channel": "presence-r", "event": "client-x", "data": "1",
         "socket_id": SID, "user_id": "u1"},
    ]


def test_stored_apps_are_replaced_as_a_set_and_never_shadow_configured_ones() -> None:
    configured = PusherApp("42", "cfgkey", "cfgsecret")
    apps = PusherApps([configured])
    a, b = PusherApp("shop-1", "k1", "s1"), PusherApp("shop-2", "k2", "s2")
    assert apps.set_stored([a, b]) == []
    assert apps.get("shop-1") is a and apps.by_key["k2"] is b
    clash = [PusherApp("42", "other", "x"), PusherApp("shop-3", "cfgkey", "x")]
    assert apps.set_stored([b, *clash]) == ["42", "shop-3"]  # configured ones win
    assert "shop-1" not in apps.by_id and "k1" not in apps.by_key
    assert apps.get("42") is configured and apps.by_key["cfgkey"] is configured
    shared = PusherApp("42", "cfgkey", "from-the-store", builtin=True)
    apps.replace(shared)  # a built-in app takes the shared secret
    assert apps.get("42") is shared and apps.by_key["cfgkey"] is shared


@pytest.mark.parametrize(("apps", "cluster", "capacity", "code"), [
    ([PusherApp("42", APP.key, APP.secret, enabled=False)], FakeCluster(), 0, 4003),
    ([PusherApp("42", APP.key, APP.secret, max_connections=3)], FakeCluster(others=3), 0,
     4004),
    ([APP], FakeCluster(), 1, 4100),
])
def test_quota_and_capacity_refusals(apps: list[PusherApp], cluster: FakeCluster,
                                     capacity: int, code: int) -> None:
    d = dialect(cluster=cluster, apps=apps, max_connections=capacity)
    if code == 4100:
        opened(d)  # the node's one connection
    s = accept(d=d)
    s.start(0.0)
    ops, out = drain(s)
    assert [type(op) for op in ops] == [Close] and ops[0].code == code  # type: ignore[attr-defined]
    assert orjson.loads(ws_payload(out[0]))["data"]["code"] == code
    s.stop()
    assert d.sessions == (1 if code == 4100 else 0)


def test_app_connections_are_counted_until_the_quota() -> None:
    app = PusherApp("42", APP.key, APP.secret, max_connections=2)
    cluster = FakeCluster(others=1)
    d = dialect(cluster=cluster, apps=[app])
    first = opened(d)
    assert cluster.local == 1 and d.sessions == 1
    s = accept(d=d)
    s.start(0.0)
    assert drain(s)[0][0].code == 4004  # type: ignore[attr-defined]
    first.stop()
    assert cluster.local == 0 and d.sessions == 0
    opened(d)  # room again


def test_app_limits_from_the_config() -> None:
    from wagerwire.dialects.pusher_apps import apps_from_config
    from wagerwire.errors import BadParameter

    (app,) = apps_from_config({"a": {"key": "k", "secret": "s", "max_connections": 5,
                                     "enabled": False}})
    assert app.max_connections == 5 and not app.enabled
    for bad in (-1, "5", True):
        with pytest.raises(BadParameter, match="max_connections"):
            apps_from_config({"a": {"key": "k", "secret": "s", "max_connections": bad}})
