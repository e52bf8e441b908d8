"""Pusher protocol (issue 14) against a live server with real client libraries: pusher-js
8 under Node receives hub publishes and HTTP API events, private and presence channels through
``/pusher/auth``, client events, cache channels; the official ``pusher`` Python server
library publishes; refusals (unknown key, bad signature, stale timestamp) answer as Pusher.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from dialect_harness import Live, run_node, running_server, subscribed, wait_until
from websockets.asyncio.client import connect

from wagerwire.dialects.pusher import envelope
from wagerwire.dialects.pusher_names import hub_channel

APP_ID, KEY, SECRET = "42", "278d425bdf160c739803", "7ad3773142a6692b25b8"
APPS = {APP_ID: {"key": KEY, "secret": SECRET}}


def client_js(port: int, body: str, key: str = KEY, auth_headers: str = "{}") -> str:
    """A Node ES module with a pusher-js client aimed at the live server (plain ws)."""
    return f"""
import Pusher from "pusher-js";
const pusher = new Pusher({json.dumps(key)}, {{
  cluster: "local", wsHost: "127.0.0.1", wsPort: {port}, forceTLS: false,
  enabledTransports: ["ws"], disableStats: true,
  channelAuthorization: {{ endpoint: "http://127.0.0.1:{port}/pusher/auth",
                           transport: "ajax", headers: {auth_headers} }},
}});
const out = (obj) => console.log(JSON.stringify(obj));
pusher.connection.bind("state_change", (s) => out({{state: s.current}}));
pusher.connection.bind("error", (e) => out({{error: e?.data ?? e?.error?.data ?? null}}));
{body}
"""


def lines_json(lines: list[str]) -> list[Any]:
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


async def publish(server: Live, channel: str, event: str, data: Any) -> None:
    hub = hub_channel(APP_ID, channel)
    await server.hub.publish(hub, envelope(event, data, channel=channel, hub=hub))


async def test_pusher_js_receives_a_hub_publish_on_a_public_channel(tmp_path: Any) -> None:
    async with running_server(tmp_path, pusher_apps=APPS) as server:
        child = await run_node(client_js(server.port, """
const ch = pusher.subscribe("Odds-NFL");
ch.bind("pusher:subscription_succeeded", () => out({subscribed: ch.name}));
ch.bind("price", (data) => out({price: data}));
"""))
        try:
            await child.wait_lines(lambda ls: any('"subscribed"' in x for x in ls),
                                   what="subscription_succeeded")
            await publish(server, "Odds-NFL", "price", {"odds": "1.91", "n": 1})
            lines = await child.wait_lines(lambda ls: any('"price"' in x for x in ls),
                                           what="price event")
            got = lines_json(lines)
            assert {"state": "connected"} in got
            assert {"price": {"odds": "1.91", "n": 1}} in got
            # the hub channel is the documented escaping of the Pusher name
            assert server.hub.local_subscriber_counts()["pusher:42:_odds-_n_f_l"] == 1
        finally:
            await child.stop()


async def test_unknown_key_is_refused_with_4001_and_no_retry(tmp_path: Any) -> None:
    async with running_server(tmp_path, pusher_apps=APPS) as server:
        child = await run_node(client_js(server.port, "", key="nope"))
        try:
            lines = await child.wait_lines(
                lambda ls: any('"disconnected"' in x or '"failed"' in x for x in ls),
                what="refused")
            errors = [x["error"] for x in lines_json(lines) if "error" in x]
            assert any(e and e.get("code") == 4001 for e in errors), lines
            await asyncio.sleep(1.5)
            assert sum('"connecting"' in x for x in child.lines) <= 1  # no retry
            assert not any('"connected"' in x for x in child.lines)
        finally:
            await child.stop()


async def test_raw_handshake_ping_and_protocol_errors(tmp_path: Any) -> None:
    async with running_server(tmp_path, pusher_apps=APPS) as server:
        base = f"ws://127.0.0.1:{server.port}/app/{KEY}"
        async with connect(base + "?protocol=7&client=js&version=8.6.0") as ws:
            hello = json.loads(await ws.recv())
            assert hello["event"] == "pusher:connection_established"
            data = json.loads(hello["data"])
            assert data["activity_timeout"] == 120
            assert all(p.isdigit() for p in data["socket_id"].split("."))
            await ws.send('{"event":"pusher:ping","data":{}}')
            assert json.loads(await ws.recv()) == {"event": "pusher:pong", "data": {}}
            await ws.send('{"event":"pusher:subscribe","data":{"channel":"private-x"}}')
            err = json.loads(await ws.recv())
            assert err["event"] == "pusher:subscription_error"
            assert err["data"]["status"] == 401
        for query, code in (("?protocol=4", 4007), ("", 4008), ("?protocol=x", 4006)):
            async with connect(base + query) as ws:
                err = json.loads(await ws.recv())
                assert err == {"event": "pusher:error",
                               "data": {"code": code, "message": err["data"]["message"]}}
                await ws.wait_closed()
                assert ws.close_code == code
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"http://127.0.0.1:{server.port}/app/{KEY}")).status_code \
                == 426


# -- the HTTP API with the official server library --------------------------------------------


def server_lib(port: int, secret: str = SECRET) -> Any:
    import pusher  # the official Pusher Channels server library (PyPI "pusher")

    return pusher.Pusher(app_id=APP_ID, key=KEY, secret=secret, host="127.0.0.1", port=port,
                         ssl=False)


async def test_official_server_library_publishes_to_pusher_js(tmp_path: Any) -> None:
    async with running_server(tmp_path, pusher_apps=APPS) as server:
        child = await run_node(client_js(server.port, """
