"""In-order delivery of one channel: the hold / fill / skip decision, with no I/O.

A scale-out broker receives a channel's messages from several places (its own commits, the
fan-out of other nodes, pages fetched to fill holes) and must hand them to the hub once each,
in offset order. :class:`ChannelOrder` makes that decision and nothing else: offsets go in,
:data:`Action` values come out, and the caller (``brokers/redis_delivery.py``) performs them.
It imports no asyncio, no Redis and no clock.

Rules
    * A message at the next expected offset is delivered (:class:`Deliver`), then whatever
      was held behind it and is now in order.
    * A message at or below the last delivered offset is a copy (:class:`Duplicate`).
    * A message ahead of the next expected offset is held, and a fill of the hole starts
      (:class:`StartFill`): the caller asks :meth:`ChannelOrder.fetch_range` what to fetch,
      feeds the page to :meth:`ChannelOrder.fetched`, and repeats until ``fetch_range`` says
      ``None``; then it calls :meth:`ChannelOrder.fill_ended`. Only one fill runs at a time,
      and while it runs every arriving message is held.
    * An empty page means history no longer has the hole: it is skipped (:class:`Skip`) and
      the subscribers must resume.
    * A message of another epoch restarts the channel: what was held is dropped, and the new
      epoch is expected from 1 (or, for a channel seen for the first time, from that message,
      unless :meth:`ChannelOrder.expect_new` said the channel had no message yet).

Each method decides at once and returns the actions (an iterable), which the caller consumes in
full, performing each action as it comes. Deliveries that follow from the decision (what was
held behind a message, the messages of a fetched page) are taken one by one as the iterator
advances, so :attr:`ChannelOrder.position` read while a :class:`Deliver` is performed is
that delivery's position, and the state is consistent whenever the caller stops.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Generic, TypeVar

__all__ = [
    "Action",
    "ChannelOrder",
    "Deliver",
    "Duplicate",
    "FetchRange",
    "Skip",
    "StartFill",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class FetchRange:
    """Fetch up to ``limit`` messages of ``epoch`` after offset ``after``."""

    epoch: str | None
    after: int
    limit: int


# Deliver and Duplicate are made once per message on a hot path: slotted but not frozen (a
# frozen dataclass's __init__ costs about three times as much); treat them as immutable.
@dataclass(slots=True)
class Deliver(Generic[T]):
    """Hand ``item`` (at ``offset``) to the handler now."""

    offset: int
    item: T


@dataclass(slots=True)
class Duplicate(Generic[T]):
    """``item`` was delivered already (through another copy): do not deliver it again."""

    item: T


@dataclass(frozen=True, slots=True)
class StartFill:
    """Start filling the hole: loop on ``fetch_range`` / ``fetched``, then ``fill_ended``."""


@dataclass(frozen=True, slots=True)
class Skip:
    """Offsets ``first`` to ``last`` are lost for good: subscribers must resume."""

    first: int
    last: int


Action = Deliver[T] | Duplicate[T] | StartFill | Skip


class ChannelOrder(Generic[T]):
    """The delivery state of one channel; ``T`` is whatever the caller delivers.

    Args:
        page_size: most offsets asked for by one :meth:`fetch_range`.
    """

    __slots__ = ("delivered", "epoch", "fill_to", "filling", "new", "page_size", "pending")

    def __init__(self, page_size: int = 500) -> None:
        self.page_size = page_size
        self.epoch: str | None = None
        self.delivered = 0  # the last delivered offset of ``epoch``
        self.pending: dict[int, T] = {}  # held: offset -> item
        self.filling = False
        self.fill_to = 0
        self.new = False  # known to have no message yet: its first epoch starts at 1

    @property
    def position(self) -> tuple[str, int] | None:
        """(epoch, last delivered offset), ``None`` before the first delivery."""
        if self.epoch is None or self.delivered <= 0:
            return None
        return self.epoch, self.delivered

    def seed(self, epoch: str, offset: int) -> None:
        """Start at a known position (the store's): ``offset`` counts as delivered."""
        self.epoch = epoch
        self.delivered = offset

    def expect_new(self) -> None:
        """The channel has no message anywhere yet (neither Redis nor the store knows it):
        its first epoch must be delivered from offset 1, so a first message seen at a later
        offset is held while 1… are filled, instead of starting there."""
        if self.epoch is None:
            self.new = True

    def offer(self, epoch: str, offset: int, item: T) -> Iterable[Action[T]]:
        """A message arrived: deliver it (and what it unblocks), hold it, or drop it."""
        if self.epoch != epoch:
            known = self.epoch is not None or self.new
            self.new = False
            self.epoch = epoch
            self.pending.clear()
            # An unknown channel starts here; a new epoch starts at 1 (fill what is missing).
            self.delivered = 0 if known else offset - 1
        if offset <= self.delivered:
            return (Duplicate(item),)
        if offset == self.delivered + 1 and not self.filling:
            self.delivered = offset
            if self.pending:
                return chain((Deliver(offset, item),), self._drain())
            return (Deliver(offset, item),)
        self.pending[offset] = item
        return self._start_fill(offset - 1)

    def sync(self, epoch: str, top: int) -> Iterable[Action[T]]:
        """The channel's top in Redis is (``epoch``, ``top``): fill up to it."""
        if self.epoch is None and not self.new:
            self.epoch = epoch
            self.delivered = top
            return ()
        if self.epoch is None:  # new: everything up to the top is to be delivered
            self.new = False
            self.epoch = epoch
            self.delivered = 0
            return self._start_fill(top) if top > 0 else ()
        if self.epoch != epoch:
            self.epoch = epoch
            self.delivered = 0
            self.pending.clear()
        return self._start_fill(top) if top > self.delivered else ()

    def fetch_range(self) -> FetchRange | None:
        """What the running fill should fetch next; ``None`` when the hole is filled."""
        if self.delivered >= self.fill_to:
            return None
        return FetchRange(self.epoch, self.delivered,
                          min(self.fill_to - self.delivered, self.page_size))

    def fetched(self, asked: FetchRange, page: Sequence[tuple[int, T]]) -> Iterable[Action[T]]:
        """The contiguous ``page`` of (offset, item) fetched for ``asked``."""
        if asked.epoch != self.epoch:
            return ()  # the channel restarted meanwhile: ask again
        if not page:
            first = self.delivered + 1
            self.delivered = self.fill_to
            return (Skip(first, self.fill_to),)
        return self._deliver_page(page)

    def fill_ended(self) -> Iterable[Action[T]]:
        """The fill stopped (done, or the caller closed): deliver what is now in order."""
        self.filling = False
        return self._drain()

    def _deliver_page(self, page: Sequence[tuple[int, T]]) -> Iterator[Action[T]]:
        for offset, item in page:
            if offset == self.delivered + 1:
                self.delivered = offset
                yield Deliver(offset, self.pending.pop(offset, item))  # the held copy first

    def _drain(self) -> Iterator[Action[T]]:
        pending = self.pending
        while pending:
            offset = self.delivered + 1
            if offset not in pending:
                for stale in [o for o in pending if o <= self.delivered]:
                    yield Duplicate(pending.pop(stale))
                if pending:
                    yield from self._start_fill(min(pending) - 1)
                return
            item = pending.pop(offset)
            self.delivered = offset
            yield Deliver(offset, item)

    def _start_fill(self, upto: int) -> tuple[StartFill, ...]:
        self.fill_to = max(self.fill_to, upto)
        if not self.filling and self.fill_to > self.delivered:
            self.filling = True
            return (StartFill(),)
        return ()
