"""Stake sessions fed by hand: origin and token at the upgrade, subscribe/unsubscribe,
error frames without a channel key, the balance snapshot (latest per currency), ordering."""

from __future__ import annotations

import orjson
import pytest
from dialect_fakes import (
    CATALOG,
    USER,
    FakeDirectory,
    drain,
    message,
    ws_payload,
    ws_text,
)

from wagerwire.auth.identity import ANONYMOUS
from wagerwire.core.channels import MAX_CHANNEL_LENGTH
from wagerwire.core.messages import Position
from wagerwire.dialects.base import (
    LatestRead,
    OpFailed,
    ReadLatest,
    StreamRequest,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
)
from wagerwire.dialects.stake import ENCODER, Stake, StakeSession, origin_allowed
from wagerwire.errors import Forbidden, TooManyChannels, Unauthorized

DIALECT = Stake(CATALOG)
BAL = "user:u1:balances"


def accept(token: str | None = "user-token", origin: str | None = None,
           directory: FakeDirectory | None = None) -> StakeSession:
    headers = {}
    if token is not None:
        headers["x-access-token"] = token
    if origin is not None:
        headers["origin"] = origin
    session = DIALECT.accept(StreamRequest({}, {}, headers), directory or FakeDirectory())
    session.start(0.0)
    assert drain(session) == ([], [])  # nothing until the client subscribes
    return session


def send(session: StakeSession, frame: object) -> None:
    session.receive_text(frame if isinstance(frame, str) else orjson.dumps(frame).decode())


def error_frame(code: str, message: str, channel: str | None = None) -> bytes:
    payload = {"code": code, "message": message}
    if channel is not None:
        payload["channel"] = channel
    return ws_text(orjson.dumps({"type": "error", "payload": payload}))


# -- the upgrade ------------------------------------------------------------------------------


def test_origins() -> None:
    assert accept(origin="https://stake.com").identity == USER
    assert accept(origin="http://127.0.0.1:8123").identity == USER
    assert accept(None).identity == ANONYMOUS
    with pytest.raises(Forbidden, match="Origin 'https://evil.example' is not allowed"):
        accept(origin="https://evil.example")
    with pytest.raises(Forbidden):  # the Origin is checked before the token
        accept("wrong", origin="https://evil.example")
    with pytest.raises(Unauthorized):
        accept("wrong", origin="https://stake.com")
    assert origin_allowed("https://evil.example", ["*"])
    assert not origin_allowed("http://localhost.evil:80", Stake(CATALOG).origins)


# -- subscribe / unsubscribe ------------------------------------------------------------------


def test_subscribe_then_unsubscribe_a_game() -> None:
    session = accept()
    send(session, {"type": "subscribe", "channel": "game:crash"})
    op = Subscribe(("game:crash",))
    assert drain(session) == ([op], [])  # no acknowledgement on this wire
    session.receive_event(Subscribed(op))
    send(session, {"type": "unsubscribe", "channel": "game:crash"})
    unsub = Unsubscribe(("game:crash",))
    assert drain(session) == ([unsub], [])
    session.receive_event(Unsubscribed(unsub, ("game:crash",)))
    send(session, {"type": "unsubscribe", "channel": "game:crash"})  # not subscribed: no-op
    assert drain(session) == ([], [])


def test_sports_and_published_games_outside_the_catalog() -> None:
    directory = FakeDirectory(existing={"game:brand-new"})
    session = accept(directory=directory)
    send(session, {"type": "subscribe", "channel": "sports:event:E1"})
    assert drain(session) == ([], [error_frame(
        "invalid_channel", session_error_text("sports:event:E1"), "sports:event:E1")])
    send(session, {"type": "subscribe", "channel": "sports:event:e1"})
    op = Subscribe(("sports:event:e1",))
    assert drain(session) == ([op], [])
    session.receive_event(Subscribed(op))
    send(session, {"type": "subscribe", "channel": "game:brand-new"})
    assert drain(session) == ([Subscribe(("game:brand-new",))], [])


def session_error_text(name: str) -> str:
    return (f"invalid channel name {name!r}: use 1-{MAX_CHANNEL_LENGTH} characters of "
            "[a-z0-9:_.-], starting with a letter or digit")


@pytest.mark.parametrize(("frame", "expected"), [
    ("not json", None),
    ({"type": "hello", "channel": "game:crash"},
     error_frame("unknown_op", "unknown type 'hello'; expected subscribe or unsubscribe")),
    ({"type": "subscribe"}, error_frame("malformed_json", 'subscribe needs a string "channel"')),
    ([1], error_frame("malformed_json", 'message must be a JSON object with a string "type"')),
    ({"type": "subscribe", "channel": "chat:global"}, error_frame(
        "invalid_channel", "unknown channel 'chat:global'; use user:balances, game:{slug} or "
        "sports:event:{id}", "chat:global")),
    ({"type": "subscribe", "channel": "game:nope"}, None),
    ({"type": "subscribe", "channel": "user:u2:balances"}, None),
    ({"type": "subscribe", "channel": "game:" + "x" * 300}, None),
])
def test_errors_are_frames_without_a_channel_key(frame: object, expected: bytes | None) -> None:
    session = accept()
    send(session, frame)
    ops, out = drain(session)
    assert ops == []
    assert len(out) == 1
    if expected is not None:
        assert out == [expected]
    body = orjson.loads(ws_payload(out[0]))
    assert "channel" not in body  # the seed's handlers read payload of any channel frame
    assert body["type"] == "error"
    code = body["payload"]["code"]
    assert code in {"malformed_json", "unknown_op", "invalid_channel", "not_found"}
    if frame == {"type": "subscribe", "channel": "game:nope"}:
        assert code == "not_found"