for (const name of ["scores", "Odds-NFL"]) {
  const ch = pusher.subscribe(name);
  ch.bind("pusher:subscription_succeeded", () => out({subscribed: name}));
  ch.bind("goal", (data) => out({channel: name, goal: data}));
}
pusher.connection.bind("connected", () => out({socket: pusher.connection.socket_id}));
"""))
        try:
            lines = await child.wait_lines(
                lambda ls: sum('"subscribed"' in x for x in ls) == 2, what="2 subscriptions")
            lib = server_lib(server.port)
            assert await asyncio.to_thread(
                lib.trigger, ["scores", "Odds-NFL"], "goal", {"team": "home", "n": 1}) == {}
            lines = await child.wait_lines(lambda ls: sum('"goal"' in x for x in ls) == 2,
                                           what="2 goals")
            got = lines_json(lines)
            assert {"channel": "scores", "goal": {"team": "home", "n": 1}} in got
            assert {"channel": "Odds-NFL", "goal": {"team": "home", "n": 1}} in got
            # the events are hub messages: durable, with offsets, on the native API
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
                page = (await http.get("/v1/channels/pusher:42:scores/messages")).json()
            assert [m["data"] for m in page["messages"]] == [
                {"event": "goal", "data": '{"team": "home", "n": 1}'}]  # the string as sent
            # socket_id exclusion: the excluded connection does not get it
            socket = next(x["socket"] for x in got if "socket" in x)
            await asyncio.to_thread(lib.trigger, "scores", "goal", "mine", socket)
            await asyncio.to_thread(lib.trigger_batch, [
                {"channel": "scores", "name": "goal", "data": "batched"}])
            await child.wait_lines(lambda ls: any("batched" in x for x in ls), what="batch")
            assert not any('"mine"' in x for x in child.lines)
            info = await asyncio.to_thread(lib.channels_info)
            assert info == {"channels": {"Odds-NFL": {}, "scores": {}}}
            one = await asyncio.to_thread(lib.channel_info, "scores")
            assert one == {"occupied": True, "subscription_count": 1}
        finally:
            await child.stop()


async def test_http_api_refusals(tmp_path: Any) -> None:
    import pusher.errors

    async with running_server(tmp_path, pusher_apps=APPS) as server:
        with pytest.raises(pusher.errors.PusherBadAuth, match="invalid signature"):
            await asyncio.to_thread(server_lib(server.port, "wrong").trigger, "a", "e", "d")
        with pytest.raises(pusher.errors.PusherBadStatus, match="413"):
            await asyncio.to_thread(server_lib(server.port).trigger, "a", "e", "x" * 10241)
        base = f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient(base_url=base) as http:
            r = await http.post("/apps/42/events?auth_key=" + KEY +
                                "&auth_timestamp=1000&auth_version=1.0&auth_signature=00",
                                content=b"{}")
            assert r.status_code == 401 and "auth_timestamp" in r.json()["error"]["message"]
            r = await http.post("/apps/9/events", content=b"{}")
            assert r.status_code == 404
        # nothing was published
        assert not [c for c in server.hub.local_subscriber_counts() if c.startswith("pusher")]


# -- private, presence, client events, cache ----------------------------------------------------


def two_clients_js(port: int, key_a: str, key_b: str, body: str) -> str:
    """Two pusher-js connections ``a`` and ``b``, authorised with two wagerwire keys."""
    def opts(key: str) -> str:
        return f"""{{ cluster: "local", wsHost: "127.0.0.1", wsPort: {port}, forceTLS: false,
  enabledTransports: ["ws"], disableStats: true,
  channelAuthorization: {{ endpoint: "http://127.0.0.1:{port}/pusher/auth",
                           transport: "ajax", headers: {{ "x-api-key": "{key}" }} }} }}"""
    return f"""
