"""The Limits contract (``wagerwire.auth.limits``), run against every backend's factory.

Stream slots (acquire, limit, release, renew, expiry, atomic under a burst), the per-minute
rate, the daily quota, and failure: a backend that cannot answer raises ``LimitsUnavailable``
(HTTP 503 ``limits_unavailable``), which the gate passes on for keyed streams, REST calls and
token requests while anonymous streams never touch the limits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, Protocol

import pytest

from wagerwire.auth import gate as gate_module
from wagerwire.auth.gate import KeyGate
from wagerwire.auth.identity import NO_SLOT
from wagerwire.auth.keys import KeyStore
from wagerwire.auth.limits import DAY, Limits
from wagerwire.auth.plans import parse_plans
from wagerwire.errors import LimitsUnavailable, RateLimited
from wagerwire.transports.http import error_response


class LimitsFactory(Protocol):
    """What a backend's factory offers (see ``conftest.py``)."""

    can_fail: bool

    async def __call__(self, *, slot_ttl_s: float = ...) -> Limits: ...

    async def unavailable(self) -> Limits: ...


# --------------------------------------------------------------------------- stream slots


async def test_slots_trip_at_the_limit_per_subject_and_come_back_on_release(
    limits_factory: LimitsFactory,
) -> None:
    node_a, node_b = await limits_factory(), await limits_factory()
    first = await node_a.acquire_stream("k", 2)
    second = await node_b.acquire_stream("k", 2)
    assert first is not None and second is not None and first != second
    assert await node_a.acquire_stream("k", 2) is None
    assert await node_b.acquire_stream("other", 2) is not None  # per subject
    await node_b.release_streams([("k", second)])
    third = await node_a.acquire_stream("k", 2)
    assert third is not None
    assert await node_b.acquire_stream("k", 2) is None
    await node_a.release_streams([("k", first), ("k", third), ("k", "unknown"), ("x", "y")])
    await node_a.release_streams([])
    assert await node_b.acquire_stream("k", 2) is not None


async def test_a_burst_of_acquires_never_overshoots(limits_factory: LimitsFactory) -> None:
    limits = await limits_factory()
    got = await asyncio.gather(*(limits.acquire_stream("burst", 5) for _ in range(50)))
    assert sum(g is not None for g in got) == 5


async def test_unrenewed_slots_expire_and_renewed_ones_stay(
    limits_factory: LimitsFactory,
) -> None:
    limits = await limits_factory(slot_ttl_s=1.5)
    kept = await limits.acquire_stream("kept", 1)
    dropped = await limits.acquire_stream("dropped", 1)
    assert kept is not None and dropped is not None
    for _ in range(20):  # 2 s in all: past the TTL, but renewed every 0.1 s
        await asyncio.sleep(0.1)  # (a lifetime 15x the renewal: a stall cannot expire it)
        await limits.renew_streams([("kept", kept)])
    assert await limits.acquire_stream("kept", 1) is None
    assert await limits.acquire_stream("dropped", 1) is not None  # a dead node's slot


async def test_renewal_takes_every_subject_at_once_and_recounts_expired_slots(
    limits_factory: LimitsFactory,
) -> None:
    limits = await limits_factory(slot_ttl_s=1.5)
    held = []
    for subject in ("a", "b", "c"):
        for _ in range(2):
            slot = await limits.acquire_stream(subject, 2)
            assert slot is not None
            held.append((subject, slot))
    await asyncio.sleep(1.7)  # every slot expired (this node could not renew in time)
    await limits.renew_streams(held)  # the streams are still open: they count again
    for subject in ("a", "b", "c"):
        assert await limits.acquire_stream(subject, 2) is None
    await limits.renew_streams([])


# --------------------------------------------------------------------------- rate, daily


async def test_rate_allows_per_minute_then_says_when_the_next_token_is_there(
    limits_factory: LimitsFactory,
) -> None:
    node_a, node_b = await limits_factory(), await limits_factory()
    started = time.monotonic()
    waits = [await (node_a if i % 2 else node_b).take_rate("r", 30) for i in range(30)]
    assert waits == [0.0] * 30
    wait = await node_a.take_rate("r", 30)
    # one token every 2 s, refilling since the first take (however slow the takes were)
    assert 2.0 - (time.monotonic() - started) - 0.05 <= wait <= 2.0 and wait > 0, wait
    assert await node_a.take_rate("other", 30) == 0.0  # per subject
    await asyncio.sleep(wait + 0.05)
    assert await node_b.take_rate("r", 30) == 0.0


