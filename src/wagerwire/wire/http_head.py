"""A strict one-shot parser for the request heads that open streams.

Nearly every WebSocket upgrade and SSE request arrives as one TCP segment holding a bodiless
``GET`` head. :func:`parse_stream_head` takes exactly that shape, in a deliberately narrow
subset of HTTP/1.1 (visible-ASCII target, token header names, visible-ASCII values, no body
headers), with two C-level regex passes instead of a callback per header. Anything else returns
``None`` and the caller falls back to the full parser (httptools), which is also where every
malformed request gets its error: this function never rejects, it only declines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, unquote_plus

__all__ = ["StreamHead", "parse_query", "parse_stream_head"]

# Request target: origin-form, RFC 3986 pchar / "/" / "?" only (no "#", spaces or obs-text).
# Header field: token ":" OWS visible-ASCII/SP/HTAB; no obs-fold, no obs-text.
_HEAD = re.compile(
    r"GET (/[A-Za-z0-9\-._~!$&'()*+,;=:@%/?]*) HTTP/1\.1\r\n"
    r"((?:[!#$%&'*+.^_`|~0-9A-Za-z\-]+:[\t\x20-\x7e]*\r\n)*)\r\n"
)
_FIELD = re.compile(r"([^:]+):[\t ]*([^\r]*)\r\n")
_BODY_HEADERS = frozenset(("content-length", "transfer-encoding"))


@dataclass(slots=True)
class StreamHead:
    """A parsed ``GET`` head: decoded path, raw query, headers (lower-case names)."""

    path: str
    query_string: bytes
    headers: dict[str, str]


def parse_stream_head(data: bytes, max_bytes: int) -> StreamHead | None:
    """Parse ``data`` if it is exactly one complete bodiless GET head in the strict subset.

    Repeated headers are joined with ``", "`` (RFC 9110 §5.3), as the full parser does.
    Returns ``None`` for anything else, including heads over ``max_bytes``.
    """
    if len(data) > max_bytes or not data.isascii():
        return None
    m = _HEAD.fullmatch(data.decode("ascii"))
    if m is None:
        return None
    path, _, query = m[1].partition("?")
    headers: dict[str, str] = {}
    for name, value in _FIELD.findall(m[2]):
        key = name.lower()
        value = value.rstrip("\t ")
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    if not _BODY_HEADERS.isdisjoint(headers):
        return None
    if "%" in path:
        path = unquote(path)
    return StreamHead(path, query.encode("ascii"), headers)


def parse_query(query: str) -> dict[str, list[str]]:
    """``urllib.parse.parse_qs(query, keep_blank_values=True)``, without its per-field cost
    when nothing is escaped (the usual stream URL)."""
    params: dict[str, list[str]] = {}
    for field in query.split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        if "%" in field or "+" in field:
            name = unquote_plus(name)
            value = unquote_plus(value)
        if name in params:
            params[name].append(value)
        else:
            params[name] = [value]
    return params
