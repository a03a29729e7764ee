"""The user side of an episode: the interface and the scripted user.

A user simulator is a per-episode object with three coroutines::

    async def start(context, history) -> None      # history: messages the user has seen
    async def respond(message) -> UserMessage     # the agent's text, or results of the user's tools
    async def close() -> None

`ScriptedUser` needs no model: it states the task's reason for calling, performs the task's
user-side actions (telecom's device actions) when the agent names them, and otherwise ends the
conversation with tau2's stop token. With the oracle policy it is the offline calibration run.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from tau_adapters.config import EpisodeConfig
from tau_adapters.domains.tau2.api import api


def opening_message(task: Any) -> str:
    """The user's first words: the reason for calling and what the user knows.

    The scripted user speaks its instructions, and some name tau2's stop tokens as text (45
    banking_knowledge tasks in tau2 v1: "say '###STOP###' when ..."); said verbatim, the first
    message would end the episode. The tokens lose their ``###`` markers here."""
    instructions = task.user_scenario.instructions
    if isinstance(instructions, str):
        text = instructions
    else:
        parts = [instructions.reason_for_call.strip()]
        if instructions.known_info:
            parts.append(instructions.known_info.strip())
        text = "\n".join(parts)
    t = api()
    for token in (t.STOP, t.TRANSFER, t.OUT_OF_SCOPE):
        text = text.replace(token, token.strip("#"))
    return text


def _mentions(text: str, tool_name: str) -> bool:
    lowered = text.lower()
    return tool_name.lower() in lowered or tool_name.replace("_", " ").lower() in lowered


class ScriptedUser:
    """A deterministic user that follows its task, for offline runs and calibration."""

    def __init__(self, fingerprint: dict[str, Any] | None = None) -> None:
        self.fingerprint = fingerprint
        self._pending: list[Any] = []
        self._opened = False
        self._task: Any = None

    async def start(self, context: Any, history: list[Any]) -> None:
        self._task = context.task
        self._pending = self._user_actions()
        # Even after a task's message history, the first thing this user says is its own reason
        # for calling in this task, so that the agent hears what the task is about.
        self._opened = False

    def _user_actions(self) -> list[Any]:
        criteria = self._task.evaluation_criteria
        actions = (criteria.actions or []) if criteria is not None else []
        return [a for a in actions if a.requestor == "user"]

    def suspend_state(self) -> dict[str, Any]:
        """Whether it has opened, and which of the task's user actions are still to do (JSON)."""
        every = self._user_actions()
        left = [next(i for i, a in enumerate(every) if a is action) for action in self._pending]
        return {"kind": "scripted", "opened": self._opened, "pending": left}

    def restore(self, context: Any, state: dict[str, Any]) -> None:
        if state.get("kind") != "scripted":
            raise ValueError(f"cannot restore a scripted user from {state.get('kind')!r} state")
        self._task = context.task
        every = self._user_actions()
        self._pending = [every[i] for i in state["pending"]]
        self._opened = bool(state["opened"])

    async def respond(self, message: Any) -> Any:
        t = api()
        if getattr(message, "role", None) == "tool":  # results of this user's own tool calls
            results = getattr(message, "tool_messages", None) or [message]
            summary = " ".join((r.content or "") for r in results)
            return t.UserMessage(role="user", content=f"Done. I see: {summary[:400]}")
        if not self._opened:
            self._opened = True
            return t.UserMessage(role="user", content=opening_message(self._task))
        text = message.content or ""
        for index, action in enumerate(self._pending):
            if _mentions(text, action.name):
                del self._pending[index]
                call = t.ToolCall(
                    id="",
                    name=action.name,
                    arguments=copy.deepcopy(action.arguments),  # never the task's own lists
                    requestor="user",
                )
                return t.UserMessage(role="user", tool_calls=[call])
        return t.UserMessage(role="user", content=t.STOP)

    async def close(self) -> None:
        return None


def describe_user_action(name: str, arguments: dict[str, Any]) -> str:
    """How the oracle asks the user to do something on their side (the scripted user matches the
    tool name)."""
    args = json.dumps(arguments, sort_keys=True) if arguments else ""
    return f"Please do this on your side: {name}({args})"


def make_scripted_user(arg: str | None, config: EpisodeConfig) -> ScriptedUser:
    """``scripted``: the user that pairs with the oracle (no model)."""
    from tau_adapters.domains.names import benchmark_of
    from tau_adapters.users.fingerprint import static_fingerprint

    return ScriptedUser(static_fingerprint("scripted", config, benchmark_of(config.domain)))
