"""Data Stream (seed 004): the page's own JavaScript WebSocket and EventSource examples under
Node, and ``curl -N``, against a live server; plus the exact Round schema and the errors."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from dialect_harness import (
    Child,
    CuttingProxy,
    Live,
    Rounds,
    run_node,
    running_server,
    seed_text,
    subscribed,
)
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

ROUND_KEYS = ["round_id", "game_id", "game_slug", "game_type", "finished_at", "extras",
              "timestamp"]


def expected_round(data: dict[str, Any]) -> dict[str, Any]:
    """What the seed documents for a canonical round (timestamp checked separately)."""
    return {
        "round_id": data["index"],
        "game_id": data["game_id"],
        "game_slug": data["game_slug"],
        "game_type": data["category"],
        "finished_at": data["finished_at"][:19] + "Z",
        "extras": json.dumps(data["extras"], separators=(",", ":")),
    }


def check_round(frame: dict[str, Any], data: dict[str, Any]) -> None:
    assert list(frame) == ROUND_KEYS
    assert {k: frame[k] for k in ROUND_KEYS[:-1]} == expected_round(data)
    assert isinstance(frame["timestamp"], int)
    assert abs(frame["timestamp"] - time.time() * 1000) < 60_000  # send time, Unix ms


async def test_ws_seed_example_prints_every_round(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        rounds = Rounds(server)
        child = await run_node(seed_text("datastream_ws.mjs", server.port))
        try:
            await child.wait_lines(lambda ls: "Connected" in ls, what="Connected")
            await subscribed(server, "game:crash")
            crash = await rounds.publish("crash", 5)
            await rounds.publish("double", 2)  # another game: not on /ws/crash
            crash += await rounds.publish("crash", 3)
            want = [f"Round {r['index']}: {json.dumps(r['extras'], separators=(',', ':'))}"
                    for r in crash]
            await child.wait_lines(lambda ls: len(ls) >= 1 + len(want), what="all rounds")
            await asyncio.sleep(0.2)
            assert child.lines == ["Connected", *want]
        finally:
            await child.stop()


async def test_ws_round_schema_by_game_and_by_type(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        rounds = Rounds(server)
        base = f"ws://127.0.0.1:{server.port}"
        async with connect(base + "/ws/crash") as by_game, \
                connect(base + "/ws/type/multiplier") as by_type, \
                connect(base + "/ws/type/color") as colour:
            await subscribed(server, "game:crash", 2)
            await subscribed(server, "game:slot")
            await subscribed(server, "game:double")
            crash = await rounds.publish("crash")
            double = await rounds.publish("double")
            slot = await rounds.publish("slot")
            frame = json.loads(await asyncio.wait_for(by_game.recv(), 10))
            check_round(frame, crash[0])
            assert json.loads(frame["extras"]) == {"point": crash[0]["result"]["multiplier"]}
            got = [json.loads(await asyncio.wait_for(by_type.recv(), 10)) for _ in range(2)]
            check_round(got[0], crash[0])
            check_round(got[1], slot[0])
            assert set(json.loads(got[1]["extras"])) == {"reels", "multiplier"}
            frame = json.loads(await asyncio.wait_for(colour.recv(), 10))
            check_round(frame, double[0])
            assert set(json.loads(frame["extras"])) == {"color", "number"}
            with pytest.raises(TimeoutError):  # nothing else was sent on /ws/crash
                await asyncio.wait_for(by_game.recv(), 0.3)


async def test_ws_unknown_game_or_type_is_404(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        base = f"ws://127.0.0.1:{server.port}"
        for path in ("/ws/nope", "/ws/type/nope"):
            with pytest.raises(InvalidStatus) as info:
                async with connect(base + path):
                    pass
            assert info.value.response.status_code == 404
            body = json.loads(info.value.response.body or b"{}")
            assert body["error"]["code"] == "not_found"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
            r = await http.get("/ws/crash")
            assert r.status_code == 426


async def test_sse_seed_example_initial_then_messages(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        rounds = Rounds(server)
        before = await rounds.publish("crash", 3)
        child = await run_node(seed_text("datastream_sse.mjs", server.port))
        try:
            await child.wait_lines(lambda ls: any(x.startswith("Initial:") for x in ls),
                                   what="initial event")
            await subscribed(server, "game:crash")
            after = await rounds.publish("crash", 4)
            await child.wait_lines(lambda ls: sum(x.startswith("New round:") for x in ls) >= 4,
                                   what="4 new rounds")
            text = "\n".join(child.lines)
            assert child.lines[0] == "Connected"
            initial = text.split("Initial:")[1].split("New round:")[0]
            assert f"round_id: {before[-1]['index']}," in initial  # the latest round first
            news = text.split("New round:")[1:]
            assert all(f"round_id: {r['index']}," in n for r, n in zip(after, news, strict=True))
        finally:
            await child.stop()


async def _curl(port: int, path: str, seconds: float, *headers: str) -> str:
    args = ["curl", "-sN", "-i", "--max-time", str(seconds)]
    for h in headers:
        args += ["-H", h]
    proc = await asyncio.create_subprocess_exec(
        *args, f"http://127.0.0.1:{port}{path}", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    return out.decode()


def sse_events(text: str) -> list[dict[str, str]]:
    body = text.split("\r\n\r\n", 1)[1]
    events = []
    for block in body.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            key, _, value = line.partition(":")
            fields[key or "comment"] = value[1:] if value.startswith(" ") else value
        if fields:
            events.append(fields)
    return events


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_sse_curl_shows_initial_heartbeats_and_ids(tmp_path: Path) -> None:
    async with running_server(tmp_path, sse_heartbeat=1.0) as server:
        rounds = Rounds(server)
        before = await rounds.publish("crash", 2)
        # curl's --max-time bounds the capture: long enough for a loaded machine
        task = asyncio.create_task(_curl(server.port, "/sse/crash", 6.0))
        await subscribed(server, "game:crash")
        after = await rounds.publish("crash", 2)
        text = await task
    head = text.split("\r\n\r\n", 1)[0].lower()
    assert "content-type: text/event-stream" in head
    assert "cache-control: no-cache" in head
    assert "connection: keep-alive" in head
    events = sse_events(text)
    assert events[0] == {"retry": "1000"}
    data = [e for e in events if "data" in e]
    assert [e["event"] for e in data] == ["initial", "message", "message"]
    for e, r in zip(data, [before[-1], *after], strict=True):
        check_round(json.loads(e["data"]), r)
        assert e["id"]
    assert any(e.get("comment", "").startswith("heartbeat ") for e in events)


async def test_sse_unknown_game_and_bad_last_event_id(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server, \
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
        for path in ("/sse/nope", "/sse/type/nope"):
            r = await http.get(path)
            assert r.status_code == 404
            assert r.json()["error"]["code"] == "not_found"
        r = await http.get("/sse/crash", headers={"Last-Event-ID": "!!not-a-token!!"})
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "bad_resume_token"


async def test_sse_by_type_initial_is_latest_of_any_game(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        rounds = Rounds(server)
        await rounds.publish("crash", 2)
        slot = await rounds.publish("slot", 1)
        text = await _curl(server.port, "/sse/type/multiplier", 3.0)
        data = [e for e in sse_events(text) if "data" in e]
        assert [e["event"] for e in data] == ["initial"]
        check_round(json.loads(data[0]["data"]), slot[0])


async def _sse_resume_case(server: Live, child: Child, proxy: CuttingProxy,
                           rounds: Rounds) -> None:
    await child.wait_lines(lambda ls: any(x.startswith("Initial:") for x in ls),
                           what="initial event")
    await subscribed(server, "game:crash")
    sent = await rounds.publish("crash", 3)
    await child.wait_lines(lambda ls: sum(x.startswith("New round:") for x in ls) >= 3,
                           what="3 rounds before the cut")
    proxy.cut()  # the network drops mid-stream
    await asyncio.sleep(0.3)
    sent += await rounds.publish("crash", 4)  # published while the client is away
    proxy.heal()
    await child.wait_lines(lambda ls: ls.count("Connected") >= 2, what="reconnected")
    sent += await rounds.publish("crash", 2)
    await child.wait_lines(lambda ls: sum(x.startswith("New round:") for x in ls) >= 9,
                           what="every round")
    await asyncio.sleep(0.2)
    text = "\n".join(child.lines)
    news = text.split("New round:")[1:]
    ids = [int(n.split("round_id: ")[1].split(",")[0]) for n in news]
    assert ids == [r["index"] for r in sent]  # nothing lost, nothing twice
    assert text.count("Initial:") == 1  # a resumed stream does not repeat `initial`
    assert "Reconnecting..." in child.lines


async def test_sse_seed_example_resumes_after_a_drop(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        rounds = Rounds(server)
        await rounds.publish("crash", 1)
        proxy = await CuttingProxy(server.port).start()
        child = await run_node(seed_text("datastream_sse.mjs", server.port).replace(
            f"127.0.0.1:{server.port}", f"127.0.0.1:{proxy.port}"))
        try:
            await _sse_resume_case(server, child, proxy, rounds)
        finally:
            await child.stop()
            await proxy.close()
