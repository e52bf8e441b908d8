"""The session base: feed, then drain; defaults; the layering rule of dialects/."""

from __future__ import annotations

import ast
from pathlib import Path

from dialect_fakes import READER, drain

from wagerwire.core.messages import Message
from wagerwire.dialects import base
from wagerwire.dialects.base import (
    Close,
    OpFailed,
    Session,
    StreamRequest,
    Subscribe,
    Subscribed,
    close_code,
)
from wagerwire.errors import CloseCode, Forbidden, InternalError, MalformedJson

DIALECTS = Path(base.__file__).parent


class Plain:
    def encode(self, message: Message) -> bytes:
        return message.data


def test_defaults_ignore_text_and_share_frames() -> None:
    session = Session(READER, Plain())
    session.start(0.0)
    session.receive_text('{"op":"anything"}')
    session.tick(100.0)
    assert drain(session) == ([], [])
    assert session.ping_interval is None
    msg = Message("game:crash", 1, "e", 0, b"{}")
    assert session.rewrite(b"frame", msg) == b"frame"


def test_an_op_failure_closes_with_the_error_code() -> None:
    session = Session(READER, Plain())
    op = Subscribe(("game:crash",))
    session.receive_event(Subscribed(op))
    assert drain(session) == ([], [])
    session.receive_event(OpFailed(op, Forbidden("not on your plan")))
    assert drain(session) == ([Close(4003, "not on your plan")], [])
    assert drain(session) == ([], [])  # drained once


def test_close_codes() -> None:
    assert close_code(Forbidden("x")) == CloseCode.FORBIDDEN
    assert close_code(InternalError("x")) == CloseCode.INTERNAL_ERROR
    assert close_code(MalformedJson("x")) == CloseCode.POLICY_VIOLATION


def test_send_keeps_order_and_drops_empty_bytes() -> None:
    session = Session(READER, Plain())
    session.send(b"a")
    session.send(b"")
    session.send(b"b")
    assert session.data_to_send() == [b"a", b"b"]


def test_stream_request_query_one() -> None:
    request = StreamRequest({"game": "crash"}, {"games": "a,b"}, {})
    assert request.query_one("games") == "a,b"
    assert request.query_one("token") is None


def test_dialects_import_no_asyncio_socket_or_clock() -> None:
    forbidden = {"asyncio", "socket", "time", "datetime", "selectors", "threading"}
    for path in sorted(DIALECTS.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"
                assert name != "wagerwire.core.hub", f"{path.name} imports the asyncio hub"
                assert not name.startswith("wagerwire.transports"), path.name