import Pusher from "pusher-js";
const out = (obj) => console.log(JSON.stringify(obj));
const a = new Pusher({json.dumps(KEY)}, {opts(key_a)});
const b = new Pusher({json.dumps(KEY)}, {opts(key_b)});
{body}
"""


async def test_private_and_presence_through_the_auth_endpoint(tmp_path: Any) -> None:
    async with running_server(tmp_path, pusher_apps=APPS) as server:
        child = await run_node(two_clients_js(
            server.port, server.key("key-demo-1"), server.key("key-demo-2"), """
const pa = a.subscribe("presence-room");
pa.bind("pusher:subscription_succeeded", (m) => {
  out({a_members: Object.keys(m.members).sort(), me: m.me.id});
  const pb = b.subscribe("presence-room");
  pb.bind("pusher:subscription_succeeded", (m2) => {
    out({b_members: Object.keys(m2.members).sort()});
    pb.trigger("client-hello", {from: "b"});
  });
  pb.bind("client-hello", (d) => out({b_got_own: d}));
});
pa.bind("pusher:member_added", (m) => out({added: m.id}));
pa.bind("pusher:member_removed", (m) => { out({removed: m.id}); });
pa.bind("client-hello", (d, meta) => { out({a_got: d, user: meta?.user_id}); b.disconnect(); });
const priv = a.subscribe("private-desk");
priv.bind("pusher:subscription_succeeded", () => out({private_ok: true}));
const anon = new Pusher(KEY, { cluster: "local", wsHost: "127.0.0.1", wsPort: PORT,
  forceTLS: false, enabledTransports: ["ws"],
  channelAuthorization: { endpoint: "http://127.0.0.1:PORT/pusher/auth", transport: "ajax" } });
anon.subscribe("private-desk").bind("pusher:subscription_error", (e) => out({anon: e.status}));
""".replace("KEY", json.dumps(KEY)).replace("PORT", str(server.port))))
        try:
            lines = await child.wait_lines(
                lambda ls: any('"removed"' in x for x in ls) and any('"anon"' in x for x in ls)
                and any("private_ok" in x for x in ls), what="presence flow")
            got = lines_json(lines)
            assert {"a_members": ["demo-1"], "me": "demo-1"} in got
            assert {"b_members": ["demo-1", "demo-2"]} in got
            assert {"added": "demo-2"} in got
            assert {"a_got": {"from": "b"}, "user": "demo-2"} in got
            assert {"removed": "demo-2"} in got
            assert {"private_ok": True} in got
            assert {"anon": 401} in got
            assert not any("b_got_own" in x for x in lines)  # not echoed to the sender
        finally:
            await child.stop()


async def test_cache_channel_gets_the_last_event_or_a_miss(tmp_path: Any) -> None:
    async with running_server(tmp_path, pusher_apps=APPS) as server:
        await publish(server, "cache-odds", "price", {"v": 1})
        await publish(server, "cache-odds", "price", {"v": 2})
        child = await run_node(client_js(server.port, """
