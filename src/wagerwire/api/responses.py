"""JSON responses rendered with orjson; stored message data is embedded without re-encoding."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from wagerwire.core.messages import Message

__all__ = ["JsonResponse", "message_json"]


class JsonResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def message_json(message: Message) -> dict[str, Any]:
    """A message as REST returns it; ``data`` is spliced in as the stored JSON bytes."""
    out: dict[str, Any] = {
        "channel": message.channel,
        "offset": message.offset,
        "epoch": message.epoch,
        "ts": message.ts,
        "data": orjson.Fragment(message.data),
    }
    if message.attrs:
        out["attrs"] = dict(message.attrs)  # so clients can apply filters to backfills
    return out
