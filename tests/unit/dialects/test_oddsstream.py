"""OddsStream sessions fed by hand: token and filters at the upgrade, exact price frames, raw
``pong``, no other frame ever; plus the REST answers over a hand-built snapshot."""

from __future__ import annotations

import math

import orjson
import pytest
from dialect_fakes import FakeDirectory, drain, message, ws_payload, ws_text

from wagerwire.auth.identity import Identity
from wagerwire.core.channels import Filter
from wagerwire.dialects.base import StreamRequest, Subscribe
from wagerwire.dialects.oddsstream import (
    ENCODER,
    IDLE_S,
    PONG,
    OddsFilters,
    OddsStream,
    OddsStreamSession,
    default_catalog,
)
from wagerwire.dialects.oddsstream_rest import (
    VALUE_EDGE,
    bookmaker_list,
    current_prices,
    sport_list,
    value_bet_frames,
)
from wagerwire.domain.state import DomainState
from wagerwire.errors import BadParameter, KeyInUrl, Unauthorized

DIALECT = OddsStream()
CATALOG = default_catalog()
TOKEN = "wwt1.kid.payload.sig-abc"
STREAMER = Identity("k9", "reader", "free", None, ("odds:*",), via_token=True)
KEY_HOLDER = Identity("k9", "reader", "free", None, ("odds:*",))

UPDATE = {
    "bookmaker": "sharpline", "match_name": "PSG - Lyon", "competition": "lig1",
    "sport": "football", "market_type": "1x2", "selection": "PSG", "odds": 1.85, "period": 0,
    "is_live": False, "scraped_at": "2026-04-20T14:30:12Z", "event_id": "ev1",
    "market_id": "1x2", "selection_id": "home", "line": None, "suspended": False,
}
SEED_FRAME = (b'{"bookmaker":"Sharpline","match_name":"PSG - Lyon","competition":"LIG1",'
              b'"sport":"Football","market_type":"moneyline","selection":"PSG","odds":1.85,'
              b'"period":0,"is_live":false,"scraped_at":"2026-04-20T14:30:12Z"}')


def directory() -> FakeDirectory:
    return FakeDirectory(tokens={TOKEN: STREAMER, "ww_key": KEY_HOLDER})


def accept(**query: str) -> OddsStreamSession:
    return DIALECT.accept(StreamRequest({}, {"token": TOKEN, **query}, {}), directory())


def test_frame_is_exactly_the_seed_object() -> None:
    frame = ENCODER.encode(message("odds:football:lig1", 1, UPDATE))
    assert frame == ws_text(SEED_FRAME)
    obj = orjson.loads(ws_payload(frame))
    assert type(obj["odds"]) is float and type(obj["period"]) is int
    assert obj["is_live"] is False


def test_live_total_and_integer_odds_keep_their_types() -> None:
    live = {**UPDATE, "market_type": "total", "selection": "Over 2.5", "odds": 2, "period": 1,
            "is_live": True}
    obj = orjson.loads(ws_payload(ENCODER.encode(message("odds:football:lig1", 1, live))))
    assert obj["market_type"] == "total" and obj["selection"] == "Over 2.5"
    assert obj["odds"] == 2 and obj["period"] == 1 and obj["is_live"] is True


@pytest.mark.parametrize("data", [
    {**UPDATE, "suspended": True},
    {**UPDATE, "odds": "1.85"},
    {**UPDATE, "odds": True},
    {**UPDATE, "bookmaker": None},
    {"event_id": "ev1", "status": "live"},
    [1, 2],
])
def test_anything_but_a_takeable_price_is_no_frame(data: object) -> None:
    assert ENCODER.encode(message("odds:football:lig1", 1, data)) == b""


def test_unknown_slugs_keep_their_spelling() -> None:
    other = {**UPDATE, "bookmaker": "winamax", "sport": "curling", "competition": "wcc"}
    obj = orjson.loads(ws_payload(ENCODER.encode(message("odds:curling:wcc", 1, other))))
    assert (obj["bookmaker"], obj["sport"], obj["competition"]) == ("winamax", "curling", "WCC")


def test_unfiltered_stream_subscribes_to_every_odds_channel() -> None:
    session = accept()
    assert session.identity == STREAMER and session.once == "sig-abc"
    session.start(0.0)
    assert drain(session) == ([Subscribe(("odds:*",))], [])


