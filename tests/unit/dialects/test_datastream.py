"""Data Stream sessions fed by hand: path selection, the SSE head, ``initial`` then ``message``
with per-connection ``id:`` tokens, resume with Last-Event-ID, Round frames."""

from __future__ import annotations

import orjson
import pytest
from dialect_fakes import (
    CATALOG,
    READER,
    FakeDirectory,
    crash_round,
    drain,
    message,
    ws_text,
)

from wagerwire.core.messages import Position, SubscribeReply
from wagerwire.core.tokens import encode_position, encode_positions
from wagerwire.dialects.base import (
    Close,
    LatestRead,
    OpFailed,
    ReadLatest,
    StreamRequest,
    Subscribe,
    Subscribed,
)
from wagerwire.dialects.datastream import (
    DataStreamSse,
    DataStreamSseSession,
    DataStreamWs,
    DataStreamWt,
    DataStreamWtSession,
    encode_round,
)
from wagerwire.errors import BadResumeToken, Forbidden, NotFound, Unauthorized, Unavailable

NOW_MS = 1_768_621_542_123
WS = DataStreamWs(CATALOG, lambda: NOW_MS)
SSE = DataStreamSse(CATALOG, lambda: NOW_MS)
HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        b"Connection: keep-alive\r\nX-Accel-Buffering: no\r\n\r\nretry: 1000\n\n")


def hypetech_round(round_id: int, slug: str = "crash") -> dict[str, object]:
    """A round whose ``raw`` is already the exact Data Stream Round (Hypetech simulators)."""
    return {"game_slug": slug, "index": round_id, "raw": {
        "round_id": round_id, "game_id": 1, "game_slug": slug, "game_type": "multiplier",
        "finished_at": "2026-01-17T00:45:42Z", "extras": '{"point":"11.72"}',
        "timestamp": 1}}


def round_json(round_id: int, slug: str = "crash") -> bytes:
    return (b'{"round_id":%d,"game_id":1,"game_slug":"%s","game_type":"multiplier",'
            b'"finished_at":"2026-01-17T00:45:42Z","extras":"{\\"point\\":\\"11.72\\"}",'
            b'"timestamp":%d}' % (round_id, slug.encode(), NOW_MS))


def sse_session(params: dict[str, str], headers: dict[str, str] | None = None,
                directory: FakeDirectory | None = None) -> DataStreamSseSession:
    return SSE.accept(StreamRequest(params, {}, headers or {}), directory or FakeDirectory())


# -- selection and refusals -------------------------------------------------------------------


def test_ws_selects_a_game_or_a_type_and_subscribes_at_start() -> None:
    session = WS.accept(StreamRequest({"game": "crash"}, {"token": "reader-token"}),
                        FakeDirectory())
    assert session.identity == READER  # ?token= authenticates here
    session.start(0.0)
    assert drain(session) == ([Subscribe(("game:crash",))], [])
    by_type = WS.accept(StreamRequest({"type": "multiplier"}), FakeDirectory())
    assert by_type.channels == ("game:crash", "game:roobet-crash", "game:slot",
                                "game:stake-crash")
    assert by_type.ping_interval is None  # the server's WS ping applies


@pytest.mark.parametrize(("params", "query", "error"), [
    ({"game": "nope"}, {}, NotFound),
    ({"type": "trend"}, {}, NotFound),
    ({"game": "crash"}, {"token": "wrong"}, Unauthorized),
])
def test_ws_refusals(params: dict[str, str], query: dict[str, str],
                     error: type[Exception]) -> None:
    with pytest.raises(error):
        WS.accept(StreamRequest(params, query), FakeDirectory())


def test_ws_ignores_client_frames_and_closes_on_errors() -> None:
    session = WS.accept(StreamRequest({"game": "crash"}), FakeDirectory())
    session.receive_text("hello")
    assert drain(session) == ([], [])
    session.receive_event(OpFailed(Subscribe(("game:crash",)), Unavailable("store down")))
    assert drain(session) == ([Close(1001, "store down")], [])


def test_ws_round_frame_exact() -> None:
    frame = WS.encoder.encode(message("game:crash", 5, hypetech_round(512)))
    assert frame == ws_text(round_json(512))  # timestamp = the encode time


def test_round_from_canonical_fields() -> None:
    data = crash_round(slug="crash", index=42)
    assert orjson.loads(encode_round(orjson.dumps(data), 7)) == {
        "round_id": 42, "game_id": 3, "game_slug": "crash", "game_type": "multiplier",
        "finished_at": "2026-05-28T15:05:15Z", "extras": '{"point":"2.50"}', "timestamp": 7,
    }
    assert encode_round(b'{"op":"hello"}', 7) == b""
    assert encode_round(b"not json", 7) == b""
    assert WS.encoder.encode(message("game:crash", 1, {"op": "x"})) == b""


# -- SSE --------------------------------------------------------------------------------------


def test_sse_initial_is_the_newest_round_then_messages_carry_ids() -> None:
    session = sse_session({"type": "color"})  # one game: double
    session.start(0.0)
    assert drain(session) == ([ReadLatest(("game:double",), 1)], [HEAD])
    latest = message("game:double", 9, hypetech_round(509, "double"))
    session.receive_event(LatestRead(ReadLatest(("game:double",), 1), {"game:double": [latest]}))
    token = encode_position("game:double", "e1", 9)
    assert drain(session) == (
        [Subscribe(("game:double",), {"game:double": Position("e1", 9)})],
        [b"event: initial\nid: " + token.encode() + b"\ndata: " + round_json(509, "double")
         + b"\n\n"],
    )
    live = message("game:double", 10, hypetech_round(510, "double"))
    frame = SSE.encoder.encode(live)
    assert frame == b"event: message\ndata: " + round_json(510, "double") + b"\n\n"
    assert session.rewrite(frame, live) == (
        b"id: " + encode_position("game:double", "e1", 10).encode() + b"\n" + frame)


