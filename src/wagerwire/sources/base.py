"""The two protocols every source is written against: what it publishes to, and how it runs.

Sources depend on these protocols rather than on the hub so they stay testable with a fake
publisher and usable from another process (an HTTP publisher) without change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, TypedDict, Unpack

from wagerwire.core.messages import PublishResult

__all__ = ["PublishOptions", "Publisher", "Source"]


class PublishOptions(TypedDict, total=False):
    """The optional keyword arguments of :meth:`Publisher.publish` (see its contract)."""

    attrs: Mapping[str, str] | None
    idempotency_key: str | None


class Publisher(Protocol):
    """Accepts one message for one channel; the hub implements it.

    Contract: ``data`` is a JSON-compatible value, encoded once by the publisher; ``attrs`` are
    string attributes subscription filters match on; a repeated ``idempotency_key`` on the same
    channel within the hub's window returns the first result with ``duplicate=True`` and is not
    delivered again. Raises a :class:`~wagerwire.errors.WagerwireError` when the publish was
    refused (bad channel, store unavailable).
    """

    async def publish(self, channel: str, data: Any, **options: Unpack[PublishOptions]
                      ) -> PublishResult:
        """Append ``data`` to ``channel`` and deliver it; return the message's position."""
        ...


class Source(Protocol):
    """Something that feeds the hub until it is cancelled (simulators, upstream connectors)."""

    async def run(self, publisher: Publisher) -> None:
        """Publish forever; return only on cancellation (``asyncio.CancelledError`` propagates)."""
        ...
