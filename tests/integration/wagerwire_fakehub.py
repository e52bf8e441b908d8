"""A tiny in-memory stand-in for the native API, to test the SDK drivers before the server exists.

It speaks the WebSocket ops over a real loopback ``websockets`` server and answers REST and SSE
through an ``httpx.MockTransport``. It knows just enough: offsets, epochs, pruning (to force
``recovered: false``), patterns, resume tokens, kicks with a close code and going silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx
import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from wagerwire.core.channels import is_pattern, pattern_matcher
from wagerwire.core.messages import Position
from wagerwire.core.tokens import decode_token, encode_position, encode_positions

__all__ = ["FakeHub"]


@dataclass
class _Channel:
    epoch: str = "e1"
    messages: list[dict[str, Any]] = field(default_factory=list)
    first_kept: int = 1  # offsets below this were pruned from the store (REST)
    replay_from: int = 1  # offsets below this are gone from the hot history (WS/SSE replay)

    @property
    def last(self) -> int:
        return self.messages[-1]["offset"] if self.messages else 0


@dataclass(eq=False)
class _Sub:
    names: list[str]
    send: Any  # async callable(dict) -> None
    positions: dict[str, Position] = field(default_factory=dict)

    def wants(self, channel: str) -> bool:
        return any(
            n == channel or (is_pattern(n) and pattern_matcher(n).fullmatch(channel))
            for n in self.names
        )


class FakeHub:
    """Channels, subscribers and knobs; start the WS side with ``async with hub.running()``."""

    def __init__(self) -> None:
        self.channels: dict[str, _Channel] = {}
        self.subs: set[_Sub] = set()
        self.connections: set[ServerConnection] = set()
        self.ws_handshakes = 0
        self.subscribe_ops: list[dict[str, Any]] = []
        self.sse_requests: list[httpx.Request] = []
        self.rest_requests: list[httpx.Request] = []
        self.reject_status: int | None = None  # refuse handshakes / SSE with this status
        self.silent = False  # stop answering pings
        self.history_fails = 0  # fail this many REST history calls with 503
        self.server: Server | None = None
        self.port = 0
        self._sse_streams: set[asyncio.Queue[bytes | None]] = set()
        self.idempotency: dict[str, dict[str, Any]] = {}
        # Auth knobs: POST /v1/tokens is 404 unless `tokens` is "issue" (hand out tokens for
        # the keys in `keys`, 401 for others) or "unconfigured" (403, like a keyless server).
        # With `accept` set, stream handshakes need `Authorization: Bearer <one of them>`.
        self.tokens: str | None = None
        self.keys: set[str] = set()
        self.token_ttl = 300
        self.tokens_issued: list[str] = []
        self.accept: set[str] | None = None
        self.ws_auth: list[str | None] = []  # Authorization header of each WS handshake
        self.forbidden: set[str] = set()  # a subscribe naming one gets a `forbidden` error

    # -- data ----------------------------------------------------------------------------------

    def channel(self, name: str) -> _Channel:
        return self.channels.setdefault(name, _Channel())

    async def publish(self, channel: str, data: Any) -> dict[str, Any]:
        ch = self.channel(channel)
        offset = ch.last + 1 if ch.messages else max(ch.first_kept - 1, 0) + 1
        msg = {
            "channel": channel,
            "offset": offset,
            "epoch": ch.epoch,
            "ts": int(time.time() * 1000),
            "data": data,
        }
        ch.messages.append(msg)
        for sub in list(self.subs):
            if sub.wants(channel):
                await sub.send(self._frame(msg))
        return msg

    def prune(self, channel: str, keep_from: int) -> None:
        ch = self.channel(channel)
        ch.messages = [m for m in ch.messages if m["offset"] >= keep_from]
        ch.first_kept = keep_from

    def restart_epoch(self, channel: str, epoch: str) -> None:
        self.channels[channel] = _Channel(epoch=epoch)

    @staticmethod
    def _frame(msg: dict[str, Any]) -> dict[str, Any]:
        return {
            "op": "message",
            **msg,
            "token": encode_position(msg["channel"], msg["epoch"], msg["offset"]),
        }

    def _subscribe(
        self, names: list[str], since: str | None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The ``subscribed`` answers and the replay for one subscribe op."""
        positions = decode_token(since) if since else {}
        acks: list[dict[str, Any]] = []
        replay: list[dict[str, Any]] = []
        for name in names:
            if is_pattern(name):
                matcher = pattern_matcher(name)
                recovered = True
                for chname, known in positions.items():
                    if matcher.fullmatch(chname) and chname not in names:
                        ok, msgs = self._replay(chname, known)
                        recovered = recovered and ok
                        replay += msgs
                acks.append(
                    {"op": "subscribed", "channel": name, "pattern": True, "recovered": recovered}
                )
                continue
            ch = self.channel(name)
            recovered = True
            pos = positions.get(name)
            if pos is not None:
                recovered, msgs = self._replay(name, pos)
                replay += msgs
            acks.append(
                {
                    "op": "subscribed",
                    "channel": name,
                    "epoch": ch.epoch if ch.messages else "",
                    "offset": ch.last,
                    "recovered": recovered,
                }
            )
        return acks, replay

    def _replay(self, name: str, pos: Position) -> tuple[bool, list[dict[str, Any]]]:
        ch = self.channel(name)
        if pos.epoch != ch.epoch or pos.offset + 1 < max(ch.first_kept, ch.replay_from):
            return False, []
        return True, [self._frame(m) for m in ch.messages if m["offset"] > pos.offset]

    # -- WebSocket -----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[FakeHub]:
        async with serve(
            self._ws, "127.0.0.1", 0, ping_interval=None, process_request=self._process
        ) as server:
            self.server = server
            self.port = server.sockets[0].getsockname()[1]
            yield self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _authorized(self, header: str | None) -> bool:
        if self.accept is None:
            return True
        return header is not None and header.removeprefix("Bearer ") in self.accept

    def _process(self, connection: ServerConnection, request: Any) -> Any:
        self.ws_handshakes += 1
        header = request.headers.get("Authorization")
        self.ws_auth.append(header)
        if self.reject_status is None and not self._authorized(header):
            body = orjson.dumps({"error": {"code": "unauthorized", "message": "expired"}})
            return connection.respond(401, body.decode())
        if self.reject_status is not None:
            code = {401: "unauthorized", 403: "forbidden"}.get(self.reject_status, "rate_limited")
            body = orjson.dumps({"error": {"code": code, "message": "no"}})
            resp = connection.respond(self.reject_status, body.decode())
            return resp
        return None

    async def _ws(self, ws: ServerConnection) -> None:
        self.connections.add(ws)
        sub = _Sub([], send=lambda frame: self._ws_send(ws, frame))
        try:
            async for raw in ws:
                op = orjson.loads(raw)
                if op["op"] == "ping":
                    if not self.silent:
                        await ws.send(orjson.dumps({"op": "pong"}).decode())
                elif op["op"] == "subscribe":
                    self.subscribe_ops.append(op)
                    refused = [c for c in op["channels"] if c in self.forbidden]
                    if refused:
                        err = {"op": "error", "code": "forbidden", "message": f"no {refused[0]}"}
                        await ws.send(orjson.dumps(err).decode())
                        continue
                    acks, replay = self._subscribe(op["channels"], op.get("since"))
                    for frame in acks + replay:
                        await ws.send(orjson.dumps(frame).decode())
                    sub.names += op["channels"]
                    self.subs.add(sub)
                elif op["op"] == "unsubscribe":
                    sub.names = [n for n in sub.names if n not in op["channels"]]
        except ConnectionClosed:
            pass
        finally:
            self.subs.discard(sub)
            self.connections.discard(ws)

    async def _ws_send(self, ws: ServerConnection, frame: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionClosed):
            await ws.send(orjson.dumps(frame).decode())

    async def kick(self, code: int = 1001, reason: str = "bye") -> None:
        """Close every WebSocket and SSE stream."""
        for ws in list(self.connections):
            await ws.close(code, reason)
        for q in list(self._sse_streams):
            q.put_nowait(None)

    async def wait_for_subscribers(self, n: int = 1) -> None:
        while len(self.subs) < n:
            await asyncio.sleep(0.005)

    # -- REST and SSE (httpx.MockTransport) ----------------------------------------------------

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self._handle), base_url=self.url)

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/sse":
            self.sse_requests.append(request)
            return await self._sse(request)
        self.rest_requests.append(request)
        if path == "/v1/tokens" and request.method == "POST" and self.tokens is not None:
            return self._token(request)
        if path.startswith("/v1/channels/") and path.endswith("/messages"):
            if self.history_fails:
                self.history_fails -= 1
                return _error(503, "unavailable")
            name = unquote(path[len("/v1/channels/") : -len("/messages")])
            since = int(request.url.params.get("since", "0"))
            limit = int(request.url.params.get("limit", "100"))
            ch = self.channel(name)
            msgs = [m for m in ch.messages if m["offset"] > since][:limit]
            more = bool(msgs) and msgs[-1]["offset"] < ch.last
            return httpx.Response(
                200,
                json={
                    "channel": name,
                    "epoch": ch.epoch,
                    "messages": msgs,
                    "next": msgs[-1]["offset"] if more else None,
                    "first_offset": ch.messages[0]["offset"] if ch.messages else None,
                },
            )
        if path == "/v1/publish" and request.method == "POST":
            body = orjson.loads(request.content)
            key = body.get("idempotency_key")
            if key in self.idempotency:
                return httpx.Response(200, json={**self.idempotency[key], "duplicate": True})
            msg = await self.publish(body["channel"], body["data"])
            result = {
                "channel": msg["channel"],
                "epoch": msg["epoch"],
                "offset": msg["offset"],
                "duplicate": False,
            }
            if key is not None:
                self.idempotency[key] = result
            return httpx.Response(200, json=result)
        return _error(404, "not_found")

    def _token(self, request: httpx.Request) -> httpx.Response:
        if self.tokens == "unconfigured":
            return httpx.Response(
                403,
                json={
                    "error": {
                        "code": "forbidden",
                        "message": "API keys are not configured on this server",
                    }
                },
            )
        key = request.headers.get("authorization", "").removeprefix("Bearer ")
        if key not in self.keys:
            return _error(401, "unauthorized")
        token = f"wwt1.fake.{len(self.tokens_issued) + 1}"
        self.tokens_issued.append(token)
        if self.accept is not None:
            self.accept.add(token)
        now = int(time.time())
        return httpx.Response(
            200,
            json={"token": token, "expires_at": now + self.token_ttl, "expires_in": self.token_ttl},
        )

    async def _sse(self, request: httpx.Request) -> httpx.Response:
        if self.reject_status is not None:
            return _error(self.reject_status, "unauthorized")
        if not self._authorized(request.headers.get("authorization")):
            return _error(401, "unauthorized")
        names = request.url.params["channels"].split(",")
        since = request.url.params.get("since") or request.headers.get("last-event-id")
        acks, replay = self._subscribe(names, since)
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        positions = decode_token(since) if since else {}
        for a in acks:
            if not a.get("pattern"):
                positions.setdefault(a["channel"], Position(a["epoch"], a["offset"]))

        def event(frame: dict[str, Any]) -> bytes:
            positions[frame["channel"]] = Position(frame["epoch"], frame["offset"])
            data = orjson.dumps(frame).decode()
            return f"id: {encode_positions(positions)}\ndata: {data}\n\n".encode()

        queue.put_nowait(b"retry: 1000\n\n")
        for a in acks:
            queue.put_nowait(f"event: subscribed\ndata: {orjson.dumps(a).decode()}\n\n".encode())
        for frame in replay:
            queue.put_nowait(event(frame))

        async def send(frame: dict[str, Any]) -> None:
            queue.put_nowait(event(frame))

        sub = _Sub(names, send=send)
        self.subs.add(sub)
        self._sse_streams.add(queue)

        async def body() -> AsyncIterator[bytes]:
            try:
                while True:
                    chunk = await queue.get()
                    if chunk is None:
                        return
                    yield chunk
            finally:
                self.subs.discard(sub)
                self._sse_streams.discard(queue)

        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())

    async def sse_comment(self) -> None:
        for q in list(self._sse_streams):
            q.put_nowait(b": hb\n\n")


def _error(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": code}})
