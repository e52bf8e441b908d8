"""OddsStream as a client: a fresh token per attempt within the daily quota; after each
reconnect a marker before the first new price of each channel; every relayed price is one of
the upstream's, once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from connector_harness import demo_key, downstream, history, source_health, upstream, wait_until

CHANNEL = "odds:football:epl"

pytestmark = pytest.mark.timeout(180)


def _price(data: dict[str, object]) -> tuple[object, ...]:
    return tuple(data[k] for k in ("bookmaker", "selection", "market_type", "odds",
                                   "scraped_at"))


async def test_oddsstream_relay_tokens_markers_and_quota(tmp_path: Path) -> None:
    up = upstream(tmp_path)
    key = demo_key(up, "OddsStream")
    down = downstream(tmp_path, [{
        "name": "os", "url": up.url, "dialect": "oddsstream", "credentials": key,
        "options": {"sport": "Football", "competition": "EPL", "daily_token_quota": 3,
                    "min_backoff": 0.2, "max_backoff": 1.0},
    }])
    try:
        wait_until(lambda: len(history(down.url, CHANNEL)) >= 3, what="first prices")
        up.kill()  # token 2 on the reconnect
        time.sleep(1.0)
        up.restart()
        wait_until(lambda: source_health(down.url)["os"]["connected"], what="reconnected")
        count = len(history(down.url, CHANNEL))
        wait_until(lambda: len(history(down.url, CHANNEL)) > count + 2, what="new prices")
        down.kill()  # token 3 after the restart (the count survives it: it is in the store)
        time.sleep(1.0)
        down.restart()
        wait_until(lambda: source_health(down.url)["os"]["connected"], what="connected again")
        count = len(history(down.url, CHANNEL))
        wait_until(lambda: len(history(down.url, CHANNEL)) > count + 2, what="live prices")
        up.kill()  # a 4th attempt would pass the quota: the source waits in the error state
        wait_until(lambda: source_health(down.url)["os"]["state"] == "error", what="quota")
        assert source_health(down.url)["os"]["error_code"] == "token_quota"
        up.restart()
        time.sleep(1.5)
        assert source_health(down.url)["os"]["state"] == "error"  # no token spent meanwhile

        upstream_prices = {_price(m["data"]) for m in history(up.url, CHANNEL)}
        relayed = [m["data"] for m in history(down.url, CHANNEL)]
        prices = [_price(d) for d in relayed if d.get("type") != "gap"]
        assert prices and set(prices) <= upstream_prices
        assert len(prices) == len(set(prices))  # none twice
        markers = [i for i, d in enumerate(relayed) if d.get("type") == "gap"]
        assert len(markers) == 2  # one per reconnect (upstream restart, downstream restart)
        for i in markers:
            gap = relayed[i]["gap"]
            assert gap["reason"] == "reconnected" and gap["before"] is None
            assert relayed[i - 1].get("type") != "gap" and relayed[i - 1]["scraped_at"] == \
                gap["after"]
    finally:
        down.kill()
        up.kill()
