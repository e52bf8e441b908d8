"""Pusher and SportsGameOdds on two nodes sharing one Redis and one PostgreSQL (issue 14):
presence members, occupancy, webhooks and ``terminate_connections`` hold across nodes, a dead
node's members leave when its lease expires, and the SportsGameOdds bridge notifies once.

Nodes are real ``wagerwire serve`` processes; the clients speak the Pusher protocol on raw
WebSockets (exact frames) and the official PyPI ``pusher`` library queries and terminates
through the HTTP API, changing only host and port.
"""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from typing import Any

import pytest
from test_dialect_pusher import WebhookReceiver
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from servers import PostgresServer, RedisServer, postgres_server, redis_server
from wagerwire.dialects.pusher_apps import PusherApp, channel_auth, user_auth

__all__ = ["postgres_server", "redis_server"]

APP_ID, KEY, SECRET = "42", "278d425bdf160c739803", "7ad3773142a6692b25b8"
APP = PusherApp(APP_ID, KEY, SECRET)


class Receiver(WebhookReceiver):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 1  # every answer is 200


def nodes_args(redis: RedisServer, pg: PostgresServer) -> list[str]:
    prefix, schema = f"p{uuid.uuid4().hex[:8]}", f"s{uuid.uuid4().hex[:8]}"
    return ["--broker", f"{redis.url}?prefix={prefix}", "--store", f"{pg.url()}?schema={schema}"]


class Client:
    """One raw Pusher connection: its socket id and every frame it got."""

    def __init__(self, ws: ClientConnection, socket_id: str) -> None:
        self.ws = ws
        self.socket_id = socket_id
        self.frames: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, node: Any) -> Client:
        ws = await connect(f"{node.ws_url}/app/{KEY}?protocol=7&client=test")
        hello = json.loads(await ws.recv())
        assert hello["event"] == "pusher:connection_established"
        return cls(ws, json.loads(hello["data"])["socket_id"])

    async def send(self, event: str, data: Any) -> None:
        await self.ws.send(json.dumps({"event": event, "data": data}))

    async def next(self, event: str, timeout: float = 30) -> dict[str, Any]:
        for frame in self.frames:
            if frame["event"] == event:
                self.frames.remove(frame)
                return frame
        async with asyncio.timeout(timeout):
            while True:
                frame = json.loads(await self.ws.recv())
                if frame["event"] == event:
                    return frame
                self.frames.append(frame)

    async def join(self, channel: str, user_id: str) -> dict[str, Any]:
        cd = json.dumps({"user_id": user_id, "user_info": {"name": user_id.upper()}})
        await self.send("pusher:subscribe", {
            "channel": channel, "channel_data": cd,
            "auth": channel_auth(APP, self.socket_id, channel, cd)})
        ok = await self.next("pusher_internal:subscription_succeeded")
        return json.loads(ok["data"])["presence"]  # type: ignore[no-any-return]


def lib(node: Any) -> Any:
    import pusher  # the official Pusher Channels server library (PyPI "pusher")

    return pusher.Pusher(app_id=APP_ID, key=KEY, secret=SECRET, host="127.0.0.1",
                         port=node.port, ssl=False)


