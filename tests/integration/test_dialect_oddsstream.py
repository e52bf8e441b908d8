"""OddsStream (seed 003): the page's OddsStreamClient and live-odds.mjs under Node against a
live server (hosts and key changed only), a restart mid-stream, plans and quotas, filters,
exact frames, raw pong, token refusals, REST, and bad input that never disturbs neighbours."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dialect_harness import Live, run_node, seed_text, wait_until
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from wagerwire.auth.stream_tokens import TokenClaims, sign_token
from wagerwire.config import Settings
from wagerwire.dialects.oddsstream import OddsStreamSession
from wagerwire.node.features import default_features
from wagerwire.node.server import Server
from wagerwire.transports.dialects import DialectWsConnection

FRAME_KEYS = ["bookmaker", "match_name", "competition", "sport", "market_type", "selection",
              "odds", "period", "is_live", "scraped_at"]
KEYS = {"free": ("reader", "free"), "pro": ("reader", "pro"), "rt": ("reader", "pro+rt"),
        "live": ("reader", "pro+live"), "stakeonly": ("reader", "stakeonly")}


def settings_for(tmp_path: Path, port: int = 0) -> Settings:
    return Settings(port=port, store=f"sqlite:///{tmp_path / 'hub.db'}", demo=False,
                    plans={"stakeonly": {"channels": ["game:stake-*"]}})


@contextlib.asynccontextmanager
async def odds_server(tmp_path: Path) -> AsyncIterator[Live]:
    server = Server(settings_for(tmp_path), default_features)
    await server.start()
    keys = {name: server.gate.keystore.create(role, plan, None, name, prefix="os_live_")[1]
            for name, (role, plan) in KEYS.items()}
    live = Live(server, keys)
    try:
        yield live
    finally:
        await live.server.stop()


PRICE = {"match_name": "Arsenal - Chelsea", "event_id": "ev1", "market_type": "1x2",
         "market_id": "1x2", "period": 0, "is_live": True, "line": None, "suspended": False}


async def publish(live: Live, sport: str, comp: str, book: str, selection: str, odds: float,
                  **extra: Any) -> None:
    data = {"bookmaker": book, "competition": comp, "sport": sport, "selection": selection,
            "selection_id": selection.lower(), "odds": odds,
            "scraped_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **PRICE,
            **extra}
    attrs = {"sport": sport, "competition": comp, "bookmaker": book,
             "event": str(data["event_id"]), "market": "1x2"}
    await live.hub.publish(f"odds:{sport}:{comp}", data, attrs=attrs)


async def token_of(live: Live, key: str) -> str:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{live.port}") as http:
        res = await http.post("/api/stream/token", headers={"X-Api-Key": live.key(key)})
    assert res.status_code == 200, res.text
    return str(res.json()["token"])


async def stream(live: Live, key: str = "rt", query: str = "") -> ClientConnection:
    token = await token_of(live, key)
    return await connect(f"ws://127.0.0.1:{live.port}/api/stream?token={token}{query}",
                         ping_interval=None)


def oddsstream_conns(live: Live) -> list[DialectWsConnection]:
    assert live.registry is not None
    return [c for c in live.registry.connections if isinstance(c, DialectWsConnection)
            and isinstance(c.session, OddsStreamSession)]


async def streams_open(live: Live, count: int) -> None:
    await wait_until(lambda: sum(1 for c in oddsstream_conns(live)
                                 if c.registry.hub.subscriptions(c)) >= count,
                     what=f"{count} subscribed OddsStream connection(s)")


async def recv_json(ws: ClientConnection, timeout: float = 5.0) -> Any:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def nothing(ws: ClientConnection, timeout: float = 0.3) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ws.recv(), timeout)


# -- the seed's own clients ----------------------------------------------------------------


async def test_seed_class_client_sees_prices_and_survives_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = Server(settings_for(tmp_path), default_features)
    await server.start()
    key = server.gate.keystore.create("reader", "free", None, "seed", prefix="os_live_")[1]
    live = Live(server, {"free": key})
    monkeypatch.setenv("ODDSSTREAM_API_KEY", key)
    child = await run_node(seed_text("oddsstream_client.mjs", live.port))
    try:
        await child.wait_lines(lambda ls: "OddsStream connected" in ls, what="connected")
        await streams_open(live, 1)
        await publish(live, "football", "epl", "sharpline", "Arsenal", 2.1)
        await publish(live, "football", "lig1", "sharpline", "PSG", 1.5)  # not EPL
        await publish(live, "basketball", "nba", "northbet", "Lakers", 1.9)  # not Football
        await publish(live, "football", "epl", "oddsfox", "Draw", 3.4)
        await child.wait_lines(lambda ls: "Arsenal - Chelsea | Draw: 3.4" in ls, what="prices")
        assert [ln for ln in child.lines if " | " in ln] == [
            "Arsenal - Chelsea | Arsenal: 2.1", "Arsenal - Chelsea | Draw: 3.4"]
        port = live.port
        await server.stop()  # a deployment: every stream closes with 1001
        await child.wait_lines(lambda ls: any(ln.startswith("Disconnected (1001)") for ln in ls),
                               what="close 1001")
        server = Server(settings_for(tmp_path, port), default_features)  # same keys database
        await server.start()
        live = Live(server, {"free": key})
        await child.wait_lines(lambda ls: ls.count("OddsStream connected") == 2, timeout=40,
                               what="reconnected with a fresh token")
        await streams_open(live, 1)
        await publish(live, "football", "epl", "meridian", "Chelsea", 3.75)
        await child.wait_lines(lambda ls: "Arsenal - Chelsea | Chelsea: 3.75" in ls,
                               what="prices after the restart")
        assert not any("Parse error" in ln for ln in child.lines)
    finally:
        await child.stop()
        await server.stop()


async def test_seed_live_odds_example_prints_best_price_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with odds_server(tmp_path) as live:
        monkeypatch.setenv("ODDSSTREAM_API_KEY", live.key("live"))
        child = await run_node(seed_text("oddsstream_live_odds.mjs", live.port))
        try:
            await child.wait_lines(lambda ls: "Connected to OddsStream EPL feed" in ls,
                                   what="connected")
            await streams_open(live, 1)
            await publish(live, "football", "epl", "sharpline", "Arsenal", 2.1)
            await publish(live, "football", "epl", "northbet", "Arsenal", 2.25)  # better
            await publish(live, "football", "epl", "oddsfox", "Arsenal", 2.0)  # worse: silent
            await publish(live, "football", "lig1", "oddsfox", "PSG", 9.0)  # other league
            await publish(live, "football", "epl", "oddsfox", "Draw", 3.4)
            want = f"  {'Draw':25} 3.40 @ OddsFox"  # printBest: sel.padEnd(25), toFixed(2)
            await child.wait_lines(lambda ls: want in ls, what="best-price table")
            tables = [i for i, ln in enumerate(child.lines) if ln == "=== Arsenal - Chelsea ==="]
            assert len(tables) == 3
            last = child.lines[tables[-1] + 1:]
            assert last[:2] == [f"  {'Arsenal':25} 2.25 @ NorthBet", f"  {'Draw':25} 3.40 @ OddsFox"]
            assert not any("PSG" in ln or "Error" in ln for ln in child.lines)
        finally:
            await child.stop()


# -- frames, filters, keep-alive -------------------------------------------------------------


async def test_frames_are_exactly_the_seed_object_one_per_selection(tmp_path: Path) -> None:
    async with odds_server(tmp_path) as live:
        ws = await stream(live)
        try:
            await streams_open(live, 1)
            for sel, odds in (("Arsenal", 2.1), ("Draw", 3.4), ("Chelsea", 3.6)):
                await publish(live, "football", "epl", "sharpline", sel, odds)
            frames = [await recv_json(ws) for _ in range(3)]
            for frame, (sel, odds) in zip(frames, (("Arsenal", 2.1), ("Draw", 3.4),
                                                   ("Chelsea", 3.6)), strict=True):
                assert list(frame) == FRAME_KEYS
                assert frame["selection"] == sel and frame["odds"] == odds
                assert (frame["bookmaker"], frame["competition"], frame["sport"],
                        frame["market_type"]) == ("Sharpline", "EPL", "Football", "moneyline")
                assert type(frame["period"]) is int and frame["is_live"] is True
            await publish(live, "football", "epl", "sharpline", "Draw", 3.3, suspended=True)
            await nothing(ws)
        finally:
            await ws.close()


async def test_ping_is_answered_with_raw_pong(tmp_path: Path) -> None:
    async with odds_server(tmp_path) as live:
        ws = await stream(live)
        try:
            await ws.send("ping")
            assert await asyncio.wait_for(ws.recv(), 5) == "pong"
            await ws.send("hello")  # not ping: ignored, never answered
            await nothing(ws)
            await ws.send("ping")
            assert await asyncio.wait_for(ws.recv(), 5) == "pong"
        finally:
            await ws.close()


@pytest.mark.parametrize(("query", "gets"), [
    ("", {"EPL/Sharpline", "LIG1/NorthBet", "NBA/Sharpline"}),
    ("&sport=Football", {"EPL/Sharpline", "LIG1/NorthBet"}),
    ("&sport=Football&competition=EPL", {"EPL/Sharpline"}),
    ("&competition=lig1", {"LIG1/NorthBet"}),
    ("&bookmaker=Sharpline", {"EPL/Sharpline", "NBA/Sharpline"}),
    ("&sport=Basketball&bookmaker=Sharpline", {"NBA/Sharpline"}),
    ("&sport=Basketball&competition=EPL", set()),  # AND: valid names, no match
])
async def test_filters_narrow_exactly(tmp_path: Path, query: str, gets: set[str]) -> None:
    async with odds_server(tmp_path) as live:
        ws = await stream(live, query=query)
        try:
            await streams_open(live, 1)
            await publish(live, "football", "epl", "sharpline", "Arsenal", 2.1)
            await publish(live, "football", "lig1", "northbet", "PSG", 1.5)
            await publish(live, "basketball", "nba", "sharpline", "Lakers", 1.9)
            got = set()
            for _ in gets:
                f = await recv_json(ws)
                got.add(f"{f['competition']}/{f['bookmaker']}")
            assert got == gets
            await nothing(ws)
        finally:
            await ws.close()


async def test_idle_connections_are_dropped(tmp_path: Path) -> None:
    async with odds_server(tmp_path) as live:
        ws = await stream(live)
        await streams_open(live, 1)
        conn = oddsstream_conns(live)[0]
        conn.tick(conn.last_seen + 299.0, ping=False)  # under five minutes: kept
        await nothing(ws)
        pong = conn.registry.config.pong_timeout
        conn.tick(conn.last_seen + 300.0 + pong + 1, ping=False)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 4002


# -- tokens, plans, quotas --------------------------------------------------------------------


async def upgrade_status(live: Live, query: str) -> tuple[int, dict[str, Any]]:
    with pytest.raises(InvalidStatus) as info:
        async with connect(f"ws://127.0.0.1:{live.port}/api/stream{query}"):
            pass
    response = info.value.response
    return response.status_code, json.loads(response.body or b"{}")


async def test_token_refusals_at_the_upgrade(tmp_path: Path) -> None:
    async with odds_server(tmp_path) as live:
        assert (await upgrade_status(live, ""))[0] == 401
        assert (await upgrade_status(live, "?token="))[0] == 401
        token = await token_of(live, "rt")
        head, payload, sig = token.rsplit(".", 2)
        tampered = f"{head}.{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{sig}"
        status, body = await upgrade_status(live, f"?token={tampered}")
        assert (status, body["error"]["code"]) == (401, "unauthorized")
        status, body = await upgrade_status(live, f"?token={live.key('rt')}")  # a key in a URL
        assert (status, body["error"]["code"]) == (401, "key_in_url")
        gate = live.server.gate
        kid = gate.keystore.current_signing_kid()
        record = gate.keystore.verify(live.key("rt"))
        assert record is not None
        now = int(time.time())
        expired = sign_token(TokenClaims(record.id, "reader", "pro+rt", None, now - 400,
                                         now - 100, "n1"), kid, gate.keystore.signing_keys()[kid])
        status, body = await upgrade_status(live, f"?token={expired}")
        assert status == 401 and "expired" in body["error"]["message"]
        ws = await connect(f"ws://127.0.0.1:{live.port}/api/stream?token={token}")
        await ws.close()
        status, body = await upgrade_status(live, f"?token={token}")  # already spent
        assert status == 401 and "already used" in body["error"]["message"]
        status, body = await upgrade_status(live, f"?token={await token_of(live, 'rt')}"
                                                  "&sport=Footbal")
        assert status == 422 and "GET /api/sports" in body["error"]["message"]
        status, _ = await upgrade_status(live, f"?token={await token_of(live, 'rt')}"
                                               f"&bookmaker={'x' * 200}")
        assert status == 422


async def test_plans_free_pro_and_pro_plus(tmp_path: Path) -> None:
    async with odds_server(tmp_path) as live, \
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{live.port}") as http:
        post = "/api/stream/token"
        assert live.key("free").startswith("os_live_")
        for _ in range(30):
            assert (await http.post(post, headers={"X-Api-Key": live.key("free")})
                    ).status_code == 200
        res = await http.post(post, headers={"X-Api-Key": live.key("free")})
        assert res.status_code == 429 and res.json()["error"]["code"] == "rate_limited"
        assert 0 < int(res.headers["Retry-After"]) <= 86400
        res = await http.post(post, headers={"X-Api-Key": live.key("pro")})
        assert res.status_code == 403 and "streaming" in res.json()["error"]["message"]
        for key in ("rt", "live"):
            for _ in range(40):
                assert (await http.post(post, headers={"X-Api-Key": live.key(key)})
                        ).status_code == 200
        res = await http.post(post, headers={"X-Api-Key": "os_live_nope_nope"})
        assert res.status_code == 401
        res = await http.post(post)
        assert res.status_code == 401
        # A Pro token from the native endpoint is refused at the OddsStream upgrade too.
        res = await http.post("/v1/tokens", headers={"X-Api-Key": live.key("pro")})
        assert res.status_code == 200
        status, body = await upgrade_status(live, f"?token={res.json()['token']}")
        assert (status, body["error"]["code"]) == (403, "forbidden")
        # Pro still reads the REST odds.
        assert (await http.get("/api/sports", headers={"X-Api-Key": live.key("pro")})
                ).status_code == 200


# -- REST ---------------------------------------------------------------------------------


async def test_rest_routes_and_their_errors(tmp_path: Path) -> None:
    async with odds_server(tmp_path) as live, \
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{live.port}") as http:
        h = {"X-Api-Key": live.key("rt")}
        sports = (await http.get("/api/sports", headers=h)).json()
        assert sports[0]["name"] == "Football"
        assert "EPL" in [c["code"] for c in sports[0]["competitions"]]
        books = (await http.get("/api/bookmakers", headers=h)).json()
        assert "Sharpline" in [b["name"] for b in books]
        for book, odds in (("sharpline", 2.0), ("northbet", 1.9), ("oddsfox", 2.4)):
            await publish(live, "football", "epl", book, "Arsenal", odds)
            await publish(live, "football", "epl", book, "Chelsea", 4.0 if book != "oddsfox"
                          else 3.2)
            await publish(live, "football", "epl", book, "Draw", 4.0)
        url = "/api/odds?sport=Football&competition=EPL&bookmaker=OddsFox"
        got: list[dict[str, Any]] = []
        for _ in range(100):  # the domain snapshot follows the hub within a loop turn or two
            res = await http.get(url, headers=h)
            assert res.status_code == 200, res.text
            got = res.json()
            if len(got) == 3:
                break
            await asyncio.sleep(0.05)
        assert [(p["selection"], p["odds"]) for p in got] == [
            ("Arsenal", 2.4), ("Chelsea", 3.2), ("Draw", 4.0)]
        assert list(got[0]) == FRAME_KEYS
        bets = (await http.get("/api/value-bets", headers=h)).json()
        assert bets and bets[0]["selection"] == "Arsenal" and bets[0]["bookmaker"] == "OddsFox"
        assert all(b["edge_pct"] > 2.0 for b in bets)
        assert (await http.get("/api/value-bets?min_edge=0.5", headers=h)).json() == []
        assert (await http.get("/api/value-bets?min_edge=2", headers=h)).status_code == 422
        res = await http.get("/api/odds?sport=Curling", headers=h)
        assert res.status_code == 422 and "GET /api/sports" in res.json()["error"]["message"]
        assert (await http.get("/api/odds", headers={"X-Api-Key": "os_live_bad_bad"})
                ).status_code == 401
        assert (await http.get("/api/odds")).status_code == 401
        res = await http.get("/api/odds", headers={"X-Api-Key": live.key("stakeonly")})
        assert res.status_code == 403 and res.json()["error"]["code"] == "forbidden"


# -- bad input never disturbs neighbours ---------------------------------------------------


async def test_bad_frames_close_only_their_own_connection(tmp_path: Path) -> None:
    async with odds_server(tmp_path) as live:
        neighbour = await stream(live)
        chatty = await stream(live)
        binary = await stream(live)
        big = await stream(live)
        try:
            await streams_open(live, 4)
            await chatty.send('{"type":"subscribe"}')
            await chatty.send("not ping")
            await binary.send(b"\x00\x01ping")
            await big.send("p" * 200_000)
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(binary.recv(), 5)
            assert binary.close_code == 1003
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(big.recv(), 5)
            assert big.close_code == 1009
            await publish(live, "football", "epl", "sharpline", "Arsenal", 2.2)
            for ws in (neighbour, chatty):
                assert (await recv_json(ws))["odds"] == 2.2
            await chatty.send("ping")
            assert await asyncio.wait_for(chatty.recv(), 5) == "pong"
        finally:
            for ws in (neighbour, chatty, binary, big):
                await ws.close()
