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


def test_tls_table_environment_and_flags(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('[tls]\ncert = "/c.pem"\nkey = "/k.pem"\nreload_interval = 2\n')
    s = load_settings(config_file=str(toml), environ={})
    assert (s.tls_cert, s.tls_key, s.tls_dev, s.tls_reload_interval) == (
        "/c.pem", "/k.pem", False, 2.0)
    s = load_settings({"tls_cert": "/flag.pem"}, config_file=str(toml),
                      environ={"WAGERWIRE_TLS_KEY": "/env.pem"})
    assert (s.tls_cert, s.tls_key) == ("/flag.pem", "/env.pem")  # flags, env over TOML
    assert load_settings(environ={"WAGERWIRE_TLS_DEV": "1"}).tls_dev is True
    assert load_settings(environ={}).tls_cert == ""  # plain HTTP by default


@pytest.mark.parametrize(("text", "needle"), [
    ('[tls]\ncertificate = "x"\n', "unknown [tls] setting"),
    ('tls = "on"\n', "[tls] table"),
    ('[tls]\nkey = "/k.pem"\n', "tls_key needs tls_cert"),
    ('[tls]\nreload_interval = 0\n', "tls_reload_interval"),
])
def test_tls_settings_errors(tmp_path: Path, text: str, needle: str) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text(text)
    with pytest.raises(BadParameter, match=needle.replace("[", r"\[").replace("]", r"\]")):
        load_settings(config_file=str(toml), environ={})