async def until(check: Any, timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


@pytest.mark.timeout(240)
async def test_presence_occupancy_webhooks_and_terminate_across_two_nodes(
    server_factory: Any, redis_server: RedisServer, postgres_server: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    receiver = Receiver()
    await receiver.start()
    monkeypatch.setenv("WAGERWIRE_PUSHER_APPS", json.dumps({APP_ID: {
        "key": KEY, "secret": SECRET, "webhook_url": f"http://127.0.0.1:{receiver.port}/h"}}))
    args = nodes_args(redis_server, postgres_server)
    a, b = server_factory(args), server_factory(args)
    room = "presence-room"
    ann = await Client.open(a)
    bob = await Client.open(b)
    assert (await ann.join(room, "u1"))["ids"] == ["u1"]
    presence = await bob.join(room, "u2")  # on the other node: sees ann
    assert sorted(presence["ids"]) == ["u1", "u2"] and presence["count"] == 2
    assert presence["hash"]["u1"] == {"name": "U1"}
    added = await ann.next("pusher_internal:member_added")
    assert json.loads(added["data"]) == {"user_id": "u2", "user_info": {"name": "U2"}}
    bob2 = await Client.open(a)  # a second connection of u2, on node a: not a new member
    assert sorted((await bob2.join(room, "u2"))["ids"]) == ["u1", "u2"]

    for node in (a, b):  # the HTTP API answers for every node, whichever is asked
        info = await asyncio.to_thread(lib(node).channel_info, room,
                                       ["user_count", "subscription_count"])
        assert info == {"occupied": True, "subscription_count": 3, "user_count": 2}
        users = await asyncio.to_thread(lib(node).users_info, room)
        assert sorted(u["id"] for u in users["users"]) == ["u1", "u2"]
        listed = await asyncio.to_thread(lib(node).channels_info, "presence-",
                                         ["subscription_count"])
        assert listed == {"channels": {room: {"subscription_count": 3}}}

    # terminate_connections asked on node a ends a signed-in user's connection on node b
    eve = await Client.open(b)
    user_data = json.dumps({"id": "u9"})
    await eve.send("pusher:signin", {"user_data": user_data,
                                     "auth": user_auth(APP, eve.socket_id, user_data)})
    await eve.next("pusher:signin_success")
    await asyncio.to_thread(lib(a).terminate_user_connections, "u9")
    err = await eve.next("pusher:error")
    assert err["data"]["code"] == 4009
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(eve.ws.recv(), 30)
    assert eve.ws.close_code == 4009

    # node b dies: its connection of u2 goes with it; u2 still has one on node a
    b.kill()
    await bob2.ws.close()  # ... and now u2's last connection leaves
    removed = await ann.next("pusher_internal:member_removed", timeout=60)
    assert json.loads(removed["data"]) == {"user_id": "u2"}

    async def counted() -> bool:
        info = await asyncio.to_thread(lib(a).channel_info, room, ["subscription_count"])
        return bool(info["subscription_count"] == 1)
    await until(counted, 60, "node b's subscription to stop counting")
    await ann.ws.close()

    async def vacated() -> bool:
        return any(e["name"] == "channel_vacated" for e in receiver.events())
    await until(vacated, 30, "channel_vacated")
    events = [(e["name"], e.get("user_id")) for e in receiver.events()]
    # each transition once for the whole cluster, never once per node
    assert events.count(("channel_occupied", None)) == 1
    assert events.count(("member_added", "u1")) == 1
    assert events.count(("member_added", "u2")) == 1
    assert events.count(("member_removed", "u2")) == 1
    assert events.count(("channel_vacated", None)) == 1
    assert receiver.server is not None
    receiver.server.close()


def presence_js(ports: list[int], channel: str) -> str:
    """pusher-js clients, one per node port, each joining ``channel`` as user ``u<i>``; the
    auth is signed in the test's customHandler (the server checks it as for /pusher/auth)."""
    return f"""
import Pusher from "pusher-js";
import crypto from "node:crypto";
const out = (obj) => console.log(JSON.stringify(obj));
const sign = (text) => crypto.createHmac("sha256", {json.dumps(SECRET)}).update(text)
  .digest("hex");
{json.dumps(ports)}.forEach((port, i) => {{
  const user = "u" + i;
  const p = new Pusher({json.dumps(KEY)}, {{
    cluster: "local", wsHost: "127.0.0.1", wsPort: port, forceTLS: false,
    enabledTransports: ["ws"], disableStats: true,
    channelAuthorization: {{ customHandler: (params, callback) => {{
      const cd = JSON.stringify({{ user_id: user, user_info: {{ port }} }});
      callback(null, {{ auth: {json.dumps(KEY)} + ":" +
        sign(params.socketId + ":" + params.channelName + ":" + cd), channel_data: cd }});
    }} }},
  }});
  const ch = p.subscribe({json.dumps(channel)});
  ch.bind("pusher:subscription_succeeded", (m) => out({{user, count: m.count,
    ids: Object.keys(m.members).sort()}}));
  ch.bind("pusher:member_added", (m) => out({{user, added: m.id}}));
  ch.bind("pusher:member_removed", (m) => out({{user, removed: m.id}}));
}});
"""


@pytest.mark.timeout(240)
async def test_pusher_js_presence_across_two_nodes(
    server_factory: Any, redis_server: RedisServer, postgres_server: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dialect_harness import run_node

    monkeypatch.setenv("WAGERWIRE_PUSHER_APPS", json.dumps({APP_ID: {"key": KEY,
                                                                     "secret": SECRET}}))
    args = nodes_args(redis_server, postgres_server)
    a, b = server_factory(args), server_factory(args)
    first = await run_node(presence_js([a.port], "presence-js"))
    try:
        await first.wait_lines(lambda ls: any('"count":1' in x for x in ls), what="u0 in")
        second = await run_node(presence_js([a.port, b.port], "presence-js"))  # u0 again, u1
        try:
            lines = await second.wait_lines(
                lambda ls: any('"user":"u1","count":2' in x for x in ls), what="u1 sees u0")
            assert any('"ids":["u0","u1"]' in x for x in lines)
            await first.wait_lines(lambda ls: any('"added":"u1"' in x for x in ls),
                                   what="u0 sees u1 join from the other node")
        finally:
            await second.stop()
        await first.wait_lines(lambda ls: any('"removed":"u1"' in x for x in ls),
                               what="u1 left (its node-b connection closed)")
        assert not any('"removed":"u0"' in x for x in first.lines)  # u0 is still connected
    finally:
        await first.stop()


@pytest.mark.timeout(240)
async def test_a_killed_nodes_members_leave_when_its_lease_expires(
    server_factory: Any, redis_server: RedisServer, postgres_server: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WAGERWIRE_PUSHER_APPS", json.dumps({APP_ID: {"key": KEY,
                                                                     "secret": SECRET}}))
    args = nodes_args(redis_server, postgres_server)
    a, b = server_factory(args), server_factory(args)
    ann, bob = await Client.open(a), await Client.open(b)
    await ann.join("presence-r", "u1")
    await bob.join("presence-r", "u2")
    await ann.next("pusher_internal:member_added")
    b.kill()  # SIGKILL: no goodbye; the lease (20 s) expires, node a reaps it
    removed = await ann.next("pusher_internal:member_removed", timeout=90)
    assert json.loads(removed["data"]) == {"user_id": "u2"}
    users = await asyncio.to_thread(lib(a).users_info, "presence-r")
    assert [u["id"] for u in users["users"]] == ["u1"]
    await ann.ws.close()


