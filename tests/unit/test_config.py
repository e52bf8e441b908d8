"""Settings: every source parses the same way, and bad values are named errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from wagerwire.config import load_settings
from wagerwire.errors import BadParameter


def test_stake_origins_from_environment_flag_and_toml(tmp_path: Path) -> None:
    env = {"WAGERWIRE_STAKE_ORIGINS": "https://a.example, re:https://.*\\.b\\.example"}
    assert load_settings(environ=env).stake_origins == [
        "https://a.example", "re:https://.*\\.b\\.example"]
    flag = load_settings({"stake_origins": "*"}, environ={})
    assert flag.stake_origins == ["*"]
    toml = tmp_path / "c.toml"
    toml.write_text('stake_origins = ["https://c.example"]\n')
    assert load_settings(config_file=str(toml), environ={}).stake_origins == ["https://c.example"]
    assert load_settings(environ={}).stake_origins == []  # the dialect's defaults


def test_stake_origins_must_be_strings(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text("stake_origins = [1, 2]\n")
    with pytest.raises(BadParameter, match="stake_origins"):
        load_settings(config_file=str(toml), environ={})