const c = pusher.subscribe("cache-odds");
c.bind("price", (d) => out({price: d}));
const m = pusher.subscribe("cache-empty");
m.bind("pusher:cache_miss", () => out({miss: true}));
"""))
        try:
            lines = await child.wait_lines(
                lambda ls: any("miss" in x for x in ls) and any("price" in x for x in ls),
                what="cache hit and miss")
            assert [x for x in lines_json(lines) if "price" in x] == [{"price": {"v": 2}}]
            await publish(server, "cache-odds", "price", {"v": 3})
            await child.wait_lines(lambda ls: any('"v":3' in x for x in ls), what="live")
        finally:
            await child.stop()


async def test_encrypted_channel_end_to_end(tmp_path: Any) -> None:
    import base64

    import pusher

    master = base64.b64encode(bytes(range(32))).decode()
    apps = {APP_ID: {"key": KEY, "secret": SECRET, "encryption_master_key_base64": master}}
    async with running_server(tmp_path, pusher_apps=apps) as server:
        child = await run_node(client_js(server.port, """
const ch = pusher.subscribe("private-encrypted-bets");
ch.bind("pusher:subscription_succeeded", () => out({subscribed: true}));
ch.bind("bet", (data) => out({bet: data}));
""", auth_headers=json.dumps({"x-api-key": server.key("key-reader")})))
        try:
            await child.wait_lines(lambda ls: any("subscribed" in x for x in ls),
                                   what="encrypted subscription")
            lib = pusher.Pusher(app_id=APP_ID, key=KEY, secret=SECRET, host="127.0.0.1",
                                port=server.port, ssl=False, encryption_master_key_base64=master)
            await asyncio.to_thread(lib.trigger, "private-encrypted-bets", "bet", {"stake": 5})
            lines = await child.wait_lines(lambda ls: any('"bet"' in x for x in ls),
                                           what="decrypted event")
            assert {"bet": {"stake": 5}} in lines_json(lines)
            # the hub only ever held ciphertext
            stored = await server.hub.store.read_last("pusher:42:private-encrypted-bets", 1)
            assert b"stake" not in stored[0].data and b"ciphertext" in stored[0].data
        finally:
            await child.stop()


async def test_restart_pusher_js_reconnects_and_resubscribes(tmp_path: Any) -> None:
    from wagerwire.config import Settings
    from wagerwire.node.features import default_features
    from wagerwire.node.server import Server

    def settings(port: int) -> Settings:
        return Settings(port=port, store=f"sqlite:///{tmp_path / 'hub.db'}", demo=False,
                        pusher_apps=APPS)

    first = Server(settings(0), default_features)
    await first.start()
    port = first.port
    child = await run_node(client_js(port, """
