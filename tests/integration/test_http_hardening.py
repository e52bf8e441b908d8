"""Hostile-client hardening of the HTTP front door, the streams and the REST parameters (issue 13).

Every test talks to a real ``wagerwire serve`` process over real sockets; the framing tests
send exact bytes with raw ``asyncio`` streams, so pipelining and half-sent requests are really
on the wire. One module-wide server takes the cases that harm nothing; the timeout and
slow-consumer cases start their own with short settings.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from wsutil import raw_socket, split_server_frames

from serverproc import ServerProcess
from wagerwire.errors import ERROR_CODES

DOCUMENTED = {spec.code: spec.status for spec in ERROR_CODES}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server (with the demo games, for the dialect and domain routes) for the module."""
    srv = ServerProcess(tmp_path_factory.mktemp("hardening"), ["--demo-speed", "20"])
    srv.start(0)
    deadline = time.monotonic() + 30
    while httpx.get(srv.url + "/v1/games/crash", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, "the demo never played a crash round"
        time.sleep(0.1)
    yield srv
    srv.kill()


# --------------------------------------------------------------------------- helpers


async def read_response(
    reader: asyncio.StreamReader, timeout: float = 10
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response: status, lower-cased headers, body (Content-Length/chunked)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])),
                                      timeout)
    elif headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size = int((await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout))[:-2], 16)
            chunk = await asyncio.wait_for(reader.readexactly(size + 2), timeout)
            if not size:
                break
            body += chunk[:-2]
    else:
        body = await asyncio.wait_for(reader.read(), timeout)
    return status, headers, body


def error_code(status: int, headers: dict[str, str], body: bytes) -> str:
    """The documented JSON error's code (its status checked against ERROR_CODES)."""
    assert headers["content-type"].startswith("application/json"), (status, headers, body)
    error = json.loads(body)["error"]
    assert set(error) == {"code", "message"} and error["message"], error
    assert DOCUMENTED.get(error["code"]) == status, (status, error)
    return str(error["code"])


async def get(srv: ServerProcess, target: str) -> tuple[int, dict[str, str], bytes]:
    async with raw_socket(srv) as (reader, writer):
        writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        return await read_response(reader)


def token(channel: str, epoch: str, offset_text: str) -> str:
    """A resume token whose offset is the given text (valid or not)."""
    raw_segment = f"{channel},{epoch},{offset_text}".encode()
    return base64.urlsafe_b64encode(raw_segment).rstrip(b"=").decode()


async def ws_first_error(srv: ServerProcess, op: dict[str, Any]) -> dict[str, Any]:
    async with connect(srv.ws_url + "/v1/ws") as ws:
        await ws.send(json.dumps(op))
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if frame["op"] == "error":
                return frame  # type: ignore[no-any-return]
            assert frame["op"] != "subscribed", frame


# --------------------------------------------------------------------------- 500s: since=


@pytest.mark.parametrize("since", [
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "0001-01-01T00:30:00+00:31",
])
async def test_rounds_since_out_of_range_is_bad_parameter(hub: ServerProcess, since: str) -> None:
    target = "/v1-beta/games/crash/rounds?since=" + since.replace("+", "%2B")
    status, headers, body = await get(hub, target)
    assert error_code(status, headers, body) == "bad_parameter"
    # The extremes that stay in range still work.
    status, _, body = await get(hub, "/v1-beta/games/crash/rounds?since=0001-01-01T00:00:00Z")
    assert status == 200, body
    status, _, body = await get(hub, "/v1-beta/games/crash/rounds?since=9999-12-31T23:59:59Z")
    assert status == 200, body


@pytest.mark.parametrize("query", [
    "since=999999999999999999", "until=999999999999999999", "since=0&until=999999999999999999",
    "since_index=999999999999999999", "until_index=999999999999999999", "cursor=t999999999999999999",
    "cursor=i999999999999999999",
])
async def test_domain_windows_at_the_extremes_are_not_500s(hub: ServerProcess, query: str) -> None:
    for route in ("rounds", "stats"):
        status, _, body = await get(hub, f"/v1/games/crash/{route}?{query}")
        assert status in (200, 422), (route, query, status, body)


# --------------------------------------------------------------------------- channel names


