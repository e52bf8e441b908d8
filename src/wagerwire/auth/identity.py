"""Who a connection or request is, once its credentials are checked.

Every transport and dialect asks :class:`Gate` (one per server) the same three questions:
who is this (``authenticate``), may they read this channel (``resolve_channel``), and may they
open one more stream (``open_stream``). The embedded default runs with auth off: everyone is
the anonymous reader with the ``open`` plan, and private channels are refused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from wagerwire.core.channels import is_pattern, is_private
from wagerwire.errors import Forbidden, Unauthorized

__all__ = [
    "ANONYMOUS",
    "NO_LEASE",
    "NO_SLOT",
    "Gate",
    "Identity",
    "StreamLease",
    "StreamSlot",
    "may_match_private",
]


def may_match_private(pattern: str) -> bool:
    """Whether the ``*`` pattern could match some private ``user:…`` channel.

    Only the literal head before the first ``*`` constrains what a pattern matches, so
    ``*``, ``u*`` or ``*:balances`` may match ``user:42:balances`` and ``game:*`` may not.
    """
    head = pattern.split("*", 1)[0]
    return head.startswith("user:") or "user:".startswith(head)


@dataclass(frozen=True, slots=True)
class Identity:
    """The holder of a key or stream token."""

    key_id: str | None
    role: str  # "anonymous" | "reader" | "publisher" | "admin"
    plan: str
    user_id: str | None = None
    channels: tuple[str, ...] = field(default=("*",))  # patterns the plan may read
    via_token: bool = False  # authenticated by a stream token rather than the key itself
    expires_at: int | None = None  # the stream token's expiry (seconds since the epoch)

    @property
    def can_publish(self) -> bool:
        return self.role in ("publisher", "admin")


ANONYMOUS = Identity(key_id=None, role="anonymous", plan="open")


class StreamSlot:
    """One open stream counted against its key's concurrent-stream limit; release once.

    A slot may still be *pending* when ``open_stream`` returns it: the HTTP layer then awaits
    :meth:`admit` (which raises ``RateLimited`` at the limit, ``LimitsUnavailable`` when the
    limits cannot be checked) before it answers the upgrade. Anonymous streams get
    :data:`NO_SLOT`, never pending, so their set-up stays synchronous. The transport sets
    ``on_revoke`` to close its connection when the key is revoked, and
    closes it at ``expires_at`` (seconds since the epoch) when a stream token opened it.
    """

    __slots__ = ("_released", "expires_at", "on_revoke", "once")

    pending = False  # True on slots whose admit() must be awaited before the stream starts

    def __init__(self) -> None:
        self._released = False
        self.on_revoke: Callable[[], None] | None = None
        self.expires_at: int | None = None
        self.once: str | None = None

    def spend(self, credential: str) -> None:
        """Make :meth:`admit` spend ``credential`` (a single-use stream token's id): a
        credential already spent is refused with ``Unauthorized``. Only keyed (pending)
        slots can count it; on any other the stream is refused at once."""
        if not self.pending:
            raise Unauthorized("this stream needs a single-use stream token")
        self.once = credential

    async def admit(self) -> None:
        """Count the stream (a no-op here); raise the refusal if it may not open."""

    def release(self) -> None:
        self._released = True


NO_SLOT = StreamSlot()  # shared by anonymous streams: nothing to count or revoke

StreamLease = StreamSlot  # deprecated names: "lease" is the Redis broker's writer lease
NO_LEASE = NO_SLOT


class Gate:
    """Auth decisions for one server. This base is "auth off": everyone is anonymous."""

    token_ttl = 300

    def authenticate(
        self, headers: Mapping[str, str], query_token: str | None = None
    ) -> Identity:
        """Check the credentials of a request (``Authorization: Bearer``, ``X-Api-Key``,
        ``x-access-token``, or ``?token=``); raise ``Unauthorized`` when they are bad."""
        return ANONYMOUS

    def resolve_channel(self, identity: Identity, channel: str) -> str:
        """The channel ``identity`` means and may read (``user:balances`` becomes the
        holder's own ``user:{id}:balances``); raise ``Forbidden`` otherwise."""
        if is_private(channel) and identity.user_id is None:
            raise Forbidden(f"{channel} is a private channel: connect with a user's key")
        if is_pattern(channel) and may_match_private(channel):
            raise Forbidden(f"pattern {channel} could match private user channels; use a "
                            "narrower pattern such as game:*")
        return channel

    def may_read(self, identity: Identity, channel: str) -> bool:
        """Whether ``identity`` may read ``channel`` under its own name (listings)."""
        try:
            return self.resolve_channel(identity, channel) == channel
        except Forbidden:
            return False

    def check_stream(self, identity: Identity) -> None:
        """Raise ``Forbidden`` when the holder's plan has no streaming at all."""

    def open_stream(self, identity: Identity, transport: str) -> StreamSlot:
        """One more stream for ``identity``: raise ``Forbidden`` (the plan has no streaming),
        or answer its slot, maybe pending (see :class:`StreamSlot`)."""
        return NO_SLOT

    def can_publish(self, identity: Identity) -> bool:
        """Publisher and admin keys publish; with auth off, everyone does."""
        return True

    def check_publish(self, identity: Identity, channel: object) -> None:
        """Raise ``Forbidden`` unless ``identity`` may publish on ``channel``: only publisher
        and admin keys write private ``user:`` channels, even when auth is open."""
        if not self.can_publish(identity):
            if identity.role == "anonymous":
                raise Unauthorized("publishing needs a publisher key (Authorization: Bearer "
                                   "<key>); this server does not take anonymous publishes")
            raise Forbidden("this key may not publish: use a publisher key")
        if isinstance(channel, str) and is_private(channel) and not identity.can_publish:
            raise Forbidden(f"{channel} is private: only publisher keys publish there")

    def max_subscriptions(self, identity: Identity) -> int | None:
        """The plan's channels-per-connection limit (None: the server's own limit)."""
        return None

    def delivery_rate(self, identity: Identity, conflate_ms: int = 0) -> tuple[int, int]:
        """``(conflate_ms, delay_ms)`` for a subscription: what the client asked for, raised to
        the plan's minimum interval, and the plan's delay."""
        return conflate_ms, 0

    async def check_rest(self, identity: Identity) -> None:
        """Count one REST request; raise ``RateLimited`` over the plan's rate."""

    async def issue_token(self, identity: Identity) -> tuple[str, int]:
        """A signed stream token and its expiry (seconds since the epoch)."""
        raise Forbidden("API keys are not configured on this server")

    def create_key(
        self, role: str, plan: str, user_id: str | None, name: str | None
    ) -> tuple[Any, str]:
        raise Forbidden("API keys are not configured on this server")

    def list_keys(self) -> list[Any]:
        raise Forbidden("API keys are not configured on this server")

    def revoke(self, key_id: str) -> bool:
        raise Forbidden("API keys are not configured on this server")

    def resolve_channels(self, identity: Identity, channels: object) -> list[object]:
        """:meth:`resolve_channel` over a subscription's list (non-strings pass through to
        the hub, which reports them as invalid)."""
        if not isinstance(channels, list):
            return channels  # type: ignore[return-value]
        return [self.resolve_channel(identity, c) if isinstance(c, str) else c
                for c in channels]
