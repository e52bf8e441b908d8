"""Provably-fair verification: hash chains, crash and slide points, double, slot and wall street.

The formulas are the operators' published ones, as written down in the domain reference
(``domain.md`` a.1–a.5); they are kept here, once, so the simulators that *produce* rounds and the
REST endpoint that *verifies* them cannot drift apart.

Conventions that matter when comparing with an operator's own verifier:

* hashes are lowercase hex strings, and a hash fed to SHA-256 or HMAC is fed as its **ASCII hex
  text**, never as raw bytes (that is what the published Node code does with string arguments);
* a chain is built forwards (``h[0] = SHA256(secret)``, ``h[i+1] = SHA256(h[i])``) and played
  **backwards**: game #1 uses the last link. So the hash of game *n* hashes to the hash of game
  *n − 1* (the round revealed just before it), and game #1's hash hashes to the commitment
  ``T`` published before play started;
* crash points are computed with exact integer/rational arithmetic, then truncated to two
  decimals. The operators' JavaScript uses doubles, which can differ only when the exact value
  lies within one rounding error of a 0.01 step (never seen in 20 000 random hashes).

Two families of games:

* **chain games** (crash and slide styles, double): the revealed ``game_hash`` mixed with a
  public ``salt``/``client_seed`` (a block hash announced after the commitment);
* **seed games** (slot, wall street, Shuffle's crash and slide): Stake's per-bet byte generator
  ``HMAC(server_seed, f"{client_seed}:{nonce}:{round}")``; the simulators use each chain link as
  that round's server seed, so ``server_seed_hash`` is the previous link and the same
  commitment covers both families.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, Final, Literal

__all__ = [
    "CHAIN_STYLES",
    "EDGE_STYLES",
    "MODULUS_STYLES",
    "SALT_STYLES",
    "DOUBLE_COLORS",
    "MAX_CHAIN_WALK",
    "ROOBET_MODULUS",
    "SEED_STYLES",
    "SLOT_PAYTABLE",
    "SLOT_STRIP",
    "STAKE_EDGE",
    "STYLE_BUSTABIT",
    "STYLE_BUSTABIT_SLIDE",
    "STYLE_DOUBLE",
    "STYLE_GAME_TYPES",
    "STYLE_ROOBET",
    "STYLE_ROOBET_SLIDE",
    "STYLE_SHUFFLE_CRASH",
    "STYLE_SHUFFLE_SLIDE",
    "STYLE_SLOT",
    "STYLE_STAKE",
    "STYLE_STAKE_SLIDE",
    "STYLE_WALLSTREET",
    "WALLSTREET_PAYOUT",
    "Verification",
    "byte_floats",
    "chain_link_valid",
    "chain_reaches_commitment",
    "compute_result",
    "crash_point_bustabit",
    "crash_point_roobet",
    "crash_point_shuffle",
    "crash_point_stake",
    "crash_result",
    "double_color",
    "double_roll",
    "hash_chain",
    "hmac_sha256_hex",
    "sha256_hex",
    "slot_payout",
    "slide_result",
    "slot_spin",
    "terminating_hash",
    "verify_round",
    "wallstreet_trend",
]

_E: Final = 1 << 52  # 2^52: the 13 hex digits (52 bits) the crash formulas read

STYLE_BUSTABIT: Final = "bustabit-v2"
"""``max(1, floor(99 / (1 - X)) / 100)`` with ``X`` from ``HMAC(key=salt, msg=game_hash)``."""
STYLE_STAKE: Final = "stake-crash-v1"
"""``floor(max(1, 2^32 / (i + 1) · (1 − edge)) · 100) / 100`` from ``HMAC(game_hash, salt)``."""
STYLE_ROOBET: Final = "roobet-v1"
"""bustabit-v1 "instant bust" formula with ``M = modulus`` from ``HMAC(game_hash, client_seed)``."""
STYLE_DOUBLE: Final = "double-v1"
"""15-pocket roulette: ``(int(HMAC(game_hash, salt)[:13], 16) · 15) >> 52``."""
STYLE_SLOT: Final = "slot-v1"
"""Three reels on :data:`SLOT_STRIP`, stops from Stake's byte generator."""
STYLE_WALLSTREET: Final = "wallstreet-v1"
"""Up/down call: first float of Stake's byte generator below 0.5 means up."""

