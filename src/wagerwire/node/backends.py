"""Store and broker from their URLs: the one place that maps a URL scheme to a backend.

============================================  ============================================
``--store``                                   backend
============================================  ============================================
``sqlite:///path/to/file.db``                 ``SqliteStore`` (embedded default); a trailing
                                              ``?synchronous=normal`` trades the fsync before
                                              each acknowledgement for throughput
``postgresql://user@host:port/db?schema=s``   ``PostgresStore`` (``schema`` optional)
============================================  ============================================

============================================  ============================================
``--broker``                                  backend
============================================  ============================================
``memory://``                                 ``MemoryBroker`` (one process)
``redis://host:port/db?prefix=ww``            ``RedisBroker``; ``&listen=local`` listens
                                              only to channels with local subscribers
``redis+sentinel://h1:p1,h2:p2/mymaster``     ``RedisBroker`` on the primary the Sentinels
                                              name ``mymaster`` (``/mymaster/db`` for another
                                              db), following it across failovers; same options
============================================  ============================================

API keys, signing keys and stored Pusher apps (:func:`build_keystore`) live where the store
is: in PostgreSQL for a ``postgresql://`` store (every node shares them), in the SQLite file
otherwise; ``--keys-db FILE`` puts them in a SQLite file of their own instead.

With the Redis broker the hub's store is wrapped in :class:`HistoryStore`, so replays and
history reads come from the Redis stream first and from the store when the stream no longer
reaches back. The backends are imported only when named, so a SQLite + memory hub never
imports redis or asyncpg.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from wagerwire.api.feature import Feature
from wagerwire.config import Settings, store_path
from wagerwire.core.broker import Broker
from wagerwire.core.store import RetentionRule, Store
from wagerwire.errors import BadParameter

if TYPE_CHECKING:
    from wagerwire.api.deps import Services
    from wagerwire.auth.keys import KeyBackend
    from wagerwire.core.hub import Hub

__all__ = [
    "build_backends",
    "build_broker",
    "build_keystore",
    "build_store",
    "check_workers",
    "redis_url_and_prefix",
    "with_readiness",
]

log = logging.getLogger("wagerwire.node.backends")

_PG_SCHEMES = ("postgresql", "postgres")
LEGACY_KEYS_DB = "wagerwire-keys.db"  # where keys of a PostgreSQL hub were before 0002_keys
_REDIS_SCHEMES = ("redis", "rediss", "redis+sentinel")


def _split_query(url: str, names: Sequence[str]) -> tuple[str, dict[str, str]]:
    """``url`` without the query parameters ``names``, and their values."""
    parts = urlsplit(url)
    taken: dict[str, str] = {}
    kept: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in names:
            taken[key] = value
        else:
            kept.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(kept))), taken


def redis_url_and_prefix(url: str) -> tuple[str, str]:
    """A ``redis://`` broker URL without wagerwire's own options, and its key prefix."""
    clean, extra = _split_query(url, ["prefix", "listen"])
    return clean, extra.get("prefix") or "ww"


def build_store(url: str, retention: Sequence[RetentionRule] = ()) -> Store:
    """The store named by ``url`` (not opened yet)."""
    scheme = urlsplit(url).scheme
    if scheme in _PG_SCHEMES:
        from wagerwire.stores.postgres import PostgresStore

        dsn, extra = _split_query(url, ["schema"])
        try:
            return PostgresStore(dsn, retention, schema=extra.get("schema") or None)
        except ValueError as exc:
            raise BadParameter(f"store URL {url!r}: {exc}") from exc
    if scheme == "sqlite":
        from wagerwire.stores.sqlite import SqliteStore

        path, _, query = url.partition("?")  # urlunsplit would drop a slash of sqlite:////abs
        extra = dict(parse_qsl(query))
        unknown = set(extra) - {"synchronous"}
        if unknown:
            raise BadParameter(f"store URL {url!r}: unknown parameter(s) {sorted(unknown)}")
        synchronous = extra.get("synchronous", "full").upper()
        if synchronous not in ("FULL", "NORMAL"):
            raise BadParameter(f"store URL {url!r}: synchronous must be 'full' or 'normal'")
        return SqliteStore(store_path(path), retention=retention,
                           synchronous="FULL" if synchronous == "FULL" else "NORMAL")
    raise BadParameter(
        f"unsupported store URL {url!r}: use sqlite:///path/to/file.db or "
        "postgresql://user@host:port/database"
    )