@pytest.mark.parametrize(("query", "channels", "books"), [
    ({"sport": "Football"}, ("odds:football:*",), None),
    ({"sport": "football", "competition": "EPL"}, ("odds:football:epl",), None),
    ({"competition": "epl"}, ("odds:football:epl",), None),
    ({"sport": "Basketball", "competition": "EPL"}, ("odds:basketball:epl",), None),
    ({"bookmaker": "Sharpline"}, ("odds:*",), "sharpline"),
    ({"sport": "Ice Hockey", "competition": "NHL", "bookmaker": "oddsfox"},
     ("odds:ice-hockey:nhl",), "oddsfox"),
    ({"sport": "", "bookmaker": " "}, ("odds:*",), None),
])
def test_filters_narrow_channels_and_the_bookmaker_is_a_hub_filter(
    query: dict[str, str], channels: tuple[str, ...], books: str | None
) -> None:
    session = accept(**query)
    session.start(0.0)
    ops, _ = drain(session)
    want = None if books is None else Filter.parse({"bookmaker": books})
    assert ops == [Subscribe(channels, filter=want)]
    if want is not None:  # interned: every connection with this filter shares one object
        assert accept(**query).filter is want


@pytest.mark.parametrize(("query", "text"), [
    ({"sport": "Footbal"}, "unknown sport 'Footbal'; GET /api/sports lists the sport names"),
    ({"competition": "XYZ"}, "unknown competition 'XYZ'; GET /api/sports lists"),
    ({"bookmaker": "Winamax"}, "unknown bookmaker 'Winamax'; GET /api/bookmakers lists"),
    ({"sport": "x" * 101}, "sport is at most 100 characters"),
])
def test_bad_filter_values_are_refused_at_the_upgrade(query: dict[str, str], text: str) -> None:
    with pytest.raises(BadParameter, match=text[:30]):
        accept(**query)


@pytest.mark.parametrize(("query", "error"), [
    ({}, Unauthorized),
    ({"token": ""}, Unauthorized),
    ({"token": "wwt1.kid.payload.forged"}, Unauthorized),
])
def test_token_is_required(query: dict[str, str], error: type[Exception]) -> None:
    with pytest.raises(error):
        DIALECT.accept(StreamRequest({}, query, {}), directory())


def test_an_api_key_is_not_a_stream_token() -> None:
    with pytest.raises(Unauthorized, match="stream token"):
        DIALECT.accept(StreamRequest({}, {"token": "ww_key"}, {}), directory())
    with pytest.raises(Unauthorized):  # a header key does not open the stream either
        DIALECT.accept(StreamRequest({}, {}, {"x-api-key": "ww_key"}), directory())
    assert issubclass(KeyInUrl, Unauthorized)


def test_ping_is_answered_with_raw_pong_and_nothing_else_is_answered() -> None:
    session = accept()
    session.start(0.0)
    drain(session)
    session.receive_text("ping")
    assert drain(session) == ([], [PONG])
    assert PONG == ws_text(b"pong")
    for text in ('"ping"', "PING", "hello", '{"type":"subscribe"}', "", "ping " * 1000):
        session.receive_text(text)
        assert drain(session) == ([], [])


def test_the_session_keeps_no_ws_ping_and_idles_out_after_five_minutes() -> None:
    session = accept()
    assert session.ping_interval == IDLE_S == 300.0
    session.tick(1e6)
    assert drain(session) == ([], [])


# -- REST over a snapshot --------------------------------------------------------------------


def _state() -> DomainState:
    """One EPL match, 1x2, three books; prices picked so the sums below are easy by hand."""
    state = DomainState()
    event = {
        "event_id": "ev1", "sport": "football", "competition": "epl", "name": "Arsenal - Chelsea",
        "status": "upcoming", "live": False,
        "markets": [{"market_id": "1x2", "market_type": "1x2", "period": 0, "line": None,
                     "selections": [{"selection_id": "home", "name": "Arsenal"},
                                    {"selection_id": "draw", "name": "Draw"},
                                    {"selection_id": "away", "name": "Chelsea"}]}],
    }
    state.apply("sports:event:ev1", event, 1)
    books = {"sharpline": (2.0, 4.0, 4.0), "northbet": (1.9, 3.8, 4.2),
             "oddsfox": (2.2, 3.5, 3.5)}
    for book, prices in books.items():
        for (sid, name), odds in zip((("home", "Arsenal"), ("draw", "Draw"),
                                      ("away", "Chelsea")), prices, strict=True):
            state.apply("odds:football:epl", {
                **UPDATE, "bookmaker": book, "match_name": "Arsenal - Chelsea",
                "competition": "epl", "selection": name, "selection_id": sid, "odds": odds,
                "event_id": "ev1", "market_id": "1x2",
            }, 2)
    return state