@pytest.mark.timeout(240)
async def test_a_stopped_nodes_members_leave_at_the_next_heartbeat(
    server_factory: Any, redis_server: RedisServer, postgres_server: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SIGTERM: the node ends its lease as it stops, so another node reaps it at its next
    heartbeat (5 s), well before the 20 s a killed node takes."""
    monkeypatch.setenv("WAGERWIRE_PUSHER_APPS", json.dumps({APP_ID: {"key": KEY,
                                                                     "secret": SECRET}}))
    args = nodes_args(redis_server, postgres_server)
    a, b = server_factory(args), server_factory(args)
    ann, bob = await Client.open(a), await Client.open(b)
    await ann.join("presence-r", "u1")
    await bob.join("presence-r", "u2")
    await ann.next("pusher_internal:member_added")
    loop = asyncio.get_running_loop()
    assert await asyncio.to_thread(b.signal, signal.SIGTERM) == 0
    stopped = loop.time()
    removed = await ann.next("pusher_internal:member_removed", timeout=60)
    assert json.loads(removed["data"]) == {"user_id": "u2"}
    assert loop.time() - stopped < 15  # a heartbeat, not a lease
    await ann.ws.close()


@pytest.mark.timeout(240)
async def test_sportsgameodds_notifies_once_with_two_nodes(
    server_factory: Any, redis_server: RedisServer, postgres_server: PostgresServer,
) -> None:
    from test_dialect_sportsgameodds import event

    args = nodes_args(redis_server, postgres_server)
    a, b = server_factory(args), server_factory(args)
    sgo = "sportsgameodds"
    clients = []
    for node in (a, b):
        ws = await connect(f"{node.ws_url}/app/{sgo}?protocol=7")
        await ws.recv()
        await ws.send(json.dumps({"event": "pusher:subscribe",
                                  "data": {"channel": "events-live"}}))
        assert json.loads(await ws.recv())["event"] == "pusher_internal:subscription_succeeded"
        clients.append(ws)
    await asyncio.sleep(4)  # a node has taken the bridge's lease
    ids = [f"e{n}" for n in range(6)]
    async with connect(f"{a.ws_url}/v1/ws") as pub:
        for n, event_id in enumerate(ids):
            data = event(event_id, "live")
            await pub.send(json.dumps({"op": "publish", "channel": f"sports:event:{event_id}",
                                       "data": data, "attrs": {"live": "true"}}))
            assert json.loads(await asyncio.wait_for(pub.recv(), 30))["op"] == "published"
            if n % 2:
                await asyncio.sleep(0.3)  # several loop turns, several notifications
    for ws in clients:
        seen: list[str] = []
        while sorted(set(seen)) != ids:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if frame["event"] == "data":
                seen += [x["eventID"] for x in json.loads(frame["data"])]
        with pytest.raises(TimeoutError):  # and nothing more: no second node's copy
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 2))
                if frame["event"] == "data":
                    seen += [x["eventID"] for x in json.loads(frame["data"])]
        assert sorted(seen) == ids, seen  # each event id once
        await ws.close()
