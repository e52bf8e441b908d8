"""OddsStream's auth pieces without sockets: unique tokens, spending one at admission, the
``os_live_`` key form, the streaming check, and the local limits forgetting past days."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from wagerwire.auth.gate import KeyGate
from wagerwire.auth.identity import NO_SLOT
from wagerwire.auth.keys import KeyStore, parse_key_id
from wagerwire.auth.limits import DAY, LocalLimits
from wagerwire.auth.plans import parse_plans
from wagerwire.auth.stream_tokens import verify_token
from wagerwire.errors import BadParameter, Forbidden, RateLimited, Unauthorized

T0 = 1_780_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[KeyStore]:
    ks = KeyStore(str(tmp_path / "keys.db"))
    yield ks
    ks.close()


def test_os_live_keys_verify_like_ww_keys(store: KeyStore) -> None:
    record, key = store.create("reader", "free", prefix="os_live_")
    assert key.startswith(f"os_live_{record.id}_")
    assert parse_key_id(key) == record.id
    assert store.verify(key) == record
    assert store.verify("ww_" + key[len("os_live_"):]) is None  # the hash covers the prefix
    with pytest.raises(BadParameter):
        store.create("reader", "free", prefix="sk_")


async def test_tokens_are_unique_and_spent_once(store: KeyStore) -> None:
    clock = Clock()
    gate = KeyGate(store, parse_plans(None), clock=clock)
    _, key = store.create("reader", "pro+rt", prefix="os_live_")
    who = gate.authenticate({"x-api-key": key})
    first, _ = await gate.issue_token(who)
    second, _ = await gate.issue_token(who)  # the same second: still a different token
    assert first != second
    claims = verify_token(first, store.signing_keys(), clock())
    assert claims.nonce and claims.plan == "pro+rt"
    identity = gate.authenticate({}, first)
    slot = gate.open_stream(identity, "ws")
    slot.spend(first.rsplit(".", 1)[1])
    await slot.admit()
    again = gate.open_stream(identity, "ws")
    again.spend(first.rsplit(".", 1)[1])
    with pytest.raises(Unauthorized, match="already used"):
        await again.admit()
    other = gate.open_stream(gate.authenticate({}, second), "ws")
    other.spend(second.rsplit(".", 1)[1])
    await other.admit()
    with pytest.raises(Unauthorized):  # nothing to count a spend on
        NO_SLOT.spend("x")
    assert NO_SLOT.once is None


async def test_streaming_plans_and_quotas(store: KeyStore) -> None:
    gate = KeyGate(store, parse_plans(None), clock=Clock())
    for plan in ("pro+rt", "pro+live"):
        _, key = store.create("reader", plan)
        who = gate.authenticate({"x-api-key": key})
        gate.check_stream(who)
        for _ in range(100):
            await gate.issue_token(who)
    _, pro = store.create("reader", "pro")
    with pytest.raises(Forbidden, match="does not include streaming"):
        gate.check_stream(gate.authenticate({"x-api-key": pro}))
    _, free = store.create("reader", "free")
    who = gate.authenticate({"x-api-key": free})
    for _ in range(30):
        await gate.issue_token(who)
    with pytest.raises(RateLimited) as info:
        await gate.issue_token(who)
    assert info.value.retry_after is not None and 0 < info.value.retry_after <= DAY


async def test_local_limits_forget_past_days() -> None:
    clock = Clock()
    limits = LocalLimits(clock)
    for i in range(50):
        assert await limits.take_daily(f"spent:{i}", 1) == 0
    assert await limits.take_daily("spent:3", 1) > 0
    assert len(limits._quotas) == 50
    clock.now += DAY
    assert await limits.take_daily("spent:new", 1) == 0
    assert list(limits._quotas) == ["spent:new"]
    assert await limits.take_daily("spent:3", 1) == 0  # a new day, as in Redis
