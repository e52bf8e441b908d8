"""Settings: the only place that reads configuration.

Precedence, lowest first: built-in defaults, the TOML file (``--config FILE`` or
``WAGERWIRE_CONFIG``), ``WAGERWIRE_*`` environment variables, command-line flags. Every field
of :class:`Settings` can be set each way: ``port`` is ``port = 8000`` in TOML,
``WAGERWIRE_PORT=8000`` in the environment and ``--port 8000`` on the command line.
Components receive typed objects built from here and never read the environment themselves.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from wagerwire.core.conflation import PolicyTable
from wagerwire.core.store import RetentionRule
from wagerwire.errors import BadParameter

__all__ = ["ENV_PREFIX", "Settings", "load_settings", "store_path"]

ENV_PREFIX = "WAGERWIRE_"


@dataclass(slots=True)
class Settings:
    """Everything configurable; see the README's configuration table."""

    host: str = "127.0.0.1"
    port: int = 8000
    store: str = "sqlite:///wagerwire.db"
    broker: str = "memory://"
    demo: bool = True
    demo_seed: int = 42
    demo_speed: float = 1.0
    log_level: str = "info"
    log_format: str = "plain"  # plain or json (one object per line)
    max_channels: int = 100
    max_message_bytes: int = 65536
    max_body_bytes: int = 1024 * 1024
    header_timeout: float = 10.0  # seconds for a whole request head (and idle keep-alive)
    body_timeout: float = 30.0  # seconds for a request body, from the end of its head
    outbox_limit: int = 4 * 1024 * 1024
    ping_interval: float = 20.0
    pong_timeout: float = 20.0
    sse_heartbeat: float = 15.0
    idempotency_window: float = 300.0
    idempotency_window_bytes: int = 16 * 1024 * 1024  # keys remembered, by their messages' size
    parse_cache_bytes: int = 1024 * 1024  # URL subscription parse caches (channels, filters)
    retention_count: int = 100_000
    retention_age: float = 7 * 24 * 3600.0
    retention: list[RetentionRule] = field(default_factory=list)
    # [[channel_policies]] pattern, policy = "disconnect" | "conflate", key, lifecycle;
    # tried before the default (odds:* conflates by event+bookmaker+market+selection_id)
    channel_policies: list[dict[str, Any]] = field(default_factory=list)
    workers: int = 1  # worker processes on one port (SO_REUSEPORT); > 1 needs Redis
    auth: str = "open"
    anonymous_publish: bool = False  # open mode: may clients without a key publish?
    keys_db: str = ""
    token_ttl: int = 300
    demo_keys: bool = True
    plans: dict[str, Any] = field(default_factory=dict)
    pusher_apps: dict[str, Any] = field(default_factory=dict)  # [pusher_apps.ID] key, secret
    pusher_max_connections: int = 0  # this node's Pusher connections; beyond: 4100 (0: none)
    stake_origins: list[str] = field(default_factory=list)  # [] = the Stake dialect's default
    sources: list[dict[str, Any]] = field(default_factory=list)  # [[sources]]: connectors
    connector_checkpoint: float = 1.0  # seconds between saves of a connector's position
    # Whether this process runs the connectors (configured and stored). --workers N sets it
    # false on workers > 0; on a hub of several nodes, false on all nodes but one keeps
    # one runner per source (the others still accept `sources add|remove`).
    run_connectors: bool = True
    # TLS on the TCP listener (https://, wss://); TOML may group them as [tls] cert = … .
    tls_cert: str = ""  # PEM certificate chain (leaf first); may also hold the key
    tls_key: str = ""  # PEM private key, unencrypted
    tls_dev: bool = False  # a generated ECDSA P-256 certificate (≤ 14 days, rotated)
    tls_dev_dir: str = ""  # where the dev certificate lives ("" = a temporary directory)
    tls_reload_interval: float = 5.0  # seconds between checks of the certificate files
    node_id: str = ""  # this node's name on the dashboard and /metrics ("" = host:port-pid)
    webtransport: bool = False  # HTTP/3 + WebTransport listener on UDP (needs a certificate)
    webtransport_port: int = 4433  # its UDP port (0 = any free); advertised in Alt-Svc

    def keys_path(self) -> str:
        """The SQLite file of API keys when they are not in PostgreSQL: ``keys_db``, else
        the SQLite store's file (``node/backends.build_keystore`` decides)."""
        if self.keys_db:
            return self.keys_db
        if self.store.startswith("sqlite:"):
            return store_path(self.store)
        return "wagerwire-keys.db"

    def retention_rules(self) -> list[RetentionRule]:
        """Configured rules, then the connectors' checkpoints (the last 1,000 are plenty),
        then the default rule for every other channel."""
        return [*self.retention,
                RetentionRule("connector:*", 1000, None),  # connectors' saved positions
                RetentionRule("*", self.retention_count, self.retention_age)]


