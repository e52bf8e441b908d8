"""The I/O side of a connector: its reconnect loop, publishing, checkpoints, and the manager.

:class:`Connector` runs one source forever: load the saved cursor, open a session (the
dialect's client in :mod:`.clients`), publish what it yields with idempotency keys, and after
any end of the session back off with full jitter (``client/backoff.py``) and open another. A
source that refuses the credentials is put in the ``error`` state with the reason and retried
on the same back-off (at most ``max_backoff`` apart), never in a tight loop and never taking the
node down. :class:`ConnectorManager` owns every connector of a node: the configured ones and
those added at run time through the admin REST route (``wagerwire sources add``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

import httpx
import orjson

from wagerwire.client.backoff import Backoff
from wagerwire.connectors.health import SourceHealth
from wagerwire.connectors.model import (
    Gap,
    Publication,
    checkpoint_channel,
    cursor_payload,
    gap_marker,
    idempotency_key,
    read_cursor,
)
from wagerwire.connectors.sources import SourceConfig, parse_source
from wagerwire.core.hub import Hub
from wagerwire.errors import BadParameter, NotFound, WagerwireError
from wagerwire.types import Json, now_ms

__all__ = ["Connector", "ConnectorManager", "SessionEnded", "SourceBook", "SourceRefused"]

log = logging.getLogger("wagerwire.connectors")

CHECKPOINT_S = 1.0
SYNC_S = 2.0  # seconds between re-reads of the stored sources
MAX_IN_FLIGHT = 512  # submitted publications not yet durable, per connector


class SourceRefused(Exception):
    """The upstream refused us for a reason retrying soon will not fix (credentials, plan,
    quota): the source goes to the ``error`` state and waits out its back-off."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class SessionEnded(Exception):
    """The upstream closed or dropped the connection (the usual reason to reconnect)."""


class Session(Protocol):
    """One dialect's client: runs one connection and returns (or raises) when it ends."""

    async def run(self, connector: Connector) -> None: ...


