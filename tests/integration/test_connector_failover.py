"""Failover: a primary and a backup feed of the same rounds (two upstream hubs running the
same simulators) in one group; the primary dies and comes back, then the backup dies; the
downstream channel has every round once, in order."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from connector_harness import downstream, history, last_index, source_health, wait_until

from serverproc import ServerProcess

pytestmark = pytest.mark.timeout(180)


def _upstream(tmp: Path, name: str) -> ServerProcess:
    work = tmp / name
    work.mkdir()
    return ServerProcess(work, ["--demo", "--demo-speed", "10"]).start(0)


async def test_primary_and_backup_are_deduplicated_by_round_and_cover_each_other(
    tmp_path: Path,
) -> None:
    primary = _upstream(tmp_path, "primary")
    backup = _upstream(tmp_path, "backup")
    source = {"dialect": "native", "subscriptions": ["game:crash"], "group": "crash-feed",
              "options": {"max_backoff": 1.0}}
    down = downstream(tmp_path, [{"name": "primary", "url": primary.url, **source},
                                 {"name": "backup", "url": backup.url, **source}])
    try:
        wait_until(lambda: last_index(down.url, "game:crash") >= 3, what="first rounds")
        primary.kill()
        before = last_index(down.url, "game:crash")
        wait_until(lambda: last_index(down.url, "game:crash") >= before + 3,
                   what="the backup carrying on alone")
        primary.restart()
        wait_until(lambda: source_health(down.url)["primary"]["connected"], what="primary back")
        backup.kill()
        before = last_index(down.url, "game:crash")
        wait_until(lambda: last_index(down.url, "game:crash") >= before + 3,
                   what="the primary carrying on alone")
        time.sleep(0.5)
        indexes = [m["data"]["index"] for m in history(down.url, "game:crash")]
        assert indexes == list(range(1, indexes[-1] + 1))  # no gap, no duplicate
        health = source_health(down.url)
        assert health["primary"]["duplicates"] + health["backup"]["duplicates"] > 0
        assert health["primary"]["gaps_unfillable"] == health["backup"]["gaps_unfillable"] == 0
    finally:
        down.kill()
        primary.kill()
        backup.kill()