STYLE_SHUFFLE_CRASH: Final = "shuffle-crash-v1"
"""Shuffle's published byte generator (server seed, client seed, nonce; its docs' vector is
reproduced by :func:`byte_floats`), first float ``X`` mapped by bustabit's
``max(1, floor(99 / (1 − X)) / 100)``: the mapping is ours (the reference has none of
Shuffle's crash mapping)."""
STYLE_STAKE_SLIDE: Final = "stake-slide-v1"
"""Stake Slide: Stake's seeding-event formula (the same as its Crash) on its own chain."""
STYLE_ROOBET_SLIDE: Final = "roobet-slide-v1"
"""Roobet-style formula on a slide chain (no Roobet Slide scheme in the reference: reused)."""
STYLE_BUSTABIT_SLIDE: Final = "bustabit-slide-v2"
"""bustabit v2 formula on a slide chain (for sites that publish no scheme, e.g. Duel)."""
STYLE_SHUFFLE_SLIDE: Final = "shuffle-slide-v1"
""":data:`STYLE_SHUFFLE_CRASH`'s generator and mapping for Shuffle's Slide."""

CHAIN_STYLES: Final = frozenset({
    STYLE_BUSTABIT, STYLE_STAKE, STYLE_ROOBET, STYLE_DOUBLE,
    STYLE_STAKE_SLIDE, STYLE_ROOBET_SLIDE, STYLE_BUSTABIT_SLIDE,
})
"""Styles whose fairness fields are ``game_hash``, ``previous_hash`` and a salt/client seed."""
SEED_STYLES: Final = frozenset({
    STYLE_SLOT, STYLE_WALLSTREET, STYLE_SHUFFLE_CRASH, STYLE_SHUFFLE_SLIDE,
})
"""Styles whose fairness fields are ``server_seed``, ``server_seed_hash``, ``client_seed``, ``nonce``."""
SALT_STYLES: Final = frozenset({
    STYLE_BUSTABIT, STYLE_STAKE, STYLE_DOUBLE, STYLE_STAKE_SLIDE, STYLE_BUSTABIT_SLIDE,
})
"""Chain styles whose public seed is called ``salt`` (the others: ``client_seed``)."""
EDGE_STYLES: Final = frozenset({STYLE_STAKE, STYLE_STAKE_SLIDE})
"""Styles whose rounds carry ``house_edge`` (Stake's formula)."""
MODULUS_STYLES: Final = frozenset({STYLE_ROOBET, STYLE_ROOBET_SLIDE})
"""Styles whose rounds carry ``modulus`` (the instant-bust formula)."""

STYLE_GAME_TYPES: Final[Mapping[str, str]] = {
    STYLE_BUSTABIT: "crash",
    STYLE_STAKE: "crash",
    STYLE_ROOBET: "crash",
    STYLE_SHUFFLE_CRASH: "crash",
    STYLE_STAKE_SLIDE: "slide",
    STYLE_ROOBET_SLIDE: "slide",
    STYLE_BUSTABIT_SLIDE: "slide",
    STYLE_SHUFFLE_SLIDE: "slide",
    STYLE_DOUBLE: "double",
    STYLE_SLOT: "slot",
    STYLE_WALLSTREET: "wallstreet",
}
"""The game type each style produces (a round claiming another type does not verify)."""

STAKE_EDGE: Final = Decimal("0.01")
"""Stake's published house edge for Crash/Slide."""
ROOBET_MODULUS: Final = 20
"""Roobet-style verifier code: one game in ``parseInt(100 / 5)`` = 20 busts instantly."""
MAX_CHAIN_WALK: Final = 100_000
"""Default longest commitment walk of :func:`verify_round` (~0.1 s), so a forged ``chain_index``
cannot stall a server; raise it with ``max_walk`` for longer chains."""

