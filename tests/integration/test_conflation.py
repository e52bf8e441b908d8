"""Slow consumers the betting way, end to end on a real server and real sockets.

A subscriber that reads odds at a tenth of the publish rate stays connected and ends with the
same latest price per key as a fast one, every lifecycle event in order, and the SDK's
protocol sees no gap; a channel with nothing to conflate still cuts with 4000; images come
complete and are followed by live data; ``conflate_ms`` and a delayed plan keep their promise,
checked against the messages' own timestamps.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from dialect_harness import running_server
from websockets.asyncio.client import connect
from wsutil import collect_messages, split_server_frames, subscribe, take

from wagerwire.client import Client
from wagerwire.client.actions import BackfillNeeded, Deliver, GapDetected
from wagerwire.client.protocol import ClientProtocol
from wagerwire.core.tokens import encode_position
from wagerwire.transports.dialects import DialectWsConnection

CHANNEL = "odds:test:conflation"
KEYS = [(ev, bk, sel) for ev in ("e1", "e2") for bk in ("b1", "b2") for sel in ("home", "away",
                                                                            "draw")]
PAD = "p" * 300


def _masked_text(payload: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    n = len(payload)
    head = bytes([0x81, 0x80 | n]) if n < 126 else bytes([0x81, 0xFE]) + n.to_bytes(2, "big")
    return head + mask + body


def _raw_subscriber(port: int, op: dict[str, Any]) -> socket.socket:
    """A raw WebSocket client with a tiny receive buffer (so the server's outbox fills)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    sock.sendall(_masked_text(orjson.dumps(op)))
    return sock


def _items(n: int, start: int = 0) -> list[tuple[str, Any, dict[str, str]]]:
    """``n`` odds updates over the keys, a lifecycle event every 40th."""
    out: list[tuple[str, Any, dict[str, str]]] = []
    for i in range(start, start + n):
        if i % 40 == 39:
            out.append((CHANNEL, {"type": "suspended", "seq": i},
                        {"event": "e1", "lifecycle": "true"}))
            continue
        ev, bk, sel = KEYS[i % len(KEYS)]
        out.append((CHANNEL, {"ev": ev, "bk": bk, "selection_id": sel, "odds": 1.5 + i / 1000,
                              "seq": i, "pad": PAD},
                    {"event": ev, "bookmaker": bk, "market": "m1"}))
    return out


async def _publish(url: str, items: list[tuple[str, Any, dict[str, str]]]) -> None:
    async with connect(url + "/v1/ws") as ws:
        for channel, data, attrs in items:
            await ws.send(json.dumps({"op": "publish", "channel": channel, "data": data,
                                      "attrs": attrs}))
        for _ in items:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
            assert frame["op"] == "published", frame


def _key(frame: dict[str, Any]) -> tuple[str, str, str] | None:
    data = frame["data"]
    if "selection_id" not in data:
        return None
    return data["ev"], data["bk"], data["selection_id"]


def _latest(frames: list[dict[str, Any]]) -> dict[tuple[str, str, str], float]:
    out: dict[tuple[str, str, str], float] = {}
    for f in frames:
        key = _key(f)
        if key is not None:
            out[key] = f["data"]["odds"]
    return out


def _lifecycle(frames: list[dict[str, Any]]) -> list[int]:
    return [f["data"]["seq"] for f in frames if f["data"].get("type") == "suspended"]


class SlowReader(threading.Thread):
    """Reads the raw socket at a tenth of what has been published, then all of it once told."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.allowed = 0  # bytes it may have read so far
        self.unlimited = threading.Event()
        self.stop = threading.Event()
        self.buf = b""
        self.frames: list[tuple[int, bytes]] = []

    def run(self) -> None:
        self.sock.settimeout(0.05)
        while not self.stop.is_set():
            budget = 1 << 16 if self.unlimited.is_set() else self.allowed - len(self.buf) - sum(
                len(p) for _, p in self.frames)
            if budget <= 0:
                time.sleep(0.005)
                continue
            try:
                chunk = self.sock.recv(min(budget, 4096))
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            frames, self.buf = split_server_frames(self.buf + chunk)
            self.frames += frames

    def json_frames(self) -> list[dict[str, Any]]:
        return [json.loads(p) for op, p in self.frames if op == 0x1]


async def test_slow_odds_reader_stays_connected_with_latest_prices(server_factory: Any) -> None:
    server = server_factory(["--outbox-limit", "32768"])
    slow_sock = _raw_subscriber(server.port, {"op": "subscribe", "channels": [CHANNEL]})
    reader = SlowReader(slow_sock)
    reader.start()
    fast = [(await subscribe(server.ws_url, [CHANNEL]))[0] for _ in range(50)]
    await asyncio.sleep(0.3)
    total = 1200
    items = _items(total)
    fast_frames: list[list[dict[str, Any]]] = [[] for _ in fast]
    collectors = [asyncio.create_task(_collect(ws, out)) for ws, out in zip(fast, fast_frames,
                                                                             strict=True)]
    for start in range(0, total, 50):
        batch = items[start:start + 50]
        await _publish(server.ws_url, batch)
        reader.allowed += sum(len(orjson.dumps(d)) for _, d, _ in batch) // 10
        # the fast ones keep up (they read as fast as this one process lets them)
        sent = start + len(batch)
        await _until(lambda: min(map(len, fast_frames)) >= sent)  # noqa: B023
    # The end marker is a lifecycle event too: once the slow reader has it, it has it all.
    await _publish(server.ws_url, [(CHANNEL, {"type": "suspended", "seq": total},
                                    {"event": "e1", "lifecycle": "true"})])
    reader.unlimited.set()
    await _until(lambda: min(map(len, fast_frames)) >= total + 1)
    for task in collectors:
        task.cancel()
    for frames in fast_frames:  # every fast subscriber got everything, in order
        assert [f["offset"] for f in frames] == list(range(1, total + 2))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        slow = reader.json_frames()
        if any(f.get("op") == "message" and f["data"].get("seq") == total for f in slow):
            break
        await asyncio.sleep(0.1)
    reader.stop.set()
    slow = reader.json_frames()
    assert all(op != 0x8 for op, _ in reader.frames), "the slow reader was closed"
    messages = [f for f in slow if f.get("op") == "message"]
    notices = [f for f in slow if f.get("op") == "superseded"]
    assert notices, "the slow reader never fell behind far enough to conflate"
    assert len(messages) < total + 1
    reference = fast_frames[0]
    assert _latest(messages) == _latest(reference)
    assert _lifecycle(messages) == _lifecycle(reference)
    # Every offset is either delivered or announced as superseded before the message past it
    # (the notice comes first), and the SDK's protocol, fed the very frames, sees no gap.
    seen = {m["offset"] for m in messages}
    skipped = {o for n in notices for a, b in n["offsets"] for o in range(a, b + 1)}
    assert seen | skipped == set(range(1, total + 2)) and not seen & skipped
    proto = ClientProtocol([CHANNEL])
    proto.connect_started(0.0)
    proto.connection_opened(0.0)
    delivered = 0
    for frame in slow:
        for action in proto.frame_received(frame, 1.0):
            assert not isinstance(action, GapDetected | BackfillNeeded), action
            delivered += isinstance(action, Deliver)
    assert delivered == len(messages)
    assert proto.counters.live_gaps == 0 and proto.counters.gaps_unrecovered == 0
    assert proto.counters.messages_superseded == len(skipped)
    metrics = httpx.get(server.url + "/metrics").text
    assert re.search(r"^wagerwire_slow_consumer_disconnects_total 0(\.0)?$", metrics, re.M)
    slow_sock.close()
    for ws in fast:
        await ws.close()


async def _collect(ws: Any, out: list[dict[str, Any]]) -> None:
    while True:
        frame = json.loads(await ws.recv())
        if frame["op"] == "message":
            out.append(frame)


async def _until(check: Any, timeout: float = 45.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def _close_code(sock: socket.socket, timeout: float) -> int | None:
    sock.settimeout(timeout)
    buf = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    frames, _ = split_server_frames(buf)
    codes = [int.from_bytes(p[:2], "big") for op, p in frames if op == 0x8]
    return codes[0] if codes else None


async def test_nothing_to_conflate_still_cuts_with_4000(server_factory: Any) -> None:
    """A conflating channel whose messages all have distinct keys, and a channel that does
    not conflate: past the mark, both subscribers are cut as before."""
    server = server_factory(["--outbox-limit", "32768"])
    odds = _raw_subscriber(server.port, {"op": "subscribe", "channels": [CHANNEL]})
    plain = _raw_subscriber(server.port, {"op": "subscribe", "channels": ["prices:plain"]})
    await asyncio.sleep(0.3)
    unique = [(CHANNEL, {"selection_id": f"s{i}", "pad": PAD * 3},
               {"event": "e1", "bookmaker": "b1", "market": "m1"}) for i in range(600)]
    plain_items = [("prices:plain", {"i": i, "pad": PAD * 3}, {"x": "1"}) for i in range(600)]
    both = unique + plain_items
    for start in range(0, len(both), 100):  # the publisher reads its acks as it goes
        await _publish(server.ws_url, both[start:start + 100])
    codes = await asyncio.gather(asyncio.to_thread(_close_code, odds, 10.0),
                                 asyncio.to_thread(_close_code, plain, 10.0))
    assert codes == [4000, 4000]
    odds.close()
    plain.close()


async def test_image_is_complete_then_live_without_gap(server_factory: Any) -> None:
    server = server_factory()
    await _publish(server.ws_url, _items(200))
    ws, (reply,) = await subscribe(server.ws_url, [CHANNEL], image=True)
    assert reply["image"] is True and reply["offset"] == 200
    image = await collect_messages(ws, len(KEYS), 20)
    assert all(f.get("image") is True for f in image)
    assert len({_key(f) for f in image}) == len(KEYS)
    # the image is exactly the latest per key of the history
    history = httpx.get(f"{server.url}/v1/channels/{CHANNEL}/messages",
                        params={"since": 0, "limit": 1000}).json()["messages"]
    assert _latest(image) == _latest(history)
    rest = httpx.get(f"{server.url}/v1/channels/{CHANNEL}/image").json()
    assert rest["offset"] == 200 and _latest(rest["image"]) == _latest(history)
    assert httpx.get(f"{server.url}/v1/channels/prices:none/image").status_code == 404
    await _publish(server.ws_url, _items(10, start=200))
    live = await collect_messages(ws, 10, 20)
    assert [f["offset"] for f in live] == list(range(201, 211))
    assert not any(f.get("image") for f in live)
    await ws.close()
    # A resume the history cannot serve (here: a position in an epoch long gone) gets an
    # image instead of a bare recovered:false; the SDK takes it as its new starting point.
    token = encode_position(CHANNEL, "gone", 5)
    ws2, (reply2,) = await subscribe(server.ws_url, [CHANNEL], since=token)
    assert reply2["image"] is True and reply2["recovered"] is False
    image2 = await collect_messages(ws2, len(KEYS), 20)
    assert all(f.get("image") for f in image2) and _latest(image2) == _latest(history + live)
    await ws2.close()


async def test_conflate_ms_at_most_one_update_per_key_per_interval(server_factory: Any) -> None:
    server = server_factory()
    ws, (reply,) = await subscribe(server.ws_url, [CHANNEL], conflate_ms=300)
    assert reply["conflate_ms"] == 300
    plain, _ = await subscribe(server.ws_url, [CHANNEL])
    total = 600
    items = _items(total)
    for start in range(0, total, 50):
        await _publish(server.ws_url, items[start:start + 50])
        await asyncio.sleep(0.05)
    await _publish(server.ws_url, [(CHANNEL, {"type": "suspended", "seq": total},
                                 {"event": "e1", "lifecycle": "true"})])
    everything = await collect_messages(plain, total + 1, 60)
    got: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not got or got[-1]["data"].get("seq") != total:
        frame = json.loads(await asyncio.wait_for(ws.recv(), deadline - loop.time()))
        if frame["op"] == "message":
            got.append(frame)
    assert _latest(got) == _latest(everything)
    assert _lifecycle(got) == _lifecycle(everything)
    offsets = [f["offset"] for f in got]
    assert offsets == sorted(offsets)
    span = everything[-1]["ts"] - everything[0]["ts"]
    per_key: dict[tuple[str, str, str], list[int]] = {}
    for f in got:
        key = _key(f)
        if key is not None:
            per_key.setdefault(key, []).append(f["ts"])
    for key, stamps in per_key.items():
        # one update per key per 300 ms of publishing, at most (plus the first and last)
        assert len(stamps) <= span // 300 + 2, (key, len(stamps), span)
    assert len(got) < len(everything)
    await ws.close()
    await plain.close()


async def test_delayed_plan_gets_prices_after_the_delay(server_factory: Any, tmp_path: Path) -> None:
    conf = tmp_path / "delayed.toml"
    conf.write_text('[plans.open]\ndelay_s = 1.5\n')
    server = server_factory(["--config", str(conf)])
    ws, (reply,) = await subscribe(server.ws_url, [CHANNEL])
    assert reply["delay_ms"] == 1500
    plain, _ = await subscribe(server.ws_url, ["prices:undelayed"])
    await _publish(server.ws_url, _items(60))
    # REST history is as late as the stream: nothing younger than the delay
    page = httpx.get(f"{server.url}/v1/channels/{CHANNEL}/messages").json()
    asked = time.time() * 1000
    assert all(asked - m["ts"] >= 1500 for m in page["messages"]) and page["next"] is None
    assert httpx.get(f"{server.url}/v1/channels/{CHANNEL}/image").status_code == 403
    frames: list[tuple[float, dict[str, Any]]] = []
    while len(frames) < 60:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if frame["op"] == "message":
            frames.append((time.time() * 1000, frame))
    assert [f["offset"] for _, f in frames] == list(range(1, 61))
    # each arrived at least the plan's delay after the hub accepted it (same clock)
    assert all(at - f["ts"] >= 1500 - 2 for at, f in frames), min(at - f["ts"] for at, f in
                                                                 frames)
    await ws.close()
    await plain.close()


@pytest.mark.parametrize("transport", ["ws", "sse"])
async def test_sdk_image_then_live_over_both_transports(server_factory: Any,
                                                        transport: str) -> None:
    """The SDK asks for an image (frame on WS, ``?image=true`` on SSE): the latest price per
    key first (``source == "image"``), then live, no gap and no backfill."""
    server = server_factory()
    await _publish(server.ws_url, _items(100))
    history = httpx.get(f"{server.url}/v1/channels/{CHANNEL}/messages",
                        params={"since": 0, "limit": 1000}).json()["messages"]
    async with Client(server.url, transport=transport) as client:  # type: ignore[arg-type]
        sub = client.subscribe([CHANNEL], image=True)
        image = await take(sub, len(KEYS))
        assert {m.source for m in image} == {"image"}
        assert _latest([{"data": m.data} for m in image]) == _latest(history)
        await _publish(server.ws_url, _items(5, start=100))
        live = await take(sub, 5)
        assert [m.offset for m in live] == list(range(101, 106))
        assert {m.source for m in live} == {"live"}
        counters = sub.protocol.counters
        assert counters.images_delivered == len(KEYS) and counters.live_gaps == 0
        assert counters.gaps_backfilled == 0 and counters.gaps_unrecovered == 0
        await sub.aclose()


def _sse_events(raw: bytes) -> list[dict[str, Any]]:
    """The JSON data of each SSE event in a raw HTTP response (op from ``event:`` if absent)."""
    body = raw.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in raw else b""
    out: list[dict[str, Any]] = []
    for block in body.split(b"\n\n"):
        event, data = "message", []
        for line in block.split(b"\n"):
            if line.startswith(b"event: "):
                event = line[7:].decode()
            elif line.startswith(b"data: "):
                data.append(line[6:])
        if data:
            obj = json.loads(b"\n".join(data))
            obj.setdefault("op", event)
            out.append(obj)
    return out


async def test_slow_sse_reader_gets_notice_and_latest_prices(server_factory: Any) -> None:
    """The same over SSE: an ``event: superseded`` notice, then the latest per key, and the
    SDK's protocol (fed the events) sees no gap."""
    server = server_factory(["--outbox-limit", "32768"])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(f"GET /v1/sse?channels={CHANNEL} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 "Accept: text/event-stream\r\n\r\n".encode())
    sock.settimeout(0.05)
    raw = b""
    await asyncio.sleep(0.3)
    total = 1200
    items = _items(total)
    for start in range(0, total, 50):
        batch = items[start:start + 50]
        await _publish(server.ws_url, batch)
        budget = sum(len(orjson.dumps(d)) for _, d, _ in batch) // 10
        while budget > 0:
            try:
                chunk = sock.recv(min(budget, 4096))
            except TimeoutError:
                break
            raw += chunk
            budget -= len(chunk)
    await _publish(server.ws_url, [(CHANNEL, {"type": "suspended", "seq": total},
                                    {"event": "e1", "lifecycle": "true"})])
    deadline = time.monotonic() + 60
    sock.settimeout(0.5)
    while time.monotonic() < deadline and f'"seq":{total}'.encode() not in raw:
        try:
            chunk = sock.recv(1 << 16)
        except TimeoutError:
            continue
        if not chunk:
            break
        raw += chunk
    sock.close()
    events = _sse_events(raw)
    messages = [e for e in events if e["op"] == "message"]
    notices = [e for e in events if e["op"] == "superseded"]
    assert notices and not [e for e in events if e["op"] == "error"]
    everything = httpx.get(f"{server.url}/v1/channels/{CHANNEL}/messages",
                           params={"since": 0, "limit": 1000}).json()["messages"]
    everything += httpx.get(f"{server.url}/v1/channels/{CHANNEL}/messages",
                            params={"since": 1000, "limit": 1000}).json()["messages"]
    assert _latest(messages) == _latest(everything)
    assert _lifecycle(messages) == _lifecycle(everything)
    proto = ClientProtocol([CHANNEL], wire="sse")
    proto.connect_started(0.0)
    proto.connection_opened(0.0)
    for event in events:
        for action in proto.frame_received(event, 1.0):
            assert not isinstance(action, GapDetected | BackfillNeeded), action
    assert proto.counters.live_gaps == 0 and proto.counters.messages_superseded > 0


async def test_oddsstream_client_that_fell_behind_just_gets_the_latest_prices(
        tmp_path: Path) -> None:
    """A dialect has no superseded notice: an OddsStream client that fell behind receives the
    latest price of each selection, in its own frame format, then live prices."""
    async with running_server(tmp_path, outbox_limit=8192) as live:
        key = live.server.gate.keystore.create("reader", "pro+rt", None, "os",
                                               prefix="os_live_")[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{live.port}") as http:
            token = (await http.post("/api/stream/token", headers={"X-Api-Key": key})).json()
        ws = await connect(f"ws://127.0.0.1:{live.port}/api/stream?token={token['token']}",
                           ping_interval=None)
        assert live.registry is not None
        await _until(lambda: any(isinstance(c, DialectWsConnection) and live.hub.subscriptions(c)
                                 for c in live.registry.connections))  # type: ignore[union-attr]
        (conn,) = [c for c in live.registry.connections if isinstance(c, DialectWsConnection)]
        conn.pause_writing()  # as asyncio does when the peer stops reading
        latest: dict[str, float] = {}
        for i in range(200):
            sel = ("Home", "Draw", "Away", "Over 2.5")[i % 4]
            latest[sel] = round(1.5 + i / 100, 2)
            await live.hub.publish("odds:football:epl", {
                "bookmaker": "bet365", "match_name": "Arsenal - Chelsea", "competition": "epl",
                "sport": "football", "market_type": "1x2", "selection": sel,
                "selection_id": sel.lower(), "odds": latest[sel], "period": 0, "is_live": True,
                "scraped_at": "2026-12-07T04:00:00Z", "event_id": "ev1", "market_id": "1x2",
                "pad": "x" * 100,
            }, attrs={"sport": "football", "competition": "epl", "bookmaker": "bet365",
                      "event": "ev1", "market": "1x2"})
        await _until(lambda: conn._lag is not None and bool(conn._lag.behind))
        conn.resume_writing()
        frames = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(4)]
        assert {f["selection"]: f["odds"] for f in frames} == latest
        assert all(set(f) >= {"bookmaker", "selection", "odds", "scraped_at"} for f in frames)
        with pytest.raises(TimeoutError):  # nothing else: no notice, no older price
            await asyncio.wait_for(ws.recv(), 0.5)
        assert not conn.closed and live.registry.slow_consumers == 0
        await ws.close()
