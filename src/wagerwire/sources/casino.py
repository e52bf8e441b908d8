"""Casino simulators: provably-fair crash, slide, double, slot and wall street rounds, demo balances.

They exist so a fresh hub has live, *verifiable* data at once (demo, tests, benchmarks) and so
every dialect has real-looking rounds to encode. Each game plays a hash chain backwards exactly as
an operator would (see :mod:`wagerwire.analytics.fairness`): round ``index`` (1, 2, 3…) of a game
uses chain ``(index − 1) // chain_length`` at position ``(index − 1) % chain_length + 1``, so a
round is a pure function of ``(seed, slug, index)`` and a restarted simulator given
``start_index`` continues the same sequence. When a chain runs out the next one starts and its
commitment is announced on ``fairness:{slug}`` before its first round.

Each finished round is one message on ``game:{slug}`` whose data is a :func:`round dict
<CasinoSimulator.round_at>` carrying what every dialect needs (TrackerSino, Data Stream, Stake,
native), including the revealed seeds that :func:`~wagerwire.analytics.fairness.verify_round`
checks.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any, Final, Literal

import orjson

from wagerwire.analytics.fairness import (
    CHAIN_STYLES,
    EDGE_STYLES,
    MODULUS_STYLES,
    ROOBET_MODULUS,
    SALT_STYLES,
    STAKE_EDGE,
    STYLE_BUSTABIT,
    STYLE_BUSTABIT_SLIDE,
    STYLE_DOUBLE,
    STYLE_GAME_TYPES,
    STYLE_ROOBET,
    STYLE_ROOBET_SLIDE,
    STYLE_SHUFFLE_CRASH,
    STYLE_SHUFFLE_SLIDE,
    STYLE_SLOT,
    STYLE_STAKE,
    STYLE_STAKE_SLIDE,
    STYLE_WALLSTREET,
    compute_result,
    hash_chain,
    sha256_hex,
)
from wagerwire.errors import WagerwireError
from wagerwire.sources.base import Publisher, Source
from wagerwire.types import now_ms

__all__ = [
    "DEFAULT_CHAIN_LENGTH",
    "DEMO_USERS",
    "SOURCE_NAME",
    "TRACKERSINO_GAMES",
    "BalanceSimulator",
    "CasinoSimulator",
    "Clock",
    "GameSpec",
    "GameType",
    "Sleep",
    "demo_games",
    "demo_sources",
    "iso_ms",
]

logger = logging.getLogger("wagerwire.sources.casino")

GameType = Literal["crash", "slide", "double", "slot", "wallstreet"]
Clock = Callable[[], int]
"""Returns the current time in epoch milliseconds (injected so tests control time)."""
Sleep = Callable[[float], Awaitable[None]]
"""Waits the given seconds (injected so tests need not sleep)."""

DEFAULT_CHAIN_LENGTH: Final = 10_000
SOURCE_NAME: Final = "wagerwire-simulator"
DEMO_USERS: Final = ("demo-1", "demo-2")


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def iso_ms(epoch_ms: int) -> str:
    """``2026-01-17T00:45:42.123Z``: ISO-8601 UTC with milliseconds, computed without floats."""
    moment = _EPOCH + timedelta(milliseconds=epoch_ms)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class GameSpec:
    """One game of the catalog.

    ``style`` is the fairness formula (a ``STYLE_*`` of :mod:`wagerwire.analytics.fairness`) and
    must produce ``type``; ``cadence`` is seconds between rounds; ``game_id`` and ``category``
    are what Data Stream calls ``game_id`` (a number) and ``game_type`` (``multiplier`` for
    crash, slide and slot, ``color`` for double, ``trending`` for wall street). ``scheme`` says
    where the formula comes from when the site publishes none of its own (announced with each
    chain's seeding event); empty when the style is the site's published scheme.
    """

    slug: str
    name: str
    type: GameType
    provider: str
    style: str
    cadence: float
    game_id: int
    category: str
    scheme: str = ""

    def __post_init__(self) -> None:
        if STYLE_GAME_TYPES.get(self.style) != self.type:
            raise ValueError(f"style {self.style!r} does not make {self.type} rounds")
        if self.cadence <= 0:
            raise ValueError(f"cadence must be positive, got {self.cadence}")

    @property
    def channel(self) -> str:
        return f"game:{self.slug}"

    @property
    def attrs(self) -> dict[str, str]:
        """Attributes every message of this game is published with (filters match on them)."""
        return {"game": self.slug, "game_type": self.type, "provider": self.provider}


_NO_SCHEME: Final = ("{site} publishes no provably-fair scheme that this hub's reference "
                     "checks; the closest one, {style}, is used on a chain of its own")
_SHUFFLE_SCHEME: Final = ("Shuffle's published byte generator (server seed, client seed, nonce); "
                          "the float-to-multiplier mapping is bustabit's 99/(1-X) curve, "
                          "not a published Shuffle mapping")

_DEMO_GAMES: Final = (
    GameSpec("crash", "Crash", "crash", "hypetech", STYLE_BUSTABIT, 10.0, 1, "multiplier"),
    GameSpec("double", "Double", "double", "hypetech", STYLE_DOUBLE, 15.0, 2, "color"),
    GameSpec("slot", "Slot", "slot", "hypetech", STYLE_SLOT, 3.0, 3, "multiplier"),
    GameSpec("wallstreet", "Wall Street", "wallstreet", "hypetech", STYLE_WALLSTREET, 10.0, 4,
             "trending"),
    GameSpec("stake-crash", "Stake Crash", "crash", "stake", STYLE_STAKE, 10.0, 5, "multiplier"),
    GameSpec("roobet-crash", "Roobet Crash", "crash", "roobet", STYLE_ROOBET, 12.0, 6,
             "multiplier"),
    # The rest of the games TrackerSino's page names (its Slide slugs are not given there:
    # "<site>-slide" is inferred). Modest cadences: make serve runs them all on a shared CPU.
    GameSpec("duel-crash", "Duel Crash", "crash", "duel", STYLE_BUSTABIT, 12.0, 7, "multiplier",
             _NO_SCHEME.format(site="Duel", style=STYLE_BUSTABIT)),
    GameSpec("shuffle-crash", "Shuffle Crash", "crash", "shuffle", STYLE_SHUFFLE_CRASH, 12.0, 8,
             "multiplier", _SHUFFLE_SCHEME),
    GameSpec("stake-slide", "Stake Slide", "slide", "stake", STYLE_STAKE_SLIDE, 15.0, 9,
             "multiplier"),
    GameSpec("roobet-slide", "Roobet Slide", "slide", "roobet", STYLE_ROOBET_SLIDE, 15.0, 10,
             "multiplier", _NO_SCHEME.format(site="Roobet Slide", style=STYLE_ROOBET)),
    GameSpec("duel-slide", "Duel Slide", "slide", "duel", STYLE_BUSTABIT_SLIDE, 15.0, 11,
             "multiplier", _NO_SCHEME.format(site="Duel", style=STYLE_BUSTABIT)),
    GameSpec("shuffle-slide", "Shuffle Slide", "slide", "shuffle", STYLE_SHUFFLE_SLIDE, 15.0, 12,
             "multiplier", _SHUFFLE_SCHEME),
)  # fmt: skip

TRACKERSINO_GAMES: Final = ("stake-crash", "roobet-crash", "duel-crash", "shuffle-crash",
                            "stake-slide", "roobet-slide", "duel-slide", "shuffle-slide")
"""Every game TrackerSino's page names (the Slide slugs inferred), all in the demo catalog."""


def demo_games() -> tuple[GameSpec, ...]:
    """The default catalog: one game per type, plus every crash and slide game TrackerSino's
    page names, each with its site's provably-fair scheme where the site publishes one."""
    return _DEMO_GAMES


def _extras(game_type: str, result: Mapping[str, Any]) -> dict[str, Any]:
    """Data Stream's per-type ``extras`` (the dialect JSON-encodes it)."""
    if game_type in ("crash", "slide"):
        return {"point": result["multiplier"]}
    if game_type == "double":
        return {"color": result["color"], "number": result["number"]}
    if game_type == "slot":
        return {"reels": list(result["reels"]), "multiplier": result["multiplier"]}
    return {"trending": result["direction"]}


class CasinoSimulator:
    """Plays one game: a deterministic sequence of provably-fair rounds, published on a cadence.

    ``next_round(now_ms)`` is the sans-I/O step (tests call it directly); :meth:`run` only
    sleeps, steps and publishes. The secret of chain ``c`` is derived from ``(seed, slug, c)``,
    so two simulators with the same seed produce identical rounds.
    """

    def __init__(
        self,
        spec: GameSpec,
        seed: int = 0,
        *,
        cadence_scale: float = 1.0,
        chain_length: int = DEFAULT_CHAIN_LENGTH,
        start_index: int = 0,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        announce_commitments: bool = True,
    ) -> None:
        if chain_length < 1:
            raise ValueError(f"chain_length must be at least 1, got {chain_length}")
        if cadence_scale < 0:
            raise ValueError(f"cadence_scale must not be negative, got {cadence_scale}")
        if start_index < 0:
            raise ValueError(f"start_index must not be negative, got {start_index}")
        self.spec = spec
        self.seed = seed
        self.chain_length = chain_length
        self.interval = spec.cadence * cadence_scale
        self.announce_commitments = announce_commitments
        self._index = start_index
        self._clock: Clock = clock or now_ms
        self._sleep: Sleep = sleep or asyncio.sleep
        self._chains: dict[int, list[str]] = {}

    @property
    def index(self) -> int:
        """Index of the last round produced (0 before the first)."""
        return self._index

    @property
    def channel(self) -> str:
        return self.spec.channel

    @property
    def fairness_channel(self) -> str:
        """Where chain commitments (seeding events) are announced."""
        return f"fairness:{self.spec.slug}"

    # --- chain bookkeeping -------------------------------------------------------------------

    def chain_position(self, index: int) -> tuple[int, int]:
        """``(chain number from 0, position in that chain from 1)`` of round ``index``."""
        if index < 1:
            raise ValueError(f"round indexes start at 1, got {index}")
        chain_no, offset = divmod(index - 1, self.chain_length)
        return chain_no, offset + 1

    def _chain(self, chain_no: int) -> list[str]:
        chain = self._chains.get(chain_no)
        if chain is None:
            secret = sha256_hex(f"wagerwire-simulator:{self.seed}:{self.spec.slug}:{chain_no}")
            chain = hash_chain(secret, self.chain_length)
            if len(self._chains) >= 2:  # the current chain and the one being announced
                del self._chains[min(self._chains)]
            self._chains[chain_no] = chain
        return chain

    def commitment(self, chain_no: int) -> str:
        """The terminating hash of chain ``chain_no``, published before its first round."""
        return sha256_hex(self._chain(chain_no)[-1])

    def salt(self, chain_no: int) -> str:
        """The chain's public salt / client seed, shaped like the Bitcoin block hash it imitates."""
        return "0" * 19 + sha256_hex(f"wagerwire-salt:{self.seed}:{self.spec.slug}:{chain_no}")[:45]

    def _salt_field(self) -> str:
        """bustabit, Stake and double call the public seed ``salt``; the others ``client_seed``."""
        return "salt" if self.spec.style in SALT_STYLES else "client_seed"

    def seeding_event(self, chain_no: int, now_ms: int) -> dict[str, Any]:
        """The public post that commits to a chain (published on :attr:`fairness_channel`)."""
        return {
            "game_slug": self.spec.slug,
            "game_type": self.spec.type,
            "style": self.spec.style,
            "chain": chain_no,
            "chain_length": self.chain_length,
            "first_index": chain_no * self.chain_length + 1,
            "chain_commitment": self.commitment(chain_no),
            self._salt_field(): self.salt(chain_no),
            "announced_at": iso_ms(now_ms),
            "timestamp": now_ms,
            "source": SOURCE_NAME,
        } | ({"scheme": self.spec.scheme} if self.spec.scheme else {})

    # --- rounds --------------------------------------------------------------------------------

    def _fairness(self, index: int) -> dict[str, Any]:
        chain_no, position = self.chain_position(index)
        chain = self._chain(chain_no)
        link = chain[self.chain_length - position]
        if position > 1:  # the link played just before this one
            previous = chain[self.chain_length - position + 1]
        else:
            previous = self.commitment(chain_no)
        fairness: dict[str, Any] = {"style": self.spec.style}
        if self.spec.style in CHAIN_STYLES:
            fairness.update(game_hash=link, previous_hash=previous)
            fairness[self._salt_field()] = self.salt(chain_no)
            if self.spec.style in EDGE_STYLES:
                fairness["house_edge"] = str(STAKE_EDGE)
            elif self.spec.style in MODULUS_STYLES:
                fairness["modulus"] = ROOBET_MODULUS
        else:
            fairness.update(
                server_seed=link,
                server_seed_hash=previous,
                client_seed=self.salt(chain_no),
                nonce=index,
            )
        fairness.update(
            chain=chain_no,
            chain_index=position,
            chain_length=self.chain_length,
            chain_commitment=self.commitment(chain_no),
        )
        return fairness

    def round_at(self, index: int, now_ms: int) -> dict[str, Any]:
        """Round ``index`` as published, finished at ``now_ms``; pure given (seed, slug, index).

        Keys: ``round_id``, ``index``, ``game_id``, ``game_slug``, ``game_type``, ``category``,
        ``game_name``, ``provider``, ``result`` (crash ``multiplier``/``crash_point``; double
        ``number``/``color``; slot ``reels``/``multiplier``; wall street
        ``direction``/``multiplier``), ``finished_at``, ``timestamp`` (ms), ``fairness``,
        ``source``, ``raw`` (the upstream-style envelope) and ``extras`` (Data Stream's, not yet
        JSON-encoded). Every value is JSON-ready (no Decimal).
        """
        spec = self.spec
        fairness = self._fairness(index)
        result = compute_result(fairness)
        finished_at = iso_ms(now_ms)
        extras = _extras(spec.type, result)
        link = fairness.get("game_hash") or fairness["server_seed"]
        upstream_id = str(uuid.UUID(hex=sha256_hex(f"{spec.slug}:{link}")[:32], version=4))
        return {
            "round_id": f"{spec.slug}-{index}",
            "index": index,
            "game_id": spec.game_id,
            "game_slug": spec.slug,
            "game_type": spec.type,
            "category": spec.category,
            "game_name": spec.name,
            "provider": spec.provider,
            "result": result,
            "finished_at": finished_at,
            "timestamp": now_ms,
            "fairness": fairness,
            "source": SOURCE_NAME,
            "raw": self._raw(index, upstream_id, result, extras, fairness, now_ms),
            "extras": extras,
        }

    def _raw(
        self,
        index: int,
        upstream_id: str,
        result: Mapping[str, Any],
        extras: Mapping[str, Any],
        fairness: Mapping[str, Any],
        now_ms: int,
    ) -> dict[str, Any]:
        """What the imitated operator's own feed would have sent for this round.

        Stake and Roobet: the shapes of their feeds (``CrashGame``/``SlideGame``,
        ``crash:finished``/``slide:finished``); Duel and Shuffle publish no feed shape this hub
        knows, so theirs is a plain round object; Hypetech games: Data Stream's Round.
        """
        spec = self.spec
        slide = spec.type == "slide"
        if spec.provider == "stake":
            return {
                "__typename": "SlideGame" if slide else "CrashGame",
                "id": upstream_id,
                ("multiplier" if slide else "crashpoint"): float(result["multiplier"]),
                "hash": {"hash": fairness["game_hash"]},
                "seed": fairness["salt"],
                "endedAt": iso_ms(now_ms),
            }
        if spec.provider == "roobet":
            return {
                "event": "slide:finished" if slide else "crash:finished",
                "data": {
                    "id": upstream_id,
                    ("multiplier" if slide else "crashPoint"): float(result["multiplier"]),
                    "hash": fairness["game_hash"],
                    "clientSeed": fairness["client_seed"],
                    "endedAt": now_ms,
                },
            }
        if spec.provider in ("duel", "shuffle"):
            seed = fairness.get("game_hash") or fairness["server_seed"]
            return {
                "id": upstream_id,
                "game": spec.slug,
                "multiplier": result["multiplier"],
                "hash": seed,
                "nonce": fairness.get("nonce", index),
                "endedAt": iso_ms(now_ms),
            }
        return {  # Data Stream (hypetech) Round: extras as a JSON string, whole seconds
            "round_id": index,
            "game_id": spec.game_id,
            "game_slug": spec.slug,
            "game_type": spec.category,
            "finished_at": iso_ms(now_ms)[:19] + "Z",
            "extras": orjson.dumps(extras).decode(),
            "timestamp": now_ms,
        }

    def next_round(self, now_ms: int) -> dict[str, Any]:
        """Produce the next round (index + 1), finished at ``now_ms``; no I/O."""
        data = self.round_at(self._index + 1, now_ms)
        self._index += 1
        return data

    # --- I/O -----------------------------------------------------------------------------------

    async def run(self, publisher: Publisher) -> None:
        """Announce the chain, then sleep the cadence and publish a round, until cancelled.

        A refused publish is logged and retried with the same round (and idempotency key)
        after the next interval, so a hub outage delays rounds but never skips or reorders them.
        """
        attrs = self.spec.attrs
        announced: int | None = None
        pending: dict[str, Any] | None = None
        while True:
            upcoming = pending["index"] if pending is not None else self._index + 1
            chain_no, _ = self.chain_position(upcoming)
            if self.announce_commitments and chain_no != announced:
                event = self.seeding_event(chain_no, self._clock())
                key = f"{self.spec.slug}:chain:{self.seed}:{chain_no}"
                if await _try_publish(publisher, self.fairness_channel, event, attrs, key):
                    announced = chain_no
            await self._sleep(self.interval)
            if pending is None:
                pending = self.next_round(self._clock())
            if await _try_publish(publisher, self.channel, pending, attrs, pending["round_id"]):
                pending = None


async def _try_publish(
    publisher: Publisher, channel: str, data: Any, attrs: Mapping[str, str], key: str
) -> bool:
    """Publish once; on a hub error log it and report failure so the caller retries."""
    try:
        await publisher.publish(channel, data, attrs=attrs, idempotency_key=key)
    except WagerwireError as exc:
        logger.warning("publish to %s refused (%s); will retry", channel, exc.code)
        return False
    return True


# --- demo balances -----------------------------------------------------------------------------

_START_BALANCES: Final[Mapping[str, Decimal]] = {
    "btc": Decimal("0.05000000"),
    "eth": Decimal("1.20000000"),
    "usdt": Decimal("1000.00"),
}
_QUANTUM: Final[Mapping[str, Decimal]] = {
    "btc": Decimal("0.00000001"),
    "eth": Decimal("0.00000001"),
    "usdt": Decimal("0.01"),
}


class BalanceSimulator:
    """Demo users' wallets changing as they bet, published on ``user:{user_id}:balances``.

    Each step picks the next user (round-robin) and a currency, then a bet of 1–10 % of that
    balance is won (49 %) or lost; a balance below 1 % of its start is topped up ("deposit").
    Data follows Stake's balance payload: ``{"user_id", "currency", "amount", "change",
    "reason", "seq", "timestamp"}`` with ``amount``/``change`` as JSON numbers. Deterministic for
    a given seed.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        users: Sequence[str] = DEMO_USERS,
        cadence: float = 2.0,
        cadence_scale: float = 1.0,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        if not users:
            raise ValueError("BalanceSimulator needs at least one user")
        if cadence <= 0 or cadence_scale < 0:
            raise ValueError("cadence must be positive and cadence_scale not negative")
        self.users = tuple(users)
        self.interval = cadence * cadence_scale
        self._rng = random.Random(f"wagerwire-balances:{seed}")
        self._balances = {user: dict(_START_BALANCES) for user in self.users}
        self._seq = dict.fromkeys(self.users, 0)
        self._step = 0
        self._clock: Clock = clock or now_ms
        self._sleep: Sleep = sleep or asyncio.sleep

    @staticmethod
    def channel_for(user_id: str) -> str:
        return f"user:{user_id}:balances"

    def balances(self, user_id: str) -> dict[str, Decimal]:
        """A copy of one user's current balances."""
        return dict(self._balances[user_id])

    def _update(
        self, user: str, currency: str, change: Decimal, reason: str, now_ms: int
    ) -> tuple[str, dict[str, Any]]:
        self._seq[user] += 1
        return self.channel_for(user), {
            "user_id": user,
            "currency": currency,
            "amount": float(self._balances[user][currency]),
            "change": float(change),
            "reason": reason,
            "seq": self._seq[user],
            "timestamp": now_ms,
        }

    def snapshot(self, now_ms: int) -> list[tuple[str, dict[str, Any]]]:
        """One ``(channel, data)`` per user and currency with the current balance."""
        return [
            self._update(user, currency, Decimal(0), "snapshot", now_ms)
            for user in self.users
            for currency in sorted(self._balances[user])
        ]

    def next_update(self, now_ms: int) -> tuple[str, dict[str, Any]]:
        """Play one step and return ``(channel, data)``; no I/O."""
        user = self.users[self._step % len(self.users)]
        self._step += 1
        currency = self._rng.choice(sorted(_START_BALANCES))
        wallet = self._balances[user]
        quantum = _QUANTUM[currency]
        if wallet[currency] < _START_BALANCES[currency] / 100:
            change, reason = _START_BALANCES[currency], "deposit"
        else:
            percent = Decimal(self._rng.randint(1, 10)) / 100
            bet = (wallet[currency] * percent).quantize(quantum, rounding=ROUND_DOWN)
            won = self._rng.random() < 0.49
            change, reason = (bet, "bet_won") if won else (-bet, "bet_lost")
        wallet[currency] = (wallet[currency] + change).quantize(quantum)
        return self._update(user, currency, change, reason, now_ms)

    async def run(self, publisher: Publisher) -> None:
        """Publish every wallet once, then one update per interval, until cancelled."""
        pending = self.snapshot(self._clock())
        while True:
            while pending:
                channel, data = pending[0]
                attrs = {"user": data["user_id"], "currency": data["currency"]}
                key = f"{data['user_id']}:balance:{data['seq']}"
                if not await _try_publish(publisher, channel, data, attrs, key):
                    break
                pending.pop(0)
            await self._sleep(self.interval)
            if not pending:
                pending.append(self.next_update(self._clock()))


def demo_sources(
    seed: int = 0,
    *,
    cadence_scale: float = 1.0,
    chain_length: int = DEFAULT_CHAIN_LENGTH,
    clock: Clock | None = None,
) -> list[Source]:
    """Every demo simulator: one :class:`CasinoSimulator` per demo game plus the balances."""
    sources: list[Source] = [
        CasinoSimulator(
            spec, seed, cadence_scale=cadence_scale, chain_length=chain_length, clock=clock
        )
        for spec in demo_games()
    ]
    sources.append(BalanceSimulator(seed, cadence_scale=cadence_scale, clock=clock))
    return sources
