"""Provably-fair formulas: the domain reference's worked examples, then properties."""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from itertools import product
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wagerwire.analytics.fairness import (
    SLOT_STRIP,
    STYLE_BUSTABIT,
    STYLE_BUSTABIT_SLIDE,
    STYLE_DOUBLE,
    STYLE_ROOBET,
    STYLE_ROOBET_SLIDE,
    STYLE_SHUFFLE_CRASH,
    STYLE_SHUFFLE_SLIDE,
    STYLE_SLOT,
    STYLE_STAKE,
    STYLE_STAKE_SLIDE,
    STYLE_WALLSTREET,
    byte_floats,
    chain_link_valid,
    chain_reaches_commitment,
    compute_result,
    crash_point_bustabit,
    crash_point_roobet,
    crash_point_shuffle,
    crash_point_stake,
    double_color,
    double_roll,
    hash_chain,
    hmac_sha256_hex,
    sha256_hex,
    slot_payout,
    slot_spin,
    terminating_hash,
    verify_round,
    wallstreet_trend,
)

# --- values typed in from domain.md a.3–a.5 ---------------------------------------------------

DOC_SECRET = "hub-demo-secret-do-not-use"
DOC_SALT = "0000000000000000000fa3b65e43e4240d71762a5bf397d5304b2596d116859c"
DOC_CHAIN = [
    "4c16ab1501e1a2bd7865e4b94cc11d8e68d0d416a5e5c4ea5de40122e32e4b38",  # game #5
    "ba62dd9361efe3a135407eafc3706879b22b949913b3a482d5ed4fc7aea014f5",  # game #4
    "93bca22c17721c2ce1dfc412edb43ef1dc2def420bbdc33dc943ddd81a36d236",  # game #3
    "fd2f29377c2bf3013d41d724dca6b10b970dfa6f0419bc190e6301293cf7b3dc",  # game #2
    "9a5c3bd68d22b383bbc2fe0158820662b5de45cd7310d841aab11c7a7e6cc2cf",  # game #1
]
DOC_COMMITMENT = "b9509c576aef7b509cab3444b0a40a386a9d2ce639aaea2f0e93b3f04e312b6a"
DOC_STAKE = {1: "1.02", 2: "4.81", 3: "1.64", 4: "1.75", 5: "1.45"}
DOC_BUSTABIT = {1: "1.12", 2: "2.57", 3: "1.06", 4: "1.53", 5: "7.00"}
DOC_DOUBLE = {1: (14, "black"), 2: (3, "red"), 3: (9, "black"), 4: (8, "black"), 5: (10, "black")}

hex64 = st.binary(min_size=32, max_size=32).map(bytes.hex)


def game(n: int) -> str:
    """Game #n of the doc's chain (played backwards: #1 is the last link)."""
    return DOC_CHAIN[len(DOC_CHAIN) - n]


def sample_hashes(count: int) -> list[str]:
    return [hashlib.sha256(f"sample-{i}".encode()).hexdigest() for i in range(count)]


# --- hash chain -------------------------------------------------------------------------------


def test_hash_chain_reproduces_worked_example() -> None:
    assert hash_chain(DOC_SECRET, 5) == DOC_CHAIN
    assert terminating_hash(DOC_CHAIN) == DOC_COMMITMENT


@given(secret=st.text(max_size=40), length=st.integers(1, 8))
def test_hash_chain_hashes_hex_text(secret: str, length: int) -> None:
    link = hashlib.sha256(secret.encode()).hexdigest()
    expected = [link]
    for _ in range(length - 1):
        link = hashlib.sha256(link.encode()).hexdigest()
        expected.append(link)
    assert hash_chain(secret, length) == expected


def test_hash_chain_rejects_empty() -> None:
    with pytest.raises(ValueError):
        hash_chain("x", 0)
    with pytest.raises(ValueError):
        terminating_hash([])


