"""Hostile anonymous clients against a real server (issue 13): what one request may cost the
loop, what memory a client may pin, who may publish, and what credentials a URL may carry.

What a hostile request costs is measured in the server's CPU time (load-independent); a
neighbour pings throughout and must keep being answered (its round trips are printed).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus


async def _ping_loop(ws: ClientConnection, stop: asyncio.Event, rtts: list[float]) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        await ws.send('{"op":"ping"}')
        while json.loads(await asyncio.wait_for(ws.recv(), 30))["op"] != "pong":
            pass
        rtts.append(time.perf_counter() - started)
        await asyncio.sleep(0.005)


def _cpu_seconds(server: Any) -> float:
    """CPU time the server process has used (user + system, every thread): what the hostile
    requests cost it, whatever else the machine is doing (wall-clock times are not)."""
    fields = Path(f"/proc/{server.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _assert_cheap(rtts: list[float], cpu: float) -> None:
    """The refusals cost the server little CPU: a neighbour on one event loop cannot be
    stalled longer than the server computed (on main the refusals stalled it 3.2 s and 25 s,
    8.6 s for the URL case: seconds of CPU). The neighbour kept being answered throughout;
    its round trips are printed, not asserted (a loaded machine delays them anyway)."""
    stall = sum(r - 0.02 for r in rtts if r > 0.02)
    print(f"neighbour: {len(rtts)} pings, max {max(rtts) * 1000:.1f} ms, "
          f"stall {stall * 1000:.1f} ms; server CPU {cpu * 1000:.0f} ms")
    assert len(rtts) >= 2, rtts
    assert cpu < 1.0, (cpu, max(rtts), stall)


async def test_huge_subscribe_frames_are_refused_without_stalling_a_neighbour(
    server: Any,
) -> None:
    names = [f"c{i:04d}" for i in range(8000)]  # ~63 KB each frame
    frame = json.dumps({"op": "subscribe", "channels": names}, separators=(",", ":"))
    assert 60_000 < len(frame) < 65_536
    async with connect(server.ws_url + "/v1/ws") as neighbour, \
            connect(server.ws_url + "/v1/ws", max_size=2**20) as hostile:
        await neighbour.send('{"op":"ping"}')
        await neighbour.recv()
        stop = asyncio.Event()
        rtts: list[float] = []
        pinger = asyncio.create_task(_ping_loop(neighbour, stop, rtts))
        await asyncio.sleep(0.1)
        errors = []
        cpu = _cpu_seconds(server)
        for _ in range(20):
            await hostile.send(frame)
            errors.append(json.loads(await asyncio.wait_for(hostile.recv(), 30)))
        cpu = _cpu_seconds(server) - cpu
        await asyncio.sleep(0.1)
        stop.set()
        await pinger
    assert {e["op"] for e in errors} == {"error"}
    assert {e["code"] for e in errors} == {"too_many_channels"}
    _assert_cheap(rtts, cpu)


# The hostile client runs in a process of its own: building 56 KB URLs costs the client
# CPU too, and the neighbour's pings must measure the server's loop, not this one's.
_URL_CLIENT = """
import json, sys, urllib.parse
import httpx
from websockets.sync.client import connect
from websockets.exceptions import InvalidStatus
base, ws_base = sys.argv[1], sys.argv[2]
raw = ",".join(f"c{i:04d}" for i in range(7000))
query = urllib.parse.urlencode({"channels": raw})
codes = []
with httpx.Client(base_url=base, timeout=30) as http:
    for _ in range(6):
        r = http.get(f"/v1/sse?{query}")
        codes.append((r.status_code, r.json()["error"]["code"]))
for _ in range(6):
    try:
        with connect(f"{ws_base}/v1/ws?{query}"):
            codes.append((101, "opened"))
    except InvalidStatus as exc:
        body = json.loads(exc.response.body)
        codes.append((exc.response.status_code, body["error"]["code"]))
