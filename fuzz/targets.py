"""Fuzz targets for every byte parser: one function per target, bytes in, nothing out.

A target returns normally for every input the parser answers as documented, that is with a
result or with the parser's documented error (a :class:`~wagerwire.errors.WagerwireError`
subclass named in its docstring). Anything else escapes, and the fuzzer reports it as a crash.
Targets also check what they can cheaply: chunked input parses as one-shot input does, a
token re-encodes to the same positions, an accepted head agrees with httptools.

No atheris here: ``fuzz/run.py`` instruments and drives these, and
``tests/unit/fuzzing/test_fuzz_corpus.py`` replays the committed corpus through them in
``make test``.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httptools
import orjson

from wagerwire.client.actions import Action, BackfillNeeded, Deliver, Reconnect
from wagerwire.client.protocol import ClientProtocol
from wagerwire.core.channels import Filter, channel_attributes, validate_channel, validate_pattern
from wagerwire.core.tokens import decode_token, encode_positions
from wagerwire.dialects import datastream, native, stake, trackersino
from wagerwire.dialects.catalog import Catalog, CatalogGame
from wagerwire.errors import (
    BadParameter,
    BadResumeToken,
    Forbidden,
    InvalidChannel,
    MalformedJson,
    NotFound,
    UnknownOp,
)
from wagerwire.transports.http import HttpProtocol, HttpRequest, HttpServerState, StreamRoutes
from wagerwire.transports.stream import StreamConfig
from wagerwire.wire.http_head import parse_query, parse_stream_head
from wagerwire.wire.sse_parser import SseMessage, SseParser
from wagerwire.wire.websocket import FrameReader, WsEvent, WsProtocolError

__all__ = ["CORPUS", "TARGETS", "chunks", "corpus_files", "fuzz_client"]


def chunks(data: bytes) -> tuple[bytes, list[bytes]]:
    """Split ``data`` at points its first two bytes choose: ``(rest, pieces of rest)``.

    The fuzzer mutates the split as it mutates the bytes, so every target that takes a stream
    is also tried on every way of cutting that stream.
    """
    if len(data) < 2:
        return data, [data] if data else []
    rnd = random.Random(data[:2])
    rest = data[2:]
    pieces: list[bytes] = []
    pos = 0
    while pos < len(rest):
        step = rnd.choice((1, 1, 2, 3, 7, 64, len(rest)))
        pieces.append(rest[pos : pos + step])
        pos += step
    return rest, pieces


# --------------------------------------------------------------------------- wire


def fuzz_http_head(data: bytes) -> None:
    """The strict stream-head parser never raises, and what it accepts httptools reads alike."""
    head = parse_stream_head(data, 65536)
    parse_query(data.decode("latin-1"))
    if head is None:
        return
    assert head.path.startswith("/"), head.path
    seen = _Collect()
    parser = httptools.HttpRequestParser(seen)
    try:
        parser.feed_data(data)
    except httptools.HttpParserUpgrade:
        pass  # an Upgrade head: complete all the same
    assert seen.complete and parser.get_method() == b"GET", data
    url = httptools.parse_url(seen.url)
    assert (url.query or b"") == head.query_string, (url.query, head.query_string)
    expected: dict[str, str] = {}
    for name, value in seen.headers:
        # llhttp keeps a value's trailing whitespace; RFC 9110 §5.5 excludes it, as we do.
        key, text = name.decode("latin-1").lower(), value.decode("latin-1").rstrip("\t ")
        expected[key] = f"{expected[key]}, {text}" if key in expected else text
    assert expected == head.headers, (expected, head.headers)


@dataclass
class _Collect:
    url: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    complete: bool = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_message_complete(self) -> None:
        self.complete = True


def _ws_events(pieces: list[bytes], max_size: int) -> tuple[list[WsEvent], int | None]:
    reader = FrameReader(max_message_size=max_size)
    events: list[WsEvent] = []
    for piece in pieces:
        try:
            reader.receive_data(piece)
        except WsProtocolError as exc:
            events += reader.events_received()
            assert reader.closed
            return events, int(exc.close_code)
        events += reader.events_received()
    return events, None


def fuzz_websocket(data: bytes) -> None:
    """The frame reader raises only WsProtocolError, and any chunking decodes as one piece."""
    rest, pieces = chunks(data)
    max_size = 64 + (data[0] if data else 0) * 4
    whole = _ws_events([rest], max_size)
    split = _ws_events(pieces, max_size)
    assert whole == split, (whole, split)


def _sse_events(pieces: list[bytes]) -> tuple[list[SseMessage], str, int | None]:
    parser = SseParser()
    events: list[SseMessage] = []
    for piece in pieces:
        events += parser.feed(piece)
    parser.feed_eof()
    return events, parser.last_event_id, parser.retry


def fuzz_sse(data: bytes) -> None:
    """The event-stream parser never raises, and any chunking parses as one piece."""
    rest, pieces = chunks(data)
    whole = _sse_events([rest])
    split = _sse_events(pieces)
    assert whole == split, (whole, split)


# --------------------------------------------------------------------------- native protocol


def fuzz_native(data: bytes) -> None:
    """``parse_op`` answers any frame, bytes or text, with an op or its documented errors."""
    for frame in (data, data.decode("utf-8", "replace")):
        try:
            op = native.parse_op(frame)
        except (MalformedJson, UnknownOp, BadParameter, BadResumeToken) as exc:
            native.encode_error(exc)
            continue
        assert isinstance(op, native.NativeOp)
        if isinstance(op, native.Subscribe | native.Unsubscribe):
            for channel in op.channels:
                try:
                    validate_pattern(channel)
                except InvalidChannel:
                    pass


def fuzz_tokens(data: bytes) -> None:
    """``decode_token`` raises only BadResumeToken; what it accepts re-encodes to itself."""
    token = data.decode("utf-8", "replace")
    try:
        positions = decode_token(token)
    except BadResumeToken:
        return
    for channel, pos in positions.items():
        validate_channel(channel)
        assert pos.offset >= 0
    assert decode_token(encode_positions(positions)) == positions


def fuzz_channels(data: bytes) -> None:
    """Channel names, patterns and filters (the URL query's and the subscribe frame's)."""
    text = data.decode("utf-8", "replace")
    for check in (validate_channel, validate_pattern):
        try:
            check(text)
        except InvalidChannel:
            pass
    channel_attributes(text)
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError:
        return
    try:
        flt = Filter.parse(raw)
    except BadParameter:
        return
    if flt is not None:
        flt.matches(text, {"kind": text})


# --------------------------------------------------------------------------- dialects

_CATALOG = Catalog([
    CatalogGame("crash", "crash", "multiplier", "hypetech"),
    CatalogGame("stake-crash", "crash", "multiplier", "stake"),
    CatalogGame("double", "double", "color", "hypetech"),
])


def fuzz_stake(data: bytes) -> None:
    """Stake client frames: parse, check the name, resolve it, encode the reply frame."""
    try:
        op = stake.parse_message(data)
    except (MalformedJson, UnknownOp) as exc:
        stake.encode_error(exc)
        return
    assert isinstance(op, stake.Subscribe | stake.Unsubscribe)
    try:
        name = stake.validate_name(op.channel, _CATALOG, ("game:live",))
        resolved = stake.user_channel(name, "u1" if data[-1:] == b"}" else None)
    except (InvalidChannel, NotFound, Forbidden) as exc:
        stake.encode_error(exc, op.channel)
        return
    orjson.loads(stake.encode_frame(resolved, b"{}"))


def fuzz_datastream(data: bytes) -> None:
    """Data Stream paths (``/ws/{game}``, ``/ws/type/{type}``) and published round data."""
    text = data.decode("utf-8", "replace")
    for game, type_ in ((text, None), (None, text)):
        try:
            datastream.Target.parse(_CATALOG, game, type_)
        except NotFound:
            pass
    frame = datastream.encode_round(data, 1_700_000_000_000)
    if frame:
        assert isinstance(orjson.loads(frame), dict)


def fuzz_trackersino(data: bytes) -> None:
    """TrackerSino's ``?games=`` value and published round data."""
    try:
        trackersino.parse_games(data.decode("utf-8", "replace"), _CATALOG)
    except (BadParameter, NotFound):
        pass
    frame = trackersino.encode_round(data)
    if frame:
        assert isinstance(orjson.loads(frame), dict)