@pytest.mark.parametrize("name", ["user:1\n", "game:crash\n", "game:*\n", "user:me:x\n",
                                  "user:1:x\r"])
async def test_ws_channel_with_newline_is_invalid_channel(hub: ServerProcess, name: str) -> None:
    error = await ws_first_error(hub, {"op": "subscribe", "channels": [name]})
    assert error["code"] == "invalid_channel", error
    error = await ws_first_error(hub, {"op": "unsubscribe", "channels": [name]})
    assert error["code"] == "invalid_channel", error
    error = await ws_first_error(hub, {"op": "publish", "channel": name, "data": 1})
    assert error["code"] == "invalid_channel", error


@pytest.mark.parametrize("name", ["user:1\n", "game:crash\n", "user:1:x\t"])
async def test_rest_and_sse_channel_with_newline_is_invalid_channel(
    hub: ServerProcess, name: str
) -> None:
    async with httpx.AsyncClient(base_url=hub.url, timeout=10) as http:
        r = await http.post("/v1/publish", json={"channel": name, "data": 1})
        assert error_code(r.status_code, dict(r.headers), r.content) == "invalid_channel"
    quoted = name.replace("\n", "%0A").replace("\t", "%09").replace("\r", "%0D")
    status, headers, body = await get(hub, "/v1/sse?channels=" + quoted)
    assert error_code(status, headers, body) == "invalid_channel"
    status, headers, body = await get(hub, "/v1/ws?channels=" + quoted)
    assert status in (400, 426), body  # no upgrade asked: either answer is an error


# --------------------------------------------------------------------------- offsets


BAD_OFFSETS = ["1_0", " 5", "5 ", "+5", "\u0663", "0x1", "5.0", "9" * 40, ""]


@pytest.mark.parametrize("offset", BAD_OFFSETS)
async def test_resume_token_offsets_are_ascii_digits(hub: ServerProcess, offset: str) -> None:
    bad = token("game:crash", "abc", offset)
    status, headers, body = await get(hub, "/v1/sse?channels=game:crash&since=" + bad)
    assert error_code(status, headers, body) == "bad_resume_token"
    async with raw_socket(hub) as (reader, writer):
        writer.write(f"GET /v1/sse?channels=game:crash HTTP/1.1\r\nHost: x\r\n"
                     f"Last-Event-ID: {bad}\r\n\r\n".encode())
        assert error_code(*await read_response(reader)) == "bad_resume_token"
    error = await ws_first_error(hub, {"op": "subscribe", "channels": ["game:crash"],
                                       "since": bad})
    assert error["code"] == "bad_resume_token", error


async def test_resume_token_segments_are_strict_base64url(hub: ServerProcess) -> None:
    good = token("game:crash", "abc", "5")
    for bad in (good[:4] + "!" + good[4:], good[:4] + "%20" + good[4:], good + "=="):
        status, headers, body = await get(hub, "/v1/sse?channels=game:crash&since=" + bad)
        assert error_code(status, headers, body) == "bad_resume_token", bad


@pytest.mark.parametrize("value", ["1_0", "%205", "5%20", "%2B5", "5.0", "9" * 40, "-0"])
async def test_rest_offsets_and_limits_are_ascii_digits(hub: ServerProcess, value: str) -> None:
    async with httpx.AsyncClient(base_url=hub.url, timeout=10) as http:
        r = await http.post("/v1/publish", json={"channel": "test:offsets", "data": 1})
        assert r.status_code == 200, r.text
    for target in (
        f"/v1/channels/test:offsets/messages?since={value}",
        f"/v1/channels/test:offsets/messages?limit={value}",
        f"/v1/games/crash/rounds?since={value}",
        f"/v1/games/crash/rounds?until={value}",
        f"/v1/games/crash/rounds?since_index={value}",
        f"/v1/games/crash/rounds?limit={value}",
        f"/v1-beta/games/crash/rounds?limit={value}",
    ):
        status, headers, body = await get(hub, target)
        assert error_code(status, headers, body) == "bad_parameter", (target, body)
    # Plain digits still work.
    status, _, body = await get(hub, "/v1/channels/test:offsets/messages?since=0&limit=10")
    assert status == 200, body
    status, _, body = await get(hub, "/v1/games/crash/rounds?since=0&limit=10")
    assert status == 200, body


