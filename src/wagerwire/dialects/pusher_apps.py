"""Pusher apps (``app_id``, ``key``, ``secret``) and the HMAC-SHA256 signatures they make.

Apps come from the ``pusher_apps`` setting, a table of tables keyed by app id::

    [pusher_apps.42]
    key = "278d425bdf160c739803"
    secret = "7ad3773142a6692b25b8"
    # plan = "open"            wagerwire plan of the app's WebSocket connections
    # client_events = true     allow client-* events on private and presence channels
    # max_client_events = 10   per connection per second; more is pusher:error 4301
    # encryption_master_key_base64 = "…"   32 bytes: private-encrypted- channels
    # enabled = true           false: connections are refused (pusher:error 4003)
    # max_connections = 0      connections on every node; more are refused with 4004
    # webhook_url = "https://…"  channel_occupied/vacated, member_added/removed,
    #                           client_event, cache_miss (signed, retried)

Signatures, all lower-case hex HMAC-SHA256 with the app's secret:

* channel auth: ``"<socket_id>:<channel>"`` (presence: ``":<channel_data>"`` appended),
  sent by the client as ``"<key>:<hex>"``; user sign-in: ``"<socket_id>::user::<user_data>"``;
* the HTTP API: ``"<METHOD>\\n<path>\\n<query>"`` where ``query`` is every query parameter
  but ``auth_signature``, sorted by name, as ``name=value`` joined by ``&`` (values
  unescaped); ``body_md5`` is the MD5 hex of the body, ``auth_timestamp`` within
  :data:`TIMESTAMP_WINDOW_S` of the server's clock, ``auth_version`` ``1.0``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from wagerwire.dialects.pusher_names import valid_app_id
from wagerwire.errors import BadParameter, NotFound, Unauthorized

__all__ = [
    "TIMESTAMP_WINDOW_S",
    "PusherApp",
    "PusherApps",
    "apps_from_config",
    "channel_auth",
    "check_channel_auth",
    "new_app",
    "shared_secret",
    "sign",
    "user_auth",
    "verify_api_request",
]

TIMESTAMP_WINDOW_S = 600


@dataclass(frozen=True, slots=True)
class PusherApp:
    """One Pusher app: its id (part of hub channel names), public key and secret."""

    app_id: str
    key: str
    secret: str
    plan: str = "open"
    client_events: bool = True
    max_client_events: int = 10
    builtin: bool = False  # made by the server (SportsGameOdds'), not configured
    encryption_master_key: bytes | None = None  # 32 bytes: private-encrypted- channels
    webhook_url: str | None = None  # where webhook batches are POSTed
    enabled: bool = True  # False: connections are refused with 4003
    max_connections: int = 0  # connections on every node; beyond: 4004 (0: no limit)


class PusherApps:
    """The configured apps, by id and by key, and the stored ones (``wagerwire apps
    create``), which :meth:`set_stored` replaces whenever the key store's set changes."""

    __slots__ = ("by_id", "by_key", "stored")

    def __init__(self, apps: Iterable[PusherApp] = ()) -> None:
        self.by_id: dict[str, PusherApp] = {}
        self.by_key: dict[str, PusherApp] = {}
        self.stored: set[str] = set()  # ids of the apps that came from the key store
        for app in apps:
            self.add(app)

    def set_stored(self, apps: Iterable[PusherApp]) -> list[str]:
        """Make ``apps`` the stored apps (dropping stored ones no longer there); a stored app
        whose id or key a configured one has is skipped. Returns the ids skipped."""
        for app_id in self.stored:
            old = self.by_id.pop(app_id, None)
            if old is not None:
                self.by_key.pop(old.key, None)
        self.stored = set()
        skipped = []
        for app in apps:
            if app.app_id in self.by_id or app.key in self.by_key:
                skipped.append(app.app_id)
                continue
            self.add(app)
            self.stored.add(app.app_id)
        return skipped

    def replace(self, app: PusherApp) -> None:
        """Put ``app`` in place of the app with its id (a built-in app's shared secret)."""
        old = self.by_id.pop(app.app_id, None)
        if old is not None:
            self.by_key.pop(old.key, None)
        self.add(app)

    def add(self, app: PusherApp) -> None:
        if app.app_id in self.by_id or app.key in self.by_key:
            raise BadParameter(f"pusher app {app.app_id!r}: app id and key must be unique")
        self.by_id[app.app_id] = app
        self.by_key[app.key] = app

    def get(self, app_id: str) -> PusherApp:
        """Raises ``NotFound`` for an unknown app id."""
        app = self.by_id.get(app_id)
        if app is None:
            raise NotFound(f"unknown Pusher app {app_id[:40]!r}")
        return app