const ch = pusher.subscribe("scores");
ch.bind("pusher:subscription_succeeded", () => out({subscribed: true}));
ch.bind("goal", (data) => out({goal: data}));
"""))
    second = None
    try:
        await child.wait_lines(lambda ls: any("subscribed" in x for x in ls), what="first")
        await first.stop()  # pusher:error 4200, close 4200
        lines = await child.wait_lines(lambda ls: any("4200" in x for x in ls), what="4200")
        second = Server(settings(port), default_features)
        await second.start()
        await child.wait_lines(lambda ls: sum("subscribed" in x for x in ls) == 2,
                               timeout=30, what="resubscribed after the restart")
        hub = hub_channel(APP_ID, "scores")
        await second.hub.publish(hub, envelope("goal", {"n": 2}, channel="scores", hub=hub))
        lines = await child.wait_lines(lambda ls: any('"goal"' in x for x in ls), what="goal")
        assert {"goal": {"n": 2}} in lines_json(lines)
    finally:
        await child.stop()
        if second is not None:
            await second.stop()


PYSHER_CLIENT = '''
import json, sys, time
import pysher

port, key, api_key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
client = pysher.Pusher(key, custom_host="127.0.0.1", port=port, secure=False,
                       auth_endpoint=f"http://127.0.0.1:{port}/pusher/auth",
                       auth_endpoint_headers={"x-api-key": api_key})

def connected(data):
    for name in ("scores", "private-desk"):
        channel = client.subscribe(name)
        channel.bind("pusher_internal:subscription_succeeded",
                     lambda d, name=name: print(json.dumps({"subscribed": name}), flush=True))
        channel.bind("goal", lambda d, name=name: print(json.dumps({name: d}), flush=True))

client.connection.bind("pusher:connection_established", connected)
client.connect()
while True:
    time.sleep(1)
'''


async def test_pysher_public_and_private(tmp_path: Any) -> None:
    import os
    import sys

    from dialect_harness import Child

    async with running_server(tmp_path, pusher_apps=APPS) as server:
        script = tmp_path / "pysher_client.py"
        script.write_text(PYSHER_CLIENT)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(script), str(server.port), KEY, server.key("key-reader"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"))
        child = Child(proc)
        try:
            await child.wait_lines(lambda ls: sum('"subscribed"' in x for x in ls) == 2,
                                   what="pysher subscribed to both")
            lib = server_lib(server.port)
            await asyncio.to_thread(lib.trigger, ["scores", "private-desk"], "goal", {"n": 1})
            lines = await child.wait_lines(lambda ls: sum('n' in x and 'goal' not in x and 'subscribed' not in x for x in ls) == 2,
                                           what="both events")
            # the Python clients get data as the JSON string itself
            assert {"scores": '{"n": 1}'} in lines_json(lines)
            assert {"private-desk": '{"n": 1}'} in lines_json(lines)
        finally:
            await child.stop()


@pytest.mark.timeout(180)  # Chromium's cold start on a loaded machine, as the other browser tests
async def test_pusher_js_browser_build_in_headless_chromium(tmp_path: Any) -> None:
    import os

    from dialect_harness import NODE_DIR, Child, node_available
    from test_dashboard import BROWSER_DIR, CHROMIUM, browser_ready

    browser_ready()
    node_available()
    async with running_server(tmp_path, pusher_apps=APPS) as server:
        env = dict(os.environ, WW_PORT=str(server.port), WW_KEY=KEY,
                   WW_API_KEY=server.key("key-reader"), CHROMIUM=CHROMIUM,
                   PUSHER_JS=str(NODE_DIR / "node_modules/pusher-js/dist/web/pusher.js"))
        proc = await asyncio.create_subprocess_exec(
            "node", "pusher.mjs", cwd=BROWSER_DIR, env=env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        child = Child(proc)
        try:
            await child.wait_lines(lambda ls: sum('"subscribed"' in x for x in ls) == 2,
                                   timeout=60, what="the page subscribed to both channels")
            await asyncio.to_thread(server_lib(server.port).trigger, ["scores", "private-desk"],
                                    "goal", {"n": 1})
            lines = await child.wait_lines(lambda ls: sum('"goal"' in x for x in ls) == 2,
                                           timeout=60, what="both events in the page")
            got = lines_json(lines)
            assert {"channel": "private-desk", "goal": {"n": 1}} in got
            assert {"channel": "scores", "goal": {"n": 1}} in got
            assert not [x for x in got if "pageerror" in x or "error" in x]
        finally:
            await child.stop()


async def test_bad_input_never_disturbs_other_connections(tmp_path: Any) -> None:
    async with running_server(tmp_path, pusher_apps=APPS) as server:
        url = f"ws://127.0.0.1:{server.port}/app/{KEY}?protocol=7"
        async with connect(url) as good, connect(url) as bad:
            await good.recv()
            await bad.recv()
            await good.send('{"event":"pusher:subscribe","data":{"channel":"scores"}}')
            assert "subscription_succeeded" in await good.recv()
            for frame in ("not json", "[1]", '{"event":7}', '{"event":"pusher:subscribe"}',
                          '{"event":"pusher:subscribe","data":{"channel":"a b"}}',
                          '{"event":"pusher:subscribe","data":{"channel":"private-x",'
                          '"auth":"k:00"}}',
                          '{"event":"client-x","channel":"scores","data":{}}',
                          '{"event":"pusher:nope"}', '{"event":"pusher:subscribe","data":'
                          '{"channel":"' + "x" * 200 + '"}}'):
                await bad.send(frame)
                reply = json.loads(await bad.recv())
                assert reply["event"] in ("pusher:error", "pusher:subscription_error"), frame
            await bad.send('{"event":"pusher:ping"}')
            assert json.loads(await bad.recv())["event"] == "pusher:pong"  # still served
            await publish(server, "scores", "goal", "1")
            assert json.loads(await good.recv()) == {"event": "goal", "channel": "scores",
                                                     "data": "1"}


async def test_user_signin_send_to_user_and_terminate(tmp_path: Any) -> None:
    async with running_server(tmp_path, pusher_apps=APPS) as server:
        api_key = server.key("key-demo-1")
        child = await run_node(f"""
