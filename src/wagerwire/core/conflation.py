"""Slow consumers the betting way: channel policies, conflation keys, the conflating queue,
the latest-per-key image and the shared rate/delay lane. Pure: no I/O, no clock (``now`` is
passed in, in milliseconds).

A channel's **policy** (first matching pattern wins) is ``disconnect`` (a subscriber past its
outbox mark is closed, 4000) or ``conflate``: each message has a **key** built from message
attributes or, failing that, top-level data fields (odds: event + bookmaker + market +
selection). When a subscriber falls behind, what it has queued of such a channel is dropped
and, once it reads again, it is sent the channel's :class:`LatestTable` since its position
instead: the newest message of each key updated meanwhile and every **lifecycle** message
(attribute ``lifecycle`` = ``true``, or a field/value rule of the policy; messages without a
complete key count as such), in offset order, after a :class:`Superseded` notice of the
offsets it will not get. The table is shared by every subscriber of the channel, so falling
behind costs nothing per message and subscriber.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from wagerwire.core.channels import pattern_matcher, validate_pattern
from wagerwire.core.messages import Message
from wagerwire.errors import BadParameter

__all__ = [
    "DEFAULT_POLICIES",
    "MAX_CONFLATE_MS",
    "MAX_IMAGE_KEYS",
    "MAX_KEPT",
    "ChannelPolicy",
    "Lane",
    "LatestTable",
    "PolicyTable",
    "Superseded",
    "offset_ranges",
    "skipped_ranges",
]

MAX_CONFLATE_MS = 120_000
MAX_IMAGE_KEYS = 100_000  # latest-per-key entries kept per conflating channel
MAX_KEPT = 10_000  # recent lifecycle (and unkeyed) messages kept per conflating channel
_POLICY_CACHE = 16384

Classification = tuple[str | None, bool]
"""``(key, lifecycle)``: the conflation key (None: never conflated) and the lifecycle flag."""
KEEP: Classification = (None, True)


@dataclass(frozen=True, slots=True)
class ChannelPolicy:
    """What happens to a channel's subscriber that falls behind."""

    pattern: str
    mode: Literal["disconnect", "conflate"] = "disconnect"
    key: tuple[str, ...] = ()
    lifecycle: tuple[tuple[str, frozenset[str]], ...] = ()

    @property
    def conflates(self) -> bool:
        return self.mode == "conflate" and bool(self.key)

    def classify(self, message: Message) -> Classification:
        """The message's key and whether it is a lifecycle message (data decoded only when
        an attribute is missing)."""
        if not self.conflates:
            return KEEP
        attrs = message.attrs or {}
        data: Mapping[str, Any] | None = None

        def field(name: str) -> str | None:
            nonlocal data
            value = attrs.get(name)
            if value is not None:
                return value
            if data is None:
                try:
                    loaded = orjson.loads(message.data)
                except orjson.JSONDecodeError:
                    loaded = None
                data = loaded if isinstance(loaded, dict) else {}
            raw = data.get(name)
            if raw is None or isinstance(raw, dict | list):
                return None
            return raw if isinstance(raw, str) else str(raw).lower()

        if attrs.get("lifecycle") in ("true", "1"):
            return KEEP
        for name, values in self.lifecycle:
            if field(name) in values:
                return KEEP
        parts = []
        for name in self.key:
            value = field(name)
            if value is None:
                return KEEP
            parts.append(value)
        return "\x1f".join(parts), False


DEFAULT_POLICIES = (
    ChannelPolicy(
        "odds:*", "conflate", ("event", "bookmaker", "market", "selection_id"),
        (("type", frozenset({"suspended", "settled", "closed", "resulted"})),),
    ),
)
"""Odds conflate out of the box (the sports simulator's attributes and fields); every other
channel keeps today's disconnect."""