def test_sse_initial_picks_the_newest_across_channels_and_ids_cover_all() -> None:
    session = sse_session({"type": "multiplier"})
    session.start(0.0)
    op = drain(session)[0][0]
    assert isinstance(op, ReadLatest)
    older = message("game:crash", 3, hypetech_round(3), ts=100)
    newer = message("game:slot", 8, hypetech_round(8, "slot"), ts=200)
    session.receive_event(LatestRead(op, {"game:crash": [older], "game:slot": [newer],
                                          "game:stake-crash": []}))
    ops, out = drain(session)
    positions = {"game:crash": Position("e1", 3), "game:slot": Position("e1", 8)}
    assert ops == [Subscribe(op.channels, positions)]
    assert out == [b"event: initial\nid: " + encode_positions(positions).encode()
                   + b"\ndata: " + round_json(8, "slot") + b"\n\n"]
    live = message("game:stake-crash", 1, hypetech_round(1, "stake-crash"))
    rewritten = session.rewrite(SSE.encoder.encode(live), live)
    positions["game:stake-crash"] = Position("e1", 1)
    assert rewritten.startswith(b"id: " + encode_positions(positions).encode() + b"\n")


def test_sse_without_history_sends_no_initial() -> None:
    session = sse_session({"game": "crash"})
    session.start(0.0)
    op = drain(session)[0][0]
    assert isinstance(op, ReadLatest)
    session.receive_event(LatestRead(op, {"game:crash": []}))
    assert drain(session) == ([Subscribe(("game:crash",), {})], [])
    session.receive_event(Subscribed(Subscribe(("game:crash",), {})))
    assert drain(session) == ([], [])
    not_a_round = message("game:crash", 1, {"op": "x"})
    assert session.rewrite(SSE.encoder.encode(not_a_round), not_a_round) == b""


def test_sse_resume_replays_and_falls_back_to_initial_only_where_history_is_gone() -> None:
    token = encode_positions({"game:crash": Position("e1", 4), "game:other": Position("e1", 1)})
    directory = FakeDirectory()
    session = sse_session({"game": "crash"}, {"last-event-id": f" {token} "}, directory)
    since = {"game:crash": Position("e1", 4)}  # channels outside the path are dropped
    assert directory.calls[0] == ("validate_subscription", (("game:crash",), since))
    session.start(0.0)
    op = drain(session)[0][0]
    assert isinstance(op, ReadLatest)
    latest = message("game:crash", 20, hypetech_round(520))
    session.receive_event(LatestRead(op, {"game:crash": [latest]}))
    assert drain(session) == ([Subscribe(("game:crash",), since, announce=True)], [])
    session.receive_reply(SubscribeReply("game:crash", "e1", 20, recovered=True))
    assert drain(session) == ([], [])  # the hub replays what was missed
    session.receive_reply(SubscribeReply("game:crash", "e2", 20, recovered=False))
    assert drain(session) == ([], [
        b"event: initial\nid: " + encode_position("game:crash", "e1", 20).encode()
        + b"\ndata: " + round_json(520) + b"\n\n"])


def test_sse_refusals() -> None:
    with pytest.raises(BadResumeToken):
        sse_session({"game": "crash"}, {"last-event-id": "%%%"})
    with pytest.raises(NotFound):
        sse_session({"game": "nope"})


def test_sse_failure_is_an_error_event_then_the_end() -> None:
    session = sse_session({"game": "crash"})
    session.receive_event(OpFailed(ReadLatest(("game:crash",), 1), Unavailable("store down")))
    assert drain(session) == (
        [Close(1001, "store down")],
        [b'event: error\ndata: {"code":"unavailable","message":"store down"}\n\n'],
    )


# -- WebTransport -----------------------------------------------------------------------------

WT = DataStreamWt(CATALOG, lambda: NOW_MS)


def wt_session(params: dict[str, str], token: str | None = None) -> DataStreamWtSession:
    query = {"token": token} if token else {}
    return WT.accept(StreamRequest(params, query, {}), FakeDirectory())


def test_wt_paths_select_a_game_a_type_or_every_readable_game() -> None:
    assert wt_session({"game": "crash"}).channels == ("game:crash",)
    assert wt_session({"type": "color"}).channels == ("game:double",)
    assert wt_session({}).channels == tuple(f"game:{s}" for s in sorted(CATALOG.games))
    # /wt for a plan that reads only some games: exactly those
    assert wt_session({}, "limited-token").channels == ("game:stake-crash",)
    with pytest.raises(NotFound):
        wt_session({"game": "nope"})
    with pytest.raises(NotFound):
        wt_session({"type": "nope"})
    with pytest.raises(Unauthorized):
        wt_session({"game": "crash"}, "bad-token")
    with pytest.raises(Forbidden):
        wt_session({"game": "crash"}, "limited-token")


def test_wt_session_subscribes_at_start_and_each_round_is_the_ws_payload() -> None:
    session = wt_session({"game": "crash"})
    session.start(0.0)
    assert session.ops_received() == [Subscribe(("game:crash",))]
    frame = WT.encoder.encode(message("game:crash", 1, hypetech_round(5)))
    assert frame == round_json(5)
    assert WS.encoder.encode(message("game:crash", 1, hypetech_round(5))) == ws_text(frame)
    assert WT.encoder.encode(message("game:crash", 2, {"not": "a round"})) == b""
