"""Every error wagerwire reports, with its stable code, HTTP status and WebSocket handling.

Tree::

    WagerwireError                 root; never raised itself
    ├── ClientError                the peer broke a rule; answered, connection usually kept
    │   ├── MalformedJson          body/frame is not JSON or not the expected shape
    │   ├── UnknownOp              WS op the dialect does not know
    │   ├── InvalidChannel         channel name or pattern fails the naming rules
    │   ├── TooManyChannels        subscription larger than the configured limit
    │   ├── PayloadTooLarge        body or frame over the configured limit
    │   ├── UnsupportedMediaType   a JSON body sent without ``Content-Type: application/json``
    │   ├── BadResumeToken         resume token that does not decode
    │   ├── BadParameter           query/body parameter out of range (e.g. ``since`` in the future)
    │   ├── NotFound               unknown route, channel, game, event or round
    │   ├── MethodNotAllowed       known route, wrong method
    │   ├── UpgradeRequired        WebSocket path requested without an upgrade
    │   ├── HeaderTooLarge         request head over the limit
    │   ├── RequestTimeout         request head or body not received in time
    │   ├── Unauthorized           missing, invalid or expired credentials
    │   │   └── KeyInUrl           an API key in ``?token=`` (only stream tokens go in URLs)
    │   ├── Forbidden              credentials valid, action not allowed
    │   └── RateLimited            a limit tripped; ``retry_after`` seconds tells when to retry
    └── ServerError                our fault or our dependency's
        ├── Unavailable            store/broker down or the server is shutting down
        │   ├── LimitsUnavailable  the plan limits' backend (Redis) cannot answer
        │   └── StoreUnavailable   the durable store (PostgreSQL) cannot be reached
        └── InternalError          a bug; logged with a traceback

``ERROR_CODES`` is the table the README's error section is generated from.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "ERROR_CODES",
    "BadParameter",
    "BadResumeToken",
    "ClientError",
    "CloseCode",
    "ErrorSpec",
    "Forbidden",
    "HeaderTooLarge",
    "InternalError",
    "KeyInUrl",
    "InvalidChannel",
    "LimitsUnavailable",
    "MalformedJson",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "RequestTimeout",
    "ServerError",
    "StoreUnavailable",
    "TooManyChannels",
    "Unauthorized",
    "Unavailable",
    "UnknownOp",
    "UnsupportedMediaType",
    "UpgradeRequired",
    "WagerwireError",
]


class CloseCode(IntEnum):
    """WebSocket close codes wagerwire sends (RFC 6455 range plus 4000–4099 of its own)."""

    NORMAL = 1000
    GOING_AWAY = 1001  # server shutdown; the reason carries the resume hint
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003  # binary frame on a text-only protocol
    INVALID_PAYLOAD = 1007  # text frame that is not UTF-8
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SLOW_CONSUMER = 4000  # outbox over its high-water mark; resume from the last token
    HEARTBEAT_TIMEOUT = 4002  # no pong / no traffic within the idle timeout
    UNAUTHORIZED = 4001  # credentials missing, invalid or expired
    FORBIDDEN = 4003  # credentials valid, stream not allowed
    TOO_MANY_STREAMS = 4029  # a concurrent-stream or rate limit tripped


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    """How one error code is reported on each transport."""

    code: str
    status: int
    close_code: CloseCode | None
    meaning: str


class WagerwireError(Exception):
    """Root of all wagerwire errors; ``code`` and ``status`` come from the class."""

    code = "internal"
    status = 500
    close_code: CloseCode | None = None

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    def to_json(self) -> dict[str, dict[str, str]]:
        """The body of an HTTP error response: ``{"error":{"code","message"}}``."""
        return {"error": {"code": self.code, "message": self.message}}


class ClientError(WagerwireError):
    """The peer broke a rule; answer it and keep serving everyone else."""

    code = "bad_request"
    status = 400


class MalformedJson(ClientError):
    code = "malformed_json"


class UnknownOp(ClientError):
    code = "unknown_op"


class InvalidChannel(ClientError):
    code = "invalid_channel"


class TooManyChannels(ClientError):
    code = "too_many_channels"


class PayloadTooLarge(ClientError):
    code = "payload_too_large"
    status = 413
    close_code = CloseCode.MESSAGE_TOO_BIG


class UnsupportedMediaType(ClientError):
    code = "unsupported_media_type"
    status = 415


class BadResumeToken(ClientError):
    code = "bad_resume_token"


class BadParameter(ClientError):
    code = "bad_parameter"
    status = 422


class NotFound(ClientError):
    code = "not_found"
    status = 404


class MethodNotAllowed(ClientError):
    code = "method_not_allowed"
    status = 405


class HeaderTooLarge(ClientError):
    code = "header_too_large"
    status = 431


class RequestTimeout(ClientError):
    code = "request_timeout"
    status = 408


class UpgradeRequired(ClientError):
    code = "upgrade_required"
    status = 426


class Unauthorized(ClientError):
    code = "unauthorized"
    status = 401
    close_code = CloseCode.UNAUTHORIZED


class KeyInUrl(Unauthorized):
    code = "key_in_url"


class Forbidden(ClientError):
    code = "forbidden"
    status = 403
    close_code = CloseCode.FORBIDDEN


class RateLimited(ClientError):
    code = "rate_limited"
    status = 429
    close_code = CloseCode.TOO_MANY_STREAMS


class ServerError(WagerwireError):
    """Our fault or a dependency's; logged, reported as 5xx."""