def build_keystore(settings: Settings) -> KeyBackend:
    """The key store of ``settings`` (opened): PostgreSQL's when the store is, unless
    ``keys_db`` names a SQLite file for the keys."""
    scheme = urlsplit(settings.store).scheme
    if scheme in _PG_SCHEMES and not settings.keys_db:
        from wagerwire.stores.pg_keys import PgKeyStore

        dsn, extra = _split_query(settings.store, ["schema"])
        if os.path.exists(LEGACY_KEYS_DB):
            log.warning("%s (keys beside a PostgreSQL node, before they moved into "
                        "PostgreSQL) is no longer read; bring its keys over with "
                        "`wagerwire keys --store URL import %s`", LEGACY_KEYS_DB,
                        LEGACY_KEYS_DB)
        return PgKeyStore(dsn, extra.get("schema") or None)
    from wagerwire.auth.keys import KeyStore

    return KeyStore(settings.keys_path())


def build_broker(
    url: str, store: Store | None, idempotency_window_s: float,
    idempotency_window_bytes: int | None = None,
) -> Broker:
    """The broker named by ``url`` (not started yet)."""
    from wagerwire.brokers.inflight import IDEMPOTENCY_WINDOW_BYTES

    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from wagerwire.brokers.memory import MemoryBroker

        return MemoryBroker(idempotency_window_s=idempotency_window_s,
                            idempotency_window_bytes=idempotency_window_bytes
                            or IDEMPOTENCY_WINDOW_BYTES)
    if scheme in _REDIS_SCHEMES:
        from wagerwire.brokers.redis import RedisBroker
        from wagerwire.brokers.redis_url import parse_redis_url

        clean, extra = _split_query(url, ["prefix", "listen"])
        try:
            parse_redis_url(clean)
        except ValueError as exc:
            raise BadParameter(f"broker URL {url!r}: {exc}") from exc
        listen = extra.get("listen", "all")
        if listen not in ("all", "local"):
            raise BadParameter(f"broker URL {url!r}: listen must be 'all' or 'local'")
        return RedisBroker(
            clean, store=store, prefix=extra.get("prefix") or "ww",
            idempotency_window_s=idempotency_window_s, subscribe_all=listen == "all",
            idempotency_window_bytes=idempotency_window_bytes or IDEMPOTENCY_WINDOW_BYTES,
        )
    raise BadParameter(
        f"unsupported broker URL {url!r}: use memory://, redis://host:port/0 or "
        "redis+sentinel://host:port,host:port/service"
    )


def build_backends(settings: Settings) -> tuple[Store, Broker]:
    """Store and broker for ``settings``; a Redis broker reads history through Redis."""
    check_workers(settings)
    store = build_store(settings.store, settings.retention_rules())
    broker = build_broker(settings.broker, store, settings.idempotency_window,
                          settings.idempotency_window_bytes)
    if urlsplit(settings.broker).scheme in _REDIS_SCHEMES:
        from wagerwire.brokers.redis import RedisBroker
        from wagerwire.brokers.redis_history import HistoryStore

        assert isinstance(broker, RedisBroker)
        return HistoryStore(store, broker), broker
    return store, broker


def check_workers(settings: Settings) -> None:
    """Refuse ``workers > 1`` where worker processes could not share offsets or history."""
    if settings.workers < 1:
        raise BadParameter("--workers must be at least 1")
    if settings.workers == 1:
        return
    if urlsplit(settings.broker).scheme not in _REDIS_SCHEMES:
        raise BadParameter(
            f"--workers {settings.workers} needs --broker redis://…: each worker is its own "
            "process with its own event loop, and only a Redis broker gives them one set of "
            "offsets and carries every message to every worker's subscribers (with "
            "memory:// a subscriber on one worker would never see what another published)"
        )
    if urlsplit(settings.store).scheme not in _PG_SCHEMES:
        raise BadParameter(
            f"--workers {settings.workers} needs --store postgresql://…: the workers must "
            "share one durable history that several processes can append to"
        )


FeaturesFactory = Callable[[Settings, "Hub"], list[Feature]]


def with_readiness(features: FeaturesFactory | None) -> FeaturesFactory:
    """``features`` plus one hook that ties ``/readyz`` to the broker's connection.

    A broker with a ``ready`` property and an ``on_ready_change`` callback (the Redis broker)
    sets ``Services.ready``: ``/readyz`` answers 503 while Redis is unreachable.
    """

    def build(settings: Settings, hub: Hub) -> list[Feature]:
        found = list(features(settings, hub)) if features is not None else []
        broker = hub.broker
        if hasattr(broker, "on_ready_change"):

            def hook(_hub: Hub, svc: Services) -> None:
                def changed(ready: bool) -> None:
                    if svc.ready and not ready:
                        svc.broker_outages += 1
                    svc.ready = ready

                broker.on_ready_change = changed
                svc.ready = bool(getattr(broker, "ready", True))

            found.append(Feature(on_start=[hook]))
        return found

    return build
