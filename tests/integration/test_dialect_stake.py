"""Stake (seed 000): the guide's own ``StakeWebSocket``/``MyHandler`` client and its basic
connection snippet (websockets 13.1) against a live server; private ``user:balances`` with
test keys; the REST balance query; errors; and a reconnect that loses no balance state.

The auth gate here is the tests' :class:`~dialect_harness.KeyGate` (keys with users and
plans), installed in the in-process server in place of the "auth off" stub.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from dialect_harness import (
    CuttingProxy,
    Live,
    Rounds,
    run_python,
    running_server,
    seed_python_path,
    seed_text,
    subscribed,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from wagerwire.sources.casino import BalanceSimulator

USER_BALANCES_QUERY = """query UserBalances {
  user { id balances { available { amount currency __typename }
                       vault { amount currency __typename } __typename } __typename }
}"""

# The guide's Usage section subscribes to user:balances only; this main drives the same
# classes over all three channel kinds the guide names (the rest of the file is unchanged).
MAIN_ALL_CHANNELS = '''async def main():
    handler = MyHandler(access_token="KEY")
    await handler.subscribe("user:balances")
    await handler.subscribe("game:stake-crash")
    await handler.subscribe("sports:event:e1")
    await handler.connect()

asyncio.run(main())
'''


@pytest.fixture(scope="session")
def seed_deps(request: pytest.FixtureRequest) -> Path:
    return seed_python_path()


def as_received(data: Any) -> Any:
    return json.loads(json.dumps(data))


class Balances:
    """Demo balance updates published into the hub (both demo users)."""

    def __init__(self, server: Live) -> None:
        self.server = server
        self.sim = BalanceSimulator(42)
        self.clock = 1_780_000_000_000
        self.latest: dict[str, dict[str, Any]] = {"demo-1": {}, "demo-2": {}}

    async def _publish(self, channel: str, data: dict[str, Any]) -> dict[str, Any]:
        await self.server.hub.publish(channel, data, attrs={"user": data["user_id"]})
        self.latest[data["user_id"]][data["currency"]] = data
        return data

    async def snapshot(self) -> list[dict[str, Any]]:
        self.clock += 1000
        return [await self._publish(c, d) for c, d in self.sim.snapshot(self.clock)]

    async def updates(self, count: int) -> list[dict[str, Any]]:
        out = []
        for _ in range(count):
            self.clock += 1000
            out.append(await self._publish(*self.sim.next_update(self.clock)))
        return out


def balance_line(data: dict[str, Any]) -> str:
    return f"💰 Balance changed: {as_received(data)}"


async def test_seed_client_gets_balances_games_and_sports(tmp_path: Path,
                                                          seed_deps: Path) -> None:
    async with running_server(tmp_path) as server:
        balances = Balances(server)
        rounds = Rounds(server)
        initial = await balances.snapshot()
        source = seed_text("stake_client.py", server.port, {"your_token": server.key("key-demo-1")})
        source = source.replace(source[source.index("async def main():"):],
                                MAIN_ALL_CHANNELS.replace("KEY", server.key("key-demo-1")))
        child = await run_python(source, tmp_path, seed_deps)
        try:
            await subscribed(server, "sports:event:e1")
            want = [balance_line(d) for d in initial if d["user_id"] == "demo-1"]
            for data in await balances.updates(6):
                if data["user_id"] == "demo-1":
                    want.append(balance_line(data))
            for data in await rounds.publish("stake-crash", 2):
                want.append(f"🎰 Game update: {as_received(data)}")
            event = {"event_id": "e1", "home": 1, "away": 0, "status": "live"}
            await server.hub.publish("sports:event:e1", event)
            want.append(f"📩 {{'channel': 'sports:event:e1', 'payload': {event}}}")
            await child.wait_lines(lambda ls: len(ls) >= len(want), what="every frame")
            await asyncio.sleep(0.3)
            assert child.lines == want
        finally:
            await child.stop()


async def test_basic_connection_snippet(tmp_path: Path, seed_deps: Path) -> None:
    async with running_server(tmp_path) as server:
        balances = Balances(server)
        await balances.snapshot()
        child = await run_python(
            seed_text("stake_basic.py", server.port, {"your_token_here": server.key("key-demo-2")}),
            tmp_path, seed_deps,
        )
        try:
            await subscribed(server, "user:demo-2:balances")
            updates = await balances.updates(4)
            want = ["✅ Connected to Stake.com WebSocket"] + [
                f"📩 Received: {{'channel': 'user:balances', 'payload': {as_received(d)}}}"
                for d in [*balances.latest["demo-2"].values()]
            ]
            del updates
            await child.wait_lines(lambda ls: len(ls) >= 6, what="snapshot and updates")
            await asyncio.sleep(0.3)
            # snapshot of 3 currencies, then demo-2's two updates (users alternate)
            assert child.lines[0] == want[0]
            assert len(child.lines) == 6
            assert all("'channel': 'user:balances'" in line for line in child.lines[1:])
            assert all("'user_id': 'demo-2'" in line for line in child.lines[1:])
            assert all(line in child.lines for line in want[1:])
        finally:
            await child.stop()


async def _open(server: Live, token: str | None = None, origin: str | None = None
                ) -> ClientConnection:
    headers = {}
    if token is not None:
        headers["x-access-token"] = token
    if origin is not None:
        headers["Origin"] = origin
    return await connect(f"ws://127.0.0.1:{server.port}/_api/websocket",
                         additional_headers=headers)


async def _ask(ws: ClientConnection, msg: Any) -> dict[str, Any]:
    await ws.send(msg if isinstance(msg, str) else json.dumps(msg))
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
    return frame


async def test_errors_are_frames_without_a_channel(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        async with await _open(server, server.key("key-demo-1")) as ws:
            cases: list[tuple[Any, str]] = [
                ("not json", "malformed_json"),
                ({"type": "hello", "channel": "game:crash"}, "unknown_op"),
                ({"type": "subscribe"}, "malformed_json"),
                ({"type": "subscribe", "channel": "chat:global"}, "invalid_channel"),
                ({"type": "subscribe", "channel": "game:nope"}, "not_found"),
                ({"type": "subscribe", "channel": "user:demo-2:balances"}, "invalid_channel"),
            ]
            for msg, code in cases:
                frame = await _ask(ws, msg)
                assert "channel" not in frame, frame  # the seed's handlers read payload
                assert frame["type"] == "error" and frame["payload"]["code"] == code, frame
        async with await _open(server) as anonymous:
            frame = await _ask(anonymous, {"type": "subscribe", "channel": "user:balances"})
            assert frame["payload"]["code"] == "forbidden"
            assert frame["payload"]["channel"] == "user:balances"
        async with await _open(server, server.key("key-stake-only")) as limited:
            frame = await _ask(limited, {"type": "subscribe", "channel": "game:crash"})
            assert frame["payload"]["code"] == "forbidden"


@pytest.mark.parametrize(("token", "origin", "status"), [
    ("wrong-token", "https://stake.com", 401),
    ("key-demo-1", "https://evil.example", 403),
])
async def test_upgrade_refusals(tmp_path: Path, token: str, origin: str, status: int) -> None:
    async with running_server(tmp_path) as server:
        with pytest.raises(InvalidStatus) as info:
            await _open(server, server.keys.get(token, token), origin)
        assert info.value.response.status_code == status


async def test_unsubscribe_and_public_channels(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        rounds = Rounds(server)
        async with await _open(server, None, f"http://127.0.0.1:{server.port}") as ws:
            await ws.send(json.dumps({"type": "subscribe", "channel": "game:crash"}))
            await subscribed(server, "game:crash")
            data = (await rounds.publish("crash"))[0]
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert frame == {"channel": "game:crash", "payload": as_received(data)}
            await ws.send(json.dumps({"type": "unsubscribe", "channel": "game:crash"}))
            await asyncio.sleep(0.2)
            assert "game:crash" not in server.hub.local_subscriber_counts()
            await rounds.publish("crash")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.3)


async def test_rest_balance_query(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        balances = Balances(server)
        await balances.snapshot()
        await balances.updates(5)
        body = {"query": USER_BALANCES_QUERY, "operationName": "UserBalances"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
            r = await http.post("/_api/graphql", json=body,
                                headers={"x-access-token": server.key("key-demo-1")})
            assert r.status_code == 200
            user = r.json()["data"]["user"]
            assert user["id"] == "demo-1"
            got = {b["available"]["currency"]: b["available"]["amount"]
                   for b in user["balances"]}
            assert got == {c: d["amount"] for c, d in balances.latest["demo-1"].items()}
            r = await http.post("/_api/graphql", json=body)
            assert r.status_code == 403 and r.json()["errors"][0]["message"]
            r = await http.post("/_api/graphql", json=body, headers={"x-access-token": "bad"})
            assert r.status_code == 401  # the REST guard's error body, as on every route
            r = await http.post("/_api/graphql", json={"query": "{ sportsList { id } }"},
                                headers={"x-access-token": server.key("key-demo-1")})
            assert r.status_code == 400


async def test_reconnect_loses_no_balance_state(tmp_path: Path, seed_deps: Path) -> None:
    async with running_server(tmp_path) as server:
        balances = Balances(server)
        await balances.snapshot()
        proxy = await CuttingProxy(server.port).start()
        source = seed_text("stake_client.py", server.port, {"your_token": server.key("key-demo-1")})
        source = source.replace(f"127.0.0.1:{server.port}", f"127.0.0.1:{proxy.port}")
        child = await run_python(source, tmp_path, seed_deps)
        try:
            await subscribed(server, "user:demo-1:balances")
            await balances.updates(4)
            await child.wait_lines(lambda ls: len(ls) >= 5, what="snapshot and 2 updates")
            proxy.cut()  # drop mid-stream; the guide's loop reconnects after 1 s
            await asyncio.sleep(0.3)
            missed = [d for d in await balances.updates(8) if d["user_id"] == "demo-1"]
            assert missed
            proxy.heal()
            await subscribed(server, "user:demo-1:balances", timeout=30)
            final = balances.latest["demo-1"]
            want = {balance_line(d) for d in final.values()}
            await child.wait_lines(lambda ls: want <= set(ls[5:]), what="re-sent balances")
        finally:
            await child.stop()
            await proxy.close()
        # The client's view (latest line per currency) equals the server's balances.
        view: dict[str, str] = {}
        for line in child.lines:
            if not line.startswith("💰"):
                continue  # the guide's logger reports the drop on stderr
            payload = line.split(": ", 1)[1]
            currency = payload.split("'currency': '")[1].split("'")[0]
            view[currency] = line
        assert view == {c: balance_line(d) for c, d in final.items()}


async def test_configured_origins_replace_the_defaults(tmp_path: Path) -> None:
    async with running_server(tmp_path, stake_origins=["https://casino.example"]) as server:
        async with await _open(server, server.key("key-demo-1"), "https://casino.example"):
            pass
        with pytest.raises(InvalidStatus) as info:
            await _open(server, server.key("key-demo-1"), "https://stake.com")
        assert info.value.response.status_code == 403
