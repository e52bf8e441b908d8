"""Errors the client SDK raises, and how server codes map onto them.

The tree is separate from the server's :mod:`wagerwire.errors`: these describe what a *caller of
the SDK* can do next, above all whether retrying can help (``retryable``)::

    SdkError                     root of every SDK error
    ├── TransportError           network failure, refused or dropped connection (retryable)
    ├── ServerFailureError       the server failed: unavailable, internal, 5xx, 1011 (retryable)
    ├── RateLimitedError         429 / 4029 / rate_limited; ``retry_after`` if known (retryable)
    ├── AuthError                401 / 4001 / unauthorized: credentials missing or expired (fatal)
    ├── ForbiddenError           403 / 4003 / forbidden: plan or role does not allow it (fatal)
    ├── ProtocolError            the peer broke the native protocol, 1002/1003/1007/1008 (fatal)
    ├── CertificateError         WebTransport: the certificate is not the pinned one (fatal)
    ├── RequestError             the server refused a request as invalid (fatal), carries ``code``
    │   ├── InvalidChannelError  invalid_channel
    │   ├── BadResumeTokenError  bad_resume_token
    │   ├── NotFoundError        not_found
    │   └── PayloadTooLargeError payload_too_large
    └── ClosedError              the client or subscription was closed by its owner

Retryable errors are handled inside the client (it reconnects with backoff); fatal ones end the
subscription and are raised from its iterator.

The root is ``SdkError``, not ``ClientError``: the server's :class:`wagerwire.ClientError` (a
peer fault, inside the server) is a different class, and ``except wagerwire.ClientError`` around
SDK calls would catch nothing. The old names ``ClientError`` and ``ServerError`` still import
from here and from :mod:`wagerwire.client`, with a ``DeprecationWarning``.
"""

from __future__ import annotations

import warnings

__all__ = [
    "AuthError",
    "BadResumeTokenError",
    "CertificateError",
    "ClosedError",
    "ForbiddenError",
    "InvalidChannelError",
    "NotFoundError",
    "PayloadTooLargeError",
    "ProtocolError",
    "RateLimitedError",
    "RequestError",
    "SdkError",
    "ServerFailureError",
    "TransportError",
    "error_for_close",
    "error_for_code",
    "error_for_status",
]


class SdkError(Exception):
    """Root of all SDK errors; ``retryable`` says whether trying again can help."""

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        close_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.close_code = close_code
        self.retry_after = retry_after


class CertificateError(SdkError):
    """The WebTransport server's certificate is not one of the pinned hashes (fatal: the
    same certificate would be refused again). A certificate no trusted CA vouches for fails
    the handshake and is retried like any failed connection, as on ``wss://``."""


class TransportError(SdkError):
    """The connection failed or dropped; the client reconnects."""

    retryable = True


class ServerFailureError(SdkError):
    """The server reported its own failure; the client reconnects with backoff."""

    retryable = True


class RateLimitedError(SdkError):
    """A rate, quota or stream limit tripped; retry after ``retry_after`` (or a long backoff)."""

    retryable = True


class AuthError(SdkError):
    """Credentials missing, invalid or expired; retrying with the same key cannot help."""


class ForbiddenError(SdkError):
    """Credentials valid but not allowed to do this; do not retry."""


class ProtocolError(SdkError):
    """The peer broke the native protocol (or we did); retrying would repeat it."""


class RequestError(SdkError):
    """The server refused a request as invalid; ``code`` is the server's error code."""


class InvalidChannelError(RequestError):
    """A channel name or pattern breaks the naming rules."""


class BadResumeTokenError(RequestError):
    """The resume token does not decode; start without ``since`` instead."""


class NotFoundError(RequestError):
    """Unknown route or channel."""


class PayloadTooLargeError(RequestError):
    """A published payload is over the server's limit."""


class ClosedError(SdkError):
    """The client or subscription was closed by its owner."""