# --------------------------------------------------------------------------- client SDK


def fuzz_client(data: bytes) -> None:
    """The SDK's subscription state machine fed server frames (one per line) by a hostile or
    broken server. It must answer with actions, never raise, and never deliver a message twice
    or out of order within an epoch. ``!`` drops the link (the client reconnects), ``~`` lets
    two heartbeat intervals pass, ``#`` finishes the pending backfills with no pages. (A server
    that goes back to an epoch it left can be replayed: the client keeps one position per
    channel, as documented.)"""
    protocol = ClientProtocol(["game:crash", "odds:*"], rand=lambda: 0.5, heartbeat_interval=1.0)
    now = 0.0
    actions: list[Action] = [*protocol.connect_started(now), *protocol.connection_opened(now)]
    backfills: list[int] = []
    for line in data.split(b"\n"):
        now += 0.01
        # Where the client stands before this input: its dedupe rule is relative to that.
        last = {ch: (pos.epoch, pos.offset) for ch, pos in protocol.positions.items()}
        if line == b"!":
            actions = protocol.connection_lost(1006, "", now)
            for action in actions:
                if isinstance(action, Reconnect):
                    now = max(now, action.at)
                    actions += protocol.connect_started(now) + protocol.connection_opened(now)
        elif line == b"~":
            now += 2.5
            actions = protocol.tick(now)
        elif line == b"#":
            actions = []
            while backfills:
                actions += protocol.backfill_done(backfills.pop(), now)
        else:
            actions = protocol.text_received(line, now)
        for action in actions:
            if isinstance(action, BackfillNeeded):
                backfills.append(action.request_id)
            elif isinstance(action, Deliver):
                message = action.message
                before = last.get(message.channel)
                if before is not None and before[0] == message.epoch:
                    assert message.offset > before[1], (before, message)
                last[message.channel] = (message.epoch, message.offset)


