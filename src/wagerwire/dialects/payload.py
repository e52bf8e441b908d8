"""What the dialects read from a message: its data bytes as a JSON object."""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["data_object"]


def data_object(data: bytes) -> dict[str, Any] | None:
    """``data`` decoded, if it is a JSON object; None otherwise (the dialect skips it)."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None