def test_forbidden_names_the_channel() -> None:
    anonymous = accept(None)
    send(anonymous, {"type": "subscribe", "channel": "user:balances"})
    ops, out = drain(anonymous)
    assert ops == []
    assert orjson.loads(ws_payload(out[0]))["payload"] == {
        "code": "forbidden", "message": "user:balances is private", "channel": "user:balances"}
    limited = accept("limited-token")
    send(limited, {"type": "subscribe", "channel": "game:crash"})
    assert drain(limited) == ([], [error_frame(
        "forbidden", "game:crash is not on your plan", "game:crash")])


def test_a_failed_hub_subscribe_is_an_error_frame_and_forgets_the_name() -> None:
    session = accept()
    send(session, {"type": "subscribe", "channel": "game:crash"})
    op = drain(session)[0][0]
    session.receive_event(OpFailed(op, TooManyChannels("at most 100 channels")))
    assert drain(session) == ([], [error_frame(
        "too_many_channels", "at most 100 channels", "game:crash")])
    send(session, {"type": "unsubscribe", "channel": "game:crash"})
    assert drain(session) == ([], [])


# -- user:balances ----------------------------------------------------------------------------


def test_balances_snapshot_is_the_latest_per_currency_then_live() -> None:
    session = accept()
    send(session, {"type": "subscribe", "channel": "user:balances"})
    read = ReadLatest((BAL,), 1000)
    assert drain(session) == ([read], [])
    history = [
        message(BAL, 1, {"currency": "usd", "amount": 1}),
        message(BAL, 2, {"currency": "btc", "amount": 0.5}),
        message(BAL, 3, "not a balance"),
        message(BAL, 4, {"currency": "usd", "amount": 7}),
    ]
    session.receive_event(LatestRead(read, {BAL: history}))
    ops, out = drain(session)
    assert ops == [Subscribe((BAL,), {BAL: Position("e1", 4)})]
    assert out == [
        ws_text(b'{"channel":"user:balances","payload":{"currency":"btc","amount":0.5}}'),
        ws_text(b'{"channel":"user:balances","payload":"not a balance"}'),
        ws_text(b'{"channel":"user:balances","payload":{"currency":"usd","amount":7}}'),
    ]
    session.receive_event(Subscribed(ops[0]))
    send(session, {"type": "subscribe", "channel": "user:balances"})  # again: no snapshot
    assert drain(session) == ([Subscribe((BAL,))], [])


def test_balances_without_history_subscribe_from_now() -> None:
    session = accept()
    send(session, {"type": "subscribe", "channel": "user:balances"})
    read = drain(session)[0][0]
    assert isinstance(read, ReadLatest)
    session.receive_event(LatestRead(read, {BAL: []}))
    assert drain(session) == ([Subscribe((BAL,))], [])


def test_frames_wait_for_the_snapshot_but_parse_errors_do_not() -> None:
    session = accept()
    send(session, {"type": "subscribe", "channel": "user:balances"})
    read = drain(session)[0][0]
    assert isinstance(read, ReadLatest)
    send(session, {"type": "subscribe", "channel": "chat:x"})  # held: answered in order
    send(session, {"type": "subscribe", "channel": "game:crash"})
    send(session, "{")
    ops, out = drain(session)
    assert ops == []
    assert [orjson.loads(ws_payload(f))["payload"]["code"] for f in out] == ["malformed_json"]
    session.receive_event(LatestRead(read, {BAL: [message(BAL, 1, {"currency": "usd"})]}))
    ops, out = drain(session)
    sub = Subscribe((BAL,), {BAL: Position("e1", 1)})
    assert ops == [sub]
    assert out == [ws_text(b'{"channel":"user:balances","payload":{"currency":"usd"}}')]
    session.receive_event(Subscribed(sub))
    ops, out = drain(session)
    assert ops == [Subscribe(("game:crash",))]
    assert [orjson.loads(ws_payload(f))["payload"]["code"] for f in out] == ["invalid_channel"]


def test_a_failed_snapshot_read_is_an_error_frame() -> None:
    session = accept()
    send(session, {"type": "subscribe", "channel": "user:balances"})
    read = drain(session)[0][0]
    session.receive_event(OpFailed(read, Forbidden("nope")))
    assert drain(session) == ([], [error_frame("forbidden", "nope")])


def test_message_frames_use_the_public_name() -> None:
    assert ENCODER.encode(message(BAL, 1, {"currency": "usd"})) == ws_text(
        b'{"channel":"user:balances","payload":{"currency":"usd"}}')
    assert ENCODER.encode(message("game:crash", 1, [1])) == ws_text(
        b'{"channel":"game:crash","payload":[1]}')
