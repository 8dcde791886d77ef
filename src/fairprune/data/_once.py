"""Data warnings said once per process: loading the same data again (a sweep loads its data once
per seed, ``fairprune export`` and ``evaluate`` load it again) repeats nothing new."""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["warn_once"]

_SAID: set[tuple[str, str]] = set()


def warn_once(logger: logging.Logger, message: str, *args: Any) -> None:
    """``logger.warning(message, *args)`` the first time this logger says this text in this
    process (the text names the data: its folder or file); at DEBUG level after that."""
    text = message % args if args else message
    key = (logger.name, text)
    if key in _SAID:
        logger.debug("(said before) %s", text)
        return
    _SAID.add(key)
    logger.warning("%s", text)