def test_each_game_hashes_to_the_game_before_and_game_1_to_the_commitment() -> None:
    assert chain_link_valid(game(1), DOC_COMMITMENT)
    for n in range(2, 6):
        assert chain_link_valid(game(n), game(n - 1))
    # domain.md a.3: SHA256(g_2) = h[4] and SHA256(SHA256(g_2)) = T
    assert sha256_hex(game(2)) == DOC_CHAIN[4]
    assert chain_reaches_commitment(game(2), 2, DOC_COMMITMENT)


def test_tampered_or_reversed_link_is_rejected() -> None:
    tampered = game(3)[:-1] + ("0" if game(3)[-1] != "0" else "1")
    assert not chain_link_valid(tampered, game(2))
    assert not chain_link_valid(game(2), game(3))  # wrong direction: cannot hash forward in time
    assert not chain_link_valid(game(3), game(1))  # skips a link


def test_commitment_walk_needs_the_right_game_number() -> None:
    for n in range(1, 6):
        assert chain_reaches_commitment(game(n), n, DOC_COMMITMENT)
    assert not chain_reaches_commitment(game(2), 1, DOC_COMMITMENT)
    assert not chain_reaches_commitment(game(2), 3, DOC_COMMITMENT)
    assert not chain_reaches_commitment(game(2), 0, DOC_COMMITMENT)


# --- crash points: worked example -------------------------------------------------------------


def test_game_2_intermediate_values() -> None:
    stake_hmac = hmac_sha256_hex(game(2), DOC_SALT)
    assert stake_hmac.startswith("34a578c31000ac05")
    assert int(stake_hmac[:8], 16) == 883259587
    assert int(stake_hmac[:13], 16) == 926164804763658
    assert int(stake_hmac, 16) % 101 == 39
    bustabit_hmac = hmac_sha256_hex(DOC_SALT, game(2))  # salt is the key here
    assert bustabit_hmac.startswith("9da1c9b0d3eb677d")
    assert int(bustabit_hmac[:13], 16) == 2773091185671862


@pytest.mark.parametrize("n", range(1, 6))
def test_worked_example_crash_points(n: int) -> None:
    assert crash_point_stake(game(n), DOC_SALT) == Decimal(DOC_STAKE[n])
    assert str(crash_point_stake(game(n), DOC_SALT)) == DOC_STAKE[n]
    assert str(crash_point_bustabit(game(n), DOC_SALT)) == DOC_BUSTABIT[n]


def test_worked_example_bustabit_v1_instant_bust_style() -> None:
    assert str(crash_point_roobet(game(2), DOC_SALT, modulus=101)) == "1.25"