# --------------------------------------------------------------------------- HTTP front door


class _Transport:
    """Enough of an asyncio transport for :class:`HttpProtocol`, recording what it writes."""

    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.closing = False
        self.eof = False
        self.protocol: object = None

    def write(self, data: bytes) -> None:
        assert not self.closing, "write after close"
        assert not self.eof, "write after write_eof"
        self.out.append(data)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def close(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol: object) -> None:
        self.protocol = protocol

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default


class _Stream:
    """A stream connection that accepts whatever the front door hands it."""

    def attach(self, transport: object, now: float) -> None:
        pass

    def started(self, request: HttpRequest) -> None:
        assert request.path.startswith(("/ws", "/sse/")), request.path

    def data_received(self, data: bytes) -> None:
        pass


class _Loop:
    """Tasks are dropped (the ASGI exchange itself is schemathesis's to test, not ours), so a
    REST request here never gets its response."""

    def __init__(self, transport: _Transport) -> None:
        self.transport = transport
        self.written_before = -1  # what the transport held when the first REST request left

    def create_task(self, coro: Coroutine[Any, Any, None]) -> None:
        if self.written_before < 0:
            self.written_before = len(self.transport.out)
        coro.close()

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> None:
        pass  # the header/body deadline sweep: time does not pass here

    def time(self) -> float:
        return 0.0


def _stream_factory(request: HttpRequest, registry: object) -> Any:
    if request.params.get("game") == "missing" or request.query_one("fail") is not None:
        raise NotFound("no such stream")
    return _Stream()


async def _app(scope: Any, receive: Any, send: Any) -> None:  # never awaited (see _Loop)
    raise AssertionError("unreachable")


_CONFIG = StreamConfig(max_header_bytes=512, max_body_bytes=1024)
_ROUTES = StreamRoutes()
_ROUTES.add("ws", "/ws", _stream_factory)
_ROUTES.add("sse", "/sse/{game}", _stream_factory)


def fuzz_http(data: bytes) -> None:
    """The HTTP/1.1 front door (fast path and httptools path) on any bytes, in any chunking.

    ``data_received`` must never raise: every malformed request is answered with an HTTP error
    by the protocol itself. Anything it writes must be an HTTP/1.1 response (a WebSocket
    handshake included), and a request pipelined behind a REST request still waiting for its
    response must wait too: no stream may start, no error may be written ahead of it.
    """
    _, pieces = chunks(data)
    registry = SimpleNamespace(config=_CONFIG, closing=False, errors=Counter())
    transport = _Transport()
    loop = _Loop(transport)
    state = HttpServerState(
        _app, _ROUTES, cast(Any, registry), cast(asyncio.AbstractEventLoop, loop),
        ("127.0.0.1", 8080),
    )
    protocol = HttpProtocol(state)
    protocol.connection_made(cast(asyncio.Transport, transport))
    for piece in pieces:
        if transport.protocol is not None:
            break  # handed to a stream: the front door reads no more
        protocol.data_received(piece)
        if loop.written_before >= 0:
            assert transport.protocol is None, "a stream started before a REST response"
            ahead = transport.out[loop.written_before:]
            assert not ahead, f"written ahead of a REST response: {ahead!r:.200}"
    protocol.connection_lost(None)
    for out in transport.out:
        assert out.startswith(b"HTTP/1.1 "), out[:80]


TARGETS: dict[str, Callable[[bytes], None]] = {
    "http_head": fuzz_http_head,
    "http": fuzz_http,
    "websocket": fuzz_websocket,
    "sse": fuzz_sse,
    "native": fuzz_native,
    "tokens": fuzz_tokens,
    "channels": fuzz_channels,
    "stake": fuzz_stake,
    "datastream": fuzz_datastream,
    "trackersino": fuzz_trackersino,
    "client": fuzz_client,
}


CORPUS = Path(__file__).resolve().parent / "corpus"


def corpus_files(target: str) -> list[Path]:
    """The committed seed files of one target (``fuzz/corpus/<target>/*``), sorted."""
    return sorted(p for p in (CORPUS / target).iterdir() if p.is_file())


