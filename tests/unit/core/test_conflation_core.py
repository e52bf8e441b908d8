"""The sans-I/O conflation parts: policies, keys, the conflating queue, images and lanes."""

from __future__ import annotations

import orjson
import pytest

from wagerwire.core.conflation import (
    ChannelPolicy,
    Lane,
    LatestTable,
    PolicyTable,
    offset_ranges,
    skipped_ranges,
)
from wagerwire.core.messages import Message
from wagerwire.errors import BadParameter

CH = "odds:football:epl"


def price(offset: int, sel: str, odds: float, ts: int = 0, **attrs: str) -> Message:
    data = {"selection_id": sel, "odds": odds}
    base = {"event": "e1", "bookmaker": "b1", "market": "m1", **attrs}
    return Message(CH, offset, "ep", ts or offset, orjson.dumps(data), base)


def life(offset: int, ts: int = 0) -> Message:
    return Message(CH, offset, "ep", ts or offset, b'{"type":"suspended"}',
                   {"event": "e1", "lifecycle": "true"})


def test_default_policy_keys_odds_from_attrs_and_fields() -> None:
    table = PolicyTable()
    assert table.conflates(CH) and not table.conflates("game:crash")
    assert table.classify(price(1, "home", 2.0)) == ("e1\x1fb1\x1fm1\x1fhome", False)
    assert table.classify(life(2)) == (None, True)
    # a lifecycle rule on a data field, and a message without a full key, are kept
    msg = Message(CH, 3, "ep", 3, b'{"type":"settled","selection_id":"x"}',
                  {"event": "e1", "bookmaker": "b1", "market": "m1"})
    assert table.classify(msg)[1] is True
    assert table.classify(Message(CH, 4, "ep", 4, b"{}", None)) == (None, True)
    assert table.classify(Message("game:crash", 1, "ep", 1, b"{}", None)) == (None, True)


def test_policy_parse_and_errors() -> None:
    table = PolicyTable.parse([{"pattern": "scores:*", "policy": "conflate", "key": "event",
                                "lifecycle": {"status": ["final"]}}])
    assert table.conflates("scores:x") and table.conflates(CH)  # defaults still apply
    assert table.may_conflate("scores:*") and not PolicyTable([]).may_conflate("x:*")
    assert table.may_conflate("*") and table.may_conflate("odds:f*") and table.may_conflate("o*")
    assert not table.may_conflate("game:*") and not table.may_conflate("odds-x:*")
    off = PolicyTable.parse([{"pattern": "odds:*", "policy": "disconnect"}])
    assert not off.conflates(CH)
    for bad in ({"pattern": "a", "policy": "drop"}, {"pattern": "a", "policy": "conflate"},
                {"policy": "conflate"}, {"pattern": "a", "key": [1]}):
        with pytest.raises(BadParameter):
            PolicyTable.parse([bad])
    with pytest.raises(BadParameter):
        PolicyTable.parse({"pattern": "a"})


def test_latest_table_catch_up_is_newest_per_key_and_every_lifecycle_in_order() -> None:
    policies = PolicyTable()
    table = LatestTable("ep", 0)
    msgs = [price(1, "home", 2.0), price(2, "away", 3.0), life(3), price(4, "home", 2.1),
            price(5, "away", 3.2), price(6, "home", 2.2), life(7)]
    for m in msgs:
        table.add(m, policies.classify(m))
    since = table.since(2)
    assert since is not None and [m.offset for m in since] == [3, 5, 6, 7]
    since = table.since(0)
    assert since is not None and [m.offset for m in since] == [3, 5, 6, 7]
    assert [m.offset for m in table.snapshot()] == [5, 6]
    assert table.since(7) == []
    late = LatestTable("ep", 10)
    assert late.since(9) is None  # started after the position: cannot tell


def test_latest_table_bounds_are_remembered() -> None:
    policies = PolicyTable()
    table = LatestTable("ep", 0, max_keys=2, max_kept=2)
    for m in [price(1, "a", 1.0), price(2, "b", 1.0), price(3, "c", 1.0)]:
        table.add(m, policies.classify(m))
    assert table.lost == 1 and table.since(0) is None and table.since(1) is not None
    for m in [life(4), life(5), life(6)]:
        table.add(m, policies.classify(m))
    assert table.lost == 4 and table.since(3) is None
    assert [m.offset for m in table.since(4) or []] == [5, 6]
    old = price(1, "b", 0.5)
    key = policies.classify(old)[0]
    assert key is not None
    table.put(key, old)  # older than what it has: ignored
    assert [m.offset for m in table.snapshot()] == [2, 3]


def test_offset_ranges_and_skipped_ranges() -> None:
    assert offset_ranges([9, 3, 4, 5]) == [[3, 5], [9, 9]]
    assert offset_ranges([]) == []
    assert skipped_ranges(2, 10, [3, 6, 7]) == [[4, 5], [8, 10]]
    assert skipped_ranges(2, 7, [3, 4, 5, 6, 7]) == []
    assert skipped_ranges(0, 3, []) == [[1, 3]]


def test_lane_interval_one_per_key_lifecycle_kept_in_order() -> None:
    table = PolicyTable()
    lane = Lane(CH, 100, 0, 0, table.classify)
    lane.offer([price(1, "home", 2.0)])
    assert [m.offset for m in lane.due(1000)] == [1]  # idle lane: at once
    lane.offer([price(2, "home", 2.1), life(3), price(4, "home", 2.2), price(5, "away", 3.0)])
    assert lane.due(1050) == [] and lane.next_at() == 1100
    assert [m.offset for m in lane.due(1100)] == [3, 4, 5]
    assert lane.released == 5 and lane.next_at() is None


def test_lane_delay_holds_by_timestamp() -> None:
    table = PolicyTable()
    lane = Lane(CH, 0, 500, 0, table.classify)
    lane.offer([price(1, "home", 2.0, ts=1000), price(2, "home", 2.1, ts=1200)])
    assert lane.due(1499) == [] and lane.next_at() == 1500
    assert [m.offset for m in lane.due(1500)] == [1]
    assert [m.offset for m in lane.due(1700)] == [2] and lane.pending == 0


def test_policy_first_match_wins() -> None:
    table = PolicyTable([ChannelPolicy("odds:x:*"), ChannelPolicy("odds:*", "conflate", ("a",))])
    assert not table.conflates("odds:x:y") and table.conflates("odds:z:y")
