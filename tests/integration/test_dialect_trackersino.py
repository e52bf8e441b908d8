"""TrackerSino (seed 001): the page's own Python (websockets 13.1) and Node (ws) examples
against a live server, the exact frame fields, pings, the backfill route and its reconnect
recipe, and the errors."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from dialect_harness import (
    CuttingProxy,
    Live,
    Rounds,
    run_node,
    run_python,
    running_server,
    seed_python_path,
    seed_text,
    subscribed,
    wait_until,
)
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from wagerwire.dialects.trackersino import PING_INTERVAL_S as TRACKERSINO_PING_S
from wagerwire.dialects.trackersino import TrackerSinoSession
from wagerwire.transports.dialects import DialectWsConnection

FRAME_KEYS = ["game_id", "round_id", "round_index", "multiplier", "state", "finalized_at",
              "multiplier_source", "raw"]
RFC3339_S = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def key_of(server: Live) -> dict[str, str]:
    return {"YOUR_KEY": server.key("key-reader")}


@pytest.fixture(scope="session")
def seed_deps(request: pytest.FixtureRequest) -> Path:
    return seed_python_path()


def rocket_lines(rounds: list[dict[str, Any]]) -> list[str]:
    """What the seed's example prints: rounds over 10x."""
    return [
        f"🚀 {r['game_slug']} {r['result']['multiplier']}x at {r['finished_at'][:19]}Z"
        for r in rounds if float(r["result"]["multiplier"]) > 10
    ]


def check_frame(frame: dict[str, Any], data: dict[str, Any]) -> None:
    assert list(frame) == FRAME_KEYS
    assert frame["game_id"] == data["game_slug"]
    assert str(uuid.UUID(frame["round_id"])) == frame["round_id"]
    assert frame["round_index"] == data["index"] and type(frame["round_index"]) is int
    assert frame["multiplier"] == data["result"]["multiplier"]
    assert isinstance(frame["multiplier"], str)
    assert frame["state"] == "finalized"
    assert RFC3339_S.fullmatch(frame["finalized_at"])
    assert frame["finalized_at"] == data["finished_at"][:19] + "Z"
    assert frame["multiplier_source"] == data["provider"]
    assert frame["raw"] == data["raw"]


async def test_python_seed_example(tmp_path: Path, seed_deps: Path) -> None:
    async with running_server(tmp_path) as server:
        rounds = Rounds(server)
        child = await run_python(seed_text("trackersino_stream.py", server.port, key_of(server)),
                                 tmp_path, seed_deps)
        try:
            await subscribed(server, "game:stake-crash")
            sent = await rounds.publish("stake-crash", 30)
            await rounds.publish("roobet-crash", 10)  # not in ?games=
            want = rocket_lines(sent)
            assert len(want) >= 2
            await child.wait_lines(lambda ls: len(ls) >= len(want), what="every >10x round")
            await asyncio.sleep(0.3)
            assert child.lines == want
        finally:
            await child.stop()


