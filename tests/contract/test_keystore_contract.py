"""The key store contract, over every backend (``keystore_factory``: SQLite and PostgreSQL).

Several stores made by one factory are several nodes (or the CLI) sharing one set of keys: a
key made on one verifies on every other, a revocation made on one is seen by the others'
periodic re-check (and, where the backend pushes, notified within seconds), signing keys and
stored Pusher apps are the same everywhere.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from wagerwire.auth.gate import KeyGate
from wagerwire.auth.keys import KEY_PREFIXES, AppRecord, NodeRecord
from wagerwire.auth.plans import DEFAULT_PLANS
from wagerwire.errors import BadParameter

pytestmark = pytest.mark.timeout(60)


def test_a_key_made_on_one_node_verifies_on_every_other(keystore_factory: Any) -> None:
    a, b, c = keystore_factory(), keystore_factory(), keystore_factory()
    for prefix in KEY_PREFIXES:
        record, key = a.create("publisher", "internal", "u-1", "feed", prefix=prefix)
        assert key.startswith(prefix)
        for node in (a, b, c):
            got = node.verify(key)
            assert got is not None and got.id == record.id
            assert got.public()["prefix"] == f"{prefix}{record.id}_"
            assert (got.role, got.plan, got.user_id, got.name) == (
                "publisher", "internal", "u-1", "feed")
            assert node.verify(key + "x") is None
            assert node.verify(key.replace(record.id, "0" * 12)) is None
    assert b.count() == 2
    assert [r.id for r in c.list()] == [r.id for r in a.list()]
    assert "key_hash" not in c.list()[0].public()


def test_new_keys_are_checked(keystore_factory: Any) -> None:
    store = keystore_factory()
    for role, user, prefix in [("root", None, "ww_"), ("reader", "a:b", "ww_"),
                               ("reader", "me", "ww_"), ("reader", None, "sk_")]:
        with pytest.raises(BadParameter):
            store.create(role, "free", user, prefix=prefix)
    assert store.count() == 0


def test_unknown_ids_are_answered_without_error(keystore_factory: Any) -> None:
    store = keystore_factory()
    assert all(store.verify(f"ww_{n:012x}_secret") is None for n in range(300))
    assert store.get("nope") is None and store.verify("not a key") is None


def test_a_revocation_is_seen_by_every_node(keystore_factory: Any) -> None:
    a, b = keystore_factory(), keystore_factory()
    record, key = a.create("reader", "free")
    assert b.verify(key) is not None and b.revoked_ids() == set()
    assert b.revoke(record.id) and not b.revoke(record.id) and not a.revoke("missing")
    assert a.revoked_ids() == {record.id}  # the periodic re-check
    got = a.verify(key)
    assert got is not None and got.revoked_at is not None


def test_a_revocation_is_pushed_where_the_backend_can(keystore_factory: Any) -> None:
    if not keystore_factory.pushes:
        pytest.skip("this backend is polled, it pushes nothing")
    a, b = keystore_factory(), keystore_factory()
    heard: list[tuple[str, str]] = []
    got = threading.Event()

    def listener(kind: str, ident: str) -> None:
        heard.append((kind, ident))
        if kind == "revoke":
            got.set()

    b.watch(listener)
    record, key = a.create("reader", "free")
    started = time.monotonic()
    a.revoke(record.id)
    assert got.wait(5), heard
    assert ("revoke", record.id) in heard and time.monotonic() - started < 5
    verified = b.verify(key)  # the memory of b was updated too, no re-check needed
    assert verified is not None and verified.revoked_at is not None


def test_signing_keys_are_shared_and_rotate_everywhere(keystore_factory: Any) -> None:
    a, b = keystore_factory(), keystore_factory()
    kid = a.current_signing_kid()
    assert b.current_signing_kid() == kid
    assert b.signing_keys()[kid] == a.signing_keys()[kid]
    new = b.rotate_signing_key()
    keys = a.signing_keys()
    assert set(keys) == {kid, new} and keys[new] == b.signing_keys()[new]
    assert b.current_signing_kid() == new


def test_touch_records_the_last_use(keystore_factory: Any) -> None:
    a, b = keystore_factory(), keystore_factory()
    record, _ = a.create("reader", "free")
    a.touch(record.id, 1234.5)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # PostgreSQL's is sent without waiting
        if [r.last_used_at for r in b.list()] == [1234.5]:
            return
        time.sleep(0.02)
    raise AssertionError([r.public() for r in b.list()])


def test_stored_apps_are_shared(keystore_factory: Any) -> None:
    a, b = keystore_factory(), keystore_factory()
    made = a.create_app(AppRecord("shop-1", "k" * 20, "s" * 20, "free", False, 5,
                                  webhook_url="https://example.test/hook"))
    assert made.created_at > 0
    assert b.apps() == [made]
    with pytest.raises(BadParameter):
        b.create_app(AppRecord("shop-1", "other", "x"))
    with pytest.raises(BadParameter):
        b.create_app(AppRecord("shop-2", "k" * 20, "x"))
    first = a.builtin_app(AppRecord("sgo", "sportsgameodds", "secret-a", builtin=True))
    second = b.builtin_app(AppRecord("sgo", "sportsgameodds", "secret-b", builtin=True))
    assert first.secret == second.secret == "secret-a"  # one secret for every node
    assert not b.delete_app("sgo")  # built-in apps stay
    assert b.delete_app("shop-1") and not b.delete_app("shop-1")
    assert [app.app_id for app in a.apps()] == ["sgo"]


def test_heartbeats_list_the_nodes(keystore_factory: Any) -> None:
    """Every node's heartbeat is listed (PostgreSQL: by every node; a SQLite hub is one node
    and lists itself)."""
    a, b = keystore_factory(), keystore_factory()
    now = time.time()
    first = NodeRecord("n1", "10.0.0.1:8000", now - 5, now, "redis", True, "postgresql",
                       True, 3)
    a.heartbeat(first)
    a.heartbeat(first)  # the same node again: one row
    assert a.nodes() == [first]
    if keystore_factory.pushes:
        second = NodeRecord("n2", "10.0.0.2:8000", now, now, "redis", False, "postgresql",
                            True, 0)
        b.heartbeat(second)
        assert a.nodes() == b.nodes() == [first, second]


class _Slot:
    """What a transport hangs on a gate's slot: closing the stream on revocation."""

    def __init__(self) -> None:
        self.closed = asyncio.Event()
        self.slot_id = "s1"

    def on_revoke(self) -> None:
        self.closed.set()


async def test_a_revocation_on_one_node_closes_the_streams_of_another(
    keystore_factory: Any,
) -> None:
    """Gate B holds a stream of the key; the key is revoked through gate A: B closes it
    within 5 s (pushed where the backend pushes, else by B's periodic re-check)."""
    store_a, store_b = keystore_factory(), keystore_factory()
    gate_a, gate_b = KeyGate(store_a, DEFAULT_PLANS), KeyGate(store_b, DEFAULT_PLANS)
    record, key = gate_a.create_key("reader", "free", None, None)
    gate_b.start()
    try:
        identity = gate_b.authenticate({"authorization": f"Bearer {key}"})
        slot = gate_b.open_stream(identity, "ws")
        await slot.admit()
        stream = _Slot()
        slot.on_revoke = stream.on_revoke
        started = time.monotonic()
        assert gate_a.revoke(record.id)
        await asyncio.wait_for(stream.closed.wait(), 5)
        print(f"revocation reached the other gate in {time.monotonic() - started:.3f} s")
        via = "notify" if keystore_factory.pushes else "poll"
        assert gate_b.revocations[via] == 1, gate_b.revocations  # the path it took
        slot.release()
    finally:
        await gate_b.aclose()
        await gate_a.aclose()
