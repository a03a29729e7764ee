"""Policies used by tests to produce trajectories that deviate from the gold ones."""

from __future__ import annotations

import copy
from typing import Any

from tau_adapters.agents.oracle import CLOSING_WITHOUT_INFO, OraclePolicy
from tau_adapters.domains import get_domain


def is_write(domain: str, tool_name: str) -> bool:
    env = get_domain(domain).environment()
    try:
        return env.tools.tool_type(tool_name).value == "write"
    except Exception:
        return False


def _changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "_changed"
    if isinstance(value, list) and value:
        return value[:-1] if len(value) > 1 else [_changed(value[0])]
    if isinstance(value, dict) and value:
        key = sorted(value)[0]
        return {**value, key: _changed(value[key])}
    return "changed"


class PerturbedOracle(OraclePolicy):
    """The oracle with one deliberate mistake.

    kinds: ``drop_write`` (first write action missing), ``change_arg`` (an argument of the first
    write action changed), ``extra_write`` (the first write action issued again at the end),
    ``no_communicate`` (closing message without the information to communicate).
    """

    def __init__(self, kind: str, domain: str) -> None:
        super().__init__()
        self.kind = kind
        self.domain = domain
        self.applied = False

    async def start(self, context: Any) -> None:
        await super().start(context)
        plan = self._plan
        writes = [
            i
            for i, m in enumerate(plan)
            if m.tool_calls and is_write(self.domain, m.tool_calls[0].name)
        ]
        if self.kind == "drop_write" and writes:
            del plan[writes[0]]
            self.applied = True
        elif self.kind == "change_arg" and writes:
            message = copy.deepcopy(plan[writes[0]])
            call = message.tool_calls[0]
            if call.arguments:
                key = sorted(call.arguments)[0]
                call.arguments = {**call.arguments, key: _changed(call.arguments[key])}
                plan[writes[0]] = message
                self.applied = True
        elif self.kind == "extra_write" and writes:
            message = copy.deepcopy(plan[writes[0]])
            message.tool_calls[0].id = "extra_call"
            plan.insert(len(plan) - 1, message)
            self.applied = True
        elif self.kind == "no_communicate":
            closing = plan[-1]
            if closing.content != CLOSING_WITHOUT_INFO:
                plan[-1] = closing.model_copy(update={"content": CLOSING_WITHOUT_INFO})
                self.applied = True
