"""Extension points: policies and user simulators (later parsers, reward shapers) by name.

Built-ins register through the same hooks as third-party plugins, which are found through the
entry-point group ``tau_adapters``::

    # my_plugin.py
    from tau_adapters.plugins import hookimpl

    @hookimpl
    def register_users():
        return {"polite": lambda arg, config: PoliteUser(arg)}

    # pyproject.toml
    [project.entry-points.tau_adapters]
    my_plugin = "my_plugin"

A spec such as ``"openai:http://127.0.0.1:8000/v1"`` selects the factory ``openai`` and passes it
``"http://127.0.0.1:8000/v1"`` as ``arg``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

from tau_adapters.errors import UnknownNameError

if TYPE_CHECKING:
    from tau_adapters.config import EpisodeConfig

PROJECT = "tau_adapters"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: ``factory(arg, config)``: ``arg`` is the text after the first ``:`` of the spec, or None.
Factory = Callable[[str | None, "EpisodeConfig"], Any]


class HookSpecs:
    @hookspec
    def register_users(self) -> dict[str, Factory]:  # type: ignore[empty-body]
        """User simulators by name."""

    @hookspec
    def register_policies(self) -> dict[str, Factory]:  # type: ignore[empty-body]
        """Policies (who plays the agent) by name."""

    @hookspec
    def register_reward_shapers(self) -> dict[str, Any]:  # type: ignore[empty-body]
        """Reward shapers by name: ``factory(config) -> shaper``."""

    @hookspec
    def register_parsers(self) -> dict[str, Any]:  # type: ignore[empty-body]
        """Tool-call parsers by name: ``factory(arg, tools) -> Parser``."""


@functools.cache
def plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(HookSpecs)
    from tau_adapters import builtin_plugins

    pm.register(builtin_plugins, name="builtin")
    pm.load_setuptools_entrypoints(PROJECT)
    return pm


def _collect(hook_name: str) -> dict[str, Factory]:
    found: dict[str, Factory] = {}
    # pluggy calls the most recently registered plugins first: let them override built-ins.
    for result in reversed(getattr(plugin_manager().hook, hook_name)()):
        found.update(result or {})
    return found


def split_spec(spec: str) -> tuple[str, str | None]:
    name, sep, arg = spec.partition(":")
    return name.strip(), (arg if sep else None)


def _make(kind: str, hook_name: str, spec: str, config: EpisodeConfig) -> Any:
    factories = _collect(hook_name)
    name, arg = split_spec(spec)
    if name not in factories:
        raise UnknownNameError(kind, name, sorted(factories))
    return factories[name](arg, config)


def user_names() -> list[str]:
    return sorted(_collect("register_users"))


def policy_names() -> list[str]:
    return sorted(_collect("register_policies"))


def make_user(spec: str, config: EpisodeConfig) -> Any:
    """A new per-episode user simulator from a spec such as ``scripted``."""
    return _make("user", "register_users", spec, config)


def make_policy(spec: str, config: EpisodeConfig) -> Any:
    """A new per-episode policy from a spec such as ``oracle``."""
    return _make("policy", "register_policies", spec, config)
