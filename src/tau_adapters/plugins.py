"""One registry for everything chosen by name: policies, user simulators, parsers, reward shapers.

Built-ins are named here as ``"module:attr"`` strings and imported only when used (as Gymnasium and
vLLM register theirs), so this module sits at the bottom of the package and imports none of the
implementations. Third-party plugins add or override names through pluggy hooks, found through
the entry-point group ``tau_adapters``::

    # my_plugin.py
    from tau_adapters.plugins import hookimpl

    @hookimpl
    def register_users():
        return {"polite": "my_plugin:make_polite_user"}   # or the factory itself

    # pyproject.toml
    [project.entry-points.tau_adapters]
    my_plugin = "my_plugin"

A spec such as ``"openai:http://127.0.0.1:8000/v1"`` selects the factory ``openai`` and passes it
``"http://127.0.0.1:8000/v1"`` as ``arg``. Factories by kind:

- policy, user: ``factory(arg, config) -> Policy | User`` (one per episode);
- parser: ``factory(arg, tools) -> Parser``;
- reward shaper: ``factory(config) -> RewardShaper``; a shaper factory may carry a pydantic
  ``Settings`` model (attribute ``settings_model``): `EpisodeConfig.reward_options` is validated
  against it at start-up and handed to the shaper.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal

import pluggy
from pydantic import ValidationError

from tau_adapters.errors import ConfigError, UnknownNameError

if TYPE_CHECKING:  # the registry sits below the config: `EpisodeConfig.build` checks names here
    from tau_adapters.config import EpisodeConfig
    from tau_adapters.core import Policy, User

PROJECT = "tau_adapters"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: ``factory(arg, config)``: ``arg`` is the text after the first ``:`` of the spec, or None.
Factory = Callable[[str | None, "EpisodeConfig"], Any]

Kind = Literal["policy", "user", "parser", "reward shaper"]

#: How each kind is named in start-up errors.
LABELS: dict[Kind, str] = {
    "policy": "policy",
    "user": "user simulator",
    "parser": "tool-call parser",
    "reward shaper": "reward shaper",
}

#: The built-ins, by kind, as ``"module:attr"`` factory references.
BUILTINS: dict[Kind, dict[str, str]] = {
    "policy": {
        "oracle": "tau_adapters.agents.oracle:make_oracle",
        "sglang": "tau_adapters.agents.token_policy:make_token_policy",
        "openai": "tau_adapters.agents.chat_policy:make_chat_policy",
    },
    "user": {
        "scripted": "tau_adapters.users.scripted:make_scripted_user",
        "litellm": "tau_adapters.users.llm:make_litellm_user",
        "openai": "tau_adapters.users.llm:make_openai_user",
    },
    "parser": {
        "hermes": "tau_adapters.parsers.base:make_hermes",
        "qwen": "tau_adapters.parsers.base:make_hermes",
        "json": "tau_adapters.parsers.base:make_json",
        "sglang": "tau_adapters.parsers.base:make_sglang",
        # Families with their own native format: ``deepseek`` / ``deepseek:v3.1``, ``mistral`` /
        # ``mistral:json`` (the JSON-list form of older templates).
        "harmony": "tau_adapters.parsers.families:make_harmony",
        "gpt-oss": "tau_adapters.parsers.families:make_harmony",
        "mistral": "tau_adapters.parsers.families:make_mistral",
        "deepseek": "tau_adapters.parsers.families:make_deepseek",
        "kimi-k2": "tau_adapters.parsers.families:make_kimi_k2",
        "glm": "tau_adapters.parsers.families:make_glm",
    },
    "reward shaper": {
        "binary": "tau_adapters.rewards.shapers:make_binary",
        "official": "tau_adapters.rewards.shapers:make_official",
        "official-no-judge": "tau_adapters.rewards.shapers:make_official_no_judge",
        "partial": "tau_adapters.rewards.shapers:make_partial",
        "curriculum": "tau_adapters.rewards.shapers:make_curriculum",
    },
}

_HOOKS: dict[Kind, str] = {
    "policy": "register_policies",
    "user": "register_users",
    "parser": "register_parsers",
    "reward shaper": "register_reward_shapers",
}

#: The setting each kind is chosen with (named in errors).
SETTINGS: dict[Kind, str] = {
    "policy": "--policy",
    "user": "--user",
    "parser": "--parser",
    "reward shaper": "--reward / TAU_ADAPTERS_REWARD",
}


class HookSpecs:
    @hookspec
    def register_users(self) -> dict[str, Factory | str]:  # type: ignore[empty-body]
        """User simulators by name."""

    @hookspec
    def register_policies(self) -> dict[str, Factory | str]:  # type: ignore[empty-body]
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
    pm.load_setuptools_entrypoints(PROJECT)
    return pm


def load(reference: str) -> Any:
    """The object a ``"module:attr"`` reference names."""
    module, _, attr = reference.partition(":")
    value: Any = importlib.import_module(module)
    for part in attr.split("."):
        value = getattr(value, part)
    return value


def registered(kind: Kind) -> dict[str, Any]:
    """Name -> factory or ``"module:attr"`` for one kind: built-ins, then plugins over them."""
    found: dict[str, Any] = dict(BUILTINS[kind])
    # pluggy calls the most recently registered plugins first: let them override earlier ones.
    for result in reversed(getattr(plugin_manager().hook, _HOOKS[kind])()):
        found.update(result or {})
    return found


def names(kind: Kind) -> list[str]:
    return sorted(registered(kind))


def factory(kind: Kind, name: str) -> Any:
    """The factory registered as `name`; `UnknownNameError` (a `ConfigError`) lists the valid ones."""
    found = registered(kind)
    if name not in found:
        raise UnknownNameError(kind, name, sorted(found))
    value = found[name]
    return load(value) if isinstance(value, str) else value


def split_spec(spec: str) -> tuple[str, str | None]:
    name, sep, arg = spec.partition(":")
    return name.strip(), (arg if sep else None)


def make_user(spec: str, config: EpisodeConfig) -> User:
    """A new per-episode user simulator from a spec such as ``scripted``."""
    name, arg = split_spec(spec)
    return factory("user", name)(arg, config)  # type: ignore[no-any-return]


def make_policy(spec: str, config: EpisodeConfig) -> Policy:
    """A new per-episode policy from a spec such as ``oracle``."""
    name, arg = split_spec(spec)
    return factory("policy", name)(arg, config)  # type: ignore[no-any-return]


def make_parser(spec: str, tools: list[dict[str, Any]] | None = None) -> Any:
    """A parser from a spec such as ``hermes`` or ``sglang:qwen25``; fails at start-up if wrong."""
    name, arg = split_spec(spec)
    return factory("parser", name)(arg, tools)


def shaper_settings(config: EpisodeConfig) -> Any:
    """The chosen shaper's settings, validated from `config.reward_options` (None if it has none)."""
    make = factory("reward shaper", config.reward)
    model = getattr(make, "settings_model", None)
    if model is None:
        if config.reward_options:
            raise ConfigError(
                f"reward shaper {config.reward!r} takes no options "
                f"(got reward_options {sorted(config.reward_options)})"
            )
        return None
    try:
        return model.model_validate(config.reward_options)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'options'}: {e['msg']}" for e in exc.errors()
        )
        valid = ", ".join(getattr(model, "model_fields", {})) or "none"
        raise ConfigError(
            f"reward_options for shaper {config.reward!r}: {problems} (valid options: {valid})"
        ) from None


