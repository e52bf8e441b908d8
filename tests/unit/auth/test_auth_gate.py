"""Auth without sockets: limiters on a fake clock, the KeyGate's decisions, keys and tokens.

Limits that cannot be waited out in a test (a day) are shown recovering here, on an injected
clock; the integration tests (tests/integration/test_auth_e2e.py) show them tripping on a
real server.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wagerwire.auth.gate import KeyGate, credential_from
from wagerwire.auth.identity import ANONYMOUS, NO_SLOT, Gate, Identity, may_match_private
from wagerwire.auth.keys import KeyStore, parse_key_id
from wagerwire.auth.limits import DAY, DailyQuota, RateBucket
from wagerwire.auth.plans import DEFAULT_PLANS, parse_plans
from wagerwire.auth.stream_tokens import TokenClaims, sign_token, verify_token
from wagerwire.core.channels import pattern_matcher
from wagerwire.errors import BadParameter, Forbidden, KeyInUrl, RateLimited, Unauthorized

T0 = 1_780_000_000.25  # a fixed "now", a quarter second into a second


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Any:
    ks = KeyStore(str(tmp_path / "keys.db"))
    yield ks
    ks.close()


def make_gate(store: KeyStore, clock: Clock, mode: str = "open", **plans: Any) -> KeyGate:
    return KeyGate(store, parse_plans(plans), mode, clock=clock)


def bearer(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


# --------------------------------------------------------------------------- limiters


def test_token_bucket_trips_at_its_number_and_refills() -> None:
    bucket = RateBucket(60, 60.0)
    assert [bucket.take(T0) for _ in range(60)] == [0.0] * 60
    wait = bucket.take(T0)
    assert wait == pytest.approx(1.0)
    assert bucket.take(T0 + 0.5) == pytest.approx(0.5)  # half a token refilled
    assert bucket.take(T0 + 1.0) == 0.0  # one more after a second
    assert bucket.take(T0 + 1.0) > 0
    assert [bucket.take(T0 + 61.0) for _ in range(60)] == [0.0] * 60  # full after a minute
    assert bucket.take(T0 + 61.0) > 0


def test_daily_quota_trips_at_its_number_and_recovers_next_utc_day() -> None:
    quota = DailyQuota(30)
    assert [quota.take(T0) for _ in range(30)] == [0.0] * 30
    midnight = (T0 // DAY + 1) * DAY
    assert quota.take(T0) == pytest.approx(midnight - T0)
    assert quota.take(midnight - 0.001) > 0
    assert [quota.take(midnight) for _ in range(30)] == [0.0] * 30
    assert quota.take(midnight + 5) == pytest.approx(DAY - 5)


# --------------------------------------------------------------------------- keys


def test_keys_are_prefixed_shown_once_and_stored_only_as_hash(store: KeyStore,
                                                              tmp_path: Path) -> None:
    record, key = store.create("reader", "free", "alice", "laptop")
    assert key.startswith(f"ww_{record.id}_") and parse_key_id(key) == record.id
    assert len(key) > 40
    assert record.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert store.verify(key) == record
    assert store.verify(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert store.verify(f"ww_{record.id}_") is None and store.verify("nonsense") is None
    listed = store.list()[0].public()
    assert "key_hash" not in listed and key not in str(listed)
    assert listed["prefix"] == f"ww_{record.id}_"
    assert listed["user_id"] == "alice" and listed["role"] == "reader"
    assert listed["created_at"] and listed["last_used_at"] is None
    raw = (tmp_path / "keys.db").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("keys.db-*"))
    assert key.encode() not in raw
    assert key.split("_", 2)[2].encode() not in raw


def test_key_roles_and_user_ids_are_validated(store: KeyStore) -> None:
    with pytest.raises(BadParameter):
        store.create("superuser", "free")
    for bad in ("a:b", "a*", "me", "", "UPPER", "x" * 65):
        with pytest.raises(BadParameter):
            store.create("reader", "free", bad)
    assert store.count() == 0


def test_revocation_is_seen_by_another_store_on_the_same_file(tmp_path: Path) -> None:
    server_side = KeyStore(str(tmp_path / "k.db"))
    cli_side = KeyStore(str(tmp_path / "k.db"))
    try:
        record, _ = cli_side.create("reader", "free")
        assert server_side.revoked_ids() == set()
        assert cli_side.revoke(record.id) and not cli_side.revoke(record.id)
        assert server_side.revoked_ids() == {record.id}
    finally:
        server_side.close()
        cli_side.close()


# --------------------------------------------------------------------------- tokens


def claims(exp: int = int(T0) + 300, user: str | None = "alice") -> TokenClaims:
    return TokenClaims("k1", "reader", "free", user, int(T0), exp)


def test_token_signature_expiry_and_tampering() -> None:
    secret = b"s" * 32
    token = sign_token(claims(), "kid1", secret)
    assert verify_token(token, {"kid1": secret}, T0) == claims()
    with pytest.raises(Unauthorized, match="expired"):
        verify_token(token, {"kid1": secret}, T0 + 300)
    with pytest.raises(Unauthorized, match="unknown or retired"):
        verify_token(token, {"kid2": secret}, T0)
    with pytest.raises(Unauthorized, match="signature"):
        verify_token(token, {"kid1": b"t" * 32}, T0)  # signed with another key
    head, kid, payload, sig = token.split(".")
    other = sign_token(claims(user="bob"), "kid1", b"attacker").split(".")[2]
    with pytest.raises(Unauthorized, match="signature"):
        verify_token(f"{head}.{kid}.{other}.{sig}", {"kid1": secret}, T0)
    for bad in ("wwt1.kid1", f"{head}.{kid}.{payload}.!!!", f"{head}.{kid}.e30.{sig}",
                f"wwt2.{kid}.{payload}.{sig}", f"{token}.x"):
        with pytest.raises(Unauthorized):
            verify_token(bad, {"kid1": secret}, T0)


async def test_gate_issues_tokens_bound_to_key_plan_and_user(store: KeyStore) -> None:
    clock = Clock()
    gate = make_gate(store, clock)
    record, key = store.create("reader", "free", "alice")
    who = gate.authenticate(bearer(key))
    assert (who.key_id, who.plan, who.user_id, who.via_token) == (record.id, "free", "alice",
                                                                  False)
    token, expires = await gate.issue_token(who)
    assert expires - T0 >= gate.token_ttl  # the full TTL, never a truncated one
    via = gate.authenticate({}, token)
    assert (via.key_id, via.role, via.plan, via.user_id) == (record.id, "reader", "free",
                                                             "alice")
    assert via.via_token and via.channels == DEFAULT_PLANS["free"].channels
    assert gate.authenticate(bearer(token)).key_id == record.id
    clock.now = expires
    with pytest.raises(Unauthorized, match="expired"):
        gate.authenticate({}, token)


async def test_a_token_cannot_mint_tokens(store: KeyStore) -> None:
    gate = make_gate(store, Clock())
    _, key = store.create("reader", "allstar", "alice")
    token, _ = await gate.issue_token(gate.authenticate(bearer(key)))
    with pytest.raises(Forbidden, match="API key"):
        await gate.issue_token(gate.authenticate({}, token))


async def test_signing_key_rotation_keeps_valid_tokens(store: KeyStore, tmp_path: Path) -> None:
    gate = make_gate(store, Clock())
    _, key = store.create("reader", "allstar")
    who = gate.authenticate(bearer(key))
    old, _ = await gate.issue_token(who)
    # rotated by another process on the same database (the gate has it cached)
    other = KeyStore(str(tmp_path / "keys.db"))
    try:
        new_kid = other.rotate_signing_key()
    finally:
        other.close()
    new, _ = await gate.issue_token(who)
    assert new.split(".")[1] == new_kid != old.split(".")[1]
    assert gate.authenticate({}, old).key_id == gate.authenticate({}, new).key_id
    fresh = make_gate(store, Clock())  # a restarted server knows both as well
    assert fresh.authenticate({}, old).key_id == fresh.authenticate({}, new).key_id


async def test_tokens_of_revoked_keys_are_refused_at_once(store: KeyStore, tmp_path: Path) -> None:
    gate = make_gate(store, Clock())
    record, key = store.create("reader", "allstar")
    token, _ = await gate.issue_token(gate.authenticate(bearer(key)))
    cli = KeyStore(str(tmp_path / "keys.db"))  # the CLI, before the server's poll
    try:
        cli.revoke(record.id)
    finally:
        cli.close()
    with pytest.raises(Unauthorized, match="revoked"):
        gate.authenticate(bearer(key))
    with pytest.raises(Unauthorized, match="revoked"):
        gate.authenticate({}, token)


async def test_token_quota_trips_at_its_number_and_recovers_next_day(store: KeyStore) -> None:
    clock = Clock()
    gate = make_gate(store, clock)
    _, key = store.create("reader", "free")
    who = gate.authenticate(bearer(key))
    for _ in range(30):
        await gate.issue_token(who)
    with pytest.raises(RateLimited) as info:
        await gate.issue_token(who)
    midnight = (T0 // DAY + 1) * DAY
    assert info.value.retry_after == pytest.approx(midnight - T0)
    clock.now = midnight - 1
    with pytest.raises(RateLimited):
        await gate.issue_token(who)
    clock.now = midnight
    for _ in range(30):
        await gate.issue_token(who)
    with pytest.raises(RateLimited):
        await gate.issue_token(who)


async def test_anonymous_callers_get_no_tokens(store: KeyStore) -> None:
    gate = make_gate(store, Clock())
    with pytest.raises(Unauthorized):
        await gate.issue_token(gate.authenticate({}))


# --------------------------------------------------------------------------- credentials


def test_credentials_from_headers_and_query() -> None:
    q = "wwt1.kid.payload.sig"  # only stream tokens go in ?token=
    assert credential_from({"authorization": "Bearer abc"}, q) == "abc"
    assert credential_from({"authorization": "bearer  abc "}, None) == "abc"
    assert credential_from({"x-api-key": "k"}, q) == "k"
    assert credential_from({"x-access-token": "t"}, None) == "t"
    assert credential_from({"authorization": "Basic Zm9v"}, q) == q
    assert credential_from({}, None) is None and credential_from({}, "") is None


def test_an_api_key_in_the_query_is_refused() -> None:
    for query in ("ww_abc_secret", "q", "wwt1"):
        with pytest.raises(KeyInUrl):
            credential_from({}, query)
        with pytest.raises(KeyInUrl):  # even beside a header: the key is in a URL already
            credential_from({"authorization": "Bearer abc"}, query)


def test_bad_credentials_and_required_mode(store: KeyStore) -> None:
    gate = make_gate(store, Clock())
    assert gate.authenticate({}).role == "anonymous"
    for bad in ("ww_nope_x", "garbage", "wwt1.a.b.c"):
        with pytest.raises(Unauthorized):
            gate.authenticate(bearer(bad))
    required = make_gate(store, Clock(), "required")
    with pytest.raises(Unauthorized, match="credentials required"):
        required.authenticate({})
    _, key = store.create("reader", "free")
    assert required.authenticate({"x-api-key": key}).plan == "free"
    with pytest.raises(ValueError):
        make_gate(store, Clock(), "sometimes")


def test_key_with_a_plan_the_server_does_not_know_is_refused(store: KeyStore) -> None:
    _, key = store.create("reader", "gold")  # made by the CLI with another config
    gate = make_gate(store, Clock())
    with pytest.raises(Forbidden, match="gold"):
        gate.authenticate(bearer(key))
    assert make_gate(store, Clock(), gold={"channels": ["game:*"]}).authenticate(
        bearer(key)).plan == "gold"


# --------------------------------------------------------------------------- channels


def ident(user: str | None = "alice", role: str = "reader", plan: str = "allstar") -> Identity:
    return Identity("k1", role, plan, user, DEFAULT_PLANS[plan].channels)


@pytest.mark.parametrize("channel,user,expect", [
    ("user:balances", "alice", "user:alice:balances"),
    ("user:me:bets", "alice", "user:alice:bets"),
    ("user:me:*", "alice", "user:alice:*"),
    ("user:alice:balances", "alice", "user:alice:balances"),
    ("user:alice:*", "alice", "user:alice:*"),
    ("game:crash", None, "game:crash"),
    ("game:*", None, "game:*"),
    ("user:bob:balances", "alice", Forbidden),
    ("user:alice2:balances", "alice", Forbidden),
    ("user:alice:balances", None, Forbidden),
    ("user:balances", None, Forbidden),
    ("*", "alice", Forbidden),
    ("*", None, Forbidden),
    ("u*", "alice", Forbidden),
    ("*:balances", "alice", Forbidden),
    ("user:*", "alice", Forbidden),
    ("user:alice*", "alice", Forbidden),  # would match user:alice2:…
    ("user:*:balances", "alice", Forbidden),
])
def test_private_channels_resolve_only_for_their_user(
    store: KeyStore, channel: str, user: str | None, expect: Any
) -> None:
    gate = make_gate(store, Clock())
    if expect is Forbidden:
        with pytest.raises(Forbidden):
            gate.resolve_channel(ident(user), channel)
        assert not gate.may_read(ident(user), channel)
    else:
        assert gate.resolve_channel(ident(user), channel) == expect


def test_admin_reads_everything_and_plans_limit_public_channels(store: KeyStore) -> None:
    gate = make_gate(store, Clock())
    admin = ident(None, "admin")
    for channel in ("user:bob:balances", "*", "user:*"):
        assert gate.resolve_channel(admin, channel) == channel
    free = ident(None, plan="free")
    assert gate.resolve_channel(free, "game:crash") == "game:crash"
    assert gate.resolve_channel(free, "odds:football:*") == "odds:football:*"
    for channel in ("game:slot", "game:*", "*", "events:x"):
        with pytest.raises(Forbidden, match="free|private|could match"):
            gate.resolve_channel(free, channel)
    assert gate.resolve_channels(free, ["game:crash", 7]) == ["game:crash", 7]


def test_auth_off_gate_refuses_private_channels_and_wide_patterns() -> None:
    gate = Gate()
    assert gate.resolve_channel(ANONYMOUS, "game:*") == "game:*"
    for channel in ("user:1:balances", "*", "u*", "*:balances"):
        with pytest.raises(Forbidden):
            gate.resolve_channel(ANONYMOUS, channel)


@settings(max_examples=300, deadline=None)
@given(st.text("user:ab*", max_size=10), st.text("ab:", max_size=6))
def test_patterns_said_not_to_match_private_channels_never_do(pattern: str, tail: str) -> None:
    if "*" in pattern and not may_match_private(pattern):
        assert not pattern_matcher(pattern).fullmatch("user:" + tail)


# --------------------------------------------------------------------------- streams, REST


async def test_concurrent_streams_trip_at_the_plan_number_and_revocation_closes(
    store: KeyStore,
) -> None:
    gate = make_gate(store, Clock(), two={"max_streams": 2})
    record, key = store.create("reader", "two")
    who = gate.authenticate(bearer(key))
    assert gate.open_stream(gate.anonymous(), "ws") is NO_SLOT  # anonymous: not counted
    first, second = gate.open_stream(who, "ws"), gate.open_stream(who, "sse")
    assert first.pending and second.pending  # counted when the HTTP layer admits them
    await first.admit()
    await second.admit()
    refused = gate.open_stream(who, "ws")
    with pytest.raises(RateLimited) as info:
        await refused.admit()
    assert info.value.retry_after
    refused.release()  # never admitted: frees nothing
    first.release()
    first.release()  # twice is once
    await asyncio.sleep(0.01)  # releases are batched per loop turn
    third = gate.open_stream(who, "ws")
    await third.admit()
    with pytest.raises(RateLimited):
        await gate.open_stream(who, "ws").admit()
    closed: list[str] = []
    second.on_revoke = lambda: closed.append("second")
    third.on_revoke = lambda: closed.append("third")
    assert gate.revoke(record.id)
    assert sorted(closed) == ["second", "third"]
    with pytest.raises(Unauthorized):
        gate.authenticate(bearer(key))
    assert not gate.revoke(record.id)


async def test_plan_without_streaming_is_forbidden(store: KeyStore) -> None:
    gate = make_gate(store, Clock())
    _, key = store.create("reader", "pro")
    who = gate.authenticate(bearer(key))
    with pytest.raises(Forbidden, match="streaming"):
        gate.open_stream(who, "ws")
    await gate.check_rest(who)  # REST is what pro is for


async def test_rest_rate_trips_at_60_and_one_passes_a_second_later(store: KeyStore) -> None:
    clock = Clock()
    gate = make_gate(store, clock, rest60={"rest_per_minute": 60})
    _, key = store.create("reader", "rest60")
    who = gate.authenticate(bearer(key))
    for _ in range(60):
        await gate.check_rest(who)
    with pytest.raises(RateLimited) as info:
        await gate.check_rest(who)
    assert info.value.retry_after == pytest.approx(1.0)
    clock.now += 1.0
    await gate.check_rest(who)
    with pytest.raises(RateLimited):
        await gate.check_rest(who)
    await gate.check_rest(gate.anonymous())  # anonymous REST is not counted


def test_publish_rights(store: KeyStore) -> None:
    gate = make_gate(store, Clock())
    assert not gate.can_publish(ident(role="reader"))
    assert gate.can_publish(ident(role="publisher")) and gate.can_publish(ident(role="admin"))
    assert not gate.can_publish(gate.anonymous())  # auth open: reading, not publishing
    gate.anonymous_publish = True  # anonymous_publish = true (serve --anonymous-publish)
    assert gate.can_publish(gate.anonymous())
    assert not make_gate(store, Clock(), "required").can_publish(gate.anonymous())


def test_plans_parse_over_the_defaults() -> None:
    plans = parse_plans({"free": {"max_streams": 3}, "mine": {"stream": False,
                                                              "channels": ["game:*"]}})
    assert plans["free"].max_streams == 3 and plans["free"].token_requests_per_day == 30
    assert plans["mine"].channels == ("game:*",) and not plans["mine"].stream
    assert {"free", "pro", "pro+", "allstar"} <= set(plans)
    with pytest.raises(BadParameter):
        parse_plans({"bad": {"max_streams": "lots"}})
    with pytest.raises(BadParameter):
        parse_plans({"bad": 3})


def test_last_used_is_recorded(store: KeyStore, tmp_path: Path) -> None:
    gate = make_gate(store, Clock())
    record, key = store.create("reader", "free")
    gate.authenticate(bearer(key))
    with sqlite3.connect(tmp_path / "keys.db") as conn:
        (used,) = conn.execute("SELECT last_used_at FROM api_keys WHERE id = ?",
                               (record.id,)).fetchone()
    assert used == T0