import Pusher from "pusher-js";
const out = (obj) => console.log(JSON.stringify(obj));
const pusher = new Pusher({json.dumps(KEY)}, {{
  cluster: "local", wsHost: "127.0.0.1", wsPort: {server.port}, forceTLS: false,
  enabledTransports: ["ws"], disableStats: true,
  userAuthentication: {{ endpoint: "http://127.0.0.1:{server.port}/pusher/user-auth",
                         transport: "ajax", headers: {{ "x-api-key": "{api_key}" }} }},
}});
pusher.connection.bind("state_change", (s) => out({{state: s.current}}));
pusher.connection.bind("error", (e) => out({{error: e?.data ?? null}}));
pusher.bind("pusher:signin_success", (d) => out({{signed_in: JSON.parse(d.user_data).id}}));
pusher.user.bind("note", (d) => out({{note: d}}));
pusher.user.watchlist.bind("online", () => {{}});
pusher.signin();
""")
        try:
            await child.wait_lines(lambda ls: any("signed_in" in x for x in ls), what="signin")
            await subscribed(server, hub_channel(APP_ID, "#server-to-user-demo-1"))
            lib = server_lib(server.port)
            await asyncio.to_thread(lib.send_to_user, "demo-1", "note", {"hi": 1})
            await child.wait_lines(lambda ls: any('"note"' in x for x in ls), what="note")
            await asyncio.to_thread(lib.terminate_user_connections, "demo-1")
            lines = await child.wait_lines(lambda ls: any("4009" in x for x in ls),
                                           what="terminated")
            got = lines_json(lines)
            assert {"signed_in": "demo-1"} in got and {"note": {"hi": 1}} in got
        finally:
            await child.stop()


class WebhookReceiver:
    """A minimal HTTP server on 127.0.0.1 that records POST bodies; the first answer is 500
    (the sender must retry)."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.calls = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        headers = {}
        for line in head.decode().split("\r\n")[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.calls += 1
        status = b"500 Internal Server Error" if self.calls == 1 else b"200 OK"
        if self.calls > 1:
            self.requests.append((headers, body))
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    def events(self) -> list[dict[str, Any]]:
        return [e for _, body in self.requests for e in json.loads(body)["events"]]


async def test_webhooks_signed_and_retried(tmp_path: Any) -> None:
    import hashlib
    import hmac

    receiver = WebhookReceiver()
    await receiver.start()
    apps = {APP_ID: {"key": KEY, "secret": SECRET,
                     "webhook_url": f"http://127.0.0.1:{receiver.port}/hooks"}}
    async with running_server(tmp_path, pusher_apps=apps) as server:
        url = f"ws://127.0.0.1:{server.port}/app/{KEY}?protocol=7"
        async with connect(url) as ws:
            await ws.recv()
            await ws.send('{"event":"pusher:subscribe","data":{"channel":"scores"}}')
            await ws.recv()
            await ws.send('{"event":"pusher:subscribe","data":{"channel":"cache-x"}}')
            await ws.recv()
            await ws.recv()
        await wait_until(lambda: {e["name"] for e in receiver.events()} >= {
            "channel_occupied", "channel_vacated", "cache_miss"}, timeout=15, what="hooks")
        assert receiver.calls >= 2  # the first answer (500) was retried
        for headers, body in receiver.requests:
            assert headers["x-pusher-key"] == KEY
            assert headers["x-pusher-signature"] == hmac.new(
                SECRET.encode(), body, hashlib.sha256).hexdigest()
        events = receiver.events()
        assert {"name": "channel_occupied", "channel": "scores"} in events
        assert {"name": "channel_vacated", "channel": "scores"} in events
        assert {"name": "cache_miss", "channel": "cache-x"} in events
    assert receiver.server is not None
    receiver.server.close()


async def test_npm_pusher_server_library_publishes_and_queries(tmp_path: Any) -> None:
    async with running_server(tmp_path, pusher_apps=APPS) as server:
        sub = await run_node(client_js(server.port, """
const ch = pusher.subscribe("scores");
ch.bind("pusher:subscription_succeeded", () => out({subscribed: true}));
ch.bind("goal", (data) => out({goal: data}));
"""))
        try:
            await sub.wait_lines(lambda ls: any("subscribed" in x for x in ls), what="sub")
            pub = await run_node(f"""
import Pusher from "pusher";
const p = new Pusher({{ appId: "{APP_ID}", key: "{KEY}", secret: "{SECRET}",
                        host: "127.0.0.1", port: "{server.port}", useTLS: false }});
const r = await p.trigger(["scores", "other"], "goal", {{ team: "away" }});
console.log(JSON.stringify({{ trigger: r.status }}));
const b = await p.triggerBatch([{{ channel: "scores", name: "goal", data: "batched" }}]);
console.log(JSON.stringify({{ batch: b.status }}));
const c = await (await p.get({{ path: "/channels" }})).json();
console.log(JSON.stringify({{ channels: c }}));
try {{
  await new Pusher({{ appId: "{APP_ID}", key: "{KEY}", secret: "wrong", host: "127.0.0.1",
                     port: "{server.port}", useTLS: false }}).trigger("scores", "goal", 1);
}} catch (e) {{ console.log(JSON.stringify({{ refused: e.status }})); }}
""")
            try:
                lines = await pub.wait_lines(lambda ls: any("refused" in x for x in ls),
                                             what="npm pusher calls")
                got = lines_json(lines)
                assert {"trigger": 200} in got and {"batch": 200} in got
                assert {"channels": {"channels": {"scores": {}}}} in got
                assert {"refused": 401} in got
            finally:
                await pub.stop()
            lines = await sub.wait_lines(lambda ls: sum('"goal"' in x for x in ls) == 2,
                                         what="both events")
            assert {"goal": {"team": "away"}} in lines_json(lines)
            assert {"goal": "batched"} in lines_json(lines)
        finally:
            await sub.stop()


async def test_quota_4004_disabled_4003_and_capacity_4100(tmp_path: Any) -> None:
    """4004 (the app's ``max_connections``) and 4003 (a disabled app) leave pusher-js
    disconnected; 4100 (the node's ``pusher_max_connections``) makes it retry after a
    back-off, and it connects once there is room."""
    apps = {APP_ID: {"key": KEY, "secret": SECRET, "max_connections": 1},
            "off": {"key": "offkey", "secret": "s", "enabled": False},
            "cap": {"key": "capkey", "secret": "s"}}
    async with running_server(tmp_path, pusher_apps=apps, pusher_max_connections=2) as server:
        base = f"ws://127.0.0.1:{server.port}/app/"

        async def refused(key: str) -> int:
            async with connect(base + key + "?protocol=7") as ws:
                err = json.loads(await ws.recv())
                assert err["event"] == "pusher:error"
                await ws.wait_closed()
                assert ws.close_code == err["data"]["code"]
                return int(ws.close_code)

        async with connect(base + KEY + "?protocol=7") as first:  # the app's one connection
            assert json.loads(await first.recv())["event"] == "pusher:connection_established"
            assert await refused(KEY) == 4004
            assert await refused("offkey") == 4003
            child = await run_node(client_js(server.port, "", key=KEY))
            try:
                lines = await child.wait_lines(
                    lambda ls: any('"disconnected"' in x or '"failed"' in x for x in ls),
                    what="4004 refusal")
                assert any(e and e.get("code") == 4004
                           for e in (x.get("error") for x in lines_json(lines) if "error" in x))
                await asyncio.sleep(2)
                assert not any('"connected"' in x for x in child.lines)  # no retry
            finally:
                await child.stop()
            async with connect(base + "capkey?protocol=7") as second:  # the node is full now
                await second.recv()
                assert await refused("capkey") == 4100
                child = await run_node(client_js(server.port, "", key="capkey"))
                try:
                    await child.wait_lines(lambda ls: any("4100" in x for x in ls),
                                           what="4100 refusal")
                    await second.close()  # room again: pusher-js's retry gets in
                    await child.wait_lines(lambda ls: any('"connected"' in x for x in ls),
                                           what="reconnected after the back-off")
                finally:
                    await child.stop()
