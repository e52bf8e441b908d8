"""SportsGameOdds' pure parts: feed channels, which feeds an update notifies, the ``data``
payloads of a batch, American odds and the Event shape."""

from __future__ import annotations

import orjson
import pytest

from wagerwire.dialects.pusher import renamed
from wagerwire.dialects.pusher_names import valid_name
from wagerwire.dialects.sportsgameodds import (
    american,
    feed_channel,
    feeds_of,
    key_channel,
    may_stream,
    notifications,
    sgo_event,
    split_key_channel,
)
from wagerwire.errors import BadParameter
from wagerwire.wire.websocket import text_frame


def test_feed_channels() -> None:
    assert feed_channel("events:live", None, None) == "events-live"
    assert feed_channel("events:upcoming", "nfl", None) == "events-upcoming-NFL"
    assert feed_channel("events:byid", None, "ab-1") == "events-byid-ab-1"
    odd = feed_channel("events:byid", None, "DENVER_VS_MIAMI_2024-05-20T00:30:00Z_NBA")
    assert odd.startswith("events-byid-h") and len(odd) == 45
    for feed, league, event in (("events:upcoming", None, None), ("events:byid", None, None),
                                ("x", None, None), (None, None, None)):
        with pytest.raises(BadParameter):
            feed_channel(feed, league, event)


def test_feeds_of_transitions() -> None:
    up = {"event_id": "e1", "status": "upcoming", "league": "nfl"}
    live = {**up, "status": "live"}
    done = {**up, "status": "finished"}
    assert feeds_of(up, None) == ["events-byid-e1", "events-upcoming-NFL"]
    assert feeds_of(live, up) == ["events-byid-e1", "events-live", "events-upcoming-NFL"]
    assert feeds_of(live, live) == ["events-byid-e1", "events-live"]
    assert feeds_of(done, live) == ["events-byid-e1", "events-live"]
    assert feeds_of(done, done) == ["events-byid-e1"]


def test_notifications_batch_ids_once_per_channel() -> None:
    a = {"event_id": "a", "status": "live", "league": "nba"}
    b = {"event_id": "b", "status": "live", "league": "nba"}
    out = notifications([(a, None), (b, None), (a, None)])
    assert out["events-live"] == [{"eventID": "a"}, {"eventID": "b"}]
    assert out["events-byid-a"] == [{"eventID": "a"}]


def test_american_odds() -> None:
    assert american(2.5) == "+150"
    assert american(1.91) == "-110"
    assert american(2.0) == "+100"
    assert american(1.0) is None and american("x") is None


def test_event_shape() -> None:
    data = {"event_id": "e1", "sport": "ice-hockey", "league": "nhl", "status": "live",
            "participants": {"home": {"name": "Maple Leafs"}, "away": {"name": "Bruins"}},
            "score": {"home": 2, "away": 1}, "starts_at": "2026-12-07T20:00:00Z"}
    odds = {"markets": [{"market_id": "m1", "market_type": "moneyline", "name": "Winner",
                         "selections": [{"selection_id": "home", "prices": [
                             {"bookmaker": "b1", "odds": 2.5, "suspended": False,
                              "updated_at": 5}]}]}]}
    ev = sgo_event(data, odds)
    assert ev["eventID"] == "e1" and ev["sportID"] == "ICE_HOCKEY" and ev["leagueID"] == "NHL"
    assert ev["teams"]["home"] == {"teamID": "MAPLE_LEAFS_NHL", "statEntityID": "home",
                                   "names": {"long": "Maple Leafs", "medium": "Leafs",
                                             "short": "ML"}, "score": 2}
    assert ev["status"]["started"] and ev["status"]["live"] and not ev["status"]["ended"]
    assert ev["status"]["startsAt"] == "2026-12-07T20:00:00Z"
    assert ev["odds"]["m1-home"]["byBookmaker"] == {
        "b1": {"odds": "+150", "available": True, "lastUpdatedAt": 5}}
    assert ev["odds"]["m1-home"]["bookOdds"] == "+150"


def test_period_markets_carry_their_period_id() -> None:
    """The simulator's first-period total (``period`` 1) is not a whole-game market."""
    selection = {"selection_id": "over", "prices": [{"bookmaker": "b1", "odds": 1.9}]}
    odds = {"markets": [
        {"market_id": "total:2.5", "market_type": "total", "period": 0, "selections": [selection]},
        {"market_id": "total:p1:1.5", "market_type": "total", "period": 1,
         "selections": [selection]},
    ]}
    ev = sgo_event({"event_id": "e1", "status": "upcoming"}, odds)
    assert ev["odds"]["total:2.5-over"]["periodID"] == "game"
    assert ev["odds"]["total:p1:1.5-over"]["periodID"] == "1p"


def test_per_key_channels() -> None:
    name = key_channel("events-live", "abc123", "s3cret")
    assert name.startswith("events-live@abc123@") and valid_name(name)
    assert split_key_channel(name, "s3cret") == ("events-live", "abc123")
    assert split_key_channel(name, "other") is None  # a tag of another secret
    forged = name[:-1] + ("0" if name[-1] != "0" else "1")
    assert split_key_channel(forged, "s3cret") is None
    assert split_key_channel("events-live", "s3cret") is None
    assert split_key_channel("private-events-live@abc123", "s3cret") == ("events-live", "abc123")
    assert split_key_channel("private-chat@abc123", "s3cret") is None
    longest = feed_channel("events:byid", None, "E" * 100)  # stays a valid Pusher name
    assert valid_name(key_channel(longest, "a" * 24, "s"))
    assert feed_channel("events:byid", None, "E" * 101).startswith("events-byid-h")


def test_stream_plans() -> None:
    assert may_stream("allstar") and may_stream("internal") and may_stream("my-custom")
    assert not may_stream("free")


def test_renamed_frame_keeps_a_valid_header() -> None:
    for size in (10, 200, 70_000):  # 7-bit, 16-bit and 64-bit lengths
        payload = orjson.dumps({"event": "data", "channel": "events-live", "data": "x" * size})
        out = renamed(text_frame(payload), b"events-live", b"events-live@k1@0123")
        assert out == text_frame(payload.replace(b'"events-live"', b'"events-live@k1@0123"'))
