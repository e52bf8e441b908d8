"""``wagerwire tail`` helpers: filter flags, output lines, the resume command."""

from __future__ import annotations

import json
import shlex

import pytest

from wagerwire.cli import build_parser
from wagerwire.client import ClientMessage
from wagerwire.client.tail import format_line, parse_filter, resume_command
from wagerwire.core.tokens import decode_token


def test_filter_flags_become_a_filter_object() -> None:
    assert parse_filter([]) is None
    assert parse_filter(["sport=football", "bookmaker=a", "bookmaker=b", "bookmaker=a"]) == {
        "sport": "football",
        "bookmaker": ["a", "b"],
    }
    for bad in ("nokey", "=v", "k="):
        with pytest.raises(ValueError):
            parse_filter([bad])


def test_lines_human_and_json() -> None:
    msg = ClientMessage("game:crash", 42, "k3x9q2ab", 1_700_000_000_123, {"x": 1}, "replay")
    human = format_line(msg, as_json=False)
    assert human.endswith(' game:crash #42 (replay) {"x":1}') and ".123 " in human
    obj = json.loads(format_line(msg, as_json=True))
    assert obj["channel"] == "game:crash" and obj["offset"] == 42 and obj["data"] == {"x": 1}
    assert decode_token(obj["token"])["game:crash"].offset == 42
    live = format_line(ClientMessage("game:crash", 43, "e", 0, None), as_json=False)
    assert "(live)" not in live and live.endswith("#43 null")


def test_resume_command_repeats_the_options_but_not_the_key_or_the_start() -> None:
    args = build_parser().parse_args(
        [
            "tail",
            "game:crash",
            "odds:*",
            "--from-start",
            "--filter",
            "bookmaker=x y",
            "--json",
            "--key",
            "secret",
            "--transport",
            "sse",
            "--url",
            "http://h:1",
        ]
    )
    line = resume_command(args, "TOKEN")
    assert shlex.split(line) == [
        "wagerwire",
        "tail",
        "game:crash",
        "odds:*",
        "--filter",
        "bookmaker=x y",
        "--json",
        "--url",
        "http://h:1",
        "--transport",
        "sse",
        "--since",
        "TOKEN",
    ]


def test_since_and_from_start_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["tail", "game:crash", "--since", "x", "--from-start"])
    assert "not allowed with" in capsys.readouterr().err


def test_resume_command_keeps_the_webtransport_options() -> None:
    args = build_parser().parse_args([
        "tail", "odds:*", "--transport", "wt", "--webtransport-url", "https://h:4433/v1/wt",
        "--ca", "/etc/ca.pem", "--cert-hash", "served",
    ])
    assert shlex.split(resume_command(args, "T"))[3:] == [
        "--transport", "wt", "--webtransport-url", "https://h:4433/v1/wt", "--ca", "/etc/ca.pem",
        "--cert-hash", "served", "--since", "T",
    ]