async def test_daily_quota_counts_uses_until_the_next_utc_day(
    limits_factory: LimitsFactory,
) -> None:
    node_a, node_b = await limits_factory(), await limits_factory()
    assert [await n.take_daily("d", 3) for n in (node_a, node_b, node_a)] == [0.0] * 3
    wait = await node_b.take_daily("d", 3)
    now = time.time()
    assert wait == pytest.approx((now // DAY + 1) * DAY - now, abs=2.0)
    assert await node_a.take_daily("d", 3) > 0  # a refusal does not count a use
    assert await node_a.take_daily("other", 3) == 0.0


async def test_a_credential_is_spent_once_on_every_node_for_its_ttl(
    limits_factory: LimitsFactory,
) -> None:
    node_a, node_b = await limits_factory(), await limits_factory()
    assert await node_a.spend_once("tok", 30) is True
    assert await node_b.spend_once("tok", 30) is False
    assert await node_a.spend_once("other", 30) is True
    assert await node_a.spend_once("short", 0.3) is True
    await asyncio.sleep(0.5)
    assert await node_b.spend_once("short", 0.3) is True  # forgotten after its TTL


# --------------------------------------------------------------------------- failure


async def test_a_backend_that_cannot_answer_raises_limits_unavailable(
    limits_factory: LimitsFactory,
) -> None:
    if not limits_factory.can_fail:
        pytest.skip("in-process limits cannot fail")
    limits = await limits_factory.unavailable()
    calls: list[Any] = [
        limits.acquire_stream("k", 1), limits.renew_streams([("k", "s")]),
        limits.release_streams([("k", "s")]), limits.take_rate("k", 60),
        limits.take_daily("k", 3), limits.spend_once("k", 1.0),
    ]
    for call in calls:
        with pytest.raises(LimitsUnavailable) as info:
            await call
        body = error_response(info.value)
        assert body.startswith(b"HTTP/1.1 503 ")
        assert b'{"error":{"code":"limits_unavailable","message":' in body


def _gate(tmp_path: Path, limits: Limits) -> tuple[KeyGate, str]:
    store = KeyStore(str(tmp_path / "keys.db"))
    _, key = store.create("reader", "two")
    return KeyGate(store, parse_plans({"two": {"max_streams": 2}}), limits=limits), key


async def test_the_gate_answers_through_the_protocol_and_503s_when_it_cannot(
    limits_factory: LimitsFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gate_module, "SLOT_RENEW_S", 0.05)
    gate, key = _gate(tmp_path, await limits_factory())
    gate.start()
    try:
        who = gate.authenticate({"x-api-key": key})
        slots = [gate.open_stream(who, "ws") for _ in range(3)]
        await slots[0].admit()
        await slots[1].admit()
        with pytest.raises(RateLimited):
            await slots[2].admit()
        await asyncio.sleep(0.2)  # a few renewal ticks, all slots in one call each
        with pytest.raises(RateLimited):
            await gate.open_stream(who, "ws").admit()
        await gate.check_rest(who)
        assert (await gate.issue_token(who))[0]
    finally:
        await gate.aclose()
        gate.keystore.close()
    if not limits_factory.can_fail:
        return

    gate, key = _gate(tmp_path, await limits_factory.unavailable())
    gate.start()
    try:
        who = gate.authenticate({"x-api-key": key})
        assert gate.open_stream(gate.anonymous(), "ws") is NO_SLOT  # never counted
        for call in (gate.open_stream(who, "ws").admit(), gate.check_rest(who),
                     gate.issue_token(who)):
            with pytest.raises(LimitsUnavailable):
                await call
        await gate.check_rest(gate.anonymous())
        # An open stream whose renewal fails stays open (logged once per outage).
        held = gate.open_stream(who, "ws")
        held.slot_id = "granted-before-the-outage"  # type: ignore[attr-defined]
        gate.slots.setdefault(who.key_id or "", set()).add(held)  # type: ignore[arg-type]
        closed: list[bool] = []
        held.on_revoke = lambda: closed.append(True)
        with caplog.at_level(logging.WARNING, "wagerwire.auth"):
            await asyncio.sleep(0.3)
        warnings = [r for r in caplog.records if "cannot renew" in r.getMessage()]
        assert len(warnings) == 1 and not closed
        held.release()  # best effort: logged, the slot expires by itself
        await asyncio.sleep(0.05)
    finally:
        await gate.aclose()
        gate.keystore.close()
