"""Reference replays in tau-bench v1's own environment (module `tau_bench`, commit 59a200c).

The expected side of the v1 parity tests. Nothing here calls a model: the user is a script, the
agent a list of steps. The loop is the one v1's ``ToolCallingAgent.solve`` runs
(tau_bench/agents/tool_calling_agent.py:39-74): one ``env.step`` per agent message, made from the
message by v1's rule (first tool call, else the text as ``respond``), stopping at ``done`` or after
``max_num_steps`` actions; the episode's reward is the last step's (0 when not done). The env is
v1's own: ``get_env`` loads the data from v1's files, and ``step``, ``get_data_hash`` and
``calculate_reward`` are v1's code.

A step is ``("say", text)``, ``("call", name, kwargs)`` or ``("calls", [(name, kwargs), ...],
text)`` (one message carrying several tool calls and optional text); `to_tau2` turns the same
steps into the assistant messages our session gets.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

STOP = "###STOP###"
Step = tuple[Any, ...]


def say(text: str) -> Step:
    return ("say", text)


def call(name: str, **kwargs: Any) -> Step:
    return ("call", name, kwargs)


def calls(pairs: Sequence[tuple[str, dict[str, Any]]], text: str | None = None) -> Step:
    return ("calls", list(pairs), text)


def _user_class() -> Any:
    from tau_bench.envs.user import BaseUserSimulationEnv

    class ScriptedV1User(BaseUserSimulationEnv):
        """A v1 user that answers each ``respond`` with the next scripted line."""

        def __init__(self, replies: Iterable[str], default: str) -> None:
            self.replies = list(replies)
            self.default = default
            self.heard: list[Any] = []

        def reset(self, instruction: str | None = None) -> str:
            return instruction or ""

        def step(self, content: str) -> str:
            self.heard.append(content)
            return self.replies.pop(0) if self.replies else self.default

        def get_total_cost(self) -> float:
            return 0.0

    return ScriptedV1User


def to_openai(step: Step) -> dict[str, Any]:
    """The step as the OpenAI-style message v1's agent would have received from its model."""
    if step[0] == "say":
        return {"role": "assistant", "content": step[1]}
    pairs = [(step[1], step[2])] if step[0] == "call" else step[1]
    text = step[2] if step[0] == "calls" else None
    return {
        "role": "assistant",
        "content": text,
        "tool_calls": [
            {
                "id": f"c{i}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(kwargs)},
            }
            for i, (name, kwargs) in enumerate(pairs)
        ],
    }


def message_to_action(message: dict[str, Any]) -> Any:
    """v1's rule (tool_calling_agent.py:83-93), written out: the first tool call only; otherwise
    the text is a ``respond``."""
    from tau_bench.types import RESPOND_ACTION_NAME, Action

    tool_calls = message.get("tool_calls")
    if tool_calls and tool_calls[0].get("function") is not None:
        fn = tool_calls[0]["function"]
        return Action(name=fn["name"], kwargs=json.loads(fn["arguments"]))
    return Action(name=RESPOND_ACTION_NAME, kwargs={"content": message.get("content")})


def v1_hash(data: Any) -> str:
    """v1's ``Env.get_data_hash`` of a data dict (v1's own functions)."""
    from tau_bench.envs.base import consistent_hash, to_hashable

    return consistent_hash(to_hashable(data))


_envs: dict[tuple[str, str], Any] = {}


def _env(env_name: str, split: str) -> Any:
    from tau_bench.envs import get_env

    env = _envs.get((env_name, split))
    if env is None:
        env = get_env(
            env_name, user_strategy="human", user_model="none", task_split=split, task_index=0
        )
        _envs[(env_name, split)] = env
    return env


def replay(
    env_name: str,
    task_index: int,
    steps: Sequence[Step],
    *,
    user_replies: Iterable[str] = (),
    user_default: str = "ok",
    split: str = "test",
    max_num_steps: int = 30,
) -> dict[str, Any]:
    """Run `steps` through v1's own env as v1's runner would; what happened, v1's words."""
    env = _env(env_name, split)
    user = _user_class()(user_replies, user_default)
    env.user = user
    env.reset(task_index=task_index)  # v1's reset: fresh data from its files, no actions
    reward, done, info, ended, count = 0.0, False, None, "not_done", 0
    data_hash = None
    observations: list[str] = []
    for step in steps:
        if count >= max_num_steps:
            ended = "max_steps"
            break
        action = message_to_action(to_openai(step))
        # calculate_reward reloads the data (base.py:133): the agent's hash is read before.
        before = v1_hash(env.data)
        response = env.step(action)
        count += 1
        observations.append(response.observation)
        reward = response.reward
        if response.done:
            done, info, data_hash = True, response.info.reward_info, before
            ended = "user_stop" if action.name == "respond" else "terminate_tool"
            break
    else:
        if count >= max_num_steps:
            ended = "max_steps"
    if data_hash is None:
        data_hash = v1_hash(env.data)
    return {
        "done": done,
        "reward": float(reward),
        "ended": ended,
        "actions": count,
        "reward_info": info.model_dump(mode="json") if info is not None else None,
        "data_hash": data_hash,
        "observations": observations,
        "user_heard": list(user.heard),
    }


def gold_steps(env_name: str, task_index: int, split: str = "test") -> list[Step]:
    env = _env(env_name, split)
    return [call(a.name, **a.kwargs) for a in env.tasks[task_index].actions]


def task_of(env_name: str, task_index: int, split: str = "test") -> Any:
    return _env(env_name, split).tasks[task_index]


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
