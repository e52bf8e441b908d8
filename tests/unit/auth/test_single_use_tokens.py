"""OddsStream's auth pieces without sockets: unique tokens, spending one at admission, the
``os_live_`` key form, the streaming check, and the local limits forgetting past days."""

from __future__ import annotations

import sqlite3
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


async def test_a_token_spent_before_midnight_stays_spent_after_it(store: KeyStore) -> None:
    clock = Clock()
    clock.now = (T0 // DAY + 1) * DAY - 60  # 23:59:00 UTC
    gate = KeyGate(store, parse_plans(None), clock=clock)
    _, key = store.create("reader", "pro+rt", prefix="os_live_")
    token, expires = await gate.issue_token(gate.authenticate({"x-api-key": key}))
    once = token.rsplit(".", 1)[1]
    slot = gate.open_stream(gate.authenticate({}, token), "ws")
    slot.spend(once)
    await slot.admit()
    slot.release()
    clock.now += 120  # 00:01:00 UTC, the token still valid until 00:04
    assert clock.now < expires
    again = gate.open_stream(gate.authenticate({}, token), "ws")
    again.spend(once)
    with pytest.raises(Unauthorized, match="already used"):
        await again.admit()


async def test_local_limits_remember_a_spend_for_its_ttl_only() -> None:
    clock = Clock()
    limits = LocalLimits(clock)
    assert await limits.spend_once("a", 300) is True
    assert await limits.spend_once("a", 300) is False
    clock.now += DAY // 2  # across a day boundary or not: only the TTL counts
    assert await limits.spend_once("b", 300) is True
    assert "a" not in limits._spent  # swept once expired
    assert await limits.spend_once("a", 300) is True


def test_key_listing_shows_the_prefix_the_key_was_issued_with(
    store: KeyStore, tmp_path: Path,
) -> None:
    os_record, os_key = store.create("reader", "free", prefix="os_live_")
    ww_record, _ = store.create("reader", "free")
    listed = {r.id: r.public()["prefix"] for r in store.list()}
    assert listed == {os_record.id: f"os_live_{os_record.id}_",
                      ww_record.id: f"ww_{ww_record.id}_"}
    assert os_key.startswith(str(listed[os_record.id]))
    assert store.get(os_record.id) == os_record
    store.close()
    reopened = KeyStore(str(tmp_path / "keys.db"))  # the prefix survives a restart
    try:
        assert reopened.get(os_record.id) == os_record
    finally:
        reopened.close()


def test_a_key_file_without_the_prefix_column_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE api_keys (id TEXT PRIMARY KEY, key_hash TEXT NOT NULL, "
                 "role TEXT NOT NULL, plan TEXT NOT NULL, user_id TEXT, name TEXT, "
                 "created_at REAL NOT NULL, last_used_at REAL, revoked_at REAL)")
    conn.execute("INSERT INTO api_keys VALUES ('abc', 'h', 'reader', 'free', NULL, NULL, 1.0, "
                 "NULL, NULL)")
    conn.commit()
    conn.close()
    store = KeyStore(str(path))
    try:
        assert store.get("abc") is not None
        assert store.list()[0].public()["prefix"] == "ww_abc_"  # unknown then: the default
        record, _ = store.create("reader", "free", prefix="os_live_")
        assert store.get(record.id) == record
    finally:
        store.close()


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
