"""Strict integer query parameters (api/params.py)."""

from __future__ import annotations

import pytest

from wagerwire.api.params import MAX_DIGITS, digits


@pytest.mark.parametrize("text", ["0", "7", "42", "9" * MAX_DIGITS])
def test_plain_ascii_digits_are_integers(text: str) -> None:
    assert digits(text) == int(text)


@pytest.mark.parametrize("text", ["", " 5", "5 ", "+5", "-5", "1_0", "5.0", "٣",
                                  "9" * (MAX_DIGITS + 1), "0x10"])
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="ASCII digits"):
        digits(text)


def test_non_strings_pass_through() -> None:
    assert digits(5) == 5 and digits(None) is None
