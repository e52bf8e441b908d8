"""Rounds of one game by time or by index: from the in-memory snapshot, else from the store.

:class:`~wagerwire.domain.state.DomainState` keeps the latest rounds of every game, which
answers almost every question ("the last 100 rounds", "rounds since this morning"). A window
that reaches back before the oldest kept round is read from the store instead, without
scanning: the channel's rounds are in offset order with ascending ``index`` and ``timestamp``,
so a binary search over offsets finds the window's edge in ``log2(n)`` one-message reads and
then only the window itself is read.

Bounds follow :meth:`DomainState.rounds`: ``since``/``since_index`` are exclusive,
``until``/``until_index`` inclusive; time is the round's own ``timestamp`` (ms).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard

import orjson

from wagerwire.core.messages import Message
from wagerwire.core.store import Store
from wagerwire.domain.state import DomainState

__all__ = ["Round", "RoundFilter", "RoundHistory", "RoundPage", "StoreRounds", "decode_round"]

Round = Mapping[str, Any]

PROBE = 8
"""Messages read per binary-search probe (a few, in case non-round data sits in between)."""
MAX_READS = 64
"""Most store reads for one window, so junk on a channel cannot make a request scan it all."""


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def decode_round(message: Message) -> Round | None:
    """The round a stored message carries, or ``None`` (same rule as DomainState: an object
    with a ``round_id``)."""
    try:
        data = orjson.loads(message.data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    round_id = data.get("round_id")
    if isinstance(round_id, str) and round_id or _is_int(round_id):
        return data
    return None


@dataclass(frozen=True, slots=True)
class RoundFilter:
    """A window of rounds by time (ms) and/or index; every given bound must hold."""

    since: int | None = None
    until: int | None = None
    since_index: int | None = None
    until_index: int | None = None

    @property
    def bounded_below(self) -> bool:
        return self.since is not None or self.since_index is not None

    @property
    def bounded_above(self) -> bool:
        return self.until is not None or self.until_index is not None

    def after_lower(self, r: Round) -> bool:
        """Whether ``r`` is past the lower bounds (a round lacking the field is not)."""
        if self.since is not None:
            ts = r.get("timestamp")
            if not (_is_int(ts) and ts > self.since):
                return False
        if self.since_index is not None:
            index = r.get("index")
            if not (_is_int(index) and index > self.since_index):
                return False
        return True

    def past_upper(self, r: Round) -> bool:
        """Whether ``r`` is beyond the upper bounds (a round lacking the field is)."""
        if self.until is not None:
            ts = r.get("timestamp")
            if not (_is_int(ts) and ts <= self.until):
                return True
        if self.until_index is not None:
            index = r.get("index")
            if not (_is_int(index) and index <= self.until_index):
                return True
        return False

    def matches(self, r: Round) -> bool:
        return self.after_lower(r) and not self.past_upper(r)


@dataclass(frozen=True, slots=True)
class RoundPage:
    """Rounds oldest first; ``more``: further matching rounds follow (forward) or precede
    (latest) the page; ``source`` is ``memory`` or ``store``."""

    rounds: list[Round]
    more: bool
    source: Literal["memory", "store"]


class StoreRounds:
    """Windows of one ``game:{slug}`` channel read straight from the store."""

    def __init__(self, store: Store, channel: str) -> None:
        self.store = store
        self.channel = channel

    async def _probe(self, offset: int) -> Round | None:
        """The first round at an offset ``>= offset`` (within a few messages)."""
        for message in await self.store.read(self.channel, offset - 1, PROBE):
            found = decode_round(message)
            if found is not None:
                return found
        return None

    async def _first(self, lo: int, hi: int, pred: Callable[[Round], bool]) -> int:
        """Smallest offset in ``[lo, hi]`` from which rounds satisfy ``pred`` (``hi + 1`` if
        none); ``pred`` must be monotone (false, then true) along the channel."""
        while lo <= hi:
            mid = (lo + hi) // 2
            found = await self._probe(mid)
            if found is None or pred(found):
                hi = mid - 1
            else:
                lo = mid + 1
        return lo

    async def _range(self) -> tuple[int, int] | None:
        info = await self.store.channel_info(self.channel)
        if info is None or info.first_offset is None or info.count == 0:
            return None
        return info.first_offset, info.last_offset

    async def forward(self, window: RoundFilter, limit: int) -> tuple[list[Round], bool]:
        """The first ``limit`` matching rounds (oldest first) and whether more follow."""
        span = await self._range()
        if span is None or limit < 1:
            return [], False
        lo, hi = span
        after = lo - 1
        if window.bounded_below:
            after = await self._first(lo, hi, window.after_lower) - 1
        found: list[Round] = []
        for _ in range(MAX_READS):
            if len(found) > limit or after >= hi:
                break
            batch = await self.store.read(self.channel, after, limit + 1 - len(found))
            if not batch:
                break
            after = batch[-1].offset
            for message in batch:
                r = decode_round(message)
                if r is None:
                    continue
                if window.past_upper(r):
                    return found[:limit], len(found) > limit
                if window.after_lower(r):
                    found.append(r)
        return found[:limit], len(found) > limit

    async def latest(self, window: RoundFilter, limit: int) -> tuple[list[Round], bool]:
        """The last ``limit`` matching rounds (oldest first) and whether more precede them."""
        span = await self._range()
        if span is None or limit < 1:
            return [], False
        lo, hi = span
        upto = hi
        if window.bounded_above:
            upto = await self._first(lo, hi, window.past_upper) - 1
        found: list[Round] = []  # newest first while collecting
        for _ in range(MAX_READS):
            if len(found) > limit or upto < lo:
                break
            count = min(limit + 1 - len(found), upto - lo + 1)
            batch = [
                m for m in await self.store.read(self.channel, upto - count, count)
                if m.offset <= upto
            ]  # fmt: skip
            upto -= count
            for message in reversed(batch):
                r = decode_round(message)
                if r is None or window.past_upper(r):
                    continue
                if not window.after_lower(r):
                    upto = lo - 1
                    break
                found.append(r)
        found.reverse()
        return found[max(0, len(found) - limit) :], len(found) > limit


class RoundHistory:
    """Answers round windows from the snapshot when it covers them, else from the store."""

    def __init__(self, state: DomainState, store: Store | None) -> None:
        self.state = state
        self.store = store

    def _covered(self, slug: str, kept: Sequence[Round], window: RoundFilter) -> bool:
        """Whether the kept rounds hold every matching round from the window's lower edge on."""
        if self.state.is_complete(slug):
            return True
        return window.bounded_below and bool(kept) and not window.after_lower(kept[0])

    async def page(
        self, slug: str, window: RoundFilter, limit: int, *, forward: bool
    ) -> RoundPage:
        """With ``forward`` the first ``limit`` rounds of the window, else its last ``limit``."""
        kept = self.state.kept_rounds(slug)
        matched = [r for r in kept if window.matches(r)]
        covered = self._covered(slug, kept, window)
        if forward and covered:
            return RoundPage(matched[:limit], len(matched) > limit, "memory")
        if not forward and (covered or len(matched) > limit):
            return RoundPage(matched[max(0, len(matched) - limit) :], len(matched) > limit,
                             "memory")  # fmt: skip
        if self.store is None:
            picked = matched[:limit] if forward else matched[max(0, len(matched) - limit) :]
            return RoundPage(picked, len(matched) > limit, "memory")
        source = StoreRounds(self.store, f"game:{slug}")
        read: Callable[[RoundFilter, int], Awaitable[tuple[list[Round], bool]]] = (
            source.forward if forward else source.latest
        )
        rounds, more = await read(window, limit)
        return RoundPage(rounds, more, "store")

    async def by_index(self, slug: str, index: int) -> Round | None:
        """Round ``index`` of ``slug``: the snapshot first, then the store."""
        kept = self.state.round(f"{slug}-{index}", slug)
        if kept is not None and kept.get("index") == index:
            return kept
        for r in self.state.kept_rounds(slug)[::-1]:
            value = r.get("index")
            if _is_int(value) and value == index:
                return r
        if self.state.is_complete(slug) or self.store is None:
            return None
        rounds, _ = await StoreRounds(self.store, f"game:{slug}").forward(
            RoundFilter(since_index=index - 1, until_index=index), 1
        )
        return rounds[0] if rounds else None
