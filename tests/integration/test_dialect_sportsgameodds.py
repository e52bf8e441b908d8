"""SportsGameOdds (seed 002) against a live server: the seed's JavaScript quick start and its
NFL tracker (axios + pusher-js under Node, only the host and key changed) bootstrap over REST,
connect with the returned ``pusherKey``/``pusherOptions``, receive ``data`` notifications
``[{"eventID"}]`` made from sports Event updates and refetch ``/v2/events``; REST errors."""

from __future__ import annotations

import copy
from typing import Any

import httpx
from dialect_harness import Live, run_node, run_python, running_server, seed_text, subscribed

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
            assert r.status_code == 200 and body["channel"] == "events-byid-e1"
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
