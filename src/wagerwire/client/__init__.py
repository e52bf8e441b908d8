"""The Python SDK for wagerwire's native API: streams that survive reconnects.

Async::

    async with Client("http://localhost:8080", key=API_KEY) as client:
        async for msg in client.subscribe(["game:crash", "odds:football:*"]):
            print(msg.channel, msg.offset, msg.data)

Blocking::

    with stream("http://localhost:8080", ["game:crash"]) as messages:
        for msg in messages:
            ...

The subscription resumes after a drop from the last message it delivered (no gap, no
duplicate), backs off with full jitter, and backfills over REST what the server could no longer
replay. ``transport="wt"`` carries the same protocol over WebTransport (HTTP/3), with an
optional datagram lane for ``odds:*`` channels. With an API key, stream connections authenticate with short-lived stream tokens that the
client fetches and renews itself; what retrying cannot fix (a refused key, a channel outside the
key's plan) ends the subscription with :class:`AuthError` / :class:`ForbiddenError` at once.
:mod:`wagerwire.client.protocol` holds that logic without any I/O.
"""

from __future__ import annotations

from wagerwire.client.actions import GapDetected, Superseded
from wagerwire.client.auth import StreamToken
from wagerwire.client.backoff import Backoff
from wagerwire.client.client import Client, Transport
from wagerwire.client.errors import (
    AuthError,
    BadResumeTokenError,
    CertificateError,
    ClosedError,
    ForbiddenError,
    InvalidChannelError,
    NotFoundError,
    PayloadTooLargeError,
    ProtocolError,
    RateLimitedError,
    RequestError,
    SdkError,
    ServerFailureError,
    TransportError,
)
from wagerwire.client.latency import LatencyHistogram
from wagerwire.client.messages import ClientMessage, MessageSource
from wagerwire.client.protocol import Counters
from wagerwire.client.rest import ChannelInfo, HistoryPage, PublishResult
from wagerwire.client.states import (
    Closed,
    Connected,
    Connecting,
    Disconnected,
    Idle,
    Recovering,
    State,
)
from wagerwire.client.subscription import Subscription
from wagerwire.client.sync import SyncStream, stream

__all__ = [
    "AuthError",
    "Backoff",
    "BadResumeTokenError",
    "CertificateError",
    "ChannelInfo",
    "Client",
    "ClientMessage",
    "Closed",
    "ClosedError",
    "Connected",
    "Connecting",
    "Counters",
    "Disconnected",
    "ForbiddenError",
    "GapDetected",
    "HistoryPage",
    "Idle",
    "InvalidChannelError",
    "LatencyHistogram",
    "MessageSource",
    "NotFoundError",
    "PayloadTooLargeError",
    "ProtocolError",
    "PublishResult",
    "RateLimitedError",
    "Recovering",
    "RequestError",
    "SdkError",
    "ServerFailureError",
    "State",
    "StreamToken",
    "Subscription",
    "Superseded",
    "SyncStream",
    "Transport",
    "TransportError",
    "stream",
]


def __getattr__(name: str) -> type[SdkError]:
    """Old SDK error names (``ClientError``, ``ServerError``), with a ``DeprecationWarning``."""
    from wagerwire.client.errors import deprecated_name

    return deprecated_name(__name__, name)