def store_path(url: str) -> str:
    """The file path of a ``sqlite:///path`` URL (``sqlite:///:memory:`` is refused)."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        raise BadParameter(f"unsupported store URL {url!r}: use sqlite:///path/to/file.db")
    path = (parts.netloc + parts.path) if parts.netloc else parts.path
    if path.startswith("/") and not url.startswith("sqlite:////"):
        path = path[1:]  # sqlite:///rel.db is relative, sqlite:////abs.db absolute
    if not path or path == ":memory:":
        raise BadParameter("the SQLite store needs a file path: sqlite:///wagerwire.db")
    return path


def _coerce(name: str, kind: Any, value: Any) -> Any:
    text = str(value)
    try:
        if kind in ("int", int):
            return int(text)
        if kind in ("float", float):
            return float(text)
        if kind in ("bool", bool):
            if isinstance(value, bool):
                return value
            lowered = text.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
    except ValueError as exc:
        raise BadParameter(f"setting {name}: {value!r} is not a valid {kind}") from exc
    return text


def _string_list(name: str, raw: Any) -> list[str]:
    """A TOML list of strings, or one comma-separated string (environment, flags)."""
    if isinstance(raw, str):
        return [item.strip() for item in raw.split(",") if item.strip()]
    if isinstance(raw, list) and all(isinstance(item, str) for item in raw):
        return list(raw)
    raise BadParameter(f"setting {name} must be a list of strings or a comma-separated string")


def _retention(raw: Any) -> list[RetentionRule]:
    if not isinstance(raw, list):
        raise BadParameter("retention must be a list of {pattern, max_count, max_age_s} tables")
    rules = []
    for item in raw:
        if not isinstance(item, Mapping) or "pattern" not in item:
            raise BadParameter("each retention rule needs a pattern")
        rules.append(RetentionRule(str(item["pattern"]), item.get("max_count"),
                                   item.get("max_age_s")))
    return rules


def _pusher_apps(value: Any) -> dict[str, Any]:
    value = _from_json("pusher_apps", value)  # WAGERWIRE_PUSHER_APPS='{"42": {"key": …}}'
    if not isinstance(value, Mapping):
        raise BadParameter("pusher_apps must be a table of [pusher_apps.ID] tables")
    return dict(value)


def _from_json(key: str, value: Any) -> Any:
    """A table given as JSON text (an environment variable) is parsed; anything else is kept."""
    if not isinstance(value, str):
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise BadParameter(f"{key} is not JSON: {exc}") from exc


def _channel_policies(value: Any) -> list[dict[str, Any]]:
    value = _from_json("channel_policies", value)  # WAGERWIRE_CHANNEL_POLICIES='[{"pattern": …}]'
    PolicyTable.parse(value)  # refuse a bad policy at start-up
    return list(value)


def _sources(value: Any) -> list[dict[str, Any]]:
    value = _from_json("sources", value)  # WAGERWIRE_SOURCES='[{"name": …, "url": …}]'
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise BadParameter("sources must be a list of [[sources]] tables")
    return [dict(v) for v in value]


def _plans(key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise BadParameter("plans must be a table of [plans.NAME] tables")
    return dict(value)


_STRUCTURED: dict[str, Callable[[str, Any], Any]] = {
    "retention": lambda key, value: _retention(value),
    "plans": _plans,
    "pusher_apps": lambda key, value: _pusher_apps(value),
    "stake_origins": lambda key, value: _string_list(key, value),
    "channel_policies": lambda key, value: _channel_policies(value),
    "sources": lambda key, value: _sources(value),
}
"""Settings that are tables or lists, each with its own parser."""


_POSITIVE = ("max_channels", "max_message_bytes", "max_body_bytes", "header_timeout",
             "body_timeout", "outbox_limit",
             "ping_interval", "pong_timeout", "sse_heartbeat", "idempotency_window",
             "idempotency_window_bytes", "parse_cache_bytes",
             "retention_count", "retention_age", "token_ttl", "demo_speed",
             "tls_reload_interval", "connector_checkpoint")
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _check_ranges(settings: Settings) -> None:
    for name in _POSITIVE:
        value = getattr(settings, name)
        if value <= 0:
            raise BadParameter(f"setting {name} must be greater than 0, got {value}")
    if settings.pusher_max_connections < 0:
        raise BadParameter("pusher_max_connections must be >= 0 (0: no limit)")
    if settings.log_level.lower() not in _LOG_LEVELS:
        raise BadParameter(
            f"setting log_level must be one of {', '.join(_LOG_LEVELS)}, "
            f"got {settings.log_level!r}"
        )
    if settings.log_format not in ("plain", "json"):
        raise BadParameter(f"log_format must be 'plain' or 'json', not {settings.log_format!r}")


_TLS_KEYS = ("cert", "key", "dev", "dev_dir", "reload_interval")


def _flatten_tls(values: dict[str, Any]) -> None:
    """A TOML ``[tls]`` table (``cert``, ``key``, ``dev``, ``dev_dir``, ``reload_interval``)
    becomes the ``tls_*`` settings."""
    table = values.pop("tls", None)
    if table is None:
        return
    if not isinstance(table, Mapping):
        raise BadParameter("tls must be a [tls] table with cert, key, dev, dev_dir, "
                           "reload_interval")
    unknown = sorted(set(table) - set(_TLS_KEYS))
    if unknown:
        raise BadParameter(f"unknown [tls] setting(s): {', '.join(unknown)}")
    for key, value in table.items():
        values.setdefault(f"tls_{key}", value)


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    config_file: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge defaults, TOML, environment and ``overrides`` (CLI flags; None = not given).

    Raises:
        BadParameter: a value does not parse, or the config file is missing or invalid.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = config_file or env.get(ENV_PREFIX + "CONFIG")
    if path:
        try:
            values.update(tomllib.loads(Path(path).read_text()))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise BadParameter(f"cannot read config file {path}: {exc}") from exc
    _flatten_tls(values)
    names = {f.name: f for f in fields(Settings)}
    for f in names:
        if ENV_PREFIX + f.upper() in env:
            values[f] = env[ENV_PREFIX + f.upper()]
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise BadParameter(f"unknown setting(s): {', '.join(unknown)}")
    settings = Settings()
    for key, value in values.items():
        parse = _STRUCTURED.get(key)
        if parse is not None:
            setattr(settings, key, parse(key, value))
        else:
            setattr(settings, key, _coerce(key, names[key].type, value))
    _check_ranges(settings)
    if settings.auth not in ("open", "required"):
        raise BadParameter(f"auth must be 'open' or 'required', not {settings.auth!r}")
    if settings.tls_key and not settings.tls_cert:
        raise BadParameter("tls_key needs tls_cert (the certificate it belongs to)")
    if not 0 <= settings.port <= 65535:
        raise BadParameter(f"port {settings.port} is out of range")
    if not 0 <= settings.webtransport_port <= 65535:
        raise BadParameter(f"webtransport_port {settings.webtransport_port} is out of range")
    if settings.webtransport and settings.workers > 1:
        raise BadParameter("webtransport runs in one process: QUIC connections cannot be "
                           "spread over workers sharing a UDP port (use --workers 1)")
    return dataclasses.replace(settings)
