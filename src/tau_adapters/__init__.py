"""tau-adapters: tau-bench / tau2-bench episodes for RL trainers (slime, AReaL, SkyRL).

Importing the package is cheap: tau2, litellm, host frameworks and torch are imported only by the
parts that need them. The names below are loaded on first access.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Host adapters live next to their launch recipes in ``adapters/<host>/``. A wheel installs them as
# ``tau_adapters/<host>/`` (pyproject's force-include); in a source checkout (editable install)
# this makes ``tau_adapters.<host>`` resolve to the same folders.
_ADAPTERS = Path(__file__).resolve().parent.parent.parent / "adapters"
if _ADAPTERS.is_dir():
    __path__.append(str(_ADAPTERS))

_EXPORTS = {
    "EpisodeConfig": "tau_adapters.config",
    "ConfigError": "tau_adapters.errors",
    "Session": "tau_adapters.episode.session",
    "StepResult": "tau_adapters.core",
    "EpisodeContext": "tau_adapters.core",
    "Status": "tau_adapters.core",
    "Policy": "tau_adapters.core",
    "User": "tau_adapters.core",
    "Trajectory": "tau_adapters.episode.rollout",
    "rollout": "tau_adapters.episode.rollout",
    "TaskRef": "tau_adapters.episode.tasks",
    "get_domain": "tau_adapters.domains",
    "OraclePolicy": "tau_adapters.agents.oracle",
    "ScriptedUser": "tau_adapters.users.scripted",
    "make_policy": "tau_adapters.plugins",
    "make_user": "tau_adapters.plugins",
    "hookimpl": "tau_adapters.plugins",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from tau_adapters.agents.oracle import OraclePolicy
    from tau_adapters.config import EpisodeConfig
    from tau_adapters.core import EpisodeContext, Policy, Status, StepResult, User
    from tau_adapters.domains import get_domain
    from tau_adapters.episode.rollout import Trajectory, rollout
    from tau_adapters.episode.session import Session
    from tau_adapters.episode.tasks import TaskRef
    from tau_adapters.errors import ConfigError
    from tau_adapters.plugins import hookimpl, make_policy, make_user
    from tau_adapters.users.scripted import ScriptedUser


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tau_adapters' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
