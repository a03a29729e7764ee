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


@hookimpl
def register_policies() -> dict[str, Factory]:
    return {"oracle": _oracle}


@hookimpl
def register_users() -> dict[str, Factory]:
    return {"scripted": _scripted}
