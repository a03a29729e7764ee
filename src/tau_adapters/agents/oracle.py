"""The agent side of an episode: the interface and the oracle policy.

A policy is a per-episode object::

    async def start(context) -> None
    async def act(observation) -> AssistantMessage   # observation: new agent-visible messages
    async def close() -> None

`OraclePolicy` replays the task's ground-truth actions (asking the user to perform the user-side
ones), states the task's `communicate_info`, and ends. With the scripted user it scores 1.0 on every
airline, retail and telecom task: the calibration run of the whole pipeline.

In solo mode (tau2's ``llm_agent_solo``) it makes every gold action as a direct tool call (the solo
environment routes user-side names to the user's toolkit) and then calls ``done``; it cannot state
``communicate_info`` (nobody listens), so a task scored on COMMUNICATE (mock's
``update_task_with_initialization_data``) stays below 1.0, in tau2 too.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from tau_adapters.config import EpisodeConfig
from tau_adapters.core import AGENT_STOP_TOKEN
from tau_adapters.domains.tau2.api import api
from tau_adapters.domains.tau2.solo import solo as solo_api
from tau_adapters.users.scripted import describe_user_action

CLOSING_WITHOUT_INFO = "Is there anything else I can help you with?"


@dataclass
class MalformedTurn:
    """A model turn whose tool call could not be parsed. The rollout handles it as configured
    (``on_malformed``): an error observation back to the model, or the end of the episode."""

    text: str
    error: str


def assistant_message_from(parsed: Any, text: str, *, turn: int) -> Any:
    """A tau2 `AssistantMessage` from a parsed model turn (raw text kept in ``raw_data``)."""
    t = api()
    calls = [
        t.ToolCall(id=f"call_{turn}_{i}", name=c.name, arguments=c.arguments, requestor="assistant")
        for i, c in enumerate(parsed.tool_calls)
    ]
    raw: dict[str, Any] = {"text": text}
    if parsed.reasoning:
        raw["reasoning"] = parsed.reasoning
    return t.AssistantMessage(
        role="assistant", content=parsed.content, tool_calls=calls or None, raw_data=raw
    )


class OraclePolicy:
    """Replays the gold actions of its task, then says the information the task checks for."""

    def __init__(self) -> None:
        self._plan: list[Any] = []

    async def start(self, context: Any) -> None:
        t = api()
        criteria = context.task.evaluation_criteria
        actions = (criteria.actions or []) if criteria is not None else []
        info = (criteria.communicate_info or []) if criteria is not None else []
        config = getattr(context, "config", None)
        solo = bool(getattr(config, "solo_mode", False))
        plan: list[Any] = []
        for index, action in enumerate(actions):
            # Deep copies: a returned trajectory must never share a list or dict with the task's
            # gold actions (a host editing a logged argument would change the gold answer).
            arguments = copy.deepcopy(action.arguments)
            if action.requestor == "user" and not solo:
                text = describe_user_action(action.name, arguments)
                plan.append(t.AssistantMessage(role="assistant", content=text))
            else:
                call = t.ToolCall(
                    id=f"oracle_{index}",
                    name=action.name,
                    arguments=arguments,
                    requestor="assistant",
                )
                plan.append(t.AssistantMessage(role="assistant", tool_calls=[call]))
        if solo:
            done = t.ToolCall(
                id="oracle_done", name=solo_api().stop_function, arguments={}, requestor="assistant"
            )
            plan.append(t.AssistantMessage(role="assistant", tool_calls=[done]))
        else:
            closing = " | ".join(info) if info else CLOSING_WITHOUT_INFO
            plan.append(t.AssistantMessage(role="assistant", content=closing))
        self._plan = plan

    async def act(self, observation: list[Any]) -> Any:
        t = api()
        if self._plan:
            return self._plan.pop(0)
        return t.AssistantMessage(role="assistant", content=AGENT_STOP_TOKEN)

    async def close(self) -> None:
        return None


def make_oracle(arg: str | None, config: EpisodeConfig) -> OraclePolicy:
    """``oracle``: replays the task's gold actions (the calibration policy)."""
    return OraclePolicy()
