"""The built-in policies and user simulators, registered through the public hooks."""

from __future__ import annotations

from typing import Any

from tau_adapters.plugins import Factory, hookimpl


def _oracle(arg: str | None, config: Any) -> Any:
    from tau_adapters.policies import OraclePolicy

    return OraclePolicy()


def _scripted(arg: str | None, config: Any) -> Any:
    from tau_adapters.users import ScriptedUser

    return ScriptedUser()


def _sglang(arg: str | None, config: Any) -> Any:
    from tau_adapters.token_policy import SGLangPolicy

    return SGLangPolicy(_require_url("sglang", arg), config)


def _openai(arg: str | None, config: Any) -> Any:
    from tau_adapters.chat_policy import OpenAIChatPolicy

    return OpenAIChatPolicy(_require_url("openai", arg), config)


def _require_url(name: str, arg: str | None) -> str:
    if not arg:
        from tau_adapters.errors import ConfigError

        raise ConfigError(f"policy {name!r} needs an endpoint: {name}:http://HOST:PORT")
    return arg


@hookimpl
def register_policies() -> dict[str, Factory]:
    return {"oracle": _oracle, "sglang": _sglang, "openai": _openai}


def _llm_user(kind: str) -> Factory:
    def factory(arg: str | None, config: Any) -> Any:
        from tau_adapters.domains.names import benchmark_of
        from tau_adapters.user_sim import LLMUser, make_transport

        if benchmark_of(config.domain) == "tau1":  # tau-bench v1's own user strategies
            from tau_adapters.tau1_users import Tau1User

            return Tau1User(make_transport(kind, arg, config), config)
        return LLMUser(make_transport(kind, arg, config), config)

    return factory


@hookimpl
def register_users() -> dict[str, Factory]:
    return {"scripted": _scripted, "litellm": _llm_user("litellm"), "openai": _llm_user("openai")}


@hookimpl
def register_parsers() -> dict[str, Any]:
    from tau_adapters.parsers import BUILTIN_PARSERS

    return dict(BUILTIN_PARSERS)


@hookimpl
def register_reward_shapers() -> dict[str, Any]:
    from tau_adapters.rewards import BUILTIN_SHAPERS

    return dict(BUILTIN_SHAPERS)