def make_shaper(config: EpisodeConfig) -> Any:
    """A new reward shaper for `config`, with its settings from ``reward_options``."""
    make = factory("reward shaper", config.reward)
    if getattr(make, "settings_model", None) is None:
        shaper_settings(config)  # refuses options given to a shaper that takes none
        return make(config)
    return make(config, shaper_settings(config))


def _check(kind: Kind, name: str, valid: Iterable[str]) -> None:
    if name not in valid:
        error = UnknownNameError(LABELS[kind], name, sorted(valid))
        raise ConfigError(f"{error} (setting: {SETTINGS[kind]})")


def check_names(config: EpisodeConfig, *, check_policy: bool = True) -> None:
    """Policy, user simulator, tool-call parser and reward shaper names exist, and the shaper's
    options fit it (the policy only where it is looked up by name: a host that brings its own
    engine client skips it). Cheap: nothing is built or connected."""
    if check_policy:
        _check("policy", split_spec(config.policy)[0], names("policy"))
    _check("user", split_spec(config.user)[0], names("user"))
    _check("parser", split_spec(config.parser)[0], names("parser"))
    _check("reward shaper", config.reward, names("reward shaper"))
    shaper_settings(config)


def check_user_for_policy(config: EpisodeConfig, *, user_explicit: bool) -> None:
    """The scripted user only makes sense opposite the oracle.

    It replays the task's known conversation and stops after one agent turn with any other
    policy, so a model's score against it means nothing. Refused unless asked for by name.
    """
    if config.solo_mode or user_explicit or split_spec(config.user)[0] != "scripted":
        return  # solo mode has no user at all
    if split_spec(config.policy)[0] == "oracle":
        return
    raise ConfigError(
        f"policy {config.policy!r} needs a user simulator: the default scripted user only plays "
        "opposite the oracle (it stops after one agent turn, so scores would mean nothing). "
        "Pass --user litellm:MODEL or --user openai:URL --user-model NAME (or --user scripted "
        "to run it anyway)"
    )


__all__ = [
    "BUILTINS",
    "Factory",
    "check_names",
    "check_user_for_policy",
    "factory",
    "hookimpl",
    "load",
    "make_parser",
    "make_policy",
    "make_shaper",
    "make_user",
    "names",
    "plugin_manager",
    "registered",
    "split_spec",
]
