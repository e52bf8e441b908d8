"""Server-sent events (WHATWG HTML), server side: event encoders and the stream's headers.

Each event is encoded once per message and written to every subscriber, so the encoder has a
fast path for the common case (JSON payloads never hold a raw line break). Line breaks inside
``data`` become separate ``data:`` lines, which the client joins back with ``\\n``.
"""

from __future__ import annotations

__all__ = [
    "SSE_HEADERS",
    "parse_last_event_id",
    "sse_comment",
    "sse_event",
    "sse_retry",
]

#: Response headers for an event stream. ``no-transform`` and ``X-Accel-Buffering: no`` keep
#: proxies from compressing or buffering it. ``Connection`` is left out: HTTP/2 forbids it.
SSE_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Type", "text/event-stream; charset=utf-8"),
    ("Cache-Control", "no-cache, no-transform"),
    ("X-Accel-Buffering", "no"),
)


_LF = 0x0A
_CR = 0x0D


def sse_event(data: bytes, *, event: str | None = None, id: str | None = None) -> bytes:
    """One complete event (ending in the blank line that dispatches it).

    Args:
        data: UTF-8 payload; line breaks are allowed (the client sees each as ``\\n``).
        event: event type; None means the default ``message`` type.
        id: the last-event ID the browser sends back as ``Last-Event-ID`` on reconnect;
            ``""`` resets it, None leaves it unchanged.

    Raises:
        ValueError: ``id`` holds CR, LF or NUL, or ``event`` holds CR or LF.
    """
    # ``int in bytes`` is a memchr; CR, LF and CRLF all end an SSE line, so all are split.
    if _LF in data or _CR in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\ndata: ")
    if id is None:
        if event is None:
            return b"data: " + data + b"\n\n"
        head = _event_line(event)
    else:
        if "\n" in id or "\r" in id or "\0" in id:
            raise ValueError(f"SSE id contains CR, LF or NUL: {id!r}")
        head = b"id: " + id.encode() + b"\n"
        if event is not None:
            head = _event_line(event) + head
    return b"".join((head, b"data: ", data, b"\n\n"))  # one copy of ``data``


def _event_line(event: str) -> bytes:
    if "\n" in event or "\r" in event:
        raise ValueError(f"SSE event type contains CR or LF: {event!r}")
    return b"event: " + event.encode() + b"\n"


def sse_comment(text: str) -> bytes:
    """A comment block (``: text``), ignored by clients: the heartbeat that keeps proxies open.

    Line breaks in ``text`` start further comment lines, so they cannot inject fields.
    """
    raw = text.encode("utf-8").replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return b": " + raw.replace(b"\n", b"\n: ") + b"\n\n"


def sse_retry(ms: int) -> bytes:
    """Set the client's reconnection delay; send once at stream start (dispatches no event)."""
    if isinstance(ms, bool) or not isinstance(ms, int) or ms < 0:
        raise ValueError(f"retry must be a non-negative int of milliseconds, got {ms!r}")
    return b"retry: %d\n\n" % ms


def parse_last_event_id(value: str | None) -> str | None:
    """The ``Last-Event-ID`` request header, stripped; None when absent or blank."""
    if value is None:
        return None
    value = value.strip()
    return value or None
