"""The connector manager and its book of sources added at run time (a dict stands in for the
store's ``sources`` table; the sessions idle)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from test_runner import FakeHub

from wagerwire.connectors.runner import Connector, ConnectorManager, SourceBook
from wagerwire.connectors.sources import SourceConfig, parse_source
from wagerwire.errors import BadParameter, NotFound


class Book:
    def __init__(self) -> None:
        self.rows: dict[str, str] = {}

    async def source_entries(self) -> dict[str, str]:
        return dict(self.rows)

    async def put_source(self, name: str, entry: str) -> None:
        self.rows[name] = entry

    async def drop_source(self, name: str) -> bool:
        return self.rows.pop(name, None) is not None


class Idle:
    async def run(self, connector: Connector) -> None:
        await asyncio.Event().wait()


def _source(name: str, **extra: Any) -> SourceConfig:
    return parse_source({"name": name, "url": "http://127.0.0.1:9", "dialect": "native",
                         **extra})


def _manager(book: Book, configured: list[SourceConfig] | None = None,
             runs: bool = True) -> ConnectorManager:
    return ConnectorManager(FakeHub(), configured or [], lambda c: Idle(),  # type: ignore[arg-type]
                            book=book, runs=runs, sync_s=0.01)


async def _running(manager: ConnectorManager) -> asyncio.Task[None]:
    task = asyncio.create_task(manager.run(None))
    await asyncio.sleep(0.05)
    return task


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_the_store_is_a_source_book() -> None:
    from wagerwire.stores.postgres import PostgresStore
    from wagerwire.stores.sqlite import SqliteStore

    assert isinstance(SqliteStore("x.db"), SourceBook)
    assert isinstance(PostgresStore("postgresql://127.0.0.1/x"), SourceBook)
    assert isinstance(Book(), SourceBook)


async def test_added_sources_are_stored_with_credentials_and_started_again() -> None:
    book = Book()
    first = _manager(book)
    task = await _running(first)
    await first.create(_source("eu", credentials="ww_secret"))
    assert set(first.connectors) == {"eu"}
    assert orjson.loads(book.rows["eu"])["credentials"] == "ww_secret"
    assert (await first.listing())[0]["credentials"] == "***"
    with pytest.raises(BadParameter, match="exists already"):
        await first.create(_source("eu"))
    await _stop(task)
    second = _manager(book)  # the node restarted
    task = await _running(second)
    assert set(second.connectors) == {"eu"}
    assert second.connectors["eu"].config.credentials == "ww_secret"
    await second.delete("eu")
    assert second.connectors == {} and book.rows == {}
    with pytest.raises(NotFound):
        await second.delete("eu")
    await _stop(task)


async def test_config_names_win_over_stored_ones() -> None:
    book = Book()
    book.rows["cfg"] = orjson.dumps(_source("cfg", url="http://127.0.0.1:8").to_json()).decode()
    manager = _manager(book, [_source("cfg")])
    task = await _running(manager)
    assert manager.connectors["cfg"].config.url == "http://127.0.0.1:9"  # the config's
    assert book.rows == {}  # the shadowed entry is deleted
    with pytest.raises(BadParameter, match=r"\[\[sources\]\]"):
        await manager.create(_source("cfg"))
    await manager.delete("cfg")  # stopped until the node starts again
    assert manager.connectors == {}
    await _stop(task)


async def test_a_manager_that_does_not_run_only_writes_the_book_and_the_runner_follows() -> None:
    book = Book()
    runner = _manager(book, [_source("cfg")])
    other = _manager(book, [_source("cfg")], runs=False)  # worker 1 of --workers 2
    task, idle = await _running(runner), await _running(other)
    with pytest.raises(BadParameter, match="worker 0"):
        await other.delete("cfg")
    await other.create(_source("eu"))
    assert other.connectors == {} and "eu" in book.rows
    await asyncio.sleep(0.1)
    assert set(runner.connectors) == {"cfg", "eu"}
    await other.delete("eu")
    await asyncio.sleep(0.1)
    assert set(runner.connectors) == {"cfg"} and book.rows == {}
    await _stop(task)
    await _stop(idle)


async def test_a_listing_is_whole_before_the_first_sync_and_on_a_worker_that_runs_none(
    caplog: pytest.LogCaptureFixture,
) -> None:
    book = Book()
    book.rows["eu"] = orjson.dumps(_source("eu", credentials="ww_secret").to_json()).decode()
    book.rows["bad"] = "{not json"
    starting = _manager(book, [_source("cfg")])  # run() not started: the book is not read yet
    listed = {row["name"]: row for row in await starting.listing()}
    assert set(listed) == {"cfg", "eu"}
    assert listed["eu"]["credentials"] == "***" and listed["eu"]["health"] is None
    other = _manager(book, [_source("cfg")], runs=False)
    idle = await _running(other)
    assert {row["name"]: row["health"] for row in await other.listing()} == {
        "cfg": None, "eu": None}
    await _stop(idle)
    task = await _running(starting)
    healths = {row["name"]: row["health"] for row in await starting.listing()}
    assert healths["cfg"] is not None and healths["eu"] is not None  # run here now
    await asyncio.sleep(0.05)  # a few re-reads of the book
    await _stop(task)
    said = [r.message for r in caplog.records if "stored source bad" in r.getMessage()]
    # the unreadable entry is reported once per manager (two here), not on every re-read
    assert len(said) == 2


async def test_a_listing_without_a_book_shows_the_sources_added_at_run_time() -> None:
    manager = ConnectorManager(FakeHub(), [], lambda c: Idle())  # type: ignore[arg-type]
    task = await _running(manager)
    await manager.create(_source("eu"))
    assert [row["name"] for row in await manager.listing()] == ["eu"]
    await _stop(task)