DoubleColor = Literal["white", "red", "black"]
DOUBLE_COLORS: Final[tuple[DoubleColor, ...]] = ("white",) + ("red",) * 7 + ("black",) * 7
"""Colour of each pocket 0–14: 0 white (pays 14×), 1–7 red, 8–14 black (2×)."""

SLOT_STRIP: Final[tuple[str, ...]] = (
    "cherry", "lemon", "orange", "cherry", "plum", "lemon", "seven", "cherry",
    "orange", "lemon", "bell", "cherry", "plum", "orange", "lemon", "cherry",
)  # fmt: skip
"""The 16-stop reel strip shared by all three reels (RTP 7887/8192 with the paytable)."""

SLOT_PAYTABLE: Final[Mapping[str, Decimal]] = {
    "seven": Decimal("100.00"),
    "bell": Decimal("50.00"),
    "plum": Decimal("20.00"),
    "orange": Decimal("15.00"),
    "lemon": Decimal("10.00"),
    "cherry": Decimal("5.00"),
}
"""Pay for three of a kind; otherwise two cherries pay 1.50 and one cherry 0.40."""

_TWO_CHERRIES: Final = Decimal("1.50")
_ONE_CHERRY: Final = Decimal("0.40")
_NO_WIN: Final = Decimal("0.00")

WALLSTREET_PAYOUT: Final = Decimal("1.96")
"""What a correct up/down call pays: 2 × (1 − 2 % edge)."""


# --- primitives ------------------------------------------------------------------------------


def sha256_hex(text: str) -> str:
    """SHA-256 of ``text``'s UTF-8 bytes, as lowercase hex (hashes are hashed as hex text)."""
    return hashlib.sha256(text.encode()).hexdigest()


def hmac_sha256_hex(key: str, message: str) -> str:
    """HMAC-SHA256 with both arguments taken as UTF-8 text, as lowercase hex."""
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()


def _two_decimals(hundredths: int) -> Decimal:
    """``hundredths / 100`` as a Decimal that always shows two places (``1.00``, ``2.57``)."""
    return Decimal(hundredths).scaleb(-2)


# --- hash chain --------------------------------------------------------------------------------


def hash_chain(secret: str, length: int) -> list[str]:
    """Build a chain ``h[0] = SHA256(secret)``, ``h[i+1] = SHA256(h[i])`` of ``length`` links.

    Play it backwards: game #n of the chain uses ``chain[length - n]``, and publish
    :func:`terminating_hash` before the first game.
    """
    if length < 1:
        raise ValueError(f"chain length must be at least 1, got {length}")
    link = sha256_hex(secret)
    chain = [link]
    for _ in range(length - 1):
        link = sha256_hex(link)
        chain.append(link)
    return chain


def terminating_hash(chain: Sequence[str]) -> str:
    """The commitment ``T = SHA256(hash of game #1)`` (= SHA256 of the chain's last link)."""
    if not chain:
        raise ValueError("empty chain has no terminating hash")
    return sha256_hex(chain[-1])


def chain_link_valid(game_hash: str, previous_hash: str) -> bool:
    """Whether ``SHA256(game_hash) == previous_hash``.

    ``previous_hash`` is the hash of the game played just **before** (game *n − 1*), because the
    chain is played backwards; for game #1 it is the commitment. Hashing forwards in time is
    impossible, which is what stops the operator from choosing future results.
    """
    return sha256_hex(game_hash) == previous_hash  # public values: no constant-time need


def chain_reaches_commitment(game_hash: str, game_number: int, commitment: str) -> bool:
    """Whether hashing game *n*'s hash ``n`` times yields the commitment (chain membership)."""
    if game_number < 1:
        return False
    link = game_hash
    for _ in range(game_number):
        link = sha256_hex(link)
    return link == commitment


# --- crash points -----------------------------------------------------------------------------


