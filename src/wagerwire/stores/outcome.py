"""Settling an awaited future from a store's completion callback (both stores' writers)."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["settle", "settle_none"]


def settle(future: asyncio.Future[Any], result: object, error: BaseException | None) -> None:
    """Give ``future`` its result or error, unless its awaiter was cancelled meanwhile.

    The store's work happened regardless of the cancellation, so there is nothing to undo.
    """
    if future.done():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


def settle_none(future: asyncio.Future[None], error: BaseException | None) -> None:
    """``append``'s completion: settle the future it awaits."""
    settle(future, None, error)