def test_roobet_instant_bust_is_one() -> None:
    busts = 0
    for game_hash in sample_hashes(600):
        h = hmac.new(game_hash.encode(), DOC_SALT.encode(), hashlib.sha256).hexdigest()
        point = crash_point_roobet(game_hash, DOC_SALT)
        if int(h, 16) % 20 == 0:
            busts += 1
            assert point == Decimal("1.00")
        else:
            hv = int(h[:13], 16)
            e = 2**52
            assert point == Decimal((100 * e - hv) // (e - hv)) / 100
    assert 10 < busts < 60  # about 1 in 20


def test_stake_edge_parameter() -> None:
    # i = 883259587 for game #2: 2^32 / (i + 1) x 0.96 = 4.668...
    assert str(crash_point_stake(game(2), DOC_SALT, Decimal("0.04"))) == "4.66"
    assert str(crash_point_stake(game(2), DOC_SALT, Decimal("0"))) == "4.86"
    with pytest.raises(ValueError):
        crash_point_stake(game(2), DOC_SALT, Decimal("1"))
    with pytest.raises(ValueError):
        crash_point_roobet(game(2), DOC_SALT, modulus=0)


# --- crash points: properties -----------------------------------------------------------------

CRASH_FUNCTIONS: list[Callable[[str, str], Decimal]] = [
    crash_point_bustabit,
    crash_point_stake,
    crash_point_roobet,
]


@settings(max_examples=200)
@given(game_hash=hex64, salt=hex64)
def test_crash_points_are_at_least_one_with_two_decimals(game_hash: str, salt: str) -> None:
    for function in CRASH_FUNCTIONS:
        point = function(game_hash, salt)
        assert point >= 1
        assert point.as_tuple().exponent == -2
        assert function(game_hash, salt) == point  # deterministic


@settings(max_examples=200)
@given(game_hash=hex64, salt=hex64)
def test_stake_matches_an_independent_rational_computation(game_hash: str, salt: str) -> None:
    i = int(hmac.new(game_hash.encode(), salt.encode(), hashlib.sha256).hexdigest()[:8], 16)
    raw = max(Fraction(1), Fraction(2**32, i + 1) * Fraction(99, 100))
    assert crash_point_stake(game_hash, salt) == Decimal(int(raw * 100)) / 100


@pytest.mark.parametrize(
    ("function", "p_two"),
    [
        (crash_point_bustabit, 0.495),
        (crash_point_stake, 0.495),
        (crash_point_roobet, (1 - 1 / 20) * 99 / 199),  # (1 - 1/M) * 99 / (100m - 1)
    ],
)
def test_probability_of_reaching_2x(function: Callable[[str, str], Decimal], p_two: float) -> None:
    hashes = sample_hashes(20_000)
    points = [function(h, DOC_SALT) for h in hashes]
    share = sum(point >= 2 for point in points) / len(points)
    assert abs(share - p_two) < 0.015  # ~4 standard deviations
    share_10 = sum(point >= 10 for point in points) / len(points)
    assert abs(share_10 - p_two / 5) < 0.008


def test_bustabit_busts_at_one_about_two_percent() -> None:
    points = [crash_point_bustabit(h, DOC_SALT) for h in sample_hashes(20_000)]
    share = sum(point == 1 for point in points) / len(points)
    assert abs(share - (1 - 0.99 / 1.01)) < 0.005


# --- double -----------------------------------------------------------------------------------


@pytest.mark.parametrize("n", range(1, 6))
def test_worked_example_double(n: int) -> None:
    number = double_roll(game(n), DOC_SALT)
    assert (number, double_color(number)) == DOC_DOUBLE[n]


@given(game_hash=hex64, salt=hex64)
def test_double_number_and_colour(game_hash: str, salt: str) -> None:
    number = double_roll(game_hash, salt)
    assert 0 <= number <= 14
    expected = "white" if number == 0 else "red" if number <= 7 else "black"
    assert double_color(number) == expected
    h = hmac.new(game_hash.encode(), salt.encode(), hashlib.sha256).hexdigest()
    assert number == int(int(h[:13], 16) * 15 // 2**52)


def test_double_colour_table_and_range() -> None:
    assert [double_color(n) for n in range(15)] == ["white"] + ["red"] * 7 + ["black"] * 7
    for bad in (-1, 15):
        with pytest.raises(ValueError):
            double_color(bad)


def test_double_pockets_are_uniform() -> None:
    counts = [0] * 15
    for h in sample_hashes(15_000):
        counts[double_roll(h, DOC_SALT)] += 1
    assert all(850 < count < 1150 for count in counts)  # expected 1000, sd ~31


# --- byte generator, slot, wall street --------------------------------------------------------


def test_byte_generator_reproduces_shuffle_vector_with_nonce_0() -> None:
    assert byte_floats("def", "abc", 0, 3) == [
        0.8320531346835196,
        0.8531235849950463,
        0.18227359023876488,
    ]


def test_byte_generator_crosses_hmac_rounds() -> None:
    floats = byte_floats("s", "c", 7, 10)
    digest = hmac.new(b"s", b"c:7:1", hashlib.sha256).digest()
    assert floats[8] == sum(b / 256 ** (k + 1) for k, b in enumerate(digest[0:4]))
    assert floats[:8] == byte_floats("s", "c", 7, 8)


def test_worked_example_slot() -> None:
    digest = hmac_sha256_hex("my-server-seed", "my-client-seed:0:0")
    assert digest.startswith("f912d140e3e24c9a3b46045f")
    floats = byte_floats("my-server-seed", "my-client-seed", 0, 3)
    assert floats == pytest.approx([0.97294338, 0.89017180, 0.23153713], abs=1e-8)
    assert [int(f * 16) for f in floats] == [15, 14, 3]
    reels, multiplier = slot_spin("my-server-seed", "my-client-seed", 0)
    assert reels == ["cherry", "lemon", "cherry"]
    assert str(multiplier) == "1.50"


def test_slot_paytable_rtp_is_7887_over_8192() -> None:
    total = sum((slot_payout(reels) for reels in product(SLOT_STRIP, repeat=3)), start=Decimal(0))
    assert total / len(SLOT_STRIP) ** 3 == Decimal(7887) / Decimal(8192)


@pytest.mark.parametrize(
    ("reels", "pays"),
    [
        (("seven", "seven", "seven"), "100.00"),
        (("cherry", "cherry", "cherry"), "5.00"),
        (("cherry", "plum", "cherry"), "1.50"),
        (("lemon", "lemon", "cherry"), "0.40"),
        (("lemon", "lemon", "bell"), "0.00"),
    ],
)
def test_slot_payout(reels: tuple[str, str, str], pays: str) -> None:
    assert str(slot_payout(reels)) == pays


def test_wallstreet_is_roughly_fair() -> None:
    ups = sum(wallstreet_trend(h, "client", 0) == "up" for h in sample_hashes(4_000))
    assert 1800 < ups < 2200


# --- verify_round -----------------------------------------------------------------------------


def doc_round(**fairness_changes: Any) -> dict[str, Any]:
    """Game #2 of the worked example as a Stake-style published round."""
    fairness = {
        "style": STYLE_STAKE,
        "game_hash": game(2),
        "previous_hash": game(1),
        "salt": DOC_SALT,
        "house_edge": "0.01",
        "chain_index": 2,
        "chain_commitment": DOC_COMMITMENT,
    } | fairness_changes
    return {
        "game_type": "crash",
        "result": {"multiplier": "4.81", "crash_point": 4.81},
        "fairness": fairness,
    }


def test_verify_worked_example_round() -> None:
    verification = verify_round(doc_round())
    assert verification.valid, verification.reason
    assert verification.reason is None
    assert verification.computed == {"multiplier": "4.81", "crash_point": 4.81}
    assert verification.published == {"multiplier": "4.81", "crash_point": 4.81}


@pytest.mark.parametrize(
    ("style", "salt_field", "multiplier"),
    [(STYLE_BUSTABIT, "salt", "2.57"), (STYLE_ROOBET, "client_seed", "1.25")],
)
def test_verify_other_crash_styles(style: str, salt_field: str, multiplier: str) -> None:
    data = doc_round(style=style)
    del data["fairness"]["salt"]
    data["fairness"][salt_field] = DOC_SALT
    data["fairness"]["modulus"] = 101
    data["result"] = {"multiplier": multiplier, "crash_point": float(multiplier)}
    assert verify_round(data).valid


def test_verify_double_round() -> None:
    data = doc_round(style=STYLE_DOUBLE)
    data["game_type"] = "double"
    data["result"] = {"number": 3, "color": "red"}
    assert verify_round(data).valid
    data["result"] = {"number": 3, "color": "black"}
    assert not verify_round(data).valid


def test_verify_compares_multipliers_as_decimals() -> None:
    data = doc_round()
    data["result"]["multiplier"] = "4.810"
    assert verify_round(data).valid


@pytest.mark.parametrize(
    "tamper",
    [
        lambda r: r["result"].update(multiplier="4.82"),
        lambda r: r["result"].update(crash_point=4.82),
        lambda r: r["result"].update(crash_point=10**400),
        lambda r: r["result"].update(crash_point=True),
        lambda r: r["result"].pop("multiplier"),
        lambda r: r["fairness"].update(game_hash=game(3)),  # also breaks the link
        lambda r: r["fairness"].update(previous_hash=game(3)),
        lambda r: r["fairness"].update(salt="0" * 64),  # result no longer matches
        lambda r: r["fairness"].update(house_edge="0.04"),
        lambda r: r["fairness"].update(house_edge="lots"),
        lambda r: r["fairness"].update(chain_index=3),
        lambda r: r["fairness"].update(chain_index=10**9),
        lambda r: r["fairness"].update(chain_commitment=game(1)),
        lambda r: r["fairness"].update(style="martingale"),
        lambda r: r["fairness"].pop("salt"),
        lambda r: r.update(game_type="double"),
        lambda r: r.pop("fairness"),
        lambda r: r.update(result="4.81"),
    ],
)
def test_verify_rejects_tampering(tamper: Any) -> None:
    data = doc_round()
    tamper(data)
    verification = verify_round(data)
    assert not verification.valid
    assert verification.reason


def test_verify_a_consistently_forged_link_still_fails_on_result() -> None:
    forged = "ab" * 32
    data = doc_round(game_hash=forged, previous_hash=sha256_hex(forged))
    verification = verify_round(data, check_commitment=False)
    assert not verification.valid
    assert "multiplier" in (verification.reason or "")


def test_verify_seed_style_round() -> None:
    data: dict[str, Any] = {
        "game_type": "slot",
        "result": {"reels": ["cherry", "lemon", "cherry"], "multiplier": "1.50"},
        "fairness": {
            "style": STYLE_SLOT,
            "server_seed": "my-server-seed",
            "server_seed_hash": hashlib.sha256(b"my-server-seed").hexdigest(),
            "client_seed": "my-client-seed",
            "nonce": 0,
        },
    }
    assert verify_round(data).valid
    data["fairness"]["nonce"] = 1
    assert not verify_round(data).valid
    data["fairness"]["nonce"] = 0
    data["fairness"]["server_seed"] = "my-server-seed!"
    assert not verify_round(data).valid


def test_verify_wallstreet_round() -> None:
    direction = wallstreet_trend("server", "client", 3)
    data: dict[str, Any] = {
        "result": {"direction": direction, "multiplier": "1.96"},
        "fairness": {
            "style": STYLE_WALLSTREET,
            "server_seed": "server",
            "server_seed_hash": sha256_hex("server"),
            "client_seed": "client",
            "nonce": 3,
        },
    }
    assert verify_round(data).valid
    data["result"]["direction"] = "down" if direction == "up" else "up"
    assert not verify_round(data).valid


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=70),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
fairness_keys = st.sampled_from(
    [
        "style",
        "game_hash",
        "previous_hash",
        "salt",
        "client_seed",
        "server_seed",
        "server_seed_hash",
        "nonce",
        "house_edge",
        "modulus",
        "chain_index",
        "chain_commitment",
    ]
)


ALL_STYLES = [STYLE_BUSTABIT, STYLE_STAKE, STYLE_ROOBET, STYLE_DOUBLE, STYLE_SLOT, STYLE_WALLSTREET]


@settings(max_examples=300)
@given(
    fairness=st.dictionaries(fairness_keys, json_values),
    style=st.sampled_from(ALL_STYLES) | json_values,
    result=json_values,
    game_type=json_values,
)
def test_verify_never_raises_on_garbage(
    fairness: dict[str, Any], style: Any, result: Any, game_type: Any
) -> None:
    fairness["style"] = style
    verification = verify_round({"fairness": fairness, "result": result, "game_type": game_type})
    assert verification.valid is (verification.reason is None)
    assert not verify_round([]).valid  # type: ignore[arg-type]


def test_verify_walk_limit() -> None:
    assert not verify_round(doc_round(), max_walk=1).valid
    assert verify_round(doc_round(), max_walk=2).valid


# --- the games TrackerSino names: slides, Duel, Shuffle --------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
@pytest.mark.parametrize(
    ("style", "salt_field", "expected"),
    [(STYLE_STAKE_SLIDE, "salt", DOC_STAKE), (STYLE_BUSTABIT_SLIDE, "salt", DOC_BUSTABIT)],
)
def test_slide_styles_reproduce_the_worked_example_chain(
    n: int, style: str, salt_field: str, expected: dict[int, str],
) -> None:
    """Stake's Slide uses its Crash formula (domain.md a.2): the same vectors, a slide round."""
    fairness = {"style": style, "game_hash": game(n), salt_field: DOC_SALT, "house_edge": "0.01"}
    value = expected[n]
    assert compute_result(fairness) == {"multiplier": value, "point": float(value)}


def test_roobet_slide_reproduces_the_bustabit_v1_vector() -> None:
    fairness = {"style": STYLE_ROOBET_SLIDE, "game_hash": game(2), "client_seed": DOC_SALT,
                "modulus": 101}
    assert compute_result(fairness) == {"multiplier": "1.25", "point": 1.25}


def test_shuffle_crash_from_the_published_generator_vector() -> None:
    """Shuffle's docs' vector (server ``def``, client ``abc``, nonce 0) gives X = 0.83205…;
    bustabit's curve: floor(99 / (1 − X)) = 589 → 5.89x, computed exactly in integers."""
    x = byte_floats("def", "abc", 0, 1)[0]
    assert x == 0.8320531346835196
    assert crash_point_shuffle("def", "abc", 0) == Decimal("5.89")
    assert math.floor(99 / (1 - x)) == 589
    for style, key in ((STYLE_SHUFFLE_CRASH, "crash_point"), (STYLE_SHUFFLE_SLIDE, "point")):
        fairness = {"style": style, "server_seed": "def", "client_seed": "abc", "nonce": 0}
        assert compute_result(fairness) == {"multiplier": "5.89", key: 5.89}


@settings(max_examples=200, deadline=None)
@given(hex64, st.text(min_size=1, max_size=20), st.integers(0, 10**9))
def test_shuffle_crash_matches_a_rational_computation(
    server: str, client: str, nonce: int,
) -> None:
    x = Fraction(int.from_bytes(hmac.new(server.encode(), f"{client}:{nonce}:0".encode(),
                                         hashlib.sha256).digest()[:4], "big"), 2**32)
    expected = max(100, math.floor(99 / (1 - x)))
    assert crash_point_shuffle(server, client, nonce) == Decimal(expected) / 100


def test_shuffle_crash_reaches_2x_about_495_in_1000() -> None:
    hits = sum(crash_point_shuffle(h, "c", 0) >= 2 for h in sample_hashes(4_000))
    assert 1_850 < hits < 2_110  # P = 0.495, sd ~32


@pytest.mark.parametrize(
    ("style", "game_type", "fields"),
    [
        (STYLE_STAKE_SLIDE, "slide", {"salt": DOC_SALT, "house_edge": "0.01"}),
        (STYLE_BUSTABIT_SLIDE, "slide", {"salt": DOC_SALT}),
        (STYLE_ROOBET_SLIDE, "slide", {"client_seed": DOC_SALT, "modulus": 101}),
    ],
)
def test_verify_slide_rounds_and_their_type(
    style: str, game_type: str, fields: dict[str, Any],
) -> None:
    fairness = {"style": style, "game_hash": game(2), "previous_hash": game(1), "chain_index": 2,
                "chain_commitment": DOC_COMMITMENT, **fields}
    data: dict[str, Any] = {"game_type": game_type, "fairness": fairness,
                            "result": compute_result(fairness)}
    assert verify_round(data).valid
    data["game_type"] = "crash"  # a slide style does not make crash rounds
    assert not verify_round(data).valid
    data["game_type"] = game_type
    data["result"] = dict(data["result"], point=data["result"]["point"] + 0.01)
    assert not verify_round(data).valid


def test_verify_shuffle_round_checks_the_server_seed_link() -> None:
    seed = "shuffle-server-seed"
    fairness = {"style": STYLE_SHUFFLE_CRASH, "server_seed": seed,
                "server_seed_hash": sha256_hex(seed), "client_seed": "abc", "nonce": 4}
    data: dict[str, Any] = {"game_type": "crash", "fairness": fairness,
                            "result": compute_result(fairness)}
    assert verify_round(data).valid
    data["fairness"] = dict(fairness, nonce=5)
    assert not verify_round(data).valid
    data["fairness"] = dict(fairness, server_seed_hash=sha256_hex("other"))
    assert not verify_round(data).valid
