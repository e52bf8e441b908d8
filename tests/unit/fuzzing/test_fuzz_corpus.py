"""The fuzz targets replay their committed corpus (and every fixed crash) in ``make test``.

``make fuzz`` explores; this keeps what it found. Each file under ``fuzz/corpus/<target>/``
runs through its target as the fuzzer would run it, without atheris, so a regression of a
fixed crash fails here long before anyone fuzzes again.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from serverproc import ROOT

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fuzz.targets import CORPUS, TARGETS, chunks, corpus_files  # noqa: E402

CASES = [(target, path) for target in TARGETS for path in corpus_files(target)]


def test_every_target_has_seeds() -> None:
    assert sorted(p.name for p in CORPUS.iterdir() if p.is_dir()) == sorted(TARGETS)
    for target in TARGETS:
        files = corpus_files(target)
        assert files, target
        assert sum(p.stat().st_size for p in files) < 64 * 1024, f"{target}: keep seeds small"


@pytest.mark.parametrize(("target", "path"), CASES, ids=[f"{t}/{p.name}" for t, p in CASES])
def test_corpus_input_passes_its_target(target: str, path: Path) -> None:
    TARGETS[target](path.read_bytes())


@pytest.mark.parametrize("data", [b"", b"x", b"xy", b"\x00\x01abcdef", bytes(range(256))])
def test_chunks_cover_the_rest_in_order(data: bytes) -> None:
    rest, pieces = chunks(data)
    assert b"".join(pieces) == rest
    assert all(pieces)
