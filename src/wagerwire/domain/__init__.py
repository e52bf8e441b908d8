"""The hub's understanding of its own traffic: games, rounds, events and prices as they stand.

Channels carry facts as a log; REST questions ("the live events", "every bookmaker's price for
this event") are about the present. :mod:`wagerwire.domain.state` keeps that present from the
delivered messages so the API answers without scanning history.
"""

from __future__ import annotations

__all__: list[str] = []