async def test_node_seed_example(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        rounds = Rounds(server)
        child = await run_node(seed_text("trackersino_stream.mjs", server.port, key_of(server)))
        try:
            await subscribed(server, "game:stake-crash")
            sent = await rounds.publish("stake-crash", 30)
            want = rocket_lines(sent)
            await child.wait_lines(lambda ls: len(ls) >= len(want), what="every >10x round")
            await asyncio.sleep(0.3)
            assert child.lines == want
        finally:
            await child.stop()


async def test_frames_have_exactly_the_seed_fields(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        rounds = Rounds(server)
        base = f"ws://127.0.0.1:{server.port}/v1-beta/stream"
        auth = {"Authorization": f"Bearer {server.key('key-reader')}"}
        async with connect(base + "?games=stake-crash,roobet-crash",
                           additional_headers=auth) as two, \
                connect(base, additional_headers=auth) as every, \
                connect(base + "?games=", additional_headers=auth) as empty:
            await subscribed(server, "game:stake-crash", 3)
            await subscribed(server, "game:crash", 2)
            stake = await rounds.publish("stake-crash")
            await rounds.publish("double")  # not a crash game: never on this stream
            roobet = await rounds.publish("roobet-crash")
            crash = await rounds.publish("crash")
            for data, frame in zip(stake + roobet,
                                   [json.loads(await two.recv()) for _ in range(2)],
                                   strict=True):
                check_frame(frame, data)
            for ws in (every, empty):
                got = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(3)]
                for data, frame in zip(stake + roobet + crash, got, strict=True):
                    check_frame(frame, data)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(two.recv(), 0.3)


NEW_GAMES = ["duel-crash", "shuffle-crash", "stake-slide", "roobet-slide", "duel-slide",
             "shuffle-slide"]  # the page's other games (Slide slugs inferred)


async def test_every_game_the_page_names_streams_and_backfills(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        rounds = Rounds(server)
        base = f"ws://127.0.0.1:{server.port}/v1-beta/stream"
        auth = {"Authorization": f"Bearer {server.key('key-reader')}"}
        async with connect(base + "?games=" + ",".join(NEW_GAMES),
                           additional_headers=auth) as chosen, \
                connect(base, additional_headers=auth) as every:
            await subscribed(server, "game:shuffle-slide", 2)
            sent = [data for slug in NEW_GAMES for data in await rounds.publish(slug)]
            for ws in (chosen, every):
                got = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in sent]
                for data, frame in zip(sent, got, strict=True):
                    check_frame(frame, data)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
            for data in sent:
                r = await http.get(f"/v1-beta/games/{data['game_slug']}/rounds", headers=auth)
                assert r.status_code == 200, r.text
                (frame,) = r.json()
                check_frame(frame, data)


async def test_big_round_index_stays_an_exact_integer(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        data = Rounds(server).sims["stake-crash"].round_at(956100250495943837, 1_780_000_000_000)
        url = f"ws://127.0.0.1:{server.port}/v1-beta/stream?games=stake-crash"
        async with connect(url, additional_headers={"Authorization": f"Bearer {server.key('key-reader')}"}) as ws:
            await subscribed(server, "game:stake-crash")
            await server.hub.publish("game:stake-crash", data)
            raw = await asyncio.wait_for(ws.recv(), 10)
        assert '"round_index":956100250495943837,' in str(raw)


async def test_plan_limits_the_games(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        base = f"ws://127.0.0.1:{server.port}/v1-beta/stream"
        auth = {"Authorization": f"Bearer {server.key('key-stake-only')}"}  # plan: game:stake-*
        async with connect(base, additional_headers=auth):
            await subscribed(server, "game:stake-crash")
            counts = server.hub.local_subscriber_counts()
            assert "game:roobet-crash" not in counts and "game:crash" not in counts
        with pytest.raises(InvalidStatus) as info:
            async with connect(base + "?games=roobet-crash", additional_headers=auth):
                pass
        assert info.value.response.status_code == 403


@pytest.mark.parametrize(("query", "key", "status", "code"), [
    ("", "wrong", 401, "unauthorized"),
    ("?games=nope-crash", "key-reader", 404, "not_found"),
    ("?games=double", "key-reader", 422, "bad_parameter"),
])
async def test_upgrade_errors(tmp_path: Path, query: str, key: str, status: int,
                              code: str) -> None:
    async with running_server(tmp_path) as server:
        url = f"ws://127.0.0.1:{server.port}/v1-beta/stream{query}"
        headers = {"Authorization": f"Bearer {server.keys.get(key, key)}"}
        with pytest.raises(InvalidStatus) as info:
            async with connect(url, additional_headers=headers):
                pass
        assert info.value.response.status_code == status
        assert json.loads(info.value.response.body or b"{}")["error"]["code"] == code


async def test_server_pings_every_25_seconds(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        url = f"ws://127.0.0.1:{server.port}/v1-beta/stream"
        async with connect(url, additional_headers={"Authorization": f"Bearer {server.key('key-reader')}"},
                           ping_interval=None):
            await subscribed(server, "game:stake-crash")
            assert server.registry is not None
            conn = next(c for c in server.registry.connections
                        if isinstance(c, DialectWsConnection)
                        and isinstance(c.session, TrackerSinoSession))
            session = conn.session
            assert isinstance(session, TrackerSinoSession)
            loop = asyncio.get_running_loop()
            seen = conn.last_seen
            assert session.next_ping - seen == pytest.approx(TRACKERSINO_PING_S)
            conn.tick(loop.time() + 1, ping=True)  # the server-wide ping tick does not apply
            await asyncio.sleep(0.2)
            assert conn.last_seen == seen
            conn.tick(session.next_ping, ping=False)  # 25 s later: a Ping frame, answered
            await wait_until(lambda: conn.last_seen > seen, 10, "the client's pong")
            assert session.next_ping > seen + TRACKERSINO_PING_S


async def test_backfill_route(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        rounds = Rounds(server)
        sent = await rounds.publish("stake-crash", 12)
        await rounds.publish("roobet-crash", 3)
        auth = {"Authorization": f"Bearer {server.key('key-reader')}"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
            since = sent[4]["finished_at"][:19] + "Z"
            r = await http.get("/v1-beta/games/stake-crash/rounds", params={"since": since},
                               headers=auth)
            assert r.status_code == 200
            body = r.json()
            assert [f["round_index"] for f in body] == [d["index"] for d in sent[4:]]
            for frame, data in zip(body, sent[4:], strict=True):
                check_frame(frame, data)
            r = await http.get("/v1-beta/games/stake-crash/rounds",
                               params={"since": "2000-01-01T00:00:00+00:00", "limit": 3},
                               headers=auth)
            assert [f["round_index"] for f in r.json()] == [1, 2, 3]
            r = await http.get("/v1-beta/games/stake-crash/rounds", params={"limit": 2},
                               headers=auth)
            assert [f["round_index"] for f in r.json()] == [11, 12]
            r = await http.get("/v1-beta/games/stake-crash/rounds",
                               params={"since": "2100-01-01T00:00:00Z"}, headers=auth)
            assert r.json() == []
            for path, params, headers, status in [
                ("/v1-beta/games/nope/rounds", {}, auth, 404),
                ("/v1-beta/games/stake-crash/rounds", {"since": "yesterday"}, auth, 422),
                ("/v1-beta/games/stake-crash/rounds", {}, {"Authorization": "Bearer x"}, 401),
            ]:
                r = await http.get(path, params=params, headers=headers)
                assert r.status_code == status, r.text
                assert "code" in r.json()["error"]


async def test_reconnect_recipe_loses_nothing(tmp_path: Path, seed_deps: Path) -> None:
    async with running_server(tmp_path) as server:
        rounds = Rounds(server)
        proxy = await CuttingProxy(server.port).start()
        source = seed_text("trackersino_resume.py", server.port, key_of(server)).replace(
            f"ws://127.0.0.1:{server.port}", f"ws://127.0.0.1:{proxy.port}")
        child = await run_python(source, tmp_path, seed_deps)
        try:
            await subscribed(server, "game:stake-crash")
            sent = await rounds.publish("stake-crash", 4)
            await child.wait_lines(lambda ls: len(ls) >= 5, what="4 live rounds")
            proxy.cut()  # drop mid-stream
            await asyncio.sleep(0.3)
            sent += await rounds.publish("stake-crash", 5)  # missed on the stream
            proxy.heal()
            await child.wait_lines(lambda ls: ls.count("connected") >= 2, timeout=30,
                                   what="reconnected")
            sent += await rounds.publish("stake-crash", 3)
            await child.wait_lines(lambda ls: len(ls) >= 2 + len(sent), what="every round")
            await asyncio.sleep(0.3)
        finally:
            await child.stop()
            await proxy.close()
        shown = [line.split() for line in child.lines if line != "connected"]
        assert [int(s[2]) for s in shown] == [r["index"] for r in sent]
        assert {s[0] for s in shown[4:9]} == {"backfill"}  # the gap came from the REST call