_BY_CODE: dict[str, type[SdkError]] = {
    "unauthorized": AuthError,
    "forbidden": ForbiddenError,
    "rate_limited": RateLimitedError,
    "unavailable": ServerFailureError,
    "internal": ServerFailureError,
    "invalid_channel": InvalidChannelError,
    "bad_resume_token": BadResumeTokenError,
    "not_found": NotFoundError,
    "payload_too_large": PayloadTooLargeError,
    "malformed_json": ProtocolError,
    "unknown_op": ProtocolError,
}

_BY_STATUS: dict[int, type[SdkError]] = {
    401: AuthError,
    403: ForbiddenError,
    404: NotFoundError,
    413: PayloadTooLargeError,
    429: RateLimitedError,
}

# Close codes after which the client reconnects and resumes from its last position.
_RETRYABLE_CLOSE: dict[int, type[SdkError]] = {
    1000: TransportError,  # normal closure we did not ask for: come back
    1001: ServerFailureError,  # going away (shutdown or restart)
    1006: TransportError,  # abnormal closure (no close frame)
    1009: TransportError,  # a frame of ours was too big; the subscription itself is fine
    1011: ServerFailureError,  # internal error
    1012: ServerFailureError,  # service restart
    1013: ServerFailureError,  # try again later
    4000: TransportError,  # slow consumer: resume from the last token
    4002: TransportError,  # heartbeat timeout
    4029: RateLimitedError,  # too many streams / rate limited: retry later
}

_FATAL_CLOSE: dict[int, type[SdkError]] = {
    1002: ProtocolError,
    1003: ProtocolError,
    1007: ProtocolError,
    1008: ProtocolError,  # policy violation
    4001: AuthError,
    4003: ForbiddenError,
}


def error_for_code(
    code: str, message: str, *, status: int | None = None, retry_after: float | None = None
) -> SdkError:
    """The SDK error for a server error ``code`` (from a WS error frame or a JSON error body)."""
    cls = _BY_CODE.get(code)
    if cls is None:
        cls = _BY_STATUS.get(status or 0)
    if cls is None:
        cls = ServerFailureError if status is not None and status >= 500 else RequestError
    return cls(message, code=code, status=status, retry_after=retry_after)


def error_for_status(
    status: int, message: str, *, code: str | None = None, retry_after: float | None = None
) -> SdkError:
    """The SDK error for an HTTP status (a refused handshake or a REST call)."""
    if code is not None:
        return error_for_code(code, message, status=status, retry_after=retry_after)
    cls = _BY_STATUS.get(status)
    if cls is None:
        if status >= 500:
            cls = ServerFailureError
        elif status == 408:
            cls = TransportError
        else:
            cls = RequestError
    return cls(message, status=status, retry_after=retry_after)


def error_for_close(code: int | None, reason: str = "") -> SdkError:
    """The SDK error for a WebSocket close code; ``None`` means no close frame (a dropped link).

    Unknown codes are treated as retryable: a dropped stream is the common case, and backoff
    keeps a misbehaving server from being hammered.
    """
    text = f"connection closed ({code if code is not None else 'no close frame'})"
    if reason:
        text = f"{text}: {reason}"
    if code is None:
        return TransportError(text)
    fatal = _FATAL_CLOSE.get(code)
    if fatal is not None:
        return fatal(text, close_code=code)
    cls = _RETRYABLE_CLOSE.get(code, TransportError)
    return cls(text, close_code=code)


DEPRECATED_NAMES = {"ClientError": "SdkError", "ServerError": "ServerFailureError"}


def deprecated_name(module: str, name: str) -> type[SdkError]:
    """The class an old SDK error name stands for, with a ``DeprecationWarning``.

    Raises:
        AttributeError: ``name`` is not a deprecated SDK error name.
    """
    new = DEPRECATED_NAMES.get(name)
    if new is None:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    warnings.warn(
        f"{module}.{name} is deprecated, use {new}: wagerwire.{name} is the server's own, "
        "unrelated class",
        DeprecationWarning,
        stacklevel=3,
    )
    found: type[SdkError] = globals()[new]
    return found


def __getattr__(name: str) -> type[SdkError]:
    return deprecated_name(__name__, name)
