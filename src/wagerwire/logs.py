"""Logging set-up, used by the CLI only (library code just gets loggers)."""

from __future__ import annotations

import logging.config

__all__ = ["setup_logging"]


def setup_logging(level: str = "info") -> None:
    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
        "loggers": {"wagerwire": {"level": level.upper(), "handlers": ["stderr"]}},
    })
