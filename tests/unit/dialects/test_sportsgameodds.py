"""SportsGameOdds' pure parts: feed channels, which feeds an update notifies, the ``data``
payloads of a batch, American odds and the Event shape."""

from __future__ import annotations

import pytest

from wagerwire.dialects.sportsgameodds import (
    american,
    feed_channel,
    feeds_of,
    notifications,
    sgo_event,
)
from wagerwire.errors import BadParameter


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
