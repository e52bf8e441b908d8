"""What one ``[[sources]]`` entry means: a validated, frozen :class:`SourceConfig`.

TOML::

    [[sources]]
    name = "eu-hub"                     # 1-40 of [a-z0-9_.-]; unique per node
    url = "http://10.0.0.5:8000"        # the upstream's base URL
    dialect = "native"                  # native | trackersino | datastream | datastream-sse
                                        # | stake | sportsgameodds | oddsstream
    credentials = "ww_…"                # API key / bearer / x-access-token (optional)
    subscriptions = ["game:*"]          # what to ask the upstream for (meaning per dialect)
    channels = { "game:crash" = "game:eu-crash" }   # rename hub channels (optional)
    group = "crash-feed"                # failover group: same group = same data (optional)
    start = "earliest"                  # earliest | latest, when no position is stored
    options = { daily_token_quota = 30 }
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from wagerwire.core.channels import validate_channel
from wagerwire.errors import BadParameter, InvalidChannel

__all__ = ["DIALECTS", "SourceConfig", "parse_source", "parse_sources"]

DIALECTS: Final = ("native", "trackersino", "datastream", "datastream-sse", "stake",
                   "sportsgameodds", "oddsstream")
_NAME: Final = re.compile(r"[a-z0-9_.\-]{1,40}")
_KNOWN: Final = frozenset({"name", "url", "dialect", "credentials", "subscriptions", "channels",
                           "group", "start", "options"})


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """One upstream feed; ``group`` defaults to ``name`` (failover peers share a group)."""

    name: str
    url: str
    dialect: str
    credentials: str | None = None
    subscriptions: tuple[str, ...] = ()
    channels: Mapping[str, str] = field(default_factory=dict)
    group: str = ""
    start: str = "earliest"
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def dedupe_group(self) -> str:
        return self.group or self.name

    def target(self, channel: str) -> str:
        """The hub channel a normalised channel is published on (``channels`` renames)."""
        return self.channels.get(channel, channel)

    def public(self) -> dict[str, Any]:
        """The entry as listings show it: the credentials are never echoed."""
        return {
            "name": self.name, "url": self.url, "dialect": self.dialect,
            "credentials": "***" if self.credentials else None,
            "subscriptions": list(self.subscriptions), "channels": dict(self.channels),
            "group": self.dedupe_group, "start": self.start, "options": dict(self.options),
        }

    def to_json(self) -> dict[str, Any]:
        """The whole entry, credentials included (persisted for ``sources add``)."""
        return {**self.public(), "credentials": self.credentials, "group": self.group}


def _strings(name: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
        raise BadParameter(f"source {name}: subscriptions must be a list of strings")
    return tuple(value)


def parse_source(raw: Mapping[str, Any]) -> SourceConfig:
    """Validate one entry.

    Raises:
        BadParameter: an unknown key, a missing or malformed value.
    """
    if not isinstance(raw, Mapping):
        raise BadParameter("each [[sources]] entry must be a table")
    unknown = sorted(set(raw) - _KNOWN)
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise BadParameter("a source needs a name of 1-40 characters of [a-z0-9_.-]")
    if unknown:
        raise BadParameter(f"source {name}: unknown key(s) {', '.join(unknown)}")
    url = raw.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https", "ws", "wss") or not parts.netloc:
        raise BadParameter(f"source {name}: url must be an http(s):// or ws(s):// address")
    dialect = raw.get("dialect")
    if dialect not in DIALECTS:
        raise BadParameter(f"source {name}: dialect must be one of {', '.join(DIALECTS)}")
    credentials = raw.get("credentials")
    if credentials is not None and (not isinstance(credentials, str) or not credentials):
        raise BadParameter(f"source {name}: credentials must be a non-empty string")
    channels = raw.get("channels", {})
    if not isinstance(channels, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in channels.items()
    ):
        raise BadParameter(f"source {name}: channels must map channel names to channel names")
    try:
        for target in channels.values():
            validate_channel(target)
    except InvalidChannel as exc:
        raise BadParameter(f"source {name}: {exc}") from exc
    group = raw.get("group", "")
    if not isinstance(group, str) or (group and not _NAME.fullmatch(group)):
        raise BadParameter(f"source {name}: group must be 1-40 characters of [a-z0-9_.-]")
    start = raw.get("start", "earliest")
    if start not in ("earliest", "latest"):
        raise BadParameter(f"source {name}: start must be 'earliest' or 'latest'")
    options = raw.get("options", {})
    if not isinstance(options, Mapping):
        raise BadParameter(f"source {name}: options must be a table")
    return SourceConfig(
        name=name, url=str(url).rstrip("/"), dialect=str(dialect), credentials=credentials,
        subscriptions=_strings(name, raw.get("subscriptions", ())), channels=dict(channels),
        group=group, start=str(start), options=dict(options),
    )


def parse_sources(raw: object) -> list[SourceConfig]:
    """Every entry of ``[[sources]]``; names must be unique.

    Raises:
        BadParameter: as :func:`parse_source`, or a repeated name.
    """
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
        raise BadParameter("sources must be a list of [[sources]] tables")
    sources = [parse_source(item) for item in raw]
    names = [s.name for s in sources]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise BadParameter(f"source name(s) used twice: {', '.join(repeated)}")
    return sources