class Connector:
    """One upstream source, published into ``hub``."""

    def __init__(
        self,
        config: SourceConfig,
        hub: Hub,
        session: Session,
        *,
        backoff: Backoff | None = None,
        checkpoint_s: float = CHECKPOINT_S,
        rand: Callable[[], float] = random.random,
        orders: dict[str, int] | None = None,
    ) -> None:
        self.config = config
        # The last round index published on each hub channel by this node's connectors of
        # the same failover group (shared by the group's connectors).
        self.orders: dict[str, int] = orders if orders is not None else {}
        self.hub = hub
        self.session = session
        self.backoff = backoff or Backoff(
            float(config.options.get("min_backoff", 0.5)),
            float(config.options.get("max_backoff", 30.0)),
        )
        self.checkpoint_s = checkpoint_s
        self.rand = rand
        self.health = SourceHealth(config.name, config.dialect)
        self.cursor: dict[str, Json] = {}
        self._dirty = False
        self._saved_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self.connected_once = False  # set by the session once it receives something
        # Pipelined publishing (submit): one lane per hub channel, in order within it.
        self._lanes: dict[str, tuple[asyncio.Queue[tuple[Publication, Callable[[], None]]],
                                     asyncio.Task[None]]] = {}
        self._room = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._lane_error: BaseException | None = None
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._stop_lanes()
        self.health.state = "stopped"

    async def run(self) -> None:
        """Sessions until cancelled, with back-off between them."""
        await self._load_cursor()
        attempt = 0
        try:
            while True:
                self.health.state = "connecting"
                self.connected_once = False
                try:
                    await self.session.run(self)
                    self.health.state = "backing_off"
                except SourceRefused as exc:
                    log.warning("source %s refused: %s", self.config.name, exc)
                    self.health.failed(exc.code, str(exc))
                except asyncio.CancelledError:
                    raise
                except (SessionEnded, OSError, TimeoutError, httpx.TransportError) as exc:
                    self.health.state = "backing_off"
                    self.health.error = f"{type(exc).__name__}: {exc}"[:300]
                except WagerwireError as exc:  # the local hub refused a publish
                    self.health.failed(exc.code, f"publishing into the hub: {exc}")
                except Exception as exc:  # a bug or an unexpected upstream: log, back off
                    log.exception("source %s failed", self.config.name)
                    self.health.failed("unreachable", f"{type(exc).__name__}: {exc}"[:300])
                await self._stop_lanes()
                await self.save_cursor()
                if self.connected_once:
                    attempt = 0
                delay = self.backoff.delay(attempt, self.rand())
                attempt += 1
                await asyncio.sleep(delay)
                self.health.reconnects += 1
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.save_cursor())

    # -- what sessions call ----------------------------------------------------------------

    def connected(self) -> None:
        self.connected_once = True
        self.health.connected(now_ms())

    async def publish(self, pub: Publication) -> bool:
        """Publish ``pub`` with its idempotency key; True unless the hub had it already.

        In a failover group, a round at or below the last index the group published on its
        channel is a duplicate too: the peer that is behind never publishes out of order.
        """
        cfg = self.config
        target = cfg.target(pub.channel)
        if pub.order is not None and cfg.group:
            last = self.orders.get(target)
            if last is None:
                last = self.orders[target] = await self.stored_round_index(target)
            if pub.order <= last:
                self.health.published(now_ms(), pub.ts, duplicate=True)
                return False
        result = await self.hub.publish(
            target, pub.data, attrs=pub.attrs,
            idempotency_key=idempotency_key(cfg.dedupe_group, pub.identity),
        )
        if pub.order is not None and cfg.group and not result.duplicate:
            self.orders[target] = max(pub.order, self.orders.get(target, 0))
        self.health.published(now_ms(), pub.ts, result.duplicate)
        return not result.duplicate

    async def stored_round_index(self, channel: str) -> int:
        """The highest round index among the hub channel's newest stored messages (0: none)."""
        best = 0
        for message in await self.hub.store.read_last(channel, 10):
            try:
                data = orjson.loads(message.data)
            except orjson.JSONDecodeError:
                continue
            index = data.get("index") if isinstance(data, dict) else None
            if isinstance(index, int) and not isinstance(index, bool):
                best = max(best, index)
        return best

    async def submit(self, pub: Publication, done: Callable[[], None]) -> None:
        """Publish ``pub`` without waiting for it to be durable: publications of one hub
        channel stay in order (one lane each), channels proceed side by side, at most
        :data:`MAX_IN_FLIGHT` at once. ``done`` runs once it is published (move the cursor
        there: a checkpoint then never covers what is not durable). A failed publish ends
        the session at the next submit."""
        if self._lane_error is not None:
            raise self._lane_error
        await self._room.acquire()
        self._pending += 1
        self._idle.clear()
        target = self.config.target(pub.channel)
        lane = self._lanes.get(target)
        if lane is None:
            queue: asyncio.Queue[tuple[Publication, Callable[[], None]]] = asyncio.Queue()
            task = asyncio.get_running_loop().create_task(self._lane(queue))
            lane = self._lanes[target] = (queue, task)
        lane[0].put_nowait((pub, done))

    async def _lane(self, queue: asyncio.Queue[tuple[Publication, Callable[[], None]]]
                    ) -> None:
        while True:
            pub, done = await queue.get()
            try:
                await self.publish(pub)
                done()
            except Exception as exc:
                self._lane_error = exc
                self._idle.set()
                raise
            finally:
                self._room.release()
                self._pending -= 1
                if not self._pending:
                    self._idle.set()

    async def flush(self) -> None:
        """Wait until every submitted publication is published (or raise why one failed)."""
        await self._idle.wait()
        if self._lane_error is not None:
            raise self._lane_error

    async def _stop_lanes(self) -> None:
        """End the session's lanes; what they had not published is not in the cursor, so
        the next session fetches it again."""
        lanes, self._lanes = self._lanes, {}
        for _, task in lanes.values():
            task.cancel()
        await asyncio.gather(*(task for _, task in lanes.values()), return_exceptions=True)
        self._room = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._lane_error = None
        self._pending = 0
        self._idle.set()

    async def stored_positions(self, channel: str) -> list[tuple[str, int]]:
        """The upstream positions (``src_pos`` attribute) of this source's newest messages on
        the hub channel, newest first."""
        found = []
        for message in reversed(await self.hub.store.read_last(channel, 20)):
            attrs = message.attrs or {}
            if attrs.get("src") != self.config.name or ":" not in attrs.get("src_pos", ""):
                continue
            epoch, _, offset = attrs["src_pos"].rpartition(":")
            if offset.isdigit():
                found.append((epoch, int(offset)))
        return found

    async def seen(self, channel: str, identity: str) -> bool:
        """Whether a publication with ``identity`` is already on ``channel`` (published by
        this source or a failover peer of its group, within the idempotency window)."""
        key = idempotency_key(self.config.dedupe_group, identity)
        since = now_ms() - int(self.hub.limits.idempotency_window_s * 1000)
        found = await self.hub.store.find_idempotent(self.config.target(channel), key, since)
        return found is not None

    async def gap(self, gap: Gap) -> None:
        """Report a hole no backfill could fill: a marker on the channel, and the counter."""
        self.health.gaps_unfillable += 1
        log.warning("source %s: %s lost after %s (%s)", self.config.name, gap.upstream,
                    gap.after, gap.reason)
        marker = gap_marker(gap, source=self.config.name, dialect=self.config.dialect,
                            now_ms=now_ms())
        await self.publish(marker)

    def advance(self, key: str, value: Json) -> None:
        """Move the cursor (after what it covers is published)."""
        self.cursor[key] = value
        self._dirty = True

    async def maybe_checkpoint(self) -> None:
        if self._dirty and time.monotonic() - self._saved_at >= self.checkpoint_s:
            await self.save_cursor()

    async def save_cursor(self) -> None:
        """Save the cursor if it moved since the last save."""
        if not self._dirty:
            return
        payload = cursor_payload(self.config.name, self.config.dialect, self.cursor, now_ms())
        await self.hub.publish(checkpoint_channel(self.config.name), payload,
                               attrs={"connector": self.config.name})
        self._dirty = False
        self._saved_at = time.monotonic()

    async def _load_cursor(self) -> None:
        last = await self.hub.store.read_last(checkpoint_channel(self.config.name), 1)
        if last:
            try:
                self.cursor = read_cursor(orjson.loads(last[0].data), self.config.dialect)
            except orjson.JSONDecodeError:
                self.cursor = {}


