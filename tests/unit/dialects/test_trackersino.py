"""TrackerSino sessions fed by hand: the ?games= selection, the 25 s Ping cadence, round frames."""

from __future__ import annotations

import uuid

import orjson
import pytest
from dialect_fakes import (
    CATALOG,
    LIMITED,
    READER,
    WS_PING,
    FakeDirectory,
    crash_round,
    drain,
    message,
    ws_payload,
    ws_text,
)

from wagerwire.dialects.base import Close, OpFailed, StreamRequest, Subscribe, Subscribed
from wagerwire.dialects.trackersino import (
    ENCODER,
    PING_INTERVAL_S,
    UUID_NAMESPACE,
    TrackerSino,
    TrackerSinoSession,
    crash_games,
    parse_games,
    round_frame,
)
from wagerwire.errors import BadParameter, Forbidden, InternalError, NotFound, Unauthorized
from wagerwire.node.dialects import catalog_of
from wagerwire.sources.casino import TRACKERSINO_GAMES, CasinoSimulator, demo_games

DIALECT = TrackerSino(CATALOG)
T0 = 1_768_621_542_123


def accept(query: dict[str, str] | None = None, token: str = "reader-token",
           directory: FakeDirectory | None = None) -> TrackerSinoSession:
    request = StreamRequest({}, query or {}, {"authorization": f"Bearer {token}"})
    return DIALECT.accept(request, directory or FakeDirectory())


def test_no_games_means_every_crash_game_of_the_plan() -> None:
    session = accept()
    assert session.identity == READER
    assert session.channels == ("game:crash", "game:roobet-crash", "game:stake-crash")
    assert accept({"games": " , "}).channels == session.channels
    assert accept(token="limited-token").channels == ("game:stake-crash",)  # the others: out
    assert accept(token="limited-token").identity == LIMITED


def test_games_query_selects_in_order_without_duplicates() -> None:
    session = accept({"games": "stake-crash,roobet-crash,stake-crash"})
    assert session.channels == ("game:stake-crash", "game:roobet-crash")


@pytest.mark.parametrize(("query", "token", "error", "text"), [
    ({"games": "nope-crash"}, "reader-token", NotFound, "unknown game 'nope-crash'"),
    ({"games": "double"}, "reader-token", BadParameter, "double is not a crash game"),
    ({"games": ",".join(["crash"] * 51)}, "reader-token", BadParameter, "51 games; at most 50"),
    ({}, "wrong", Unauthorized, "invalid key"),
    ({"games": "crash"}, "limited-token", Forbidden, "game:crash is not on your plan"),
])
def test_refused_at_the_upgrade(query: dict[str, str], token: str,
                                error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text):
        accept(query, token)


def test_only_the_bearer_header_authenticates() -> None:
    directory = FakeDirectory()
    request = StreamRequest({}, {"token": "user-token"}, {})
    DIALECT.accept(request, directory)
    assert directory.calls == [("authenticate", None)]  # ?token= is not read


def test_plan_without_any_crash_game() -> None:
    directory = FakeDirectory()
    directory.tokens["slots"] = READER.__class__("k9", "reader", "slots", channels=("game:slot",))
    with pytest.raises(Forbidden, match="your plan includes no crash game"):
        accept(token="slots", directory=directory)


def test_subscribes_at_start_and_pings_every_25_seconds() -> None:
    session = accept({"games": "stake-crash"})
    assert session.ping_interval == PING_INTERVAL_S == 25.0
    session.start(100.0)
    assert drain(session) == ([Subscribe(("game:stake-crash",))], [])
    session.receive_event(Subscribed(Subscribe(("game:stake-crash",))))
    session.tick(124.9)
    assert drain(session) == ([], [])
    session.tick(125.0)
    assert drain(session) == ([], [WS_PING])
    session.tick(149.0)
    assert drain(session) == ([], [])
    session.tick(150.0)
    assert drain(session) == ([], [WS_PING])


def test_client_frames_are_ignored() -> None:
    session = accept()
    session.receive_text("ping")
    session.receive_text('{"type":"subscribe"}')
    assert drain(session) == ([], [])  # the seed clients parse every frame as a round


def test_a_failed_subscribe_closes_with_its_code() -> None:
    session = accept()
    op = Subscribe(session.channels)
    session.receive_event(OpFailed(op, InternalError("internal error; the server logged it")))
    assert drain(session) == ([Close(1011, "internal error; the server logged it")], [])


def test_round_frame_exact() -> None:
    frame = ENCODER.encode(message("game:stake-crash", 1, crash_round(index=956100250495943837)))
    assert frame == ws_text(
        b'{"game_id":"stake-crash","round_id":"c2caaf8a-34b3-42b0-8d44-c01cb879049d",'
        b'"round_index":956100250495943837,"multiplier":"2.5","state":"finalized",'
        b'"finalized_at":"2026-05-28T15:05:15Z","multiplier_source":"stake",'
        b'"raw":{"id":"c2caaf8a-34b3-42b0-8d44-c01cb879049d"}}'
    )


def test_round_frame_without_upstream_id_and_numeric_multiplier() -> None:
    data = crash_round(index=12, multiplier=3.1611)
    data["raw"] = None
    frame = orjson.loads(ws_payload(ENCODER.encode(message("game:stake-crash", 1, data))))
    assert frame["round_id"] == str(uuid.uuid5(UUID_NAMESPACE, "stake-crash:12"))
    assert frame["multiplier"] == "3.1611"
    assert frame["raw"] == {}


@pytest.mark.parametrize("data", [
    {"op": "hello"}, [1, 2], "text", {"game_slug": "crash", "index": 1, "result": {}},
    {"game_slug": "crash", "index": 1, "result": {"multiplier": True}},
])
def test_anything_but_a_crash_round_encodes_to_nothing(data: object) -> None:
    assert ENCODER.encode(message("game:crash", 1, data)) == b""


def test_the_demo_catalog_serves_every_game_the_page_names_crash_and_slide() -> None:
    """The page names stake-, roobet-, duel- and shuffle-crash "and their Slide siblings"
    (slugs inferred: <site>-slide); a Slide round is one multiplier, so the same frame."""
    catalog = catalog_of(demo_games())
    session = TrackerSino(catalog).accept(
        StreamRequest({}, {}, {"authorization": "Bearer reader-token"}), FakeDirectory())
    assert set(session.channels) == {"game:crash"} | {f"game:{s}" for s in TRACKERSINO_GAMES}
    assert [g.slug for g in crash_games(catalog)] == sorted(["crash", *TRACKERSINO_GAMES])
    assert [g.slug for g in parse_games("duel-slide,shuffle-crash", catalog) or []] == [
        "duel-slide", "shuffle-crash"]
    with pytest.raises(BadParameter, match="slot is not a crash game"):
        parse_games("slot", catalog)
    # Data Stream: crash and slide games are both of its "multiplier" type
    assert {g.slug for g in catalog.of_type("multiplier")} >= set(TRACKERSINO_GAMES)
    for slug in TRACKERSINO_GAMES:
        spec = next(s for s in demo_games() if s.slug == slug)
        data = orjson.loads(orjson.dumps(CasinoSimulator(spec, 5, chain_length=8).next_round(T0)))
        frame = round_frame(data)
        assert frame is not None and frame["game_id"] == slug
        assert frame["multiplier"] == data["result"]["multiplier"]
        assert frame["multiplier_source"] == spec.provider
        assert isinstance(frame["round_index"], int) and frame["finalized_at"].endswith("Z")
        assert uuid.UUID(frame["round_id"])
