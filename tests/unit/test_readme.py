"""The README's error and close-code tables are the code's tables."""

from __future__ import annotations

import re
from pathlib import Path

from wagerwire.errors import ERROR_CODES, CloseCode

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def _table(marker: str) -> list[list[str]]:
    block = re.search(rf"<!-- {marker}.*?-->(.*?)<!-- /{marker} -->", README, re.S)
    assert block, marker
    rows = [line for line in block.group(1).strip().splitlines() if line.startswith("|")]
    return [[c.strip() for c in row.strip("|").split("|")] for row in rows[2:]]


def test_error_table_matches_error_codes() -> None:
    rows = _table("error-table")
    expected = [
        [s.code, str(s.status), str(int(s.close_code)) if s.close_code else "", s.meaning]
        for s in ERROR_CODES
    ]
    assert rows == expected


def test_close_table_lists_every_close_code() -> None:
    rows = _table("close-table")
    assert [(int(r[0]), r[1]) for r in rows] == sorted((int(c), c.name) for c in CloseCode)
