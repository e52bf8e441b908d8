"""Logging set-up, used by the CLI only (library code just gets loggers).

Two formats: ``plain`` (one human line) and ``json`` (one JSON object per line: ``ts``,
``level``, ``logger``, ``msg`` and whatever the call passed as ``extra``, such as
``conn_id``, ``request_id``, ``method``, ``path``, ``status``, ``duration_ms``).

No secret reaches a log line: every record goes through :class:`RedactSecrets`, which masks
API keys (``ww_<id>_<secret>``, ``os_live_<id>_<secret>``), stream tokens (``wwt1.…``), ``Bearer`` credentials and the
values of secret-named query parameters, in the message and in every extra field. Code
should not log secrets in the first place (the access log drops query values it does not
know); this is the net under it.
"""

from __future__ import annotations

import logging
import logging.config
import re
import time
from typing import Any

import orjson

__all__ = ["FORMATS", "JsonFormatter", "RedactSecrets", "redact", "setup_logging"]

FORMATS = ("plain", "json")

_SECRET = re.compile(
    r"((?:ww|os_live)_[A-Za-z0-9]+_)[A-Za-z0-9_\-]+"         # API key: keep the id part
    r"|wwt1\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+"  # stream token
    r"|((?:bearer|basic)\s+)\S+"                              # Authorization values
    r"|((?:token|key|api_key|apikey|secret|signature|auth|password|access_token)=)[^&\s\"']+",
    re.IGNORECASE,
)

# Attributes every LogRecord has; the rest came from ``extra`` and go into the JSON line.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def redact(text: str) -> str:
    """``text`` with every secret-looking value masked."""
    return _SECRET.sub(_mask, text)


def _mask(match: re.Match[str]) -> str:
    for group in (1, 2, 3):
        if match.group(group):
            return match.group(group) + "***"
    return "wwt1.***"


class RedactSecrets(logging.Filter):
    """Masks secrets in the formatted message and string extras (see the module docstring)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        for name, value in list(vars(record).items()):
            if name not in _STANDARD and isinstance(value, str):
                setattr(record, name, redact(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_"):
                line[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = redact(record.exc_text)
        return orjson.dumps(line, default=str).decode()


def setup_logging(level: str = "info", fmt: str = "plain") -> None:
    formatter: dict[str, Any] = (
        {"()": JsonFormatter} if fmt == "json"
        else {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": RedactSecrets}},
        "formatters": {"main": formatter},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "main",
                                "filters": ["redact"]}},
        "loggers": {"wagerwire": {"level": level.upper(), "handlers": ["stderr"]}},
    })
