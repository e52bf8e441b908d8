"""Pusher channel names ↔ hub channel names: a reversible escaping, with a hashed fallback.

Pusher names are 1-164 characters of ``A-Za-z0-9_-=@,.;``; hub names are ``[a-z0-9:_.-]``,
at most 200 characters. A Pusher channel ``X`` of app ``A`` is the hub channel
``pusher:A:<escape(X)>`` where ``escape`` keeps ``a-z 0-9 - .`` and writes

=========  ========  =========  ========
Pusher     hub       Pusher     hub
=========  ========  =========  ========
``_``      ``__``    ``=``      ``_0``
``A``-``Z``  ``_a``-``_z``  ``@``  ``_1``
``,``      ``_2``    ``;``      ``_3``
``#``      ``_4``
=========  ========  =========  ========

(``#`` only in ``#server-to-user-<id>``, a signed-in user's own channel.)

so ``private-Chat=1`` of app ``42`` is ``pusher:42:private-_chat_01`` and back. An escaped
name that would pass 200 characters (a long name of capitals) is stored as
``pusherh:A:<sha256 hex of X, 40 digits>`` instead; such a channel's messages carry their Pusher
name in the event envelope (``"channel"``), so it still reads back.
"""

from __future__ import annotations

import hashlib
import re

from wagerwire.core.channels import MAX_CHANNEL_LENGTH

__all__ = [
    "MAX_NAME_LENGTH",
    "USER_PREFIX",
    "hub_channel",
    "is_hashed",
    "pusher_name",
    "valid_app_id",
    "valid_name",
]

MAX_NAME_LENGTH = 164
_NAME = re.compile(r"(#server-to-user-)?[A-Za-z0-9_\-=@,.;]{1,164}")
USER_PREFIX = "#server-to-user-"  # a signed-in user's own channel (user sign-in)
_APP_ID = re.compile(r"[a-z0-9][a-z0-9_.\-]{0,39}")
_SPECIAL = {"_": "__", "=": "_0", "@": "_1", ",": "_2", ";": "_3", "#": "_4"}
_UNSPECIAL = {"_": "_", "0": "=", "1": "@", "2": ",", "3": ";", "4": "#"}
PREFIX = "pusher:"
HASHED = "pusherh:"


def valid_name(name: object) -> bool:
    """Whether ``name`` is a Pusher channel name (or a ``#server-to-user-`` one)."""
    return isinstance(name, str) and len(name) <= MAX_NAME_LENGTH + len(USER_PREFIX) and \
        _NAME.fullmatch(name) is not None


def valid_app_id(app_id: object) -> bool:
    """App ids are part of hub names: 1-40 characters of ``[a-z0-9_.-]``."""
    return isinstance(app_id, str) and _APP_ID.fullmatch(app_id) is not None


def _escape(name: str) -> str:
    out = []
    for ch in name:
        if "a" <= ch <= "z" or "0" <= ch <= "9" or ch in "-.":
            out.append(ch)
        elif "A" <= ch <= "Z":
            out.append("_" + ch.lower())
        else:
            out.append(_SPECIAL[ch])
    return "".join(out)


def hub_channel(app_id: str, name: str) -> str:
    """The hub channel of Pusher channel ``name`` of app ``app_id`` (both already valid)."""
    escaped = f"{PREFIX}{app_id}:{_escape(name)}"
    if len(escaped) <= MAX_CHANNEL_LENGTH:
        return escaped
    return f"{HASHED}{app_id}:{hashlib.sha256(name.encode()).hexdigest()[:40]}"


def is_hashed(channel: str) -> bool:
    return channel.startswith(HASHED)


def pusher_name(channel: str) -> str | None:
    """The Pusher name of an escaped hub channel; None for a hashed or non-Pusher one."""
    if not channel.startswith(PREFIX):
        return None
    escaped = channel.split(":", 2)[2] if channel.count(":") >= 2 else ""
    out = []
    i = 0
    n = len(escaped)
    while i < n:
        ch = escaped[i]
        if ch != "_":
            out.append(ch)
            i += 1
            continue
        if i + 1 >= n:
            return None
        nxt = escaped[i + 1]
        if "a" <= nxt <= "z":
            out.append(nxt.upper())
        elif nxt in _UNSPECIAL:
            out.append(_UNSPECIAL[nxt])
        else:
            return None
        i += 2
    return "".join(out) or None
