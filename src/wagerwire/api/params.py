"""Strict query-parameter types shared by the routers.

Python's ``int()`` (and pydantic's lax mode) take ``1_0``, `` 5``, ``+5``, ``5.0`` and
unbounded digit strings. Offsets, indexes, timestamps and limits a client sends must be plain
ASCII digits, at most 18 of them (they fit a signed 64-bit integer, so no store or driver ever
overflows); anything else is ``bad_parameter`` before a handler runs.
"""

from __future__ import annotations

import re

from pydantic import BeforeValidator

__all__ = ["MAX_DIGITS", "Digits", "digits"]

MAX_DIGITS = 18
_DIGITS = re.compile(rf"[0-9]{{1,{MAX_DIGITS}}}")


def digits(value: object) -> object:
    """A query value as an ``int`` if it is 1-18 ASCII digits; raise ``ValueError`` otherwise.

    Non-strings (defaults, already-converted values) pass through unchanged.
    """
    if isinstance(value, str):
        if _DIGITS.fullmatch(value) is None:
            raise ValueError(f"must be 1-{MAX_DIGITS} ASCII digits, got {value[:40]!r}")
        return int(value)
    return value


#: ``Annotated[int, Digits, Query(...)]``: an integer query parameter spelled in plain digits.
Digits = BeforeValidator(digits)
