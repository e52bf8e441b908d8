"""A least-recently-used cache bounded by the bytes of what it holds, not by its entries.

Parse caches keyed by client text (a URL's channel list, a filter's JSON) must not let one
client pin memory: each entry is weighed (roughly its key's and value's bytes) when it is put,
and the oldest entries go once the sum passes the budget. An entry heavier than the whole
budget is not kept at all.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

__all__ = ["ByteLru"]

K = TypeVar("K")
V = TypeVar("V")


class ByteLru(Generic[K, V]):
    """LRU mapping whose entries' summed weights stay within ``budget`` bytes."""

    __slots__ = ("budget", "nbytes", "_entries")

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.nbytes = 0
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: K, value: V, size: int) -> None:
        """Keep ``value`` under ``key``, weighing ``size`` bytes; evict the oldest to fit."""
        old = self._entries.pop(key, None)
        if old is not None:
            self.nbytes -= old[1]
        if size > self.budget:
            return
        entries = self._entries
        while entries and self.nbytes + size > self.budget:
            _, (_, weight) = entries.popitem(last=False)
            self.nbytes -= weight
        entries[key] = (value, size)
        self.nbytes += size

    def resize(self, budget: int) -> None:
        """Change the budget, evicting the oldest entries past it."""
        self.budget = budget
        while self._entries and self.nbytes > budget:
            _, (_, weight) = self._entries.popitem(last=False)
            self.nbytes -= weight

    def clear(self) -> None:
        self._entries.clear()
        self.nbytes = 0