class PolicyTable:
    """The configured policies; the first whose pattern matches a channel applies."""

    __slots__ = ("policies", "_cache", "_any")

    def __init__(self, policies: Sequence[ChannelPolicy] = DEFAULT_POLICIES) -> None:
        self.policies = tuple(policies)
        self._cache: dict[str, ChannelPolicy | None] = {}
        self._any = any(p.conflates for p in self.policies)

    def policy_for(self, channel: str) -> ChannelPolicy | None:
        cache = self._cache
        if channel in cache:
            return cache[channel]
        found = next((p for p in self.policies if pattern_matcher(p.pattern).fullmatch(channel)),
                     None)
        if len(cache) >= _POLICY_CACHE:
            cache.clear()
        cache[channel] = found
        return found

    def conflates(self, channel: str) -> bool:
        policy = self.policy_for(channel)
        return policy is not None and policy.conflates

    def may_conflate(self, name: str) -> bool:
        """Whether a channel name or ``*`` pattern may cover a conflating channel. Two
        patterns can match a common name only if one's literal prefix (before its first
        ``*``) starts the other's, so ``game:*`` never meets ``odds:*``; a pattern that may
        meet a conflating policy is taken to (the answer only saves bookkeeping)."""
        if "*" not in name:
            return self.conflates(name)
        if not self._any:
            return False
        prefix = name.split("*", 1)[0]
        for policy in self.policies:
            other = policy.pattern.split("*", 1)[0]
            if policy.conflates and (prefix.startswith(other) or other.startswith(prefix)):
                return True
        return False

    def classify(self, message: Message) -> Classification:
        """:meth:`ChannelPolicy.classify` of the message's channel, cached on the message."""
        known = message.meta
        if known is None:
            policy = self.policy_for(message.channel)
            known = message.meta = KEEP if policy is None else policy.classify(message)
        return known

    @classmethod
    def parse(cls, raw: object) -> PolicyTable:
        """Policies from config: a list of ``{pattern, policy, key, lifecycle}`` tables, tried
        before the defaults (``odds:*`` conflates).

        Raises:
            BadParameter: a policy is malformed.
        """
        if raw is None:
            return cls()
        if not isinstance(raw, list):
            raise BadParameter("channel_policies must be a list of {pattern, policy, key} tables")
        out: list[ChannelPolicy] = []
        for item in raw:
            if not isinstance(item, Mapping) or not isinstance(item.get("pattern"), str):
                raise BadParameter("each channel policy needs a pattern")
            pattern = validate_pattern(item["pattern"])
            mode = item.get("policy", "disconnect")
            if mode not in ("disconnect", "conflate"):
                raise BadParameter(f"channel policy {pattern!r}: policy must be 'disconnect' "
                                   "or 'conflate'")
            key = item.get("key", [])
            if isinstance(key, str):
                key = [k for k in key.split("+") if k]
            if not isinstance(key, list) or not all(isinstance(k, str) and k for k in key):
                raise BadParameter(f"channel policy {pattern!r}: key must be a list of "
                                   "attribute or field names")
            if mode == "conflate" and not key:
                raise BadParameter(f"channel policy {pattern!r}: conflate needs a key")
            rules = item.get("lifecycle", {})
            if not isinstance(rules, Mapping):
                raise BadParameter(f"channel policy {pattern!r}: lifecycle must be a table of "
                                   "field -> [values]")
            lifecycle = tuple(
                (str(name), frozenset(_strings(v)))
                for name, v in rules.items()
            )
            out.append(ChannelPolicy(pattern, mode, tuple(key), lifecycle))
        return cls([*out, *DEFAULT_POLICIES])


def _strings(value: object) -> list[str]:
    values = value if isinstance(value, list) else [value]
    return [v if isinstance(v, str) else str(v).lower() for v in values]


# -- the latest-per-key table: images and catch-ups -------------------------------------------


@dataclass(slots=True)
class Superseded:
    """A notice: these offsets of ``channel`` (inclusive ``[first, last]`` runs) were replaced
    by newer messages of the same key; a client skips them."""

    channel: str
    epoch: str
    ranges: list[list[int]]


def offset_ranges(offsets: Iterable[int]) -> list[list[int]]:
    """Sorted offsets as inclusive ``[first, last]`` runs: ``[3, 4, 5, 9]`` → ``[[3, 5], [9, 9]]``."""
    runs: list[list[int]] = []
    for offset in sorted(offsets):
        if runs and offset <= runs[-1][1] + 1:
            runs[-1][1] = max(runs[-1][1], offset)
        else:
            runs.append([offset, offset])
    return runs


def skipped_ranges(after: int, upto: int, sent: Sequence[int]) -> list[list[int]]:
    """The runs of offsets in ``(after, upto]`` that are not in ``sent`` (ascending)."""
    runs: list[list[int]] = []
    nxt = after + 1
    for offset in sent:
        if offset > nxt:
            runs.append([nxt, offset - 1])
        nxt = max(nxt, offset + 1)
    if nxt <= upto:
        runs.append([nxt, upto])
    return runs