def apps_from_config(raw: Mapping[str, Any]) -> list[PusherApp]:
    """The apps of the ``pusher_apps`` setting.

    Raises:
        BadParameter: an app id that cannot be part of a hub name, a missing key or secret.
    """
    apps = []
    for app_id, table in raw.items():
        if not valid_app_id(app_id):
            raise BadParameter(f"pusher app id {app_id!r}: use 1-40 characters of "
                               "[a-z0-9_.-], starting with a letter or digit")
        if not isinstance(table, Mapping):
            raise BadParameter(f"pusher_apps.{app_id} must be a table with key and secret")
        key, secret = table.get("key"), table.get("secret")
        limit = table.get("max_connections", 0)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise BadParameter(f"pusher_apps.{app_id}.max_connections must be an integer "
                               ">= 0 (0: no limit)")
        if not isinstance(key, str) or not key or not isinstance(secret, str) or not secret:
            raise BadParameter(f"pusher_apps.{app_id} needs a non-empty key and secret")
        apps.append(PusherApp(
            app_id, key, secret, str(table.get("plan", "open")),
            bool(table.get("client_events", True)), int(table.get("max_client_events", 10)),
            encryption_master_key=_master_key(app_id, table.get("encryption_master_key_base64")),
            webhook_url=_url(app_id, table.get("webhook_url")),
            enabled=bool(table.get("enabled", True)),
            max_connections=limit,
        ))
    return apps


def _url(app_id: str, url: object) -> str | None:
    if url is None:
        return None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise BadParameter(f"pusher_apps.{app_id}.webhook_url must be an http(s) URL")
    return url


def _master_key(app_id: str, text: object) -> bytes | None:
    if text is None:
        return None
    try:
        key = base64.b64decode(str(text), validate=True)
    except (ValueError, binascii.Error):
        key = b""
    if len(key) != 32:
        raise BadParameter(f"pusher_apps.{app_id}.encryption_master_key_base64 must be 32 "
                           "bytes in base64 (openssl rand -base64 32)")
    return key


def shared_secret(app: PusherApp, channel: str) -> str:
    """The base64 key of one ``private-encrypted-`` channel: SHA-256 of the channel name
    followed by the app's master key (what the client decrypts with).

    Raises:
        BadParameter: the app has no ``encryption_master_key_base64``.
    """
    if app.encryption_master_key is None:
        raise BadParameter(f"app {app.app_id} has no encryption_master_key_base64; encrypted "
                           "channels need one")
    digest = hashlib.sha256(channel.encode() + app.encryption_master_key).digest()
    return base64.b64encode(digest).decode()


def new_app(app_id: str) -> PusherApp:
    """A new app with a random key (20 hex) and secret (20 hex), as Pusher makes them."""
    return PusherApp(app_id, secrets.token_hex(10), secrets.token_hex(10))


def sign(secret: str, text: str) -> str:
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def channel_auth(app: PusherApp, socket_id: str, channel: str,
                 channel_data: str | None = None) -> str:
    """The ``auth`` value a client sends to subscribe: ``"<key>:<hex signature>"``."""
    text = f"{socket_id}:{channel}" if channel_data is None else \
        f"{socket_id}:{channel}:{channel_data}"
    return f"{app.key}:{sign(app.secret, text)}"


def user_auth(app: PusherApp, socket_id: str, user_data: str) -> str:
    """The ``auth`` of ``pusher:signin``: ``"<key>:" + HMAC("<socket_id>::user::<user_data>")``."""
    return f"{app.key}:{sign(app.secret, f'{socket_id}::user::{user_data}')}"


def check_channel_auth(app: PusherApp, socket_id: str, channel: str, auth: object,
                       channel_data: str | None = None) -> bool:
    return isinstance(auth, str) and hmac.compare_digest(
        auth.encode(), channel_auth(app, socket_id, channel, channel_data).encode()
    )


def verify_api_request(
    app: PusherApp, method: str, path: str, query: Mapping[str, str], body: bytes, now: float
) -> None:
    """Check a signed HTTP API request of ``app``.

    Raises:
        Unauthorized: missing or wrong ``auth_key``/``auth_signature``/``body_md5``, an
            unknown ``auth_version`` or an ``auth_timestamp`` outside the window.
    """
    for name in ("auth_key", "auth_timestamp", "auth_version", "auth_signature"):
        if not query.get(name):
            raise Unauthorized(f"missing {name}: sign the request as the Pusher HTTP API does")
    if query["auth_key"] != app.key:
        raise Unauthorized("auth_key is not this app's key")
    if query["auth_version"] != "1.0":
        raise Unauthorized("auth_version must be 1.0")
    try:
        stamp = int(query["auth_timestamp"])
    except ValueError:
        raise Unauthorized("auth_timestamp must be Unix seconds") from None
    if abs(now - stamp) > TIMESTAMP_WINDOW_S:
        raise Unauthorized(f"auth_timestamp is more than {TIMESTAMP_WINDOW_S} s from the "
                           f"server's time ({int(now)}); check the client's clock")
    if body:
        md5 = hashlib.md5(body).hexdigest()  # noqa: S324 - the protocol's checksum
        if query.get("body_md5") != md5:
            raise Unauthorized("body_md5 does not match the body")
    signed = "&".join(f"{k}={v}" for k, v in sorted(query.items()) if k != "auth_signature")
    expected = sign(app.secret, f"{method}\n{path}\n{signed}")
    if not hmac.compare_digest(expected.encode(), query["auth_signature"].encode()):
        raise Unauthorized(f"invalid signature: expected the HMAC-SHA256 hex digest of "
                           f"{method!r}, {path!r} and {signed[:300]!r} joined by newlines")
