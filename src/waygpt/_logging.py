"""Logging set-up: the ``waygpt`` logger, and ``WAYGPT_LOG`` for a quick stderr handler."""

from __future__ import annotations

import logging
import os

logger = logging.getLogger("waygpt")
# A library stays silent unless the application (or WAYGPT_LOG) configures logging.
logger.addHandler(logging.NullHandler())

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_handler_installed = False


def configure_logging_from_env() -> None:
    """Attach one stderr handler when ``WAYGPT_LOG`` is ``debug`` or ``info`` (idempotent)."""
    global _handler_installed
    level = _LEVELS.get(os.environ.get("WAYGPT_LOG", "").strip().lower())
    if level is None or _handler_installed:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    _handler_installed = True
