"""Channel naming rules, patterns and attribute filters.

A channel name is 1–200 characters of ``[a-z0-9:_.-]``, starting with a letter or digit, e.g.
``game:crash``, ``odds:football:epl``, ``user:42:balances``. A *pattern* may also contain
``*``, which matches any run of characters (``:`` included): ``odds:football:*``, ``game:*``.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from wagerwire.errors import BadParameter, InvalidChannel

__all__ = [
    "MAX_CHANNEL_LENGTH",
    "MAX_FILTER_BYTES",
    "MAX_FILTER_VALUES",
    "Filter",
    "channel_attributes",
    "is_pattern",
    "is_private",
    "pattern_matcher",
    "validate_channel",
    "validate_pattern",
]

MAX_CHANNEL_LENGTH = 200
# A filter is at most this many values over all its terms (each key counts as one), and its
# keys and values at most this many characters in all: one subscription cannot pin more.
MAX_FILTER_VALUES = 256
MAX_FILTER_BYTES = 8192
_NAME = re.compile(r"[a-z0-9][a-z0-9:_.\-]{0,199}")
_PATTERN = re.compile(r"[a-z0-9*][a-z0-9:_.\-*]{0,199}")


def validate_channel(name: object) -> str:
    """Return ``name`` if it is a valid channel name, else raise :class:`InvalidChannel`."""
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise InvalidChannel(
            f"invalid channel name {name!r}: use 1-{MAX_CHANNEL_LENGTH} characters of "
            "[a-z0-9:_.-], starting with a letter or digit"
        )
    return name


def validate_pattern(pattern: object) -> str:
    """Return ``pattern`` if it is a valid channel name or ``*`` pattern, else raise."""
    if not isinstance(pattern, str) or _PATTERN.fullmatch(pattern) is None:
        raise InvalidChannel(
            f"invalid channel or pattern {pattern!r}: use [a-z0-9:_.-] and '*' wildcards, "
            f"at most {MAX_CHANNEL_LENGTH} characters"
        )
    return pattern


def is_pattern(name: str) -> bool:
    return "*" in name


def is_private(name: str) -> bool:
    """Private channels (``user:…``) belong to one user; auth decides who may read them."""
    return name.startswith("user:")


@lru_cache(maxsize=4096)  # validated patterns, at most 200 characters: ~10 MiB at most
def pattern_matcher(pattern: str) -> re.Pattern[str]:
    """Compile a ``*`` pattern to a regex (cached: patterns repeat across connections)."""
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")))


@lru_cache(maxsize=16384)  # names are at most 200 characters: ~13 MiB at most
def channel_attributes(name: str) -> Mapping[str, str]:
    """Attributes implied by a channel's name, used by filters.

    ``game:{slug}`` → ``game``; ``odds:{sport}:{competition}`` → ``sport``, ``competition``;
    ``sports:event:{id}`` → ``event``; ``user:{id}:…`` → ``user``. Every channel has ``kind``
    (its first segment).
    """
    parts = name.split(":")
    attrs = {"kind": parts[0]}
    if parts[0] == "game" and len(parts) >= 2:
        attrs["game"] = parts[1]
    elif parts[0] == "odds" and len(parts) >= 3:
        attrs["sport"] = parts[1]
        attrs["competition"] = parts[2]
    elif parts[0] == "sports" and len(parts) >= 3 and parts[1] == "event":
        attrs["event"] = parts[2]
    elif parts[0] == "user" and len(parts) >= 2:
        attrs["user"] = parts[1]
    return attrs


# Equal filters in use are one object; a filter no subscription (or cache) holds any more
# leaves the table by itself, so the table never outgrows the subscriptions.
_INTERNED: weakref.WeakValueDictionary[tuple[tuple[str, frozenset[str]], ...], Filter] = (
    weakref.WeakValueDictionary()
)


@dataclass(frozen=True, slots=True, eq=False, weakref_slot=True)
class Filter:
    """A conjunction of ``attribute ∈ {values}`` terms over channel and message attributes.

    Built from JSON like ``{"bookmaker": ["bet365", "pinnacle"], "sport": "football"}``. A
    message matches when every term's attribute is present with one of the listed values.
    Equal filters are one interned object (identity equality keeps the fan-out's per-message
    verdict cache cheap). At most :data:`MAX_FILTER_VALUES` values and :data:`MAX_FILTER_BYTES`
    characters of keys and values, checked before the filter is built.
    """

    terms: tuple[tuple[str, frozenset[str]], ...]

    @classmethod
    def parse(cls, raw: object) -> Filter | None:
        """Parse a filter object; ``None`` or ``{}`` means no filter."""
        if raw is None:
            return None
        if not isinstance(raw, Mapping):
            raise BadParameter("filter must be an object of attribute -> value or [values]")
        terms: list[tuple[str, frozenset[str]]] = []
        count = size = 0
        for key, value in raw.items():
            if not isinstance(key, str) or not key:
                raise BadParameter("filter keys must be non-empty strings")
            values: Iterable[object] = value if isinstance(value, list) else [value]
            count += 1 + (len(value) if isinstance(value, list) else 1)
            if count > MAX_FILTER_VALUES:
                raise BadParameter(f"a filter holds at most {MAX_FILTER_VALUES} values")
            size += len(key) + sum(len(v) if isinstance(v, str) else 8 for v in values)
            if size > MAX_FILTER_BYTES:
                raise BadParameter(
                    f"a filter's keys and values are at most {MAX_FILTER_BYTES} characters"
                )
            # Same spelling as published attrs: strings as given, other scalars lower-cased
            # (true/false), so a JSON boolean filter matches a JSON boolean attribute.
            clean = frozenset(
                v if isinstance(v, str) else str(v).lower()
                for v in values
                if isinstance(v, str | int | float | bool)
            )
            if not clean:
                raise BadParameter(f"filter {key!r} needs a string or a list of strings")
            terms.append((key, clean))
        if not terms:
            return None
        key = tuple(sorted(terms))
        interned = _INTERNED.get(key)
        if interned is None:
            interned = _INTERNED[key] = cls(key)
        return interned

    def matches(self, channel: str, attrs: Mapping[str, str] | None) -> bool:
        implied = channel_attributes(channel)
        for key, allowed in self.terms:
            value = attrs.get(key) if attrs else None
            if value is None:
                value = implied.get(key)
            if value is None or value not in allowed:
                return False
        return True
