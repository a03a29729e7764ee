"""Loggers that survive hosts which rebuild Python's logging tree.

AReaL's ``areal.utils.logging.getLogger`` replaces the root logger and the logger manager on every
call and applies ``disable_existing_loggers``: a logger object taken at import time is then orphaned
(its records reach a root nobody listens to) or disabled, and warnings such as a ThunderAgent
program that was never registered vanish. `get_logger` returns a proxy that looks the logger up by
name at each call, so records always reach the current tree.
"""

from __future__ import annotations

import logging
from typing import Any


class _Logger:
    """A `logging.Logger` looked up by name at each use (see the module docstring)."""

    def __init__(self, name: str) -> None:
        self.name = name
        # Used when the managed tree no longer leads to `logging.root` (where the process's handlers
        # live: basicConfig, pytest's capture, Ray's log forwarding). Unmanaged, so no dictConfig
        # can disable it.
        self._attached = logging.Logger(name)
        self._attached.parent = logging.root

    def _current(self) -> logging.Logger:
        logger = logging.getLogger(self.name)
        if logger.disabled:  # disabled wholesale by a host's dictConfig, not by the user's choice
            logger.disabled = False
        top = logger
        while top.parent is not None:
            top = top.parent
        if top is logging.root:
            return logger
        self._attached.setLevel(logger.level)
        return self._attached

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._current(), attr)


def get_logger(name: str) -> Any:
    """The logger ``name``, robust to hosts that rebuild the logging tree (AReaL)."""
    return _Logger(name)