print(json.dumps(codes))
"""


async def test_huge_url_subscriptions_are_refused_cheaply(server: Any) -> None:
    async with connect(server.ws_url + "/v1/ws") as neighbour:
        stop = asyncio.Event()
        rtts: list[float] = []
        pinger = asyncio.create_task(_ping_loop(neighbour, stop, rtts))
        await asyncio.sleep(0.1)
        cpu = _cpu_seconds(server)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _URL_CLIENT, server.url, server.ws_url,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        cpu = _cpu_seconds(server) - cpu
        await asyncio.sleep(0.1)
        stop.set()
        await pinger
    assert proc.returncode == 0
    assert {tuple(c) for c in json.loads(out)} == {(400, "too_many_channels")}
    _assert_cheap(rtts, cpu)


def _rss_mib(server: Any) -> float:
    with open(f"/proc/{server.proc.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_distinct_huge_filters_do_not_pin_memory(server: Any) -> None:
    before = _rss_mib(server)
    codes = []
    async with connect(server.ws_url + "/v1/ws", max_size=2**20) as hostile:
        for i in range(150):  # on main: each kept by the intern table, after close too
            flt = {"x": str(i), "bookmaker": list(range(8000))}  # ~40 KB
            await hostile.send(json.dumps({"op": "subscribe", "channels": ["game:f"],
                                           "filter": flt}))
            codes.append(json.loads(await asyncio.wait_for(hostile.recv(), 30)))
    async with connect(server.ws_url + "/v1/ws", max_size=2**20) as hostile:
        # filters within the bounds, each distinct: held while subscribed, not after
        for i in range(90):
            flt = {"bookmaker": [f"b{i}-{j:03d}-{'x' * 20}" for j in range(250)]}
            await hostile.send(json.dumps({"op": "subscribe", "channels": [f"game:g{i}"],
                                           "filter": flt}))
            assert json.loads(await asyncio.wait_for(hostile.recv(), 30))["op"] == "subscribed"
    await asyncio.sleep(0.5)
    after = _rss_mib(server)
    print(f"RSS {before:.1f} -> {after:.1f} MiB")
    assert after - before < 30, (before, after)
    assert {c.get("code") for c in codes} == {"bad_parameter"}, codes[:1]


# --------------------------------------------------------------------------- open-mode publish


async def test_publish_needs_a_json_content_type(server: Any) -> None:
    """What a page on any origin can send without a preflight is refused, before it is read."""
    body = '{"channel":"game:csrf","data":1}'
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        for ctype in ("text/plain", "text/plain;charset=UTF-8",
                      "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                      None):
            headers = {"content-type": ctype} if ctype else {}
            r = await http.post("/v1/publish", content=body, headers=headers)
            assert r.status_code == 415, (ctype, r.text)
            assert r.json()["error"]["code"] == "unsupported_media_type"
        gone = await http.get("/v1/channels/game:csrf/messages")
        assert gone.status_code == 404  # nothing was published
        ok = await http.post("/v1/publish", content=body,
                             headers={"content-type": "application/json; charset=utf-8"})
        assert ok.status_code == 200, ok.text


async def test_anonymous_publishing_is_refused_by_default(server_factory: Any) -> None:
    srv = server_factory(["--no-anonymous-publish"])
    match = srv.wait_output(r"demo publisher key:\s+(ww_\S+)")
    async with httpx.AsyncClient(base_url=srv.url, timeout=10) as http:
        r = await http.post("/v1/publish", json={"channel": "game:anon", "data": 1})
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", r.text
        r = await http.post("/v1/publish", json={"channel": "game:anon", "data": 1},
                            headers={"authorization": f"Bearer {match.group(1)}"})
        assert r.status_code == 200, r.text
        # reading stays open
        assert (await http.get("/v1/channels/game:anon/messages")).status_code == 200
    async with connect(srv.ws_url + "/v1/ws") as ws:  # a WebSocket has no CORS at all
        await ws.send(json.dumps({"op": "publish", "channel": "game:anon", "data": 2}))
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert frame["op"] == "error" and frame["code"] == "unauthorized", frame
        await ws.send('{"op":"subscribe","channels":["game:anon"]}')
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["op"] == "subscribed"


# --------------------------------------------------------------------------- credentials in URLs


def _demo_keys(srv: Any) -> tuple[str, str]:
    reader = srv.wait_output(r"demo reader key \(user demo-1\): (ww_\S+)")
    publisher = srv.wait_output(r"demo publisher key:\s+(ww_\S+)")
    return reader.group(1), publisher.group(1)


async def test_an_api_key_in_a_url_is_refused(server: Any) -> None:
    reader, _ = _demo_keys(server)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        r = await http.get("/v1/channels", params={"token": reader})
        assert r.status_code == 401 and r.json()["error"]["code"] == "key_in_url", r.text
        r = await http.get("/v1/sse", params={"channels": "game:crash", "token": reader})
        assert r.status_code == 401 and r.json()["error"]["code"] == "key_in_url", r.text
        # the same key in a header is fine, and so is a stream token in the URL
        r = await http.get("/v1/channels", headers={"authorization": f"Bearer {reader}"})
        assert r.status_code == 200
        token = (await http.post("/v1/tokens",
                                 headers={"authorization": f"Bearer {reader}"})).json()["token"]
        r = await http.get("/v1/channels", params={"token": token})
        assert r.status_code == 200
    try:
        async with connect(f"{server.ws_url}/v1/ws?token={reader}"):
            raise AssertionError("opened with a key in the URL")
    except InvalidStatus as exc:
        assert exc.response.status_code == 401
        assert json.loads(exc.response.body)["error"]["code"] == "key_in_url"
    async with connect(f"{server.ws_url}/v1/ws?token={token}") as ws:
        await ws.send('{"op":"ping"}')
        assert json.loads(await ws.recv())["op"] == "pong"


async def test_a_stream_opened_with_a_token_ends_when_the_token_expires(
    server_factory: Any,
) -> None:
    srv = server_factory(["--token-ttl", "2"])
    reader, _ = _demo_keys(srv)
    async with httpx.AsyncClient(base_url=srv.url, timeout=10) as http:
        token = (await http.post("/v1/tokens",
                                 headers={"authorization": f"Bearer {reader}"})).json()["token"]
    started = time.monotonic()
    async with connect(f"{srv.ws_url}/v1/ws?token={token}") as ws, \
            connect(f"{srv.ws_url}/v1/ws", additional_headers={
                "authorization": f"Bearer {reader}"}) as by_key:
        await ws.send('{"op":"subscribe","channels":["game:expiry"]}')
        assert json.loads(await ws.recv())["op"] == "subscribed"
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001
        assert "expired" in closed.value.rcvd.reason
        assert 0.5 < time.monotonic() - started < 4.5
        await by_key.send('{"op":"ping"}')  # a stream opened with a key stays open
        assert json.loads(await by_key.recv())["op"] == "pong"
    async with httpx.AsyncClient(base_url=srv.url, timeout=10) as http:
        token = (await http.post("/v1/tokens",
                                 headers={"authorization": f"Bearer {reader}"})).json()["token"]
        started = time.monotonic()
        async with http.stream("GET", "/v1/sse", params={"channels": "game:expiry",
                                                         "token": token}) as resp:
            assert resp.status_code == 200
            text = ""
            async for chunk in resp.aiter_text():  # ends when the server closes
                text += chunk
        assert "event: error" in text and "expired" in text, text
        assert time.monotonic() - started < 4.5
        metrics = (await http.get("/metrics")).text  # counted by transport and code
        assert re.search(r'wagerwire_stream_error_frames_total\{(code="unauthorized",'
                         r'transport="sse"|transport="sse",code="unauthorized")\} 1\.0', metrics)
