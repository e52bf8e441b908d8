"""Casino and balance simulators: round invariants, verifiability, determinism, the run loop."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Unpack

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wagerwire.analytics.fairness import (
    STYLE_BUSTABIT,
    STYLE_BUSTABIT_SLIDE,
    STYLE_DOUBLE,
    STYLE_ROOBET,
    STYLE_ROOBET_SLIDE,
    STYLE_SHUFFLE_CRASH,
    STYLE_SHUFFLE_SLIDE,
    STYLE_STAKE,
    STYLE_STAKE_SLIDE,
    sha256_hex,
    verify_round,
)
from wagerwire.core.messages import Message, PublishResult
from wagerwire.errors import Unavailable
from wagerwire.sources.base import Publisher, PublishOptions, Source
from wagerwire.sources.casino import (
    DEMO_USERS,
    SOURCE_NAME,
    TRACKERSINO_GAMES,
    BalanceSimulator,
    CasinoSimulator,
    GameSpec,
    demo_games,
    demo_sources,
    iso_ms,
)

T0 = 1_768_621_542_123  # 2026-01-17T03:45:42.123Z
ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
GAMES = {spec.slug: spec for spec in demo_games()}


class FakePublisher:
    """Records publishes; sets ``done`` once ``want`` messages matched ``prefix``."""

    def __init__(self, want: int = 0, prefix: str = "", fail_first: int = 0) -> None:
        self.published: list[tuple[str, Any, Mapping[str, str] | None, str | None]] = []
        self.want = want
        self.prefix = prefix
        self.fail_first = fail_first
        self.attempts = 0
        self.done = asyncio.Event()

    async def publish(self, channel: str, data: Any, **options: Unpack[PublishOptions]
                      ) -> PublishResult:
        attrs, idempotency_key = options.get("attrs"), options.get("idempotency_key")
        self.attempts += 1
        if self.attempts <= self.fail_first:
            raise Unavailable("store down")
        self.published.append((channel, orjson.loads(orjson.dumps(data)), attrs, idempotency_key))
        if sum(c.startswith(self.prefix) for c, *_ in self.published) >= self.want:
            self.done.set()
        body = orjson.dumps(data)
        message = Message(channel, len(self.published), "e1", T0, body, attrs, idempotency_key)
        return PublishResult(message)

    def on(self, prefix: str) -> list[tuple[str, Any, Mapping[str, str] | None, str | None]]:
        return [entry for entry in self.published if entry[0].startswith(prefix)]


class FakeSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        await asyncio.sleep(0)


async def run_until_done(source: Source, publisher: FakePublisher) -> None:
    task = asyncio.create_task(source.run(publisher))
    try:
        await asyncio.wait_for(publisher.done.wait(), 5)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def play(spec: GameSpec, count: int, seed: int = 1, chain_length: int = 25) -> list[dict[str, Any]]:
    sim = CasinoSimulator(spec, seed, chain_length=chain_length)
    return [sim.next_round(T0 + i * 1000) for i in range(count)]


def link_of(data: Mapping[str, Any]) -> str:
    fairness = data["fairness"]
    return str(fairness.get("game_hash") or fairness["server_seed"])


def previous_of(data: Mapping[str, Any]) -> str:
    fairness = data["fairness"]
    return str(fairness.get("previous_hash") or fairness["server_seed_hash"])


# --- catalog ----------------------------------------------------------------------------------


def test_demo_catalog() -> None:
    specs = demo_games()
    slugs = [spec.slug for spec in specs]
    assert {"crash", "stake-crash", "roobet-crash", "double", "slot", "wallstreet"} <= set(slugs)
    assert len(set(slugs)) == len(slugs)
    assert len({spec.game_id for spec in specs}) == len(specs)
    assert len({GAMES[s].style for s in ("crash", "stake-crash", "roobet-crash")}) == 3
    for spec in specs:
        assert spec.type in {"crash", "slide", "double", "slot", "wallstreet"}
        assert spec.channel == f"game:{spec.slug}"
        assert spec.attrs == {"game": spec.slug, "game_type": spec.type, "provider": spec.provider}
        assert spec.cadence > 0


def test_spec_style_must_fit_type() -> None:
    with pytest.raises(ValueError):
        GameSpec("x", "X", "crash", "p", STYLE_DOUBLE, 1.0, 99, "multiplier")
    with pytest.raises(ValueError):
        GameSpec("x", "X", "double", "p", STYLE_DOUBLE, 0.0, 99, "color")


def test_iso_ms() -> None:
    assert iso_ms(T0) == "2026-01-17T03:45:42.123Z"
    assert iso_ms(0) == "1970-01-01T00:00:00.000Z"


# --- rounds -----------------------------------------------------------------------------------


@pytest.mark.parametrize("slug", sorted(GAMES))
def test_round_invariants_across_chain_rotations(slug: str) -> None:
    rounds = play(GAMES[slug], 60, chain_length=25)  # chains 0, 1 and part of 2
    assert [r["index"] for r in rounds] == list(range(1, 61))
    assert len({r["round_id"] for r in rounds}) == 60
    assert [r["fairness"]["chain"] for r in rounds] == [0] * 25 + [1] * 25 + [2] * 10
    assert [r["fairness"]["chain_index"] for r in rounds] == [*range(1, 26)] * 2 + [*range(1, 11)]
    commitments = {r["fairness"]["chain"]: r["fairness"]["chain_commitment"] for r in rounds}
    assert len(set(commitments.values())) == 3
    for before, current in zip([None, *rounds], rounds, strict=False):
        fairness = current["fairness"]
        if fairness["chain_index"] == 1:
            assert previous_of(current) == fairness["chain_commitment"]
        else:
            assert before is not None
            assert previous_of(current) == link_of(before)
        published = orjson.loads(orjson.dumps(current))  # as a subscriber sees it
        verification = verify_round(published)
        assert verification.valid, (current["round_id"], verification.reason)


@pytest.mark.parametrize("slug", sorted(GAMES))
def test_round_shape_serves_every_dialect(slug: str) -> None:
    spec = GAMES[slug]
    data = CasinoSimulator(spec, 3, chain_length=10).next_round(T0)
    assert orjson.loads(orjson.dumps(data)) == data  # JSON-ready: no Decimal, no tuples
    assert data["round_id"] == f"{slug}-1"
    assert data["index"] == 1
    assert data["game_slug"] == slug
    assert data["game_type"] == spec.type
    assert data["game_name"] == spec.name
    assert data["game_id"] == spec.game_id
    assert data["category"] == spec.category
    assert data["provider"] == spec.provider
    assert data["source"] == SOURCE_NAME
    assert data["timestamp"] == T0
    assert ISO_MS.fullmatch(data["finished_at"])
    assert data["fairness"]["style"] == spec.style
    assert isinstance(data["raw"], dict) and data["raw"]
    result, extras = data["result"], data["extras"]
    if spec.type == "crash":
        assert Decimal(result["multiplier"]) == Decimal(str(result["crash_point"]))
        assert Decimal(result["multiplier"]).as_tuple().exponent == -2
        assert extras == {"point": result["multiplier"]}
    elif spec.type == "slide":
        assert set(result) == {"multiplier", "point"}
        assert Decimal(result["multiplier"]) == Decimal(str(result["point"])) >= 1
        assert Decimal(result["multiplier"]).as_tuple().exponent == -2
        assert extras == {"point": result["multiplier"]}
    elif spec.type == "double":
        assert 0 <= result["number"] <= 14
        assert extras == {"color": result["color"], "number": result["number"]}
    elif spec.type == "slot":
        assert len(result["reels"]) == 3
        assert extras == {"reels": result["reels"], "multiplier": result["multiplier"]}
    else:
        assert result["direction"] in {"up", "down"}
        assert extras == {"trending": result["direction"]}


def test_every_game_trackersino_names_is_in_the_demo_catalog() -> None:
    assert set(TRACKERSINO_GAMES) <= set(GAMES)
    for slug in TRACKERSINO_GAMES:
        site, kind = slug.split("-")
        spec = GAMES[slug]
        assert (spec.provider, spec.type, spec.category) == (site, kind, "multiplier")
        assert spec.cadence >= 10  # modest rates: make serve runs all of them
    # each its own scheme; Stake's Crash and Slide share Stake's formula, on their own chains
    styles = {slug: GAMES[slug].style for slug in TRACKERSINO_GAMES}
    assert styles == {
        "stake-crash": STYLE_STAKE, "stake-slide": STYLE_STAKE_SLIDE,
        "roobet-crash": STYLE_ROOBET, "roobet-slide": STYLE_ROOBET_SLIDE,
        "duel-crash": STYLE_BUSTABIT, "duel-slide": STYLE_BUSTABIT_SLIDE,
        "shuffle-crash": STYLE_SHUFFLE_CRASH, "shuffle-slide": STYLE_SHUFFLE_SLIDE,
    }
    # where the site publishes no scheme (or no mapping), the seeding event says so
    assert not GAMES["stake-crash"].scheme and not GAMES["stake-slide"].scheme
    for slug in ("duel-crash", "duel-slide", "roobet-slide", "shuffle-crash", "shuffle-slide"):
        event = CasinoSimulator(GAMES[slug], 1, chain_length=5).seeding_event(0, T0)
        assert event["scheme"] == GAMES[slug].scheme and GAMES[slug].scheme


@pytest.mark.parametrize("slug", ["stake-slide", "roobet-slide", "duel-slide", "shuffle-slide",
                                  "duel-crash", "shuffle-crash"])
def test_operator_raw_envelopes_of_the_new_games(slug: str) -> None:
    data = CasinoSimulator(GAMES[slug], 3).next_round(T0)
    raw, multiplier = data["raw"], float(data["result"]["multiplier"])
    if slug == "stake-slide":
        assert raw["__typename"] == "SlideGame" and raw["multiplier"] == multiplier
        assert raw["hash"]["hash"] == data["fairness"]["game_hash"]
    elif slug == "roobet-slide":
        assert raw["event"] == "slide:finished" and raw["data"]["multiplier"] == multiplier
    else:
        assert raw["game"] == slug and raw["multiplier"] == data["result"]["multiplier"]
        assert raw["hash"] == link_of(data)


def test_hypetech_raw_envelope_is_a_data_stream_round() -> None:
    data = CasinoSimulator(GAMES["double"], 3).next_round(T0)
    raw = data["raw"]
    assert raw["round_id"] == 1
    assert raw["game_id"] == GAMES["double"].game_id
    assert raw["game_type"] == "color"
    assert orjson.loads(raw["extras"]) == data["extras"]
    assert raw["timestamp"] == T0


def test_stake_raw_envelope_carries_crash_point_and_hash() -> None:
    data = CasinoSimulator(GAMES["stake-crash"], 3).next_round(T0)
    assert data["raw"]["crashpoint"] == data["result"]["crash_point"]
    assert data["raw"]["hash"]["hash"] == data["fairness"]["game_hash"]


def test_same_seed_same_rounds_other_seed_other_rounds() -> None:
    for spec in demo_games():
        assert play(spec, 30, seed=5) == play(spec, 30, seed=5)
        first = {link_of(r) for r in play(spec, 30, seed=5)}
        second = {link_of(r) for r in play(spec, 30, seed=6)}
        assert not first & second


def test_games_do_not_share_chains() -> None:
    links = [link_of(r) for spec in demo_games() for r in play(spec, 5)]
    assert len(set(links)) == len(links)


def test_round_at_is_pure_and_start_index_resumes() -> None:
    spec = GAMES["stake-crash"]
    fresh = CasinoSimulator(spec, 9, chain_length=10)
    rounds = [fresh.next_round(T0) for _ in range(35)]
    assert fresh.index == 35
    other = CasinoSimulator(spec, 9, chain_length=10)
    assert [other.round_at(i, T0) for i in (35, 3, 17)] == [rounds[34], rounds[2], rounds[16]]
    resumed = CasinoSimulator(spec, 9, chain_length=10, start_index=30)
    assert [resumed.next_round(T0) for _ in range(5)] == rounds[30:]
    with pytest.raises(ValueError):
        fresh.round_at(0, T0)


def test_seeding_event_commits_to_the_chain() -> None:
    sim = CasinoSimulator(GAMES["crash"], 2, chain_length=5)
    event = sim.seeding_event(1, T0)
    assert event["chain"] == 1 and event["first_index"] == 6 and event["chain_length"] == 5
    sixth = sim.round_at(6, T0)
    assert event["chain_commitment"] == sixth["fairness"]["chain_commitment"]
    assert event["salt"] == sixth["fairness"]["salt"]
    assert sha256_hex(link_of(sixth)) == event["chain_commitment"]


@pytest.mark.parametrize("slug", sorted(GAMES))
def test_tampered_simulator_rounds_do_not_verify(slug: str) -> None:
    data = CasinoSimulator(GAMES[slug], 4, chain_length=10).round_at(7, T0)
    assert verify_round(data).valid

    result_tampered = orjson.loads(orjson.dumps(data))
    result = result_tampered["result"]
    if "multiplier" in result and GAMES[slug].type != "wallstreet":
        result["multiplier"] = str(Decimal(result["multiplier"]) + Decimal("0.01"))
    elif "number" in result:
        result["number"] = (result["number"] + 1) % 15
    else:
        result["direction"] = "down" if result["direction"] == "up" else "up"
    assert not verify_round(result_tampered).valid

    seed_tampered = orjson.loads(orjson.dumps(data))
    fairness = seed_tampered["fairness"]
    key = "game_hash" if "game_hash" in fairness else "server_seed"
    next_round = CasinoSimulator(GAMES[slug], 4, chain_length=10).round_at(8, T0)
    fairness[key] = next_round["fairness"][key]
    assert not verify_round(seed_tampered).valid

    public_seed_tampered = orjson.loads(orjson.dumps(data))
    fairness = public_seed_tampered["fairness"]
    if "nonce" in fairness:
        fairness["nonce"] += 1
    else:
        fairness["salt" if "salt" in fairness else "client_seed"] = "f" * 64
    if GAMES[slug].type != "wallstreet":  # a 1-bit outcome survives half of all changed seeds
        assert not verify_round(public_seed_tampered).valid


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**63), index=st.integers(1, 200))
def test_any_seed_and_index_verifies(seed: int, index: int) -> None:
    for spec in demo_games():
        data = CasinoSimulator(spec, seed, chain_length=50).round_at(index, T0)
        assert verify_round(data).valid


def test_constructor_validation() -> None:
    with pytest.raises(ValueError):
        CasinoSimulator(GAMES["crash"], chain_length=0)
    with pytest.raises(ValueError):
        CasinoSimulator(GAMES["crash"], cadence_scale=-1)
    with pytest.raises(ValueError):
        CasinoSimulator(GAMES["crash"], start_index=-1)


# --- the run loop -----------------------------------------------------------------------------


async def test_run_announces_each_chain_then_publishes_rounds() -> None:
    spec = GAMES["roobet-crash"]
    sleep = FakeSleep()
    ticks = iter(range(T0, T0 + 10**9, 250))
    sim = CasinoSimulator(
        spec, 11, cadence_scale=0.5, chain_length=3, clock=lambda: next(ticks), sleep=sleep
    )
    publisher = FakePublisher(want=7, prefix="game:")
    typed: Publisher = publisher  # the fake satisfies the protocol (checked by mypy)
    assert typed is publisher
    await run_until_done(sim, publisher)

    rounds = publisher.on("game:")[:7]
    assert all(channel == "game:roobet-crash" for channel, *_ in rounds)
    assert all(attrs == spec.attrs for _, _, attrs, _ in rounds)
    assert [data["index"] for _, data, _, _ in rounds] == list(range(1, 8))
    assert [key for *_, key in rounds] == [data["round_id"] for _, data, _, _ in rounds]
    assert all(verify_round(data).valid for _, data, _, _ in rounds)
    assert set(sleep.calls) == {spec.cadence * 0.5}

    # each chain's commitment is announced before that chain's first round
    order = [(c, d.get("chain", d.get("index"))) for c, d, _, _ in publisher.published]
    announcements = publisher.on("fairness:")
    assert [d["chain"] for _, d, _, _ in announcements][:3] == [0, 1, 2]
    for _, event, attrs, key in announcements[:3]:
        assert attrs == spec.attrs and key
        assert event["chain_commitment"] == sim.commitment(event["chain"])
        position = order.index(("fairness:roobet-crash", event["chain"]))
        assert order[position + 1] == ("game:roobet-crash", event["first_index"])


async def test_run_retries_the_same_round_after_a_refused_publish() -> None:
    sim = CasinoSimulator(
        GAMES["slot"], 1, cadence_scale=0, sleep=FakeSleep(), announce_commitments=False
    )
    publisher = FakePublisher(want=3, prefix="game:", fail_first=2)
    await run_until_done(sim, publisher)
    assert not publisher.on("fairness:")
    assert [d["index"] for _, d, _, _ in publisher.published[:3]] == [1, 2, 3]
    assert publisher.attempts >= 5


async def test_demo_sources_run_together() -> None:
    sources = demo_sources(2, cadence_scale=0, chain_length=20)
    assert len(sources) == len(demo_games()) + 1
    publisher = FakePublisher(want=60, prefix="game:")
    tasks = [asyncio.create_task(source.run(publisher)) for source in sources]
    try:
        await asyncio.wait_for(publisher.done.wait(), 10)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    channels = {channel for channel, *_ in publisher.published}
    assert {spec.channel for spec in demo_games()} <= channels
    assert {BalanceSimulator.channel_for(user) for user in DEMO_USERS} <= channels


# --- balances ---------------------------------------------------------------------------------


def test_balance_updates_are_deterministic_and_sane() -> None:
    first, second = BalanceSimulator(4), BalanceSimulator(4)
    updates = [first.next_update(T0 + i) for i in range(400)]
    assert updates == [second.next_update(T0 + i) for i in range(400)]
    assert updates != [BalanceSimulator(5).next_update(T0 + i) for i in range(400)]
    users = [data["user_id"] for _, data in updates]
    assert users[:4] == ["demo-1", "demo-2", "demo-1", "demo-2"]
    for channel, data in updates:
        assert channel == f"user:{data['user_id']}:balances"
        assert set(data) >= {"user_id", "currency", "amount", "change", "reason", "seq"}
        assert data["amount"] >= 0
        assert data["reason"] in {"bet_won", "bet_lost", "deposit"}
    for user in DEMO_USERS:
        seqs = [data["seq"] for _, data in updates if data["user_id"] == user]
        assert seqs == list(range(1, len(seqs) + 1))
        last = {d["currency"]: d["amount"] for _, d in updates if d["user_id"] == user}
        assert last == {c: float(a) for c, a in first.balances(user).items() if c in last}


async def test_balance_run_publishes_snapshot_then_updates() -> None:
    sleep = FakeSleep()
    sim = BalanceSimulator(1, cadence_scale=0.25, clock=lambda: T0, sleep=sleep)
    publisher = FakePublisher(want=10, prefix="user:")
    await run_until_done(sim, publisher)
    published = publisher.published[:10]
    snapshot = published[: len(DEMO_USERS) * 3]
    assert all(data["reason"] == "snapshot" for _, data, _, _ in snapshot)
    assert {(d["user_id"], d["currency"]) for _, d, _, _ in snapshot} == {
        (user, currency) for user in DEMO_USERS for currency in ("btc", "eth", "usdt")
    }
    for channel, data, attrs, key in published:
        assert channel == BalanceSimulator.channel_for(data["user_id"])
        assert attrs == {"user": data["user_id"], "currency": data["currency"]}
        assert key == f"{data['user_id']}:balance:{data['seq']}"
    assert set(sleep.calls) == {0.5}