class LatestTable:
    """One conflating channel's newest message per key, plus its recent lifecycle (and
    unkeyed) messages, in offset order: what a subscriber that fell behind is sent instead of
    everything it missed, and what a snapshot image is made of.

    It is exhaustive for offsets after ``start`` (where it began to see the channel live),
    except that both parts are bounded: past ``max_keys`` the least recently updated key goes,
    past ``max_kept`` the oldest lifecycle message, and ``lost`` remembers the newest offset so
    forgotten: a catch-up from before it is refused (the subscriber is cut and resumes).
    ``filled`` says the table was also filled from history (an image needs every key).
    """

    __slots__ = ("epoch", "start", "lost", "filled", "max_keys", "max_kept", "_latest", "_kept")

    def __init__(self, epoch: str, start: int, max_keys: int = MAX_IMAGE_KEYS,
                 max_kept: int = MAX_KEPT) -> None:
        self.epoch = epoch
        self.start = start
        self.lost = 0
        self.filled = False
        self.max_keys = max_keys
        self.max_kept = max_kept
        self._latest: OrderedDict[str, Message] = OrderedDict()
        self._kept: deque[Message] = deque()

    def __len__(self) -> int:
        return len(self._latest)

    def add(self, message: Message, classification: Classification) -> None:
        """Take a live message (in offset order) as classified by its channel's policy."""
        key, lifecycle = classification
        if key is not None and not lifecycle:
            self.put(key, message)
            return
        kept = self._kept
        kept.append(message)
        if len(kept) > self.max_kept:
            self.lost = max(self.lost, kept.popleft().offset)

    def put(self, key: str, message: Message) -> None:
        """Remember ``message`` for ``key`` unless a newer one is already there."""
        latest = self._latest
        known = latest.get(key)
        if known is not None:
            if known.epoch == message.epoch and known.offset >= message.offset:
                return
            latest.move_to_end(key)
        latest[key] = message
        while len(latest) > self.max_keys:
            _, gone = latest.popitem(last=False)
            self.lost = max(self.lost, gone.offset)

    def snapshot(self) -> list[Message]:
        """The latest message of every key, in offset order (a snapshot image)."""
        return sorted(self._latest.values(), key=_offset)

    def since(self, after: int) -> list[Message] | None:
        """What stands for everything after ``after``: the newest message of each key updated
        since, and every lifecycle message since, in offset order; None when the table cannot
        tell (it started later, or has forgotten part of it)."""
        if after < self.start or after < self.lost:
            return None
        items = [m for m in self._latest.values() if m.offset > after]
        for message in reversed(self._kept):
            if message.offset <= after:
                break
            items.append(message)
        items.sort(key=_offset)
        return items


def _offset(message: Message) -> int:
    return message.offset


# -- the shared rate / delay lane -----------------------------------------------------------


class Lane:
    """What every subscriber of one channel at one ``(interval, delay)`` receives, computed
    once for all of them.

    ``offer`` takes the channel's messages as they are delivered; ``due(now)`` returns what
    is to be delivered at ``now`` (ms): messages held for ``delay_ms`` after their ``ts``,
    then, with an ``interval_ms``, at most one message per key per interval (the newest),
    lifecycle and unkeyed messages all kept, in offset order. ``next_at`` says when ``due``
    has something next (None: nothing pending). ``released`` is the last offset let through.
    """

    __slots__ = ("channel", "interval_ms", "delay_ms", "classify", "released", "_delayed",
                 "_keyed", "_kept", "_next_emit", "_ready")

    def __init__(self, channel: str, interval_ms: int, delay_ms: int, released: int,
                 classify: Callable[[Message], Classification]) -> None:
        self.channel = channel
        self.interval_ms = interval_ms
        self.delay_ms = delay_ms
        self.classify = classify
        self.released = released
        self._delayed: list[Message] = []  # in offset order; popped from the front in bulk
        self._keyed: dict[str, Message] = {}
        self._kept: list[Message] = []
        self._ready: list[Message] = []
        self._next_emit = 0

    def offer(self, messages: Sequence[Message]) -> None:
        if self.delay_ms:
            self._delayed.extend(messages)
        else:
            self._feed(messages)

    def _feed(self, messages: Iterable[Message]) -> None:
        if not self.interval_ms:
            self._ready.extend(messages)
            return
        keyed, kept, classify = self._keyed, self._kept, self.classify
        for message in messages:
            key, lifecycle = classify(message)
            if key is None or lifecycle:
                kept.append(message)
            else:
                keyed[key] = message

    def due(self, now: int) -> list[Message]:
        delayed = self._delayed
        if delayed:
            cut = self.delay_ms
            n = 0
            while n < len(delayed) and delayed[n].ts + cut <= now:
                n += 1
            if n:
                self._feed(delayed[:n])
                del delayed[:n]
        if self.interval_ms and (self._keyed or self._kept) and now >= self._next_emit:
            out = [*self._keyed.values(), *self._kept]
            out.sort(key=lambda m: m.offset)
            self._keyed.clear()
            self._kept.clear()
            self._next_emit = now + self.interval_ms
            self._ready.extend(out)
        ready = self._ready
        if ready:
            self._ready = []
            self.released = max(self.released, ready[-1].offset)
        return ready

    def next_at(self) -> int | None:
        times = []
        if self._delayed:
            times.append(self._delayed[0].ts + self.delay_ms)
        if self._keyed or self._kept:
            times.append(self._next_emit)
        return min(times) if times else None

    @property
    def pending(self) -> int:
        return len(self._delayed) + len(self._keyed) + len(self._kept)
