"""Server-sent events client parser (WHATWG HTML "event stream interpretation"), sans-I/O.

The SDK and the tests read event streams with it, so it follows the browser's rules rather
than our encoder's habits: CR, LF and CRLF line ends (also split across chunks), one leading
BOM dropped, comments ignored, the last event ID kept across events, events with no ``data``
field not dispatched, undecodable bytes replaced with U+FFFD.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

__all__ = ["SseMessage", "SseParser"]

_LINE_END = re.compile(r"\r\n|\r|\n")
_Utf8Decoder = codecs.getincrementaldecoder("utf-8")


@dataclass(frozen=True, slots=True)
class SseMessage:
    """One dispatched event.

    ``event`` is ``"message"`` when the stream named none. ``id`` is the last event ID in
    effect at dispatch (``""`` when none was ever set or it was reset), the value a client
    sends back as ``Last-Event-ID``. ``retry`` is the reconnection delay in milliseconds in
    effect at dispatch, None until the stream sets one.
    """

    event: str
    data: str
    id: str
    retry: int | None


class SseParser:
    """Turns event-stream bytes into :class:`SseMessage` objects.

    Call :meth:`feed` with each chunk as it arrives; it returns the events those bytes
    completed. ``last_event_id`` and ``retry`` hold the stream's state for reconnecting, which
    a ``retry:``-only block changes without dispatching anything.
    """

    __slots__ = (
        "_bom_checked",
        "_data",
        "_decoder",
        "_event",
        "_id_buffer",
        "_pending",
        "_skip_lf",
        "last_event_id",
        "retry",
    )

    def __init__(self) -> None:
        self._decoder = _Utf8Decoder(errors="replace")
        self._bom_checked = False
        self._pending = ""  # text of the line not yet ended
        self._skip_lf = False  # the last chunk ended in CR: a leading LF belongs to it
        self._data: list[str] = []
        self._event = ""
        self._id_buffer = ""
        self.last_event_id = ""
        self.retry: int | None = None

    def feed(self, data: bytes) -> list[SseMessage]:
        """Parse the next chunk; return the events it completed, oldest first."""
        text = self._decoder.decode(data)
        if not text:
            return []
        if not self._bom_checked:
            self._bom_checked = True
            if text[0] == "\ufeff":
                text = text[1:]
                if not text:
                    return []
        if self._skip_lf:
            self._skip_lf = False
            if text[0] == "\n":
                text = text[1:]
        self._skip_lf = text.endswith("\r")
        lines = _LINE_END.split(self._pending + text)
        self._pending = lines.pop()
        messages: list[SseMessage] = []
        for line in lines:
            if line:
                self._field(line)
                continue
            # A blank line: the ID is committed even when there is no data to dispatch.
            self.last_event_id = self._id_buffer
            if self._data:
                messages.append(self._dispatch())
            else:
                self._event = ""
        return messages

    def feed_eof(self) -> None:
        """The stream ended: an event not yet ended by a blank line is discarded."""
        self._pending = ""
        self._data = []
        self._event = ""
        self._skip_lf = False
        self._decoder.reset()

    def _field(self, line: str) -> None:
        if line[0] == ":":
            return
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id_buffer = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self.retry = int(value)

    def _dispatch(self) -> SseMessage:
        message = SseMessage(
            self._event or "message", "\n".join(self._data), self.last_event_id, self.retry
        )
        self._data = []
        self._event = ""
        return message
