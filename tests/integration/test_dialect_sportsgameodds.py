"""SportsGameOdds (seed 002) against a live server: the seed's JavaScript quick start and its
NFL tracker (axios + pusher-js under Node, only the host and key changed) bootstrap over REST,
connect with the returned ``pusherKey``/``pusherOptions``, receive ``data`` notifications
``[{"eventID"}]`` made from sports Event updates and refetch ``/v2/events``; REST errors."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from typing import Any

import httpx
from dialect_harness import (
    TEST_PLANS,
    Live,
    run_node,
    run_python,
    running_server,
    seed_text,
    subscribed,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

LIVE_HUB = "pusher:sportsgameodds:events-live"
NFL_HUB = "pusher:sportsgameodds:events-upcoming-_n_f_l"

# Logs what the seed's axios calls return; the seed code itself is unchanged.
AXIOS_LOG = """
const axios = require("axios");
const get = axios.get;
axios.get = async (...args) => {
  const r = await get.apply(axios, args);
  console.log(JSON.stringify({url: args[0], params: args[1]?.params ?? null,
                              ids: (r.data?.data ?? []).map((e) => e.eventID)}));
  return r;
};
"""


def event(event_id: str, status: str, league: str = "nfl") -> dict[str, Any]:
    return {
        "event_id": event_id, "sport": "american-football", "competition": league,
        "league": league, "name": "Broncos vs Chiefs",
        "participants": {"home": {"name": "Denver Broncos"},
                         "away": {"name": "Kansas City Chiefs"}},
        "starts_at": "2026-12-07T20:00:00Z", "starts_at_ms": 1_796_673_600_000,
        "status": status, "live": status == "live", "period": None, "period_name": None,
        "clock": None, "score": {"home": 0, "away": 0}, "period_scores": [], "markets": [],
        "updated_at": 1, "seq": 1,
    }


async def publish_event(server: Live, data: dict[str, Any]) -> None:
    await server.hub.publish(f"sports:event:{data['event_id']}", data,
                             attrs={"live": str(data["live"]).lower()})


async def test_seed_quick_start_follows_live_events(tmp_path: Any) -> None:
    async with running_server(tmp_path) as server:
        await publish_event(server, event("e1", "live"))
        key = server.key("key-reader")
        child = await run_node(
            seed_text("sgo_quickstart.cjs", server.port, {"YOUR API KEY": key}),
            suffix=".cjs", preload=AXIOS_LOG)
        try:
            await child.wait_lines(lambda ls: any('"ids":["e1"]' in x for x in ls),
                                   what="bootstrap with E1")
            await subscribed(server, LIVE_HUB)
            update = copy.deepcopy(event("e1", "live"))
            update["score"] = {"home": 7, "away": 0}
            await publish_event(server, update)
            lines = await child.wait_lines(
                lambda ls: any('/v2/events"' in x and '"e1"' in x for x in ls),
                what="refetch after the data notification")
            assert any('"eventIDs":"e1"' in x for x in lines)
        finally:
            await child.stop()
        # the notification is a hub message on the feed channel
        last = await server.hub.store.read_last(LIVE_HUB, 1)
        assert last and b'"event":"data"' in last[0].data and b'eventID' in last[0].data


async def test_seed_nfl_tracker_sees_an_event_start(tmp_path: Any) -> None:
    async with running_server(tmp_path) as server:
        await publish_event(server, event("nfl1", "upcoming"))
        await publish_event(server, event("nba1", "upcoming", "nba"))
        key = server.key("key-reader")
        child = await run_node(
            seed_text("sgo_nfl_tracker.cjs", server.port, {"PUT YOUR API KEY HERE": key}),
            suffix=".cjs")
        try:
            await child.wait_lines(lambda ls: any("Successfully subscribed" in x for x in ls),
                                   what="subscribed")
            lines = child.lines
            assert any("initialEvents: 1" in x for x in lines), lines
            assert any("Initial Event: Chiefs vs Broncos" in x and "(nfl1)" in x
                       for x in lines), lines
            await subscribed(server, NFL_HUB)
            await publish_event(server, event("nfl1", "live"))
            # The tracker reads the /v2/events answer as an array (response.data.length on
            # the axios response, whose data is the {success, data} body the quick start
            # reads as .data): as written it stops there on SportsGameOdds too. What it does
            # before that is the protocol part: the notification and the refetch.
            await child.wait_lines(
                lambda ls: any("Received change notification for 1 event(s)" in x for x in ls)
                and any("Fetching full data for events: nfl1" in x for x in ls),
                what="notification and refetch")
        finally:
            await child.stop()


async def test_rest_errors_and_events(tmp_path: Any) -> None:
    async with running_server(tmp_path) as server:
        await publish_event(server, event("e1", "live"))
        base = f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient(base_url=base) as http:
            r = await http.get("/v2/stream/events", params={"feed": "events:live"})
            assert r.status_code == 401 and r.json()["success"] is False
            r = await http.get("/v2/stream/events", params={"feed": "events:live"},
                               headers={"x-api-key": "nope"})
            assert r.status_code == 401
            key = server.key("key-reader")
            r = await http.get("/v2/stream/events", params={"feed": "events:upcoming"},
                               headers={"x-api-key": key})
            assert r.status_code == 400 and "leagueID" in r.json()["error"]
            r = await http.get("/v2/stream/events", params={"feed": "nope"},
                               headers={"x-api-key": key})
            assert r.status_code == 400
            r = await http.get("/v2/stream/events",
                               params={"feed": "events:byid", "eventID": "e1", "apiKey": key})
            body = r.json()
            key_id = key.split("_")[1]  # the per-key name of the feed channel
            assert r.status_code == 200 and body["channel"].startswith(f"events-byid-e1@{key_id}@")
            assert body["pusherKey"] == "sportsgameodds"
            assert body["pusherOptions"]["wsPort"] == server.port
            assert [e["eventID"] for e in body["data"]] == ["e1"]
            r = await http.get("/v2/events", params={"eventIDs": "e1,missing"},
                               headers={"x-api-key": key})
            ev = r.json()["data"][0]
            assert ev["teams"]["home"]["names"] == {
                "long": "Denver Broncos", "medium": "Broncos", "short": "DB"}
            assert ev["status"]["started"] is True and ev["status"]["live"] is True
            assert ev["leagueID"] == "NFL"
            assert r.headers["access-control-allow-origin"] == "*"
            for path in ("/v2/stream/events", "/v2/events", "/pusher/auth"):
                r = await http.options(path, headers={
                    "Origin": "https://example.test", "Access-Control-Request-Method": "GET",
                    "Access-Control-Request-Headers": "x-api-key"})
                assert r.status_code == 200 and "x-api-key" in \
                    r.headers["access-control-allow-headers"]
            assert (await http.get("/healthz")).status_code == 200  # the connection is sane


async def test_seed_python_example_with_pusherclient(tmp_path: Any) -> None:
    async with running_server(tmp_path) as server:
        await publish_event(server, event("e1", "live"))
        key = server.key("key-reader")
        source = seed_text("sgo_pusherclient.py", server.port,
                           {"YOUR_API_KEY": key, "port=8000": f"port={server.port}"})
        child = await run_python(source, tmp_path, tmp_path)
        try:
            await child.wait_lines(lambda ls: any("Connected to stream" in x for x in ls),
                                   what="connected")
            lines = child.lines
            assert any("Connected with 1 initial events" in x for x in lines), lines
            await subscribed(server, LIVE_HUB)
            await publish_event(server, event("e1", "live"))
            await child.wait_lines(lambda ls: any("Updated: e1" in x for x in ls),
                                   what="the handler refetched e1")
        finally:
            await child.stop()


# -- a key's concurrent streams ------------------------------------------------------------------

ONE_STREAM = {**TEST_PLANS, "sgo1": {"max_streams": 1}}  # a custom plan: it may stream


async def bootstrap(base: str, key: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base) as http:
        r = await http.get("/v2/stream/events", params={"feed": "events:live"},
                           headers={"x-api-key": key})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


async def sgo_subscribe(url: str, channel: str, auth: str | None = None
                        ) -> tuple[ClientConnection, dict[str, Any]]:
    """A raw Pusher connection to the SportsGameOdds app and the answer to its subscribe."""
    ws = await connect(f"{url}/app/sportsgameodds?protocol=7")
    hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
    data: dict[str, Any] = {"channel": channel}
    if auth is not None:
        data["auth"] = auth
    await ws.send(json.dumps({"event": "pusher:subscribe", "data": data}))
    answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
    answer["socket_id"] = json.loads(hello["data"])["socket_id"]
    return ws, answer


async def closed_with(ws: ClientConnection) -> int | None:
    with contextlib.suppress(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 10)
    await asyncio.wait_for(ws.wait_closed(), 10)
    return ws.close_code


async def test_a_keys_concurrent_streams_are_limited(tmp_path: Any) -> None:
    """max_streams = 1: the key's second stream is refused with 4004 while another key
    connects; both read the feed's one hub channel under their own names; closing the first
    frees the slot."""
    async with running_server(tmp_path, plans=ONE_STREAM) as server:
        await publish_event(server, event("e1", "live"))
        store = server.server.gate.keystore
        key_a, key_b = store.create("reader", "sgo1")[1], store.create("reader", "sgo1")[1]
        base, url = f"http://127.0.0.1:{server.port}", f"ws://127.0.0.1:{server.port}"
        chan_a, chan_b = (await bootstrap(base, key_a))["channel"], \
            (await bootstrap(base, key_b))["channel"]
        assert chan_a.startswith("events-live@") and chan_a != chan_b

        first, ok = await sgo_subscribe(url, chan_a)
        assert ok["event"] == "pusher_internal:subscription_succeeded", ok
        second, refused = await sgo_subscribe(url, chan_a)  # the same key's second stream
        assert refused["event"] == "pusher:error" and refused["data"]["code"] == 4004
        assert await closed_with(second) == 4004
        other, ok_b = await sgo_subscribe(url, chan_b)  # another key still connects
        assert ok_b["event"] == "pusher_internal:subscription_succeeded"
        # both read the feed's one hub channel, each under its own name
        await subscribed(server, LIVE_HUB, 2)
        await publish_event(server, event("e1", "live"))
        for ws, name in ((first, chan_a), (other, chan_b)):
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert frame["event"] == "data" and frame["channel"] == name, frame
            assert json.loads(frame["data"]) == [{"eventID": "e1"}]
        # the shared feed channel itself, or a forged tag, is not a channel of the app
        for name in ("events-live", chan_a[:-1] + ("0" if chan_a[-1] != "0" else "1")):
            ws, answer = await sgo_subscribe(url, name)
            assert answer["event"] == "pusher:subscription_error"
            assert answer["data"]["status"] == 403
            await ws.close()

        await first.close()  # the slot is freed: the key's next stream connects
        async def again() -> bool:
            ws, answer = await sgo_subscribe(url, chan_a)
            if answer["event"] == "pusher_internal:subscription_succeeded":
                await ws.close()
                return True
            await ws.close()
            await asyncio.sleep(0.5)
            return False
        for _ in range(20):
            if await again():
                break
        else:
            raise AssertionError("the freed slot was not granted")
        await other.close()


async def test_private_per_key_channel_is_signed_only_for_its_key(tmp_path: Any) -> None:
    """The auth endpoint signs only the key's own private per-key channel (403 for another
    key's, the shared feed channel, a plan without streaming); it counts like the public
    one; revoking the key closes its stream."""
    async with running_server(tmp_path, plans=ONE_STREAM) as server:
        store = server.server.gate.keystore
        rec_a, key_a = store.create("reader", "sgo1")
        rec_b, _ = store.create("reader", "sgo1")
        _, key_free = store.create("reader", "free")
        base, url = f"http://127.0.0.1:{server.port}", f"ws://127.0.0.1:{server.port}"
        boot = await bootstrap(base, key_a)
        endpoint = boot["pusherOptions"]["channelAuthorization"]["endpoint"]
        async with httpx.AsyncClient() as http:
            async def sign(key: str, channel: str, socket_id: str = "1.2") -> httpx.Response:
                return await http.post(endpoint, headers={"x-api-key": key},
                                       data={"socket_id": socket_id, "channel_name": channel})
            r = await sign(key_a, f"private-events-live@{rec_b.id}")  # another key's channel
            assert r.status_code == 403, r.text
            r = await sign(key_a, "private-events-live")  # the shared feed channel
            assert r.status_code == 403
            r = await sign(key_free, "private-events-live@" + key_free.split("_")[1])
            assert r.status_code == 403  # a plan without streaming
            # its own: signed, subscribed, counted (a second stream is refused)
            mine = f"private-events-live@{rec_a.id}"
            ws = await connect(f"{url}/app/sportsgameodds?protocol=7")
            socket_id = json.loads(json.loads(await ws.recv())["data"])["socket_id"]
            r = await sign(key_a, mine, socket_id)
            assert r.status_code == 200
            await ws.send(json.dumps({"event": "pusher:subscribe",
                                      "data": {"channel": mine, "auth": r.json()["auth"]}}))
            ok = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert ok["event"] == "pusher_internal:subscription_succeeded", ok
            second, refused = await sgo_subscribe(url, boot["channel"])
            assert refused["data"]["code"] == 4004 and await closed_with(second) == 4004
            server.server.gate.revoke(rec_a.id)  # a revoked key's streams end (4009)
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["data"]["code"] == 4009
            assert await closed_with(ws) == 4009