@runtime_checkable
class SourceBook(Protocol):
    """Where sources added at run time are kept (the node's store: SQLite or PostgreSQL,
    table ``sources``); entries are :meth:`SourceConfig.to_json` as JSON text."""

    async def source_entries(self) -> dict[str, str]: ...

    async def put_source(self, name: str, entry: str) -> None: ...

    async def drop_source(self, name: str) -> bool: ...


class ConnectorManager:
    """Every connector of one node; the admin REST route adds and removes them.

    With a ``book`` (the store), sources added at run time are saved there and started again
    on the next start; removing one deletes it. ``[[sources]]`` of the config stay
    authoritative for their names: a stored entry of the same name is ignored (and deleted,
    with a warning) and adding one at run time is refused. While running, the manager
    re-reads the book every ``sync_s`` seconds and starts or stops the stored sources to
    match it (what another worker or node of a shared PostgreSQL store added or removed).
    A manager with ``runs=False`` (workers other than 0 of ``--workers N``) runs nothing:
    it only writes the book, and the running worker picks the change up.
    """

    def __init__(
        self,
        hub: Hub,
        sources: Iterable[SourceConfig],
        session_for: Callable[[SourceConfig], Session],
        *,
        checkpoint_s: float = CHECKPOINT_S,
        book: SourceBook | None = None,
        runs: bool = True,
        sync_s: float = SYNC_S,
    ) -> None:
        self.hub = hub
        self.session_for = session_for
        self.checkpoint_s = checkpoint_s
        self.book = book
        self.runs = runs
        self.sync_s = sync_s
        self.connectors: dict[str, Connector] = {}
        self._orders: dict[str, dict[str, int]] = {}  # failover group -> channel -> index
        self._configured = list(sources)
        self._configured_names = frozenset(c.name for c in self._configured)
        self._stored: set[str] = set()  # names running from the book
        self._unreadable: set[str] = set()  # stored entries ignored (and said so)
        self._lock = asyncio.Lock()
        self._running = False

    async def run(self, publisher: Any) -> None:
        """A node source: start the configured connectors and the stored ones, keep the
        stored ones in step with the book, stop them all when cancelled."""
        if not self.runs:
            await asyncio.Event().wait()
        self._running = True
        for config in self._configured:
            self.add(config)
        try:
            while True:
                if self.book is not None:
                    try:
                        await self.sync()
                    except WagerwireError as exc:  # the store is down: try again later
                        log.warning("cannot read the stored sources: %s", exc)
                    except Exception:
                        log.exception("cannot sync the stored sources")
                await asyncio.sleep(self.sync_s if self.book is not None else 3600.0)
        finally:
            self._running = False
            await asyncio.gather(*(c.stop() for c in self.connectors.values()),
                                 return_exceptions=True)

    async def sync(self) -> None:
        """Start the stored sources not running here, stop those no longer stored."""
        assert self.book is not None
        async with self._lock:
            entries = await self.book.source_entries()
            for name, entry in entries.items():
                if name in self._configured_names:
                    log.warning("stored source %s is ignored: [[sources]] configures that name;"
                                " its stored entry is deleted", name)
                    await self.book.drop_source(name)
                    continue
                if name in self.connectors:
                    continue
                config = self._read_entry(name, entry)
                if config is None:
                    continue
                self.add(config)
                self._stored.add(name)
            for name in sorted(self._stored - set(entries)):
                self._stored.discard(name)
                connector = self.connectors.pop(name, None)
                if connector is not None:
                    await connector.stop()

    def _read_entry(self, name: str, entry: str) -> SourceConfig | None:
        """A stored entry's config; ``None`` (said once in the log) when it cannot be read."""
        try:
            return parse_source(orjson.loads(entry))
        except (orjson.JSONDecodeError, BadParameter) as exc:
            if name not in self._unreadable:  # once, not on every re-read
                log.warning("stored source %s is ignored: %s", name, exc)
                self._unreadable.add(name)
            return None

    async def create(self, config: SourceConfig) -> None:
        """Add a source at run time: saved in the book (when there is one), then started.

        Raises:
            BadParameter: a source of that name exists already, or ``[[sources]]`` has it.
        """
        if config.name in self._configured_names:
            raise BadParameter(f"a source named {config.name} exists already "
                               "(in [[sources]] of the config)")
        async with self._lock:
            if config.name in self.connectors:
                raise BadParameter(f"a source named {config.name} exists already")
            if self.book is None:
                self.add(config)
                return
            if config.name in await self.book.source_entries():
                raise BadParameter(f"a source named {config.name} exists already")
            await self.book.put_source(config.name, orjson.dumps(config.to_json()).decode())
            if self.runs:
                self.add(config)
                self._stored.add(config.name)

    async def delete(self, name: str) -> None:
        """Remove a source at run time: deleted from the book, stopped. A configured source
        is only stopped: it starts again with the node (the config is its home).

        Raises:
            NotFound: no source of that name.
            BadParameter: a configured source this manager does not run (``runs=False``).
        """
        async with self._lock:
            dropped = self.book is not None and await self.book.drop_source(name)
            self._stored.discard(name)
            if name in self.connectors:
                await self.remove(name)
            elif not dropped and name in self._configured_names:
                raise BadParameter(f"source {name} is in [[sources]] and runs in another "
                                   "process (worker 0): stop it there or edit the config")
            elif not dropped:
                raise NotFound(f"no source named {name}")

    def add(self, config: SourceConfig) -> Connector:
        """Start a connector for ``config``.

        Raises:
            BadParameter: a source of that name exists already.
        """
        if config.name in self.connectors:
            raise BadParameter(f"a source named {config.name} exists already")
        connector = Connector(config, self.hub, self.session_for(config),
                              checkpoint_s=self.checkpoint_s,
                              orders=self._orders.setdefault(config.dedupe_group, {}))
        self.connectors[config.name] = connector
        if self._running:
            connector.start()
        return connector

    async def remove(self, name: str) -> None:
        """Stop and forget a source (its saved cursor stays in the store).

        Raises:
            NotFound: no source of that name.
        """
        connector = self.connectors.pop(name, None)
        if connector is None:
            raise NotFound(f"no source named {name}")
        await connector.stop()

    async def listing(self) -> list[dict[str, Any]]:
        """Every source of the node, credentials masked: the configured ones and those in the
        book, read now (the store is the truth: a listing just after a start, or answered by a
        worker that runs none, is still whole). ``health`` is that of this process's connector,
        ``None`` where this process runs none (another worker does, it was stopped by a
        removal until the next start, or the first read of the book is under way).

        Raises:
            WagerwireError: the book cannot be read (the store is down).
        """
        configs = {c.name: c for c in self._configured}
        if self.book is not None:
            for name, entry in (await self.book.source_entries()).items():
                if name not in configs and (config := self._read_entry(name, entry)):
                    configs[name] = config
        for name, connector in self.connectors.items():
            configs.setdefault(name, connector.config)  # added with no book
        now = now_ms()
        return [{**config.public(),
                 "health": c.health.snapshot(now) if (c := self.connectors.get(name)) else None}
                for name, config in configs.items()]

    def health(self) -> list[dict[str, Any]]:
        now = now_ms()
        return [c.health.snapshot(now) for c in self.connectors.values()]

    def health_of(self) -> Mapping[str, SourceHealth]:
        return {name: c.health for name, c in self.connectors.items()}
