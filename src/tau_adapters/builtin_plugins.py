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


@hookimpl
def register_users() -> dict[str, Factory]:
    return {"scripted": _scripted}


@hookimpl
def register_parsers() -> dict[str, Any]:
    from tau_adapters.parsers import BUILTIN_PARSERS

    return dict(BUILTIN_PARSERS)