def crash_point_bustabit(game_hash: str, salt: str) -> Decimal:
    """bustabit v2: ``max(1, floor(99 / (1 − X)) / 100)``, ``X = int(HMAC(salt, hash)[:13]) / 2^52``.

    Note the argument order of the HMAC: the *salt* is the key.
    """
    r = int(hmac_sha256_hex(salt, game_hash)[:13], 16)
    return _two_decimals(max(100, 99 * _E // (_E - r)))


def crash_point_stake(game_hash: str, salt: str, edge: Decimal = STAKE_EDGE) -> Decimal:
    """Stake: ``floor(max(1, 2^32 / (i + 1) · (1 − edge)) · 100) / 100``, ``i`` = first 32 bits."""
    if not Decimal(0) <= edge < Decimal(1):
        raise ValueError(f"house edge must be in [0, 1), got {edge}")
    i = int(hmac_sha256_hex(game_hash, salt)[:8], 16)
    hundredths = Fraction(100 << 32) * (1 - Fraction(edge)) / (i + 1)
    return _two_decimals(max(100, int(hundredths)))  # int() floors a positive Fraction


def crash_point_roobet(game_hash: str, client_seed: str, modulus: int = ROOBET_MODULUS) -> Decimal:
    """bustabit-v1 / Roobet: instant bust (1.00) when ``HMAC % modulus == 0``, else the v1 curve.

    bustabit v1 itself used ``modulus=101``; Roobet-style clones use ``100 / edge%``.
    """
    if modulus < 1:
        raise ValueError(f"modulus must be positive, got {modulus}")
    h = hmac_sha256_hex(game_hash, client_seed)
    if int(h, 16) % modulus == 0:
        return _two_decimals(100)
    hv = int(h[:13], 16)
    return _two_decimals((100 * _E - hv) // (_E - hv))


def crash_point_shuffle(server_seed: str, client_seed: str, nonce: int) -> Decimal:
    """``max(1, floor(99 / (1 − X)) / 100)`` with ``X`` the first float of the byte generator.

    ``X = i / 2^32`` exactly (``i`` the first four bytes), so the value is computed in integers:
    ``floor(99 · 2^32 / (2^32 − i))`` hundredths, at least 100.
    """
    i = int(byte_floats(server_seed, client_seed, nonce, 1)[0] * 2**32)  # exact
    return _two_decimals(max(100, (99 << 32) // ((1 << 32) - i)))


def crash_result(point: Decimal) -> dict[str, Any]:
    """A crash round's ``result``: the exact decimal string plus a float for convenience."""
    return {"multiplier": str(point), "crash_point": float(point)}


def slide_result(point: Decimal) -> dict[str, Any]:
    """A slide round's ``result``: the multiplier the slide stopped on, as a decimal string,
    plus ``point`` as a float (Data Stream's ``extras`` name)."""
    return {"multiplier": str(point), "point": float(point)}


# --- double -----------------------------------------------------------------------------------


def double_roll(game_hash: str, salt: str) -> int:
    """Pocket 0–14 from ``(int(HMAC(game_hash, salt)[:13], 16) · 15) >> 52`` (no modulo bias)."""
    return (int(hmac_sha256_hex(game_hash, salt)[:13], 16) * 15) >> 52


def double_color(number: int) -> DoubleColor:
    """Colour of a double pocket: 0 white, 1–7 red, 8–14 black."""
    if not 0 <= number <= 14:
        raise ValueError(f"double pockets are 0-14, got {number}")
    return DOUBLE_COLORS[number]


# --- Stake-style byte generator: slot, wall street ----------------------------------------------


def byte_floats(server_seed: str, client_seed: str, nonce: int, count: int) -> list[float]:
    """The first ``count`` floats in [0, 1) of Stake's generator for one bet.

    Bytes come from ``HMAC(key=server_seed, msg=f"{client_seed}:{nonce}:{round}")`` for rounds
    0, 1, 2…; each 4 bytes ``b0..b3`` give ``b0/256 + b1/256² + b2/256³ + b3/256⁴`` (which is
    exactly ``int.from_bytes(b, "big") / 2^32``).
    """
    floats: list[float] = []
    cursor = 0
    while len(floats) < count:
        message = f"{client_seed}:{nonce}:{cursor}".encode()
        digest = hmac.new(server_seed.encode(), message, hashlib.sha256).digest()
        floats.extend(int.from_bytes(digest[k : k + 4], "big") / 2**32 for k in range(0, 32, 4))
        cursor += 1
    return floats[:count]


def slot_payout(reels: Sequence[str]) -> Decimal:
    """The multiplier three reel symbols pay (see :data:`SLOT_PAYTABLE`)."""
    if len(reels) != 3:
        raise ValueError(f"a slot result has 3 reels, got {len(reels)}")
    if reels[0] == reels[1] == reels[2] and reels[0] in SLOT_PAYTABLE:
        return SLOT_PAYTABLE[reels[0]]
    cherries = sum(1 for symbol in reels if symbol == "cherry")
    return {2: _TWO_CHERRIES, 1: _ONE_CHERRY}.get(cherries, _NO_WIN)


def slot_spin(server_seed: str, client_seed: str, nonce: int) -> tuple[list[str], Decimal]:
    """Reel symbols (stop ``floor(f · 16)`` per reel) and the multiplier they pay."""
    reels = [
        SLOT_STRIP[int(f * len(SLOT_STRIP))]
        for f in byte_floats(server_seed, client_seed, nonce, 3)
    ]
    return reels, slot_payout(reels)


def wallstreet_trend(server_seed: str, client_seed: str, nonce: int) -> Literal["up", "down"]:
    """The market's direction: ``up`` when the bet's first float is below 0.5."""
    return "up" if byte_floats(server_seed, client_seed, nonce, 1)[0] < 0.5 else "down"


# --- recompute a round from its revealed fields -----------------------------------------------


def _text(fairness: Mapping[str, Any], name: str) -> str:
    value = fairness.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"fairness field {name!r} must be a non-empty string")
    return value


def _integer(fairness: Mapping[str, Any], name: str, default: int | None = None) -> int:
    value = fairness.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"fairness field {name!r} must be an integer")
    return value


def _edge(fairness: Mapping[str, Any]) -> Decimal:
    value = fairness.get("house_edge", str(STAKE_EDGE))
    try:
        edge = Decimal(str(value))
    except InvalidOperation:
        edge = Decimal("NaN")
    if not edge.is_finite():
        raise ValueError(f"fairness field 'house_edge' is not a number: {value!r}")
    return edge


def compute_result(fairness: Mapping[str, Any]) -> dict[str, Any]:
    """Recompute a round's ``result`` object from its revealed ``fairness`` fields.

    Raises:
        ValueError: unknown ``style`` or a missing/mistyped field the style needs.
    """
    style = fairness.get("style")
    if not isinstance(style, str):
        raise ValueError("fairness field 'style' must be a string")
    wrap = slide_result if STYLE_GAME_TYPES.get(style) == "slide" else crash_result
    if style in CHAIN_STYLES:
        game_hash = _text(fairness, "game_hash")
        if style in (STYLE_BUSTABIT, STYLE_BUSTABIT_SLIDE):
            return wrap(crash_point_bustabit(game_hash, _text(fairness, "salt")))
        if style in EDGE_STYLES:
            salt = _text(fairness, "salt")
            return wrap(crash_point_stake(game_hash, salt, _edge(fairness)))
        if style in MODULUS_STYLES:
            seed = _text(fairness, "client_seed")
            modulus = _integer(fairness, "modulus", ROOBET_MODULUS)
            return wrap(crash_point_roobet(game_hash, seed, modulus))
        number = double_roll(game_hash, _text(fairness, "salt"))
        return {"number": number, "color": double_color(number)}
    if style in SEED_STYLES:
        server_seed = _text(fairness, "server_seed")
        client_seed = _text(fairness, "client_seed")
        nonce = _integer(fairness, "nonce")
        if style in (STYLE_SHUFFLE_CRASH, STYLE_SHUFFLE_SLIDE):
            return wrap(crash_point_shuffle(server_seed, client_seed, nonce))
        if style == STYLE_SLOT:
            reels, multiplier = slot_spin(server_seed, client_seed, nonce)
            return {"reels": reels, "multiplier": str(multiplier)}
        direction = wallstreet_trend(server_seed, client_seed, nonce)
        return {"direction": direction, "multiplier": str(WALLSTREET_PAYOUT)}
    raise ValueError(f"unknown fairness style {style!r}")


@dataclass(frozen=True, slots=True)
class Verification:
    """Outcome of :func:`verify_round`; ``reason`` says what failed when ``valid`` is false."""

    valid: bool
    computed: Any
    published: Any
    reason: str | None = None


def _chain_problem(
    fairness: Mapping[str, Any], check_commitment: bool, max_walk: int
) -> str | None:
    """Why the revealed seed is not a link of the committed chain, or None if it is."""
    style = fairness.get("style")
    if style in SEED_STYLES:
        link, link_name = _text(fairness, "server_seed"), "server_seed"
        previous, previous_name = _text(fairness, "server_seed_hash"), "server_seed_hash"
    else:
        link, link_name = _text(fairness, "game_hash"), "game_hash"
        previous, previous_name = _text(fairness, "previous_hash"), "previous_hash"
    if not chain_link_valid(link, previous):
        return f"SHA256({link_name}) is not {previous_name}: the revealed seed was altered"
    if not check_commitment or fairness.get("chain_commitment") is None:
        return None
    commitment = _text(fairness, "chain_commitment")
    index = _integer(fairness, "chain_index")
    if not 1 <= index <= max_walk:
        return f"chain_index {index} is outside 1..{max_walk} (the walk limit)"
    if not chain_reaches_commitment(link, index, commitment):
        return f"hashing {link_name} chain_index={index} times does not give chain_commitment"
    return None


def _same(key: str, computed: Any, published: Any) -> bool:
    if key == "multiplier":
        try:
            return Decimal(str(published)) == Decimal(computed)
        except InvalidOperation:
            return False
    if key in ("crash_point", "point"):
        if not isinstance(published, int | float) or isinstance(published, bool):
            return False
        try:
            return bool(float(published) == computed)
        except OverflowError:  # an int too large for a float
            return False
    if isinstance(computed, list):
        return isinstance(published, list | tuple) and list(published) == computed
    return type(published) is type(computed) and bool(published == computed)


def _result_problem(computed: Mapping[str, Any], published: Any) -> str | None:
    if not isinstance(published, Mapping):
        return "round has no result object"
    for key, value in computed.items():
        if key not in published:
            return f"published result lacks {key!r}"
        if not _same(key, value, published[key]):
            return f"result {key!r}: published {published[key]!r}, recomputed {value!r}"
    return None


def verify_round(
    round_data: Mapping[str, Any],
    *,
    check_commitment: bool = True,
    max_walk: int = MAX_CHAIN_WALK,
) -> Verification:
    """Recompute a published round from its revealed seeds and compare with its result.

    Checks, in order: the ``fairness`` fields are present for the round's ``style``; the style
    fits the round's ``game_type`` (when given); the revealed seed hashes to the previous link
    (``previous_hash`` / ``server_seed_hash``); with ``check_commitment``, hashing it
    ``chain_index`` times gives ``chain_commitment`` (when published; a ``chain_index`` above
    ``max_walk`` is not valid); and the recomputed result
    equals the published ``result`` (multipliers compared as decimals). Never raises for bad
    input: a malformed round is simply not valid, with the reason.
    """
    if not isinstance(round_data, Mapping):
        return Verification(False, None, None, "a round must be a JSON object")
    published = round_data.get("result")
    fairness = round_data.get("fairness")
    if not isinstance(fairness, Mapping):
        return Verification(False, None, published, "round has no fairness object")
    try:
        computed = compute_result(fairness)
        style = str(fairness.get("style"))
        game_type = round_data.get("game_type")
        if game_type is not None and game_type != STYLE_GAME_TYPES[style]:
            reason: str | None = f"style {style!r} makes {STYLE_GAME_TYPES[style]} rounds"
        else:
            reason = _chain_problem(fairness, check_commitment, max_walk)
    except ValueError as exc:
        return Verification(False, None, published, str(exc))
    reason = reason or _result_problem(computed, published)
    return Verification(reason is None, computed, published, reason)
