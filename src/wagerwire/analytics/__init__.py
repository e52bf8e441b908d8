"""Pure analytics over hub data: provably-fair checks, game statistics, odds maths.

Nothing here does I/O or reads a clock, so the REST API, the dialects and the tests can all call
the same functions and get the same answers.
"""

from __future__ import annotations

__all__: list[str] = []
