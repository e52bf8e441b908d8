"""The SDK's public names are pinned: adding or removing one is a deliberate change."""

from __future__ import annotations

import wagerwire.client


def test_public_names() -> None:
    assert sorted(wagerwire.client.__all__) == [
        "AuthError",
        "Backoff",
        "BadResumeTokenError",
        "ChannelInfo",
        "Client",
        "ClientError",
        "ClientMessage",
        "Closed",
        "ClosedError",
        "Connected",
        "Connecting",
        "Counters",
        "Disconnected",
        "ForbiddenError",
        "HistoryPage",
        "Idle",
        "InvalidChannelError",
        "MessageSource",
        "NotFoundError",
        "PayloadTooLargeError",
        "ProtocolError",
        "PublishResult",
        "RateLimitedError",
        "Recovering",
        "RequestError",
        "ServerError",
        "State",
        "StreamToken",
        "Subscription",
        "SyncStream",
        "Transport",
        "TransportError",
        "stream",
    ]
    for name in wagerwire.client.__all__:
        assert getattr(wagerwire.client, name) is not None


def test_every_error_descends_from_client_error() -> None:
    from wagerwire.client import errors

    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type):
            assert issubclass(obj, errors.ClientError)
