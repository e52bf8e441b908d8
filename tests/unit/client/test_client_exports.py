"""The SDK's public names are pinned: adding or removing one is a deliberate change."""

from __future__ import annotations

import importlib

import pytest

import wagerwire.client


def test_public_names() -> None:
    assert sorted(wagerwire.client.__all__) == [
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
    for name in wagerwire.client.__all__:
        assert getattr(wagerwire.client, name) is not None


def test_every_error_descends_from_sdk_error() -> None:
    from wagerwire.client import errors

    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type):
            assert issubclass(obj, errors.SdkError)


@pytest.mark.parametrize("module", ["wagerwire.client", "wagerwire.client.errors"])
@pytest.mark.parametrize(("old", "new"), [("ClientError", "SdkError"),
                                          ("ServerError", "ServerFailureError")])
def test_old_sdk_error_names_are_deprecated_aliases(module: str, old: str, new: str) -> None:
    mod = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=new):
        alias = getattr(mod, old)
    assert alias is getattr(mod, new)


def test_sdk_errors_are_not_the_servers() -> None:
    import wagerwire
    from wagerwire.client import SdkError

    assert not issubclass(SdkError, wagerwire.ClientError)
    assert not issubclass(wagerwire.ClientError, SdkError)
