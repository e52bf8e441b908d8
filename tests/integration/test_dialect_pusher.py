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
from dialect_harness import Live, run_node, running_server
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
