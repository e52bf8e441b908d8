"""What one request may cost: the channel-count limit is checked before any name is parsed or
validated, validation is linear, filters are bounded in values and bytes, and the parse caches
and the filter intern table are bounded in bytes (issue 13: hostile anonymous clients).
"""

from __future__ import annotations

import gc
import json
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from wagerwire.auth.identity import ANONYMOUS, Gate
from wagerwire.brokers.memory import MemoryBroker
from wagerwire.core import channels as channels_module
from wagerwire.core.bounded import ByteLru
from wagerwire.core.channels import MAX_FILTER_BYTES, MAX_FILTER_VALUES, Filter
from wagerwire.core.hub import Hub, HubLimits
from wagerwire.errors import BadParameter, TooManyChannels
from wagerwire.stores.sqlite import SqliteStore
from wagerwire.transports import url_subscription as url_module
from wagerwire.transports.http import HttpRequest


def _hub(tmp_path: Path, **limits: Any) -> Hub:
    return Hub(SqliteStore(str(tmp_path / "h.db")), MemoryBroker(), HubLimits(**limits))


class Counting:
    """An iterable of channel names that counts how many were read."""

    def __init__(self, names: list[object]) -> None:
        self.names = names
        self.read = 0

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Any:
        for name in self.names:
            self.read += 1
            yield name


def test_count_limit_is_checked_before_any_name_is_validated(tmp_path: Path) -> None:
    hub = _hub(tmp_path, max_channels_per_sink=100)
    # 8,000 names, every one invalid: the refusal is the count, not the first bad name
    names = Counting(["BAD NAME"] * 8000)
    with pytest.raises(TooManyChannels):
        hub.validate_subscription(names, None)  # type: ignore[arg-type]
    assert names.read == 0
    # a plan's lower limit is checked first as well
    with pytest.raises(TooManyChannels):
        hub.validate_subscription(["BAD"] * 11, None, max_channels=10)


class ComparedName(str):
    """A channel name that counts the equality comparisons made with it (de-duplicating by
    a list's ``in`` compares each name with every one kept before it: quadratic)."""

    compared = 0

    def __eq__(self, other: object) -> bool:
        ComparedName.compared += 1
        return str.__eq__(self, other)

    __hash__ = str.__hash__


def test_channel_validation_is_linear(tmp_path: Path) -> None:
    """Counted in comparisons, not timed: a quadratic de-duplication (it took minutes for
    20,000 names) makes n²/2 of them, whatever the machine's speed."""
    hub = _hub(tmp_path, max_channels_per_sink=50_000)
    n = 4_000
    names = [ComparedName(f"game:g{i}") for i in range(n)] * 2
    ComparedName.compared = 0
    got = hub.validate_subscription(names, None)
    assert got == names[:n]  # de-duplicated, order kept
    assert ComparedName.compared <= 2 * n, ComparedName.compared


def test_unsubscribe_refuses_more_names_than_a_connection_can_hold(tmp_path: Path) -> None:
    hub = _hub(tmp_path, max_channels_per_sink=100)
    with pytest.raises(TooManyChannels):
        hub.check_channel_count(["x"] * 101)


def _request(query: dict[str, str]) -> HttpRequest:
    return HttpRequest("GET", "/v1/ws", urllib.parse.urlencode(query).encode(), {}, [])


def test_url_channels_are_counted_before_they_are_validated(tmp_path: Path) -> None:
    hub = _hub(tmp_path, max_channels_per_sink=100)
    raw = ",".join(["NOT VALID"] * 7000)
    with pytest.raises(TooManyChannels):
        url_module.url_subscription(_request({"channels": raw}), Gate(), hub, ANONYMOUS)


def test_filter_values_and_bytes_are_bounded() -> None:
    Filter.parse({"bookmaker": [f"b{i}" for i in range(MAX_FILTER_VALUES - 1)]})
    with pytest.raises(BadParameter):
        Filter.parse({"bookmaker": [f"b{i}" for i in range(MAX_FILTER_VALUES)]})
    with pytest.raises(BadParameter):
        Filter.parse({"bookmaker": ["x" * (MAX_FILTER_BYTES + 1)]})
    many_terms = {f"k{i}": "v" for i in range(MAX_FILTER_VALUES + 1)}
    with pytest.raises(BadParameter):
        Filter.parse(many_terms)


def test_the_filter_intern_table_keeps_only_filters_in_use() -> None:
    kept = Filter.parse({"sport": "football"})
    assert kept is Filter.parse({"sport": "football"})  # still interned while in use
    for i in range(2000):
        Filter.parse({"bookmaker": [f"b{i}-{j}" for j in range(50)]})
    gc.collect()
    # nothing holds those 2,000 filters, so neither does the table
    assert len(channels_module._INTERNED) < 10
    assert kept is Filter.parse({"sport": "football"})


def test_byte_lru_evicts_oldest_past_its_budget() -> None:
    cache: ByteLru[str, int] = ByteLru(100)
    for i in range(10):
        cache.put(f"k{i}", i, 20)
    assert cache.nbytes <= 100
    assert cache.get("k0") is None and cache.get("k9") == 9
    cache.put("huge", 1, 101)  # larger than the whole budget: not kept
    assert cache.get("huge") is None
    cache.get("k5")  # used: now the newest
    cache.put("k10", 10, 20)
    assert cache.get("k5") == 5 and cache.get("k6") is None


def test_url_parse_caches_are_bounded_in_bytes(tmp_path: Path) -> None:
    hub = _hub(tmp_path, max_channels_per_sink=100, parse_cache_bytes=64 * 1024)
    for i in range(500):
        names = ",".join(f"c{i}x{j}:{'n' * 150}" for j in range(90))
        flt = json.dumps({"bookmaker": [f"b{i}-{j}" for j in range(60)]})
        url_module.url_subscription(_request({"channels": names, "filter": flt}),
                                    Gate(), hub, ANONYMOUS)
    assert url_module.cached_bytes() <= 64 * 1024


def test_plan_checks_do_not_cache_overlong_names() -> None:
    """A subscribe frame's names reach the plan check before the hub validates them."""
    from wagerwire.auth import plans

    before = plans._plan_allows_cached.cache_info().currsize
    for i in range(200):
        assert plans.plan_allows(("*",), f"{i}" + "x" * 60_000)
    assert plans._plan_allows_cached.cache_info().currsize == before
    assert plans.plan_allows(("game:*",), "game:crash")
    assert plans._plan_allows_cached.cache_info().currsize == before + 1