# --------------------------------------------------------------------------- HTTP framing


def publish_request(channel: str, data: Any) -> bytes:
    body = json.dumps({"channel": channel, "data": data}).encode()
    return (f"POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def read_eof(reader: asyncio.StreamReader, timeout: float = 10) -> bytes:
    """Whatever is left until the server closes (b"" when it closed cleanly)."""
    return await asyncio.wait_for(reader.read(), timeout)


@pytest.mark.parametrize("garbage", [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\n" + b"X-Big: " + b"a" * 70_000 + b"\r\n\r\n",
])
async def test_pipelined_valid_then_malformed_answers_both_in_order(
    hub: ServerProcess, garbage: bytes
) -> None:
    """The publish is answered (200, with its offset) before the 400, then the close."""
    channel = f"test:pipelined-{len(garbage)}"
    async with raw_socket(hub) as (reader, writer):
        writer.write(publish_request(channel, {"n": 1}) + b"GET /healthz HTTP/1.1\r\n"
                     b"Host: x\r\n\r\n" + garbage)
        status, _, body = await read_response(reader)
        assert status == 200, body
        offset = json.loads(body)["offset"]
        status, _, body = await read_response(reader)
        assert (status, json.loads(body)) == (200, {"status": "ok"})
        status, headers, body = await read_response(reader)
        code = error_code(status, headers, body)
        assert code in ("bad_request", "header_too_large"), body
        assert headers["connection"] == "close"
        assert await read_eof(reader) == b""
    status, _, body = await get(hub, f"/v1/channels/{channel}/messages")
    assert [m["offset"] for m in json.loads(body)["messages"]] == [offset]
    assert not [line for line in hub.output if "RuntimeError" in line or "Traceback" in line]


async def test_get_pipelined_before_upgrade_is_answered_before_the_101(
    hub: ServerProcess
) -> None:
    """Responses keep request order: the GET's 200 is complete before the 101, and the
    WebSocket stream then carries only WebSocket frames."""
    key = base64.b64encode(b"0123456789abcdef").decode()
    upgrade = (f"GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
    ping = b'{"op":"ping"}'
    mask = b"\x01\x02\x03\x04"
    frame = bytes((0x81, 0x80 | len(ping))) + mask + bytes(
        b ^ mask[i % 4] for i, b in enumerate(ping))
    async with raw_socket(hub) as (reader, writer):
        # Two REST requests (one slow enough to still be running when the upgrade is parsed),
        # the upgrade and a first WebSocket frame, all in one segment.
        writer.write(b"GET /v1/channels HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + upgrade + frame)
        status, _, body = await read_response(reader)
        assert status == 200 and "channels" in json.loads(body), body
        status, _, body = await read_response(reader)
        assert (status, json.loads(body)) == (200, {"status": "ok"})
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 101 "), head
        first = await asyncio.wait_for(reader.readexactly(2), 10)
        assert first[0] == 0x81, first  # a text frame, not leftover HTTP
        payload = await asyncio.wait_for(reader.readexactly(first[1] & 0x7F), 10)
        assert json.loads(payload)["op"] == "pong", payload


@pytest.mark.parametrize("request_line", [
    b"GET /\r\n\r\n",
    b"GET /healthz\r\n\r\n",
    b"GET /healthz HTTP/0.9\r\n\r\n",
    b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n",
])
async def test_request_without_http_1_version_is_refused(
    hub: ServerProcess, request_line: bytes
) -> None:
    async with raw_socket(hub) as (reader, writer):
        writer.write(request_line)
        status, headers, body = await read_response(reader)
        assert error_code(status, headers, body) == "bad_request", body
        assert b"HTTP/1.1" in body  # the message says what to send instead
        assert await read_eof(reader) == b""
    # HTTP/1.0 is still served.
    async with raw_socket(hub) as (reader, writer):
        writer.write(b"GET /healthz HTTP/1.0\r\n\r\n")
        status, _, body = await read_response(reader)
        assert (status, json.loads(body)) == (200, {"status": "ok"})


# --------------------------------------------------------------------------- timeouts

HEAD_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def timed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with one-second header and body timeouts."""
    srv = ServerProcess(tmp_path_factory.mktemp("timeouts"),
                        ["--header-timeout", str(HEAD_TIMEOUT),
                         "--body-timeout", str(BODY_TIMEOUT)])
    srv.start(0)
    yield srv
    srv.kill()


async def _slowloris(srv: ServerProcess, interval: float, lines: int) -> tuple[float, bytes]:
    """Trickle header lines every ``interval`` s; return when and what the server answered."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with raw_socket(srv) as (reader, writer):
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        read = asyncio.ensure_future(reader.read())
        for i in range(lines):
            done, _ = await asyncio.wait({read}, timeout=interval)
            if done:
                break
            with contextlib.suppress(OSError):
                writer.write(b"X-Slow-%d: 1\r\n" % i)
        answer = await asyncio.wait_for(read, 10)
        # read() returns at EOF: everything the server sent before closing.
        return loop.time() - started, answer


async def test_slowloris_heads_get_408_within_the_header_timeout(timed: ServerProcess) -> None:
    """200 connections trickling a header line every 0.3 s are answered 408 and closed once
    the whole head has taken longer than the header timeout."""
    results = await asyncio.gather(*(_slowloris(timed, 0.3, 40) for _ in range(200)))
    for elapsed, answer in results:
        # Not before the timeout. No upper bound on the wall clock (a loaded machine delays
        # 200 connects and the once-a-second sweep): the trickle would complete the head
        # after 12 s, so a 408 (not an answer to the request) is the timeout's doing.
        assert HEAD_TIMEOUT * 0.9 <= elapsed, elapsed
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert json.loads(body)["error"]["code"] == "request_timeout"
        assert DOCUMENTED["request_timeout"] == 408
    # The server is fine, and a head that arrives in time is served.
    async with raw_socket(timed) as (reader, writer):
        writer.write(b"GET /healthz HTTP/1.1\r\n")
        await asyncio.sleep(HEAD_TIMEOUT / 3)
        writer.write(b"Host: x\r\n\r\n")
        status, _, body = await read_response(reader)
        assert (status, json.loads(body)) == (200, {"status": "ok"})


async def test_short_body_gets_408_within_the_body_timeout(timed: ServerProcess) -> None:
    loop = asyncio.get_running_loop()
    async with raw_socket(timed) as (reader, writer):
        writer.write(b"POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"channel\":")
        started = loop.time()
        status, headers, body = await read_response(reader, timeout=BODY_TIMEOUT + 5)
        assert error_code(status, headers, body) == "request_timeout"
        assert BODY_TIMEOUT * 0.9 <= loop.time() - started < BODY_TIMEOUT + 2.5
        assert headers["connection"] == "close"
        assert await read_eof(reader) == b""


async def test_idle_connections_are_closed_after_the_header_timeout(timed: ServerProcess) -> None:
    """A connection that never sends a byte, and a keep-alive one idle after its response,
    are closed quietly (no 408: no request was started)."""
    async with raw_socket(timed) as (reader, writer):
        assert await read_eof(reader, HEAD_TIMEOUT + 5) == b""
    async with raw_socket(timed) as (reader, writer):
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, _ = await read_response(reader)
        assert status == 200
        assert await read_eof(reader, HEAD_TIMEOUT + 5) == b""


async def test_streams_are_not_cut_by_the_http_timeouts(timed: ServerProcess) -> None:
    async with connect(timed.ws_url + "/v1/ws") as ws:
        await asyncio.sleep(HEAD_TIMEOUT * 2.5)
        await ws.send('{"op":"ping"}')
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["op"] == "pong"
    async with raw_socket(timed) as (reader, writer):
        writer.write(b"GET /v1/sse?channels=game:crash HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200 "), head
        await asyncio.sleep(HEAD_TIMEOUT * 2.5)
        assert not reader.at_eof()


# --------------------------------------------------------------------------- slow consumers


async def _paused_reader(srv: ServerProcess, request: bytes) -> tuple[
        asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """Open a stream, read its response head, then stop reading (a tiny receive buffer)."""
    import socket  # noqa: PLC0415 - only this helper needs it

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", srv.port))
    # The StreamReader stops reading from the socket past 2 x limit (128 KiB) unread.
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(request)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    return reader, writer, head


async def test_paused_slow_consumer_gets_its_close_when_it_reads_late(
    server_factory: Any,
) -> None:
    """A client that stops reading is cut as a slow consumer; when it reads again, seconds
    after the cut (longer than the 5 s a plain close waits for), it still finds the 4000
    Close frame (WebSocket) or the slow_consumer error event (SSE) at the end of its stream."""
    srv = server_factory(["--outbox-limit", "262144"])
    key = base64.b64encode(b"0123456789abcdef").decode()
    ws_reader, ws_writer, head = await _paused_reader(srv, (
        f"GET /v1/ws?channels=slow:late HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
    assert head.startswith(b"HTTP/1.1 101 "), head
    sse_reader, sse_writer, head = await _paused_reader(
        srv, b"GET /v1/sse?channels=slow:late HTTP/1.1\r\nHost: x\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    await asyncio.sleep(0.3)  # both subscribed
    pad = "x" * 8000
    # One message per loop turn, so the outbox never holds much: the socket buffers fill
    # (the kernel's grow to 4 MiB on loopback), the transport pauses writing and its own
    # buffer passes the limit. 8 MB in all.
    async with connect(srv.ws_url + "/v1/ws") as pub:
        for i in range(1000):
            await pub.send(json.dumps({"op": "publish", "channel": "slow:late",
                                       "data": {"i": i, "pad": pad}}))
            assert json.loads(await asyncio.wait_for(pub.recv(), 10))["op"] == "published"
    async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
        for _ in range(100):
            if "wagerwire_slow_consumer_disconnects_total 2" in (await http.get("/metrics")).text:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("both clients were not cut")
    await asyncio.sleep(7)  # read late: after the 5 s a plain close waits before aborting
    ws_data = await asyncio.wait_for(ws_reader.read(), 10)
    sse_data = await asyncio.wait_for(sse_reader.read(), 10)
    for writer in (ws_writer, sse_writer):
        writer.close()
    frames, _ = split_server_frames(ws_data)
    assert frames and frames[-1][0] == 0x8, (len(ws_data), frames[-1:])
    assert int.from_bytes(frames[-1][1][:2], "big") == 4000
    events = sse_data.split(b"\n\n")
    assert b"event: error" in sse_data and b"slow_consumer" in events[-2], sse_data[-300:]


def _refused_while_sending(port: int) -> bytes:
    """Send a 70 KB head (431) and keep sending after it; return what the server answered."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
        time.sleep(0.3)  # the server has answered 431 and ended its side by now
        with contextlib.suppress(OSError):  # a server that closed outright resets us here
            for _ in range(20):
                sock.sendall(b"b" * 16_384)
        answer = b""
        while True:
            chunk = sock.recv(65536)  # a reset here is the bug: the answer was destroyed
            if not chunk:
                return answer
            answer += chunk


async def test_an_error_answer_survives_a_client_that_keeps_sending(hub: ServerProcess) -> None:
    """Lingering close (RFC 9112 9.6): the server ends its side after the answer and drains
    what the client still sends, so no reset destroys the answer before it is read."""
    for _ in range(5):
        answer = await asyncio.to_thread(_refused_while_sending, hub.port)
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
        assert b'"code":"header_too_large"' in answer


def _unfinished_header(port: int, size: int) -> tuple[float, bytes]:
    """Send one header value of ``size`` bytes that never ends; return when and what came."""
    import socket

    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        with contextlib.suppress(OSError):  # the server ends its side once it has refused
            for _ in range(size // 65536):
                sock.sendall(b"a" * 65536)
        return time.monotonic() - started, sock.recv(65536)


async def test_a_header_that_never_ends_is_refused_by_its_size(hub: ServerProcess) -> None:
    """httptools buffers an unfinished header value itself; the front door counts the bytes
    and answers 431 long before the header timeout (10 s), instead of buffering them all."""
    _, answer = await asyncio.to_thread(_unfinished_header, hub.port, 8 * 1024 * 1024)
    # 431, refused by its size: the header timeout would have answered 408 (not timed: the
    # code says which limit refused it, however slow the machine)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
