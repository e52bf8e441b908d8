"""Every bad input answers with a documented error and harms nothing else (issue 2).

All cases run against one real ``wagerwire serve`` process started with small limits
(``--max-channels 3 --max-message-bytes 1000``), so they also show that the errors pile up
on one server without hurting it. Each case has a *neighbour*: a WebSocket subscriber that
connected before the bad input and must still receive a message published after it.

Assertions are exact: the JSON ``{"error":{"code","message"}}`` body and HTTP status for REST,
the ``{"op":"error","code",…}`` frame (and a connection that still answers ``ping``) or the
close code for WebSocket; every code must be one of ``wagerwire.errors.ERROR_CODES`` with the
status documented there.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from wsutil import raw_socket, split_server_frames, subscribe

from serverproc import ServerProcess
from wagerwire.core.tokens import encode_position
from wagerwire.errors import ERROR_CODES, CloseCode

DOCUMENTED = {spec.code: spec for spec in ERROR_CODES}
MAX_CHANNELS = 3
MAX_MESSAGE_BYTES = 1000
OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA
_TLS = ssl.create_default_context()  # built once: httpx would build one per client (~60 ms)


def http_client(srv: Any, timeout: float = 10) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=srv.url, timeout=timeout, verify=_TLS)



@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One server for the whole module, with small limits."""
    srv = ServerProcess(
        tmp_path_factory.mktemp("errors"),
        ["--max-channels", str(MAX_CHANNELS), "--max-message-bytes", str(MAX_MESSAGE_BYTES)],
    )
    srv.start(0)
    yield srv
    srv.kill()


# --------------------------------------------------------------------------- the neighbour


class Neighbour:
    """A subscriber connected before the bad input; ``assert_alive`` proves it was unharmed."""

    def __init__(self, srv: Any, ws: ClientConnection, channel: str) -> None:
        self.srv = srv
        self.ws = ws
        self.channel = channel
        self.checks = 0

    @classmethod
    async def connect(cls, srv: Any, name: str) -> Neighbour:
        channel = "game:nb-" + re.sub(r"[^a-z0-9:_.\-]", "-", name.lower())[:150]
        ws, replies = await subscribe(srv.ws_url, [channel])
        assert replies[0]["channel"] == channel
        return cls(srv, ws, channel)

    async def assert_alive(self) -> None:
        """The server is healthy and a message published now reaches the neighbour."""
        self.checks += 1
        async with http_client(self.srv) as http:
            health = await http.get("/healthz")
            assert (health.status_code, health.json()) == (200, {"status": "ok"})
            data = {"check": self.checks}
            r = await http.post("/v1/publish", json={"channel": self.channel, "data": data})
        assert r.status_code == 200, r.text
        offset = r.json()["offset"]
        while True:
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
            if frame["op"] == "message" and frame["offset"] == offset:
                assert (frame["channel"], frame["data"]) == (self.channel, data)
                return

    async def close(self) -> None:
        await self.ws.close()


@pytest.fixture
async def neighbour(limited: Any, request: pytest.FixtureRequest) -> AsyncIterator[Neighbour]:
    nb = await Neighbour.connect(limited, request.node.name)
    yield nb
    await nb.close()


# --------------------------------------------------------------------------- helpers


def assert_http_error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The documented JSON error body with the documented status."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    body = resp.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    assert code in DOCUMENTED, f"{code} is not in ERROR_CODES"
    assert DOCUMENTED[code].status == status, (code, status)
    return body["error"]  # type: ignore[no-any-return]


def assert_ws_error(frame: dict[str, Any], code: str) -> None:
    assert frame["op"] == "error", frame
    assert frame["code"] == code, frame
    assert isinstance(frame["message"], str) and frame["message"], frame
    assert code in DOCUMENTED, f"{code} is not in ERROR_CODES"


async def next_op(ws: ClientConnection, op: str, timeout: float = 10) -> dict[str, Any]:
    """Read frames until one with ``op``; fails on an unexpected error frame."""
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if frame["op"] == op:
            return frame  # type: ignore[no-any-return]
        assert frame["op"] != "error", frame


async def assert_still_usable(ws: ClientConnection) -> list[dict[str, Any]]:
    """The connection survived: a ping is answered. Returns the frames before the pong."""
    await ws.send('{"op":"ping"}')
    before = []
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if frame["op"] == "pong":
            return before
        before.append(frame)


async def ws_error(srv: Any, *frames: str) -> dict[str, Any]:
    """Send ``frames`` on a fresh connection; return the error frame; the connection lives on."""
    async with connect(srv.ws_url + "/v1/ws") as ws:
        for f in frames:
            await ws.send(f)
        error = await next_op(ws, "error")
        await assert_still_usable(ws)
    return error