def test_value_bets_against_hand_checked_consensus() -> None:
    # De-vig each book multiplicatively: p_i = (1/o_i) / sum_j(1/o_j).
    #   sharpline 2.0/4.0/4.0: 1/o = .5/.25/.25 (sum 1.0)   → .5, .25, .25
    #   northbet 1.9/3.8/4.2: 1/o = .526316/.263158/.238095 (sum 1.027569)
    #                                                       → .512195, .256098, .231707
    #   oddsfox 2.2/3.5/3.5: 1/o = .454545/.285714/.285714 (sum 1.025974)
    #                                                       → .443038, .278481, .278481
    # Consensus (mean, sums to 1): home .485078, draw .261526, away .253396.
    # Best prices: home 2.2 (oddsfox) edge .485078*2.2-1 = +6.72 %;
    #   draw 4.0 (sharpline) .261526*4-1 = +4.61 %; away 4.2 (northbet) .253396*4.2-1 = +6.43 %.
    bets = value_bet_frames(_state(), OddsFilters(), CATALOG)
    got = [(b["selection"], b["bookmaker"], b["odds"], b["edge_pct"]) for b in bets]
    assert [g[:3] for g in got] == [("Arsenal", "OddsFox", 2.2), ("Chelsea", "NorthBet", 4.2),
                                    ("Draw", "Sharpline", 4.0)]
    assert [round(g[3], 1) for g in got] == [6.7, 6.4, 4.6]
    home = bets[0]
    assert math.isclose(home["fair_probability"], 0.485078, abs_tol=2e-6)
    assert math.isclose(home["fair_odds"], 1 / 0.485078, abs_tol=1e-3)
    assert (home["match_name"], home["competition"], home["sport"], home["market_type"]) == (
        "Arsenal - Chelsea", "EPL", "Football", "moneyline")
    # Above 6.5 % only home and away pass; a bookmaker filter keeps that book's bets.
    assert [b["selection"] for b in value_bet_frames(_state(), OddsFilters(), CATALOG, 0.065)
            ] == ["Arsenal"]
    assert [b["selection"] for b in value_bet_frames(
        _state(), OddsFilters(bookmaker="sharpline"), CATALOG)] == ["Draw"]
    assert value_bet_frames(_state(), OddsFilters(sport="basketball"), CATALOG) == []
    assert VALUE_EDGE == 0.02


def test_a_fair_market_has_no_value_bet() -> None:
    state = DomainState()
    for book in ("sharpline", "northbet"):
        for sid, odds in (("home", 2.0), ("away", 2.0)):
            state.apply("odds:tennis:atp", {**UPDATE, "bookmaker": book, "selection": sid,
                                            "selection_id": sid, "odds": odds,
                                            "market_id": "ml", "market_type": "moneyline",
                                            "event_id": "t1", "sport": "tennis",
                                            "competition": "atp"}, 1)
    assert value_bet_frames(state, OddsFilters(), CATALOG) == []


def test_current_prices_are_frames_with_the_same_filters() -> None:
    prices = current_prices(_state(), OddsFilters(), CATALOG)
    assert len(prices) == 9
    assert prices[0] == orjson.loads(SEED_FRAME) | {
        "bookmaker": prices[0]["bookmaker"], "match_name": "Arsenal - Chelsea",
        "competition": "EPL", "selection": "Arsenal", "odds": prices[0]["odds"]}
    assert list(prices[0]) == list(orjson.loads(SEED_FRAME))
    only = current_prices(_state(), OddsFilters(bookmaker="oddsfox"), CATALOG)
    assert [(p["selection"], p["odds"]) for p in only] == [
        ("Arsenal", 2.2), ("Draw", 3.5), ("Chelsea", 3.5)]
    assert current_prices(_state(), OddsFilters(competition="lig1"), CATALOG) == []


def test_catalogue_listings() -> None:
    sports = sport_list(CATALOG)
    assert sports[0] == {"name": "Football", "slug": "football", "competitions": [
        {"code": "EPL", "name": "Premier League", "slug": "epl"},
        {"code": "LIG1", "name": "Ligue 1", "slug": "lig1"},
        {"code": "LALIGA", "name": "LaLiga", "slug": "laliga"}]}
    assert {"name": "Sharpline", "slug": "sharpline"} in bookmaker_list(CATALOG)
