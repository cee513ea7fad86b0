"""``MEMCACHIER_LOG=debug|info``: a stderr handler for the ``memcachier_async`` logger.

As ``OPENAI_LOG`` does for openai-python: an application without logging
configured can see what the SDK does (retries at INFO, every call at
DEBUG) without touching its code. Read once, at import.
"""

from __future__ import annotations

import logging
import os
import sys

__all__ = ["setup_from_env"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO}
_MARK = "_memcachier_env_handler"


def setup_from_env(environ: dict[str, str] | None = None) -> logging.Handler | None:
    """Add the stderr handler when ``MEMCACHIER_LOG`` asks for one; the handler, or ``None``.

    Calling it again does not add a second handler.
    """
    value = (os.environ if environ is None else environ).get("MEMCACHIER_LOG", "")
    level = _LEVELS.get(value.strip().lower())
    if level is None:
        return None
    logger = logging.getLogger("memcachier_async")
    for handler in logger.handlers:
        if getattr(handler, _MARK, False):
            handler.setLevel(level)
            logger.setLevel(level)
            return handler
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(asctime)s %(levelname)s %(name)s] %(message)s"))
    handler.setLevel(level)
    setattr(handler, _MARK, True)
    logger.addHandler(handler)
    logger.setLevel(level)
    return handler