async def ws_close(srv: Any, payload: str | bytes) -> tuple[int, str]:
    """Send one message; return the close code and reason the server answered with."""
    async with connect(srv.ws_url + "/v1/ws") as ws:
        await ws.send(payload)
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
    rcvd = info.value.rcvd
    assert rcvd is not None, "the server closed without a Close frame"
    return rcvd.code, rcvd.reason


async def publish(srv: Any, channel: str, data: Any) -> dict[str, Any]:
    async with http_client(srv) as http:
        r = await http.post("/v1/publish", json={"channel": channel, "data": data})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def upgrade_request(path: str = "/v1/ws", *, method: str = "GET", version: str = "13",
                    key: str | None = None, content_length: bool = True,
                    connection: str = "Upgrade") -> bytes:
    """An upgrade request head. With ``Content-Length: 0`` it takes the full HTTP parser;
    without, a GET takes the one-segment fast path (wire/http_head.py)."""
    key = key if key is not None else base64.b64encode(os.urandom(16)).decode()
    body_header = "Content-Length: 0\r\n" if content_length else ""
    return (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: {connection}\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: {version}\r\n{body_header}\r\n"
    ).encode()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response: status, lower-cased headers, body (Content-Length or EOF)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 10)
    else:
        body = await asyncio.wait_for(reader.read(), 10)
    return status, headers, body


def assert_raw_error(status: int, headers: dict[str, str], body: bytes,
                     want_status: int, want_code: str) -> None:
    assert status == want_status, (status, body)
    assert headers["content-type"].startswith("application/json")
    error = json.loads(body)["error"]
    assert error["code"] == want_code, error
    assert error["message"]
    assert want_code in DOCUMENTED and DOCUMENTED[want_code].status == want_status