class Unavailable(ServerError):
    code = "unavailable"
    status = 503
    close_code = CloseCode.GOING_AWAY


class LimitsUnavailable(Unavailable):
    """The backend keeping plan limits (Redis) cannot answer: a keyed stream or request that
    cannot be counted is refused (HTTP 503 before any upgrade); retry shortly."""

    code = "limits_unavailable"


class StoreUnavailable(Unavailable):
    """The durable store (PostgreSQL) cannot be reached (restarting, network): a publish is
    refused and was not acknowledged, so retry it (with an idempotency key it is safe); the
    store reconnects by itself."""

    code = "store_unavailable"


class InternalError(ServerError):
    code = "internal"
    status = 500
    close_code = CloseCode.INTERNAL_ERROR


_MEANINGS: dict[type[WagerwireError], str] = {
    ClientError: "the request is not valid (generic)",
    MalformedJson: "body or frame is not valid JSON, or not a JSON object of the expected shape",
    UnknownOp: "WebSocket op not known to the protocol",
    InvalidChannel: "channel name or pattern breaks the naming rules",
    TooManyChannels: "more channels in one subscription than allowed",
    PayloadTooLarge: "body or frame larger than the configured maximum",
    UnsupportedMediaType: "a request body not sent as Content-Type: application/json",
    BadResumeToken: "resume token does not decode",
    BadParameter: "a parameter is out of range or of the wrong type",
    NotFound: "unknown route, channel, game, event or round",
    MethodNotAllowed: "the route exists but not for this method",
    UpgradeRequired: "a WebSocket path was requested without the Upgrade handshake",
    HeaderTooLarge: "request line and headers larger than allowed (64 KiB)",
    RequestTimeout: "request head or body not complete within header_timeout / body_timeout",
    Unauthorized: "credentials missing, invalid or expired",
    KeyInUrl: "an API key in ?token=: send keys in a header; only stream tokens go in URLs",
    Forbidden: "credentials valid, but the plan or role does not allow this",
    RateLimited: "a rate, quota or concurrency limit tripped; see Retry-After",
    Unavailable: "store or broker unavailable, or the server is shutting down",
    LimitsUnavailable: "plan limits cannot be checked (their Redis is unreachable); retry",
    StoreUnavailable: "the durable store (PostgreSQL) is unreachable: nothing was "
                      "acknowledged; retry, it reconnects by itself",
    InternalError: "unexpected server error (a bug; it is logged)",
}

ERROR_CODES: tuple[ErrorSpec, ...] = tuple(
    ErrorSpec(cls.code, cls.status, cls.close_code, meaning) for cls, meaning in _MEANINGS.items()
)
