"""Who a connection or request is, once its credentials are checked.

Every transport and dialect asks :class:`Gate` (one per server) the same three questions:
who is this (``authenticate``), may they read this channel (``resolve_channel``), and may they
open one more stream (``open_stream``). The embedded default runs with auth off: everyone is
the anonymous reader with the ``open`` plan, and private channels are refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from wagerwire.core.channels import is_private
from wagerwire.errors import Forbidden

__all__ = ["ANONYMOUS", "Gate", "Identity", "StreamLease"]


@dataclass(frozen=True, slots=True)
class Identity:
    """The holder of a key or stream token."""

    key_id: str | None
    role: str  # "anonymous" | "reader" | "publisher" | "admin"
    plan: str
    user_id: str | None = None
    channels: tuple[str, ...] = field(default=("*",))  # patterns the plan may read

    @property
    def can_publish(self) -> bool:
        return self.role in ("publisher", "admin")


ANONYMOUS = Identity(key_id=None, role="anonymous", plan="open")


class StreamLease:
    """One open stream counted against its key's concurrent-stream limit; release once."""

    __slots__ = ("_released",)

    def __init__(self) -> None:
        self._released = False

    def release(self) -> None:
        self._released = True


class Gate:
    """Auth decisions for one server. This base is "auth off": everyone is anonymous."""

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
        return channel

    def open_stream(self, identity: Identity, transport: str) -> StreamLease:
        """Count one more stream for ``identity``; raise ``Forbidden`` (plan has no
        streaming) or ``RateLimited`` (concurrent-stream limit)."""
        return StreamLease()
