"""Each dialect as a client: an upstream hub serving it from its simulators, a downstream hub
with a connector, the upstream SIGKILLed and restarted, then the downstream. A downstream SDK
client ends with exactly the upstream's rounds where the dialect can backfill, and with one
gap marker exactly where the rounds the downstream missed while down could not be fetched."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from connector_harness import (
    collect_rounds,
    downstream,
    history,
    last_index,
    source_health,
    upstream,
    wait_until,
)

# Two dialects per downstream (on different games), to keep the suite short.
BACKFILLING = {
    "trackersino": (["stake-crash", "roobet-crash"], ["game:stake-crash", "game:roobet-crash"]),
    "datastream-sse": (["crash"], ["game:crash"]),
}
MARKING = {
    "datastream": (["crash", "roobet-crash"], ["game:crash", "game:roobet-crash"]),
    "stake": (["game:stake-crash"], ["game:stake-crash"]),
}

pytestmark = pytest.mark.timeout(180)


def _summary(data: dict[str, Any]) -> tuple[Any, ...]:
    if data.get("type") == "gap":
        gap = data["gap"]
        return ("gap", gap["after"], gap["before"], gap["missing"], gap["reason"])
    return (data["index"], data["result"]["multiplier"])


def _restart_both(up: Any, down: Any, channel: str) -> None:
    wait_until(lambda: last_index(down.url, channel) >= 2, what="first relayed rounds")
    up.kill()
    time.sleep(1.0)
    up.restart()
    before = last_index(down.url, channel)
    wait_until(lambda: last_index(down.url, channel) >= before + 2,
               what="relay after the upstream restart")
    down.kill()
    time.sleep(2.5)  # the upstream goes on publishing meanwhile
    down.restart()


def _downstream(tmp_path: Path, up: Any, dialects: dict[str, tuple[list[str], list[str]]]
                ) -> Any:
    return downstream(tmp_path, [{"name": dialect, "url": up.url, "dialect": dialect,
                                  "subscriptions": subscriptions,
                                  "options": {"max_backoff": 1.0}}
                                 for dialect, (subscriptions, _) in dialects.items()])


async def test_backfilling_dialects_end_with_exactly_the_upstream_rounds(
    tmp_path: Path,
) -> None:
    up = upstream(tmp_path)
    down = _downstream(tmp_path, up, BACKFILLING)
    try:
        _restart_both(up, down, "game:crash")
        every = [(d, c) for d, (_, chans) in BACKFILLING.items() for c in chans]
        target = {c: last_index(up.url, c) for _, c in every}
        got = await collect_rounds(down.url, list(target), target)
        for dialect, channel in every:
            relayed = [_summary(m["data"]) for m in got[channel]
                       if m["data"].get("index", 0) <= target[channel]]
            # Data Stream's SSE starts at the newest round (``initial``): nothing before the
            # connector's first connection exists for it; TrackerSino backfills from round 1
            first = 1 if dialect == "trackersino" else relayed[0][0]
            expected = [_summary(m["data"]) for m in history(up.url, channel)
                        if first <= m["data"]["index"] <= target[channel]]
            assert relayed == expected, channel
        for dialect in BACKFILLING:
            health = source_health(down.url)[dialect]
            assert health["gaps_unfillable"] == 0 and health["messages"] > 0, health
    finally:
        down.kill()
        up.kill()


async def test_dialects_without_backfill_mark_exactly_what_they_missed(
    tmp_path: Path,
) -> None:
    up = upstream(tmp_path)
    down = _downstream(tmp_path, up, MARKING)
    channels = [c for _, chans in MARKING.values() for c in chans]
    try:
        _restart_both(up, down, "game:crash")
        target = {c: last_index(up.url, c) + 1 for c in channels}
        wait_until(lambda: all(last_index(down.url, c) >= target[c] for c in channels),
                   what="live again after the downstream restart")
        got = await collect_rounds(down.url, channels, target)
        for channel in channels:
            upstream_rounds = {m["data"]["index"]: _summary(m["data"])
                               for m in history(up.url, channel)}
            relayed = [_summary(m["data"]) for m in got[channel]]
            rounds = [r for r in relayed if r[0] != "gap"]
            markers = [r for r in relayed if r[0] == "gap"]
            # every relayed round is the upstream's, once, in order
            assert rounds == [upstream_rounds[r[0]] for r in rounds], channel
            indexes = [r[0] for r in rounds]
            assert indexes == sorted(set(indexes)), channel
            # each hole in the indexes has its marker exactly there, and no marker without one
            holes = [(a, b) for a, b in zip(indexes, indexes[1:], strict=False) if b > a + 1]
            assert [(m[1], m[2]) for m in markers] == [(str(a), str(b)) for a, b in holes]
            for marker, (a, b) in zip(markers, holes, strict=True):
                assert marker[3] == b - a - 1 and marker[4] == "no_backfill"
                assert relayed.index(marker) == relayed.index(upstream_rounds[b]) - 1
            assert markers, f"{channel}: the downstream was down for rounds; no marker"
        health = source_health(down.url)
        assert all(health[d]["state"] == "connected" for d in MARKING), health
    finally:
        down.kill()
        up.kill()
