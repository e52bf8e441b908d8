"""Native hub-to-hub relay: SIGKILL the upstream, then the downstream; nothing lost, nothing
twice; refused credentials are a source error state, not a crash loop."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
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

CHANNELS = ["game:crash", "game:stake-crash", "game:roobet-crash"]

pytestmark = pytest.mark.timeout(180)


async def test_native_relay_survives_both_restarts_with_no_gap_and_no_duplicate(
    tmp_path: Path,
) -> None:
    up = upstream(tmp_path)
    down = downstream(tmp_path, [{
        "name": "eu", "url": up.url, "dialect": "native", "subscriptions": ["game:*crash"],
        "options": {"max_backoff": 1.0},
    }])
    try:
        wait_until(lambda: last_index(down.url, "game:crash") >= 2, what="first relayed rounds")
        up.kill()
        time.sleep(1.0)
        up.restart()
        before = last_index(down.url, "game:crash")
        wait_until(lambda: last_index(down.url, "game:crash") >= before + 2,
                   what="relay after the upstream restart")
        down.kill()
        time.sleep(1.5)  # the upstream goes on publishing meanwhile
        down.restart()
        target = {c: last_index(up.url, c) for c in CHANNELS}
        got = await collect_rounds(down.url, CHANNELS, target)
        for channel in CHANNELS:
            upstream_rounds = [m["data"] for m in history(up.url, channel)
                               if m["data"]["index"] <= target[channel]]
            relayed = [m["data"] for m in got[channel] if m["data"]["index"] <= target[channel]]
            assert [r["index"] for r in relayed] == list(range(1, target[channel] + 1)), channel
            assert relayed == upstream_rounds, channel
        health = source_health(down.url)["eu"]
        assert health["connected"] is True
        assert health["gaps_unfillable"] == 0
        assert health["messages"] > 0  # counted since this (restarted) node started
        metrics = httpx.get(f"{down.url}/metrics").text
        assert 'wagerwire_source_connected{dialect="native",source="eu"} 1.0' in metrics
        # the relayed rounds verify on the downstream as they do upstream
        verify = httpx.get(f"{down.url}/v1/rounds/crash-1/verify").json()
        assert verify.get("valid") is True, verify
    finally:
        down.kill()
        up.kill()


async def test_refused_credentials_are_a_source_error_with_backoff(tmp_path: Path) -> None:
    up = upstream(tmp_path, extra=["--auth", "required", "--no-demo-keys"])
    down = downstream(tmp_path, [{
        "name": "locked", "url": up.url, "dialect": "native", "credentials": "ww_not_a_key",
        "subscriptions": ["game:crash"], "options": {"min_backoff": 0.2, "max_backoff": 1.0},
    }])
    try:
        wait_until(lambda: source_health(down.url)["locked"]["state"] == "error",
                   what="the error state")
        row = source_health(down.url)["locked"]
        assert row["error_code"] == "unauthorized"
        assert "credentials refused" in row["error"]
        time.sleep(2.0)
        row = source_health(down.url)["locked"]
        assert row["reconnects"] <= 12  # backing off, not spinning
        assert httpx.get(f"{down.url}/healthz").status_code == 200
        assert down.proc is not None and down.proc.poll() is None
    finally:
        down.kill()
        up.kill()


async def test_native_relay_marks_exactly_what_the_upstream_no_longer_has(
    tmp_path: Path,
) -> None:
    up = upstream(tmp_path, extra=["--retention-count", "3"])  # pruned every 1,000 appends
    down = downstream(tmp_path, [{
        "name": "eu", "url": up.url, "dialect": "native", "subscriptions": ["game:crash"],
        "options": {"max_backoff": 1.0},
    }])
    try:
        wait_until(lambda: last_index(down.url, "game:crash") >= 2, what="first rounds")
        down.kill()
        stopped_at = last_index(up.url, "game:crash")
        wait_until(lambda: history(up.url, "game:crash")[0]["offset"] > stopped_at + 2,
                   what="the upstream pruning past the downstream's position")
        down.restart()
        target = last_index(up.url, "game:crash") + 1
        wait_until(lambda: last_index(down.url, "game:crash") >= target, what="live again")
        relayed = [m["data"] for m in history(down.url, "game:crash")]
        indexes = [d["index"] for d in relayed if "index" in d]
        assert indexes == sorted(set(indexes))
        holes = [(a, b) for a, b in zip(indexes, indexes[1:], strict=False) if b > a + 1]
        markers = [(i, d["gap"]) for i, d in enumerate(relayed) if d.get("type") == "gap"]
        assert holes, "the downstream missed pruned rounds: there must be a hole"
        # one marker per hole, right before the first round after it (a marker before the
        # first round is the start: history already pruned when the connector first came)
        inner = [(i, g) for i, g in markers if i > 0]
        assert [(g["after"], g["before"]) for _, g in inner] == [
            (str(a), str(b)) for a, b in holes]
        for i, gap in inner:
            assert relayed[i + 1]["index"] == int(gap["before"])
            assert gap["reason"] == "history_lost" and gap["missing"] == \
                int(gap["before"]) - int(gap["after"]) - 1
        assert source_health(down.url)["eu"]["gaps_unfillable"] >= 1
    finally:
        down.kill()
        up.kill()
