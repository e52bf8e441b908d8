"""Subscribing in the WebSocket URL: ``/v1/ws?channels=…&filter=…&since=…``.

The client sends nothing: the ``subscribed`` replies follow the 101, messages follow them,
resume works as with the subscribe frame, and the connection still takes ops afterwards.
"""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.parse
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from wsutil import collect_messages, join_tokens, publish_many


async def _replies(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    out = []
    while len(out) < count:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert frame["op"] == "subscribed", frame
        out.append(frame)
    return out


async def test_url_subscription_without_sending_anything(server: Any) -> None:
    await publish_many(server.ws_url, [("url:a", {"i": 0}), ("url:b", {"i": 0})])
    query = urllib.parse.urlencode({"channels": "url:a,url:b,url:*",
                                    "filter": json.dumps({"kind": "url"})})
    async with connect(f"{server.ws_url}/v1/ws?{query}") as ws:
        replies = await _replies(ws, 3)
        assert {r["channel"]: r["offset"] for r in replies} == {"url:a": 1, "url:b": 1,
                                                                 "url:*": 0}
        assert all(r["recovered"] for r in replies)
        await publish_many(server.ws_url, [("url:a", {"i": 1}), ("url:b", {"i": 1}),
                                           ("other:c", {"i": 1})])
        got = await collect_messages(ws, 2)
        assert sorted((m["channel"], m["offset"]) for m in got) == [("url:a", 2), ("url:b", 2)]
        # still an ordinary native connection: frame ops work after the URL's subscribe
        await ws.send(json.dumps({"op": "subscribe", "channels": ["url:c"]}))
        (reply,) = await _replies(ws, 1)
        assert reply["channel"] == "url:c"
        await ws.send('{"op":"ping"}')
        assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"op": "pong"}


async def test_url_subscription_with_a_filter_drops_what_does_not_match(server: Any) -> None:
    query = urllib.parse.urlencode({"channels": "flt:*", "filter": '{"kind":"flt"}'})
    async with connect(f"{server.ws_url}/v1/ws?{query}") as ws:
        await _replies(ws, 1)
        async with connect(server.ws_url + "/v1/ws") as pub:
            for kind in ("other", "flt"):
                await pub.send(json.dumps({"op": "publish", "channel": "flt:x", "data": kind,
                                           "attrs": {"kind": kind}}))
                assert json.loads(await pub.recv())["op"] == "published"
        (msg,) = await collect_messages(ws, 1)
        assert msg["data"] == "flt"


async def test_url_subscription_resumes_with_since(server: Any) -> None:
    acks = await publish_many(server.ws_url, [("url:r", {"i": i}) for i in range(10)])
    async with connect(f"{server.ws_url}/v1/ws?channels=url:r") as ws:
        await _replies(ws, 1)
        await publish_many(server.ws_url, [("url:r", {"i": 10})])
        (first,) = await collect_messages(ws, 1)
    assert first["offset"] == acks[-1]["offset"] + 1
    await publish_many(server.ws_url, [("url:r", {"i": i}) for i in range(11, 15)])
    token = join_tokens([first])
    async with connect(f"{server.ws_url}/v1/ws?channels=url:r&since={token}") as ws:
        (reply,) = await _replies(ws, 1)
        assert reply["recovered"] is True
        got = await collect_messages(ws, 4)
    assert [m["data"]["i"] for m in got] == [11, 12, 13, 14]


def test_subscribed_reply_follows_the_101_on_a_raw_socket(server: Any) -> None:
    """A client that only reads: one request, then the 101 and the reply, nothing sent."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"GET /v1/ws?channels=url:raw HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        data = b""
        while b'"subscribed"' not in data:
            chunk = sock.recv(4096)
            assert chunk, data
            data += chunk
    head, _, frame = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
    assert frame[0] == 0x81
    assert json.loads(frame[2:]) == {"op": "subscribed", "channel": "url:raw", "epoch": "",
                                     "offset": 0, "recovered": True}
