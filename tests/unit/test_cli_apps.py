"""`wagerwire apps new|list`: Pusher app credentials for the config, and what is configured."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from wagerwire.cli import main
from wagerwire.dialects.pusher_apps import apps_from_config


def test_new_prints_a_table_the_config_takes(capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    assert main(["apps", "new", "shop-1"]) == 0
    text = capsys.readouterr().out
    table = tomllib.loads(text)["pusher_apps"]
    [app] = apps_from_config(table)
    assert app.app_id == "shop-1" and len(app.key) == 20 and len(app.secret) == 20
    config = tmp_path / "w.toml"
    config.write_text(text)
    assert main(["apps", "--config", str(config), "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"app_id": "shop-1", "key": app.key}]


def test_new_refuses_an_id_that_cannot_be_a_hub_name(capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    assert main(["apps", "new", "Shop!"]) == 2
    assert "app id" in capsys.readouterr().err


def test_create_list_and_delete_stored_apps(capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path) -> None:
    store = ["--store", f"sqlite:///{tmp_path / 'hub.db'}"]
    assert main(["apps", *store, "create", "shop-1", "--plan", "free", "--json"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert made["app_id"] == "shop-1" and len(made["key"]) == 20 and len(made["secret"]) == 20
    assert main(["apps", *store, "create", "shop-1"]) == 2  # the id is taken
    assert "unique" in capsys.readouterr().err
    assert main(["apps", *store, "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"app_id": "shop-1", "key": made["key"], "stored": True}]
    assert main(["apps", *store, "delete", "shop-1"]) == 0
    assert main(["apps", *store, "delete", "shop-1"]) == 1
    capsys.readouterr()
    assert main(["apps", *store, "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_listing_never_creates_a_database(capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["apps", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert list(tmp_path.iterdir()) == []


def test_keys_import_needs_a_postgresql_store(capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path) -> None:
    assert main(["keys", "--store", f"sqlite:///{tmp_path / 'hub.db'}", "import",
                 str(tmp_path / "old.db")]) == 2
    assert "postgresql" in capsys.readouterr().err