async def ws_handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(upgrade_request())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 101 "), head


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0,
                 masked: bool = True) -> bytes:
    b0 = (0x80 if fin else 0) | rsv | opcode
    mask_bit = 0x80 if masked else 0
    n = len(payload)
    if n < 126:
        head = bytes((b0, mask_bit | n))
    elif n < 65536:
        head = bytes((b0, mask_bit | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, mask_bit | 127)) + n.to_bytes(8, "big")
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Split what the server sent into (opcode, payload); server frames are never masked."""
    frames, rest = split_server_frames(data)
    assert not rest, "truncated frame"
    return frames


def close_of(frames: list[tuple[int, bytes]]) -> tuple[int, str]:
    assert frames, "nothing received"
    opcode, payload = frames[-1]
    assert opcode == OP_CLOSE, frames
    return int.from_bytes(payload[:2], "big"), payload[2:].decode()


async def read_until_eof(reader: asyncio.StreamReader, timeout: float = 15) -> bytes:
    return await asyncio.wait_for(reader.read(), timeout)


# --------------------------------------------------------------------------- REST


@pytest.mark.parametrize("body", [b"{bad", b"", b"[1, 2]", b'"text"', b"\xff\xfe{}", b"nul"])
async def test_rest_publish_malformed_json(limited: Any, neighbour: Neighbour, body: bytes) -> None:
    async with http_client(limited) as http:
        r = await http.post("/v1/publish", content=body,
                            headers={"content-type": "application/json"})
    assert_http_error(r, 400, "malformed_json")
    await neighbour.assert_alive()


@pytest.mark.parametrize("channel", ["BAD", "has space", "", ":lead", "a/b", "x" * 201, "é"])
async def test_rest_publish_invalid_channel(
    limited: Any, neighbour: Neighbour, channel: str
) -> None:
    async with http_client(limited) as http:
        r = await http.post("/v1/publish", json={"channel": channel, "data": 1})
    assert_http_error(r, 400, "invalid_channel")
    await neighbour.assert_alive()


@pytest.mark.parametrize(
    "body",
    [
        {"channel": "game:t-x"},  # no data
        {"data": 1},  # no channel
        {"channel": "game:t-x", "data": 1, "idempotency_key": "k" * 201},
        {"channel": "game:t-x", "data": 1, "idempotency_key": 5},
        {"channel": "game:t-x", "data": 1, "attrs": ["a"]},
        {"channel": "game:t-x", "data": 1, "attrs": {"k": {"nested": 1}}},
    ],
)
async def test_rest_publish_bad_fields(
    limited: Any, neighbour: Neighbour, body: dict[str, Any]
) -> None:
    async with http_client(limited) as http:
        r = await http.post("/v1/publish", json=body)
    assert_http_error(r, 422, "bad_parameter")
    await neighbour.assert_alive()


@pytest.mark.parametrize("path_channel", ["BAD", "has%20space", "%C3%A9", "x" * 201, "-lead"])
async def test_rest_history_invalid_channel(
    limited: Any, neighbour: Neighbour, path_channel: str
) -> None:
    async with http_client(limited) as http:
        r = await http.get(f"/v1/channels/{path_channel}/messages")
    assert_http_error(r, 400, "invalid_channel")
    await neighbour.assert_alive()


async def test_rest_history_since_in_the_future(limited: Any, neighbour: Neighbour) -> None:
    ack = await publish(limited, "game:fut-rest", {"i": 1})
    async with http_client(limited) as http:
        ok = await http.get("/v1/channels/game:fut-rest/messages", params={"since": ack["offset"]})
        assert ok.status_code == 200 and ok.json()["messages"] == []  # at the head: fine
        r = await http.get("/v1/channels/game:fut-rest/messages", params={"since": ack["offset"] + 1})
    error = assert_http_error(r, 422, "bad_parameter")
    assert "since" in error["message"]
    await neighbour.assert_alive()


async def test_rest_history_of_unknown_channel(limited: Any, neighbour: Neighbour) -> None:
    async with http_client(limited) as http:
        r = await http.get("/v1/channels/game:never-published/messages")
    assert_http_error(r, 404, "not_found")
    await neighbour.assert_alive()


@pytest.mark.parametrize(
    "query",
    ["limit=abc", "limit=0", "limit=-1", "limit=1001", "limit=", "since=abc", "since=-1",
     "since=1.5", "since="],
)
async def test_rest_history_bad_query_parameters(
    limited: Any, neighbour: Neighbour, query: str
) -> None:
    await publish(limited, "game:q-chan", 1)
    async with http_client(limited) as http:
        r = await http.get(f"/v1/channels/game:q-chan/messages?{query}")
    error = assert_http_error(r, 422, "bad_parameter")
    assert query.split("=")[0] in error["message"]
    await neighbour.assert_alive()


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/nope"), ("GET", "/v1/nope"), ("POST", "/v1/nope"), ("GET", "/v1/channels/a:b"),
     ("GET", "/v1/channels/a:b/messages/extra"), ("GET", "/v2/channels")],
)
async def test_rest_unknown_route(
    limited: Any, neighbour: Neighbour, method: str, path: str
) -> None:
    async with http_client(limited) as http:
        r = await http.request(method, path)
    assert_http_error(r, 404, "not_found")
    await neighbour.assert_alive()


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("DELETE", "/v1/channels", "GET"), ("GET", "/v1/publish", "POST"),
     ("PUT", "/v1/channels/a:b/messages", "GET"), ("POST", "/healthz", "GET"),
     ("PATCH", "/metrics", "GET")],
)
async def test_rest_wrong_method(
    limited: Any, neighbour: Neighbour, method: str, path: str, allowed: str
) -> None:
    async with http_client(limited) as http:
        r = await http.request(method, path)
    assert_http_error(r, 405, "method_not_allowed")
    # RFC 9110 §15.5.6: a 405 response MUST carry Allow with the route's methods.
    assert allowed in r.headers.get("allow", ""), dict(r.headers)
    await neighbour.assert_alive()


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
async def test_sse_path_with_wrong_method(
    limited: Any, neighbour: Neighbour, method: str
) -> None:
    """``/v1/sse`` exists (GET): another method is 405 method_not_allowed, not 404."""
    async with http_client(limited) as http:
        r = await http.request(method, "/v1/sse?channels=game:t-a")
    assert_http_error(r, 405, "method_not_allowed")
    await neighbour.assert_alive()


async def test_rest_oversized_publish_data(limited: Any, neighbour: Neighbour) -> None:
    data = "x" * (MAX_MESSAGE_BYTES + 1)
    async with http_client(limited) as http:
        r = await http.post("/v1/publish", json={"channel": "game:big-rest", "data": data})
        assert_http_error(r, 413, "payload_too_large")
        # just under the limit is fine (the JSON string adds its two quotes)
        ok = await http.post("/v1/publish",
                             json={"channel": "game:big-rest", "data": "x" * (MAX_MESSAGE_BYTES - 2)})
        assert ok.status_code == 200, ok.text
        assert ok.json()["offset"] == 1  # the refused one took no offset
    await neighbour.assert_alive()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_rest_oversized_body(limited: Any, neighbour: Neighbour, chunked: bool) -> None:
    body = b'{"channel":"game:big-body","data":"' + b"x" * (1024 * 1024 + 10) + b'"}'

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 65536):
            yield body[i : i + 65536]

    async with http_client(limited, 30) as http:
        r = await http.post("/v1/publish", content=chunks() if chunked else body,
                            headers={"content-type": "application/json"})
        assert_http_error(r, 413, "payload_too_large")
        gone = await http.get("/v1/channels/game:big-body/messages")
        assert_http_error(gone, 404, "not_found")  # nothing was published
    await neighbour.assert_alive()


async def test_keep_alive_connection_survives_rest_errors(
    limited: Any, neighbour: Neighbour
) -> None:
    """Errors answered on a persistent connection leave it usable for the next request."""
    transport = httpx.AsyncHTTPTransport(retries=0, verify=_TLS)
    async with httpx.AsyncClient(base_url=limited.url, transport=transport) as http:
        ports = set()
        for method, path, status in [
            ("GET", "/nope", 404), ("DELETE", "/v1/channels", 405),
            ("GET", "/v1/channels/game:q-chan/messages?limit=0", 422), ("GET", "/healthz", 200),
            ("POST", "/v1/publish", 415), ("GET", "/v1/channels", 200),
        ]:
            r = await http.request(method, path, content=b"{bad" if method == "POST" else None)
            assert r.status_code == status, (method, path, r.text)
            ports.add(r.extensions["network_stream"].get_extra_info("client_addr"))
        assert len(ports) == 1, f"the connection was not kept: {ports}"
    await neighbour.assert_alive()


# --------------------------------------------------------------------------- SSE


@pytest.mark.parametrize("query", ["", "?channels=", "?since=abc"])
async def test_sse_without_channels(limited: Any, neighbour: Neighbour, query: str) -> None:
    async with http_client(limited) as http:
        r = await http.get("/v1/sse" + query)
    error = assert_http_error(r, 422, "bad_parameter")
    assert "channels" in error["message"]
    await neighbour.assert_alive()


@pytest.mark.parametrize("channels", ["BAD", "game:t-a,BAD", "has space", "x" * 201])
async def test_sse_invalid_channel(limited: Any, neighbour: Neighbour, channels: str) -> None:
    async with http_client(limited) as http:
        r = await http.get("/v1/sse", params={"channels": channels})
    assert_http_error(r, 400, "invalid_channel")
    await neighbour.assert_alive()


async def test_sse_too_many_channels(limited: Any, neighbour: Neighbour) -> None:
    names = ",".join(f"game:sse-{i}" for i in range(MAX_CHANNELS + 1))
    async with http_client(limited) as http:
        r = await http.get("/v1/sse", params={"channels": names})
    assert_http_error(r, 400, "too_many_channels")
    await neighbour.assert_alive()


BAD_TOKENS = [
    "!!!",
    "abc",  # decodes to bytes that are not a position
    base64.urlsafe_b64encode(b"game:t-a,ep").decode().rstrip("="),  # two fields
    base64.urlsafe_b64encode(b"game:t-a,ep,notanumber").decode().rstrip("="),
    base64.urlsafe_b64encode(b"game:t-a,ep,-1").decode().rstrip("="),
    base64.urlsafe_b64encode(b"BAD,ep,1").decode().rstrip("="),
    encode_position("game:t-a", "ep", 1) + "..",
    "A" * 20000,
]


async def sse_resume(srv: Any, channel: str, token: str, where: str) -> httpx.Response:
    """``GET /v1/sse`` of ``channel`` resuming at ``token``, sent as ``since`` or Last-Event-ID."""
    params = {"channels": channel}
    headers = {}
    if where == "since":
        params["since"] = token
    else:
        headers["Last-Event-ID"] = token
    async with http_client(srv) as http:
        return await http.get("/v1/sse", params=params, headers=headers)


@pytest.mark.parametrize("token", BAD_TOKENS, ids=range(len(BAD_TOKENS)))
@pytest.mark.parametrize("where", ["since", "last-event-id"])
async def test_sse_bad_resume_token(
    limited: Any, neighbour: Neighbour, token: str, where: str
) -> None:
    r = await sse_resume(limited, "game:t-a", token, where)
    assert_http_error(r, 400, "bad_resume_token")
    await neighbour.assert_alive()


@pytest.mark.parametrize("where", ["since", "last-event-id"])
async def test_sse_since_in_the_future(limited: Any, neighbour: Neighbour, where: str) -> None:
    ack = await publish(limited, "game:fut-sse", 1)
    token = encode_position("game:fut-sse", ack["epoch"], ack["offset"] + 5)
    r = await sse_resume(limited, "game:fut-sse", token, where)
    assert_http_error(r, 422, "bad_parameter")
    await neighbour.assert_alive()


# --------------------------------------------------------------------------- WebSocket


async def test_ws_path_without_upgrade(limited: Any, neighbour: Neighbour) -> None:
    async with http_client(limited) as http:
        r = await http.get("/v1/ws")
    assert_http_error(r, 426, "upgrade_required")
    assert r.headers["upgrade"].lower() == "websocket"
    await neighbour.assert_alive()


async def test_ws_upgrade_on_unknown_path(limited: Any, neighbour: Neighbour) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(limited.ws_url + "/v1/nope"):
            pass
    assert info.value.response.status_code == 404
    assert json.loads(info.value.response.body)["error"]["code"] == "not_found"
    await neighbour.assert_alive()


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("channels=BAD", 400, "invalid_channel"),
        ("channels=game:t-a,has%20space", 400, "invalid_channel"),
        ("channels=" + ",".join(f"game:q-{i}" for i in range(MAX_CHANNELS + 1)), 400,
         "too_many_channels"),
        ("channels=game:t-a&since=!!!", 400, "bad_resume_token"),
        ("channels=game:t-a&filter=%7Bnot-json", 400, "malformed_json"),
        ("channels=game:t-a&filter=%5B1%5D", 422, "bad_parameter"),
        ("since=abc", 422, "bad_parameter"),
        ("channels=", 422, "bad_parameter"),
    ],
    ids=["invalid", "invalid-second", "too-many", "bad-token", "filter-not-json",
         "filter-not-object", "since-without-channels", "empty-channels"],
)
async def test_ws_bad_url_subscription_is_refused_before_the_upgrade(
    limited: Any, neighbour: Neighbour, query: str, status: int, code: str
) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(f"{limited.ws_url}/v1/ws?{query}"):
            pass
    assert info.value.response.status_code == status
    body = json.loads(info.value.response.body)
    assert body["error"]["code"] == code
    assert DOCUMENTED[code].status == status
    await neighbour.assert_alive()


@pytest.mark.parametrize(
    ("request_bytes", "status", "code", "header"),
    [
        (upgrade_request(version="8"), 426, "upgrade_required", ("sec-websocket-version", "13")),
        (upgrade_request(method="POST"), 405, "method_not_allowed", ("allow", "GET")),
        (upgrade_request(key="short"), 400, "bad_request", None),
        (upgrade_request(version="8", content_length=False), 426, "upgrade_required",
         ("sec-websocket-version", "13")),
        (upgrade_request(key="short", content_length=False), 400, "bad_request", None),
        (upgrade_request(key="c2hvcnQ=", content_length=False), 400, "bad_request", None),
        (upgrade_request(connection="keep-alive"), 426, "upgrade_required",
         ("upgrade", "websocket")),
        (upgrade_request(connection="keep-alive", content_length=False), 426,
         "upgrade_required", ("upgrade", "websocket")),
    ],
    ids=["old-version", "post", "bad-key", "old-version-fast", "bad-key-fast",
         "short-key-fast", "no-connection-upgrade", "no-connection-upgrade-fast"],
)
async def test_ws_bad_handshake_uses_documented_codes(
    limited: Any, neighbour: Neighbour, request_bytes: bytes, status: int, code: str,
    header: tuple[str, str] | None,
) -> None:
    async with raw_socket(limited) as (reader, writer):
        writer.write(request_bytes)
        got_status, headers, body = await read_response(reader)
    assert_raw_error(got_status, headers, body, status, code)
    if header is not None:
        assert headers.get(header[0]) == header[1], headers
    await neighbour.assert_alive()


async def test_unsupported_upgrade_on_rest_route_is_ignored(
    limited: Any, neighbour: Neighbour
) -> None:
    """``curl --http2 http://…`` asks for ``Upgrade: h2c``; a server that does not speak it
    must answer the request normally (RFC 9110 §7.8), not fail it."""
    async with raw_socket(limited) as (reader, writer):
        writer.write(
            b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
        )
        status, _, body = await read_response(reader)
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    await neighbour.assert_alive()


@pytest.mark.parametrize(
    "frame", ["{bad", "[1]", "{}", '{"op":1}', '{"op":null}', '"op"', "NaN", "",
              '{"op":"ping"', '{"op":' + "[" * 2000 + "]" * 2000 + "}"],
    ids=range(10),
)
async def test_ws_malformed_json(limited: Any, neighbour: Neighbour, frame: str) -> None:
    assert_ws_error(await ws_error(limited, frame), "malformed_json")
    await neighbour.assert_alive()


@pytest.mark.parametrize("op", ["frobnicate", "SUBSCRIBE", "", "x" * 5000])
async def test_ws_unknown_op(limited: Any, neighbour: Neighbour, op: str) -> None:
    error = await ws_error(limited, json.dumps({"op": op}))
    assert_ws_error(error, "unknown_op")
    assert len(error["message"]) < 300  # the op is not echoed back in full
    await neighbour.assert_alive()


@pytest.mark.parametrize(
    "op",
    [
        {"op": "subscribe", "channels": ["BAD"]},
        {"op": "subscribe", "channels": ["game:ok-a", "has space"]},
        {"op": "subscribe", "channels": [""]},
        {"op": "subscribe", "channels": [7]},
        {"op": "subscribe", "channels": []},
        {"op": "subscribe", "channels": ["x" * 201]},
        {"op": "unsubscribe", "channels": ["BAD"]},
        {"op": "publish", "channel": "BAD", "data": 1},
        {"op": "publish", "channel": "game:*", "data": 1},  # a pattern is not a channel
        {"op": "publish", "data": 1},
    ],
    ids=range(10),
)
async def test_ws_invalid_channel(limited: Any, neighbour: Neighbour, op: dict[str, Any]) -> None:
    assert_ws_error(await ws_error(limited, json.dumps(op)), "invalid_channel")
    await neighbour.assert_alive()


@pytest.mark.parametrize(
    "op",
    [
        {"op": "subscribe", "channels": "game:t-a"},
        {"op": "subscribe"},
        {"op": "subscribe", "channels": ["game:t-a"], "filter": "game=crash"},
        {"op": "subscribe", "channels": ["game:t-a"], "filter": {"game": []}},
        {"op": "subscribe", "channels": ["game:t-a"], "since": 5},
        {"op": "unsubscribe"},
        {"op": "publish", "channel": "game:t-a"},
        {"op": "publish", "channel": "game:t-a", "data": 1, "idempotency_key": 5},
        {"op": "publish", "channel": "game:t-a", "data": 1, "idempotency_key": ""},
        {"op": "publish", "channel": "game:t-a", "data": 1, "attrs": ["x"]},
        {"op": "publish", "channel": "game:t-a", "data": 1, "attrs": {"k": [1]}},
    ],
    ids=range(11),
)
async def test_ws_bad_parameter(limited: Any, neighbour: Neighbour, op: dict[str, Any]) -> None:
    assert_ws_error(await ws_error(limited, json.dumps(op)), "bad_parameter")
    await neighbour.assert_alive()


async def test_ws_too_many_channels_at_once(limited: Any, neighbour: Neighbour) -> None:
    names = [f"game:tm-{i}" for i in range(MAX_CHANNELS + 1)]
    error = await ws_error(limited, json.dumps({"op": "subscribe", "channels": names}))
    assert_ws_error(error, "too_many_channels")
    patterns = [f"game:tp{i}-*" for i in range(MAX_CHANNELS + 1)]
    error = await ws_error(limited, json.dumps({"op": "subscribe", "channels": patterns}))
    assert_ws_error(error, "too_many_channels")
    await neighbour.assert_alive()


async def test_ws_too_many_channels_over_several_subscribes(
    limited: Any, neighbour: Neighbour
) -> None:
    """The limit counts what the connection already holds; the refused subscribe changes
    nothing, and the earlier subscriptions keep delivering."""
    ws, _ = await subscribe(limited.ws_url, [f"game:ti-{i}" for i in range(MAX_CHANNELS)])
    try:
        await ws.send(json.dumps({"op": "subscribe", "channels": ["game:ti-0"]}))  # already held
        assert (await next_op(ws, "subscribed"))["channel"] == "game:ti-0"
        await ws.send(json.dumps({"op": "subscribe", "channels": ["game:ti-new"]}))
        assert_ws_error(json.loads(await asyncio.wait_for(ws.recv(), 10)), "too_many_channels")
        ack = await publish(limited, "game:ti-1", {"still": "here"})
        msg = await next_op(ws, "message")
        assert (msg["channel"], msg["offset"], msg["data"]) == ("game:ti-1", ack["offset"],
                                                                 {"still": "here"})
        await publish(limited, "game:ti-new", 1)
        assert await assert_still_usable(ws) == []  # not subscribed to ti:new
    finally:
        await ws.close()
    await neighbour.assert_alive()


async def test_ws_oversized_frame_closes_1009(limited: Any, neighbour: Neighbour) -> None:
    frame = json.dumps({"op": "publish", "channel": "game:big-ws", "data": "x" * 20_000})
    code, _ = await ws_close(limited, frame)
    assert code == CloseCode.MESSAGE_TOO_BIG == 1009
    await neighbour.assert_alive()


async def test_ws_oversized_publish_data(limited: Any, neighbour: Neighbour) -> None:
    """Data over --max-message-bytes in a frame the reader accepts: an error frame, and the
    connection stays usable."""
    async with connect(limited.ws_url + "/v1/ws") as ws:
        await ws.send(json.dumps({"op": "publish", "channel": "game:big-wsdata",
                                  "data": "x" * (MAX_MESSAGE_BYTES + 1)}))
        assert_ws_error(await next_op(ws, "error"), "payload_too_large")
        await ws.send(json.dumps({"op": "publish", "channel": "game:big-wsdata", "data": "ok"}))
        ack = await next_op(ws, "published")
        assert ack["offset"] == 1
    await neighbour.assert_alive()


@pytest.mark.parametrize("token", BAD_TOKENS[:-1], ids=range(len(BAD_TOKENS) - 1))
async def test_ws_bad_resume_token(limited: Any, neighbour: Neighbour, token: str) -> None:
    op = {"op": "subscribe", "channels": ["game:t-a"], "since": token}
    assert_ws_error(await ws_error(limited, json.dumps(op)), "bad_resume_token")
    await neighbour.assert_alive()


async def test_ws_since_in_the_future(limited: Any, neighbour: Neighbour) -> None:
    ack = await publish(limited, "game:fut-ws", 1)
    token = encode_position("game:fut-ws", ack["epoch"], ack["offset"] + 5)
    async with connect(limited.ws_url + "/v1/ws") as ws:
        await ws.send(json.dumps({"op": "subscribe", "channels": ["game:fut-ws"], "since": token}))
        assert_ws_error(await next_op(ws, "error"), "bad_parameter")
        await publish(limited, "game:fut-ws", 2)
        assert await assert_still_usable(ws) == []  # nothing was subscribed
    await neighbour.assert_alive()


async def test_ws_since_in_the_future_through_a_pattern(
    limited: Any, neighbour: Neighbour
) -> None:
    """A position ahead of a channel that a pattern covers is refused too; accepting it would
    silently drop every live message up to that offset."""
    ack = await publish(limited, "game:futp-a", 1)
    token = encode_position("game:futp-a", ack["epoch"], ack["offset"] + 50)
    async with connect(limited.ws_url + "/v1/ws") as ws:
        await ws.send(json.dumps({"op": "subscribe", "channels": ["game:futp-*"], "since": token}))
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if frame["op"] == "subscribed":  # the bug: then a live message must at least arrive
            live = await publish(limited, "game:futp-a", 2)
            got = await assert_still_usable(ws)
            assert [f.get("offset") for f in got] == [live["offset"]], (
                "subscribe accepted a position ahead of the channel and then dropped live "
                f"messages: {frame}"
            )
        assert_ws_error(frame, "bad_parameter")
    await neighbour.assert_alive()


@pytest.mark.parametrize("payload", [b"\x00\x01", b'{"op":"ping"}'])
async def test_ws_binary_frame_closes_1003(
    limited: Any, neighbour: Neighbour, payload: bytes
) -> None:
    code, _ = await ws_close(limited, payload)
    assert code == CloseCode.UNSUPPORTED_DATA == 1003
    await neighbour.assert_alive()


PROTOCOL_VIOLATIONS = {
    "unmasked": client_frame(OP_TEXT, b'{"op":"ping"}', masked=False),
    "rsv1": client_frame(OP_TEXT, b'{"op":"ping"}', rsv=0x40),
    "reserved-opcode": client_frame(0x3, b"x"),
    "reserved-control-opcode": client_frame(0xB, b"x"),
    "fragmented-ping": client_frame(OP_PING, b"x", fin=False),
    "long-ping": client_frame(OP_PING, b"x" * 126),
    "orphan-continuation": client_frame(0x0, b"x"),
    "text-inside-fragmented": client_frame(OP_TEXT, b"a", fin=False) + client_frame(OP_TEXT, b"b"),
    "one-byte-close": client_frame(OP_CLOSE, b"\x03"),
    "bad-close-code": client_frame(OP_CLOSE, (1005).to_bytes(2, "big")),
}


@pytest.mark.parametrize("data", PROTOCOL_VIOLATIONS.values(), ids=PROTOCOL_VIOLATIONS.keys())
async def test_ws_protocol_violation_closes_1002(
    limited: Any, neighbour: Neighbour, data: bytes
) -> None:
    async with raw_socket(limited) as (reader, writer):
        await ws_handshake(reader, writer)
        writer.write(data)
        frames = server_frames(await read_until_eof(reader))
    code, _ = close_of(frames)
    assert code == CloseCode.PROTOCOL_ERROR == 1002
    await neighbour.assert_alive()


async def test_ws_invalid_utf8_closes_1007(limited: Any, neighbour: Neighbour) -> None:
    async with raw_socket(limited) as (reader, writer):
        await ws_handshake(reader, writer)
        writer.write(client_frame(OP_TEXT, b'{"op":"\xff"}'))
        frames = server_frames(await read_until_eof(reader))
    assert close_of(frames)[0] == CloseCode.INVALID_PAYLOAD == 1007
    await neighbour.assert_alive()


async def test_ws_raw_client_ping_close_handshake(limited: Any, neighbour: Neighbour) -> None:
    """Control: the raw-socket helpers speak valid WebSocket (pong echoes, close echoes)."""
    async with raw_socket(limited) as (reader, writer):
        await ws_handshake(reader, writer)
        writer.write(client_frame(OP_PING, b"hi"))
        writer.write(client_frame(OP_TEXT, b'{"op":"ping"}'))
        writer.write(client_frame(OP_CLOSE, (1000).to_bytes(2, "big")))
        frames = server_frames(await read_until_eof(reader))
    assert (OP_PONG, b"hi") in frames
    assert (OP_TEXT, b'{"op":"pong"}') in frames
    assert close_of(frames)[0] == 1000
    await neighbour.assert_alive()


# --------------------------------------------------------------------------- raw HTTP


MALFORMED_HTTP = {
    "not-http": b"THIS IS NOT HTTP\r\n\r\n",
    "bad-content-length": b"POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    "header-without-colon": b"GET /healthz HTTP/1.1\r\nHost: x\r\nnonsense\r\n\r\n",
    "bad-chunk": b"POST /v1/publish HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"zz\r\nabc\r\n0\r\n\r\n",
    "binary-junk": bytes(range(256)) + b"\r\n\r\n",
}


@pytest.mark.parametrize("data", MALFORMED_HTTP.values(), ids=MALFORMED_HTTP.keys())
async def test_malformed_http_request(limited: Any, neighbour: Neighbour, data: bytes) -> None:
    async with raw_socket(limited) as (reader, writer):
        writer.write(data)
        status, headers, body = await read_response(reader)
        assert_raw_error(status, headers, body, 400, "bad_request")
        assert headers.get("connection", "").lower() == "close"
        assert await read_until_eof(reader) == b""  # the server closed that connection
    await neighbour.assert_alive()


async def test_half_sent_request_then_disconnect(limited: Any, neighbour: Neighbour) -> None:
    async with raw_socket(limited) as (_, writer):
        writer.write(b"POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"ch")
        await writer.drain()
    async with raw_socket(limited) as (_, writer):
        writer.write(upgrade_request()[:40])
        await writer.drain()
    await neighbour.assert_alive()


# --------------------------------------------------------------------------- idle clients


async def test_idle_ws_client_is_closed_4002(server_factory: Any, tmp_path: Path) -> None:
    """A client that completes the handshake and never answers pings is closed with 4002
    after the ping interval plus the pong timeout; a client that answers stays connected."""
    config = tmp_path / "idle.toml"
    config.write_text("pong_timeout = 1.5\n")
    srv = server_factory(["--ping-interval", "1", "--config", str(config)])
    nb = await Neighbour.connect(srv, "idle")  # websockets answers pings on its own
    loop = asyncio.get_running_loop()
    try:
        async with raw_socket(srv) as (reader, writer):
            await ws_handshake(reader, writer)
            started = loop.time()
            frames = server_frames(await read_until_eof(reader, timeout=20))
            waited = loop.time() - started
        assert any(op == OP_PING for op, _ in frames), frames  # it was pinged first
        assert close_of(frames)[0] == CloseCode.HEARTBEAT_TIMEOUT == 4002
        assert waited >= 2.0, f"closed after {waited:.1f}s: before ping interval + timeout"
        await asyncio.sleep(1.5)  # past another timeout: the answering neighbour is unaffected
        await nb.assert_alive()
    finally:
        await nb.close()


# --------------------------------------------------------------------------- after it all


async def test_server_still_healthy_after_all_of_it(limited: Any) -> None:
    """Runs last in this module: same process, healthy, and no bug traceback logged."""
    assert limited.proc is not None and limited.proc.poll() is None, "server process died"
    async with http_client(limited) as http:
        r = await http.get("/healthz")
        assert (r.status_code, r.json()) == (200, {"status": "ok"})
        channels = (await http.get("/v1/channels")).json()["channels"]
    names = {c["name"] for c in channels}
    assert any(n.startswith("game:nb-") for n in names)
    assert not any(n.startswith(("game:big-body", "game:tm-")) for n in names)
    nb = await Neighbour.connect(limited, "final")
    try:
        await nb.assert_alive()
    finally:
        await nb.close()
    log = "".join(limited.output)
    assert "Traceback" not in log, log
