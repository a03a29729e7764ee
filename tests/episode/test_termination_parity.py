"""The session's termination rules at their boundaries, against tau2's own `Orchestrator`.

The same scripted conversation (agent moves, user replies) is driven through tau2's `Orchestrator`
(the reference, with tau2's own airline environment) and through our `Session`; the termination
reason, the step count and the trajectory's shape must agree. A malformed (rejected) model turn is
scripted for tau2 as a call to a tool that does not exist: in both, it costs two steps and one error.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from conftest import requires_tau2

hypothesis = pytest.importorskip("hypothesis", reason="property tests need hypothesis (dev extra)")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

pytestmark = requires_tau2

# Agent moves: ("text", content) | ("ok",) a successful tool call | ("err", n) n failing tool
# calls in one message | ("bad",) a malformed turn (Session.reject; tau2: unknown tool).
OK_CALL = ("get_user_details", {"user_id": "mia_li_3668"})
BAD_CALL = ("get_user_details", {"user_id": "no_such_user_0000"})


def _task() -> Any:
    from tau_adapters.domains import get_domain

    return next(t for t in get_domain("airline").tasks("test") if t.initial_state is None)


def _agent_message(move: tuple[Any, ...], index: int) -> Any:
    from tau_adapters.domains.tau2.api import api

    t = api()
    kind = move[0]
    if kind == "text":
        return t.AssistantMessage(role="assistant", content=move[1])
    if kind == "ok":
        calls = [(OK_CALL[0], OK_CALL[1])]
    elif kind == "err":
        calls = [BAD_CALL] * move[1]
    else:  # "bad": what the model meant could not be parsed; tau2 sees an unknown tool
        calls = [("not_a_tool_malformed", {})]
    return t.AssistantMessage(
        role="assistant",
        tool_calls=[
            t.ToolCall(id=f"c{index}_{i}", name=name, arguments=dict(args), requestor="assistant")
            for i, (name, args) in enumerate(calls)
        ],
    )


class _Script:
    """Hands out agent moves and user replies in order; defaults once a list runs out."""

    def __init__(self, agent: list[tuple[Any, ...]], user: list[str]) -> None:
        self.agent, self.user = list(agent), list(user)
        self.agent_i = self.user_i = 0

    def next_agent(self) -> tuple[Any, ...]:
        move = self.agent[self.agent_i] if self.agent_i < len(self.agent) else ("text", "More?")
        self.agent_i += 1
        return move

    def next_user(self) -> str:
        reply = self.user[self.user_i] if self.user_i < len(self.user) else "Go on."
        self.user_i += 1
        return reply


def _run_tau2(script: _Script, max_steps: int, max_errors: int) -> dict[str, Any]:
    from tau_adapters.domains.tau2.api import api

    api()  # tau2 imported the quiet way (no network fetch by litellm)
    from tau2.data_model.message import UserMessage
    from tau2.orchestrator.orchestrator import Orchestrator
    from tau2.registry import registry

    class Agent:
        STOP_TOKEN = "###STOP###"

        def get_init_state(self, message_history: Any = None) -> Any:
            return None

        def generate_next_message(self, message: Any, state: Any) -> Any:
            return _agent_message(script.next_agent(), script.agent_i), state

        @classmethod
        def is_stop(cls, message: Any) -> bool:  # tau2's LLMAgent rule
            return message.content is not None and cls.STOP_TOKEN in message.content

        def set_seed(self, seed: int) -> None:
            return None

        def stop(self, message: Any = None, state: Any = None) -> None:
            return None

    class User:
        def get_init_state(self, message_history: Any = None) -> Any:
            return None

        def generate_next_message(self, message: Any, state: Any) -> Any:
            return UserMessage(role="user", content=script.next_user()), state

        def set_seed(self, seed: int) -> None:
            return None

        def stop(self, message: Any = None, state: Any = None) -> None:
            return None

    environment = registry.get_env_constructor("airline")()
    orchestrator = Orchestrator(
        domain="airline",
        agent=Agent(),
        user=User(),
        environment=environment,
        task=_task(),
        max_steps=max_steps,
        max_errors=max_errors,
    )
    simulation = orchestrator.run()
    return {
        "reason": str(
            getattr(simulation.termination_reason, "value", simulation.termination_reason)
        ),
        "steps": orchestrator.step_count,
        "errors": orchestrator.num_errors,
        "roles": [m.role for m in simulation.messages],
    }


def _run_session(script: _Script, max_steps: int, max_errors: int) -> dict[str, Any]:
    from tau_adapters.config import EpisodeConfig
    from tau_adapters.domains.tau2.api import api
    from tau_adapters.episode.session import Session

    t = api()

    class User:
        async def start(self, context: Any, history: list[Any]) -> None:
            return None

        async def respond(self, message: Any) -> Any:
            return t.UserMessage(role="user", content=script.next_user())

        async def close(self) -> None:
            return None

    config = EpisodeConfig.build(domain="airline", max_steps=max_steps, max_errors=max_errors)
    session = Session(_task(), config, User())

    async def go() -> None:
        await session.start()
        while not session.done:
            move = script.next_agent()
            if move[0] == "bad":
                session.reject("<tool_call>{oops</tool_call>", "malformed tool call")
            else:
                await session.step(_agent_message(move, script.agent_i))

    asyncio.run(go())
    roles = [m.role for m in session.messages]
    # A rejected turn is kept outside tau2's message list; tau2 has its call and the error there.
    for rejected in reversed(session.rejected):
        at = rejected["after_message"]
        roles[at:at] = ["assistant", "tool"]
    return {
        "reason": session.termination_reason,
        "steps": session.counters.steps,
        "errors": session.counters.errors,
        "roles": roles,
    }


def _compare(
    agent: list[tuple[Any, ...]], user: list[str], *, max_steps: int = 100, max_errors: int = 10
) -> dict[str, Any]:
    reference = _run_tau2(_Script(copy.deepcopy(agent), user), max_steps, max_errors)
    ours = _run_session(_Script(copy.deepcopy(agent), user), max_steps, max_errors)
    assert ours == reference
    return reference


@pytest.mark.parametrize("max_errors", [1, 2, 3])
@pytest.mark.parametrize("error_kind", ["err", "bad"])
def test_max_errors_ends_exactly_at_the_nth_error(max_errors: int, error_kind: str) -> None:
    move = ("err", 1) if error_kind == "err" else ("bad",)
    # Errors separated by a successful call and by a text exchange: only errors count.
    agent = [move, ("ok",), ("text", "Anything else?"), move, move, move, move]
    result = _compare(agent, [], max_errors=max_errors)
    assert result["reason"] == "too_many_errors" and result["errors"] == max_errors
    # By hand: 1 step for the user's answer to the greeting, then 2 per agent move (the agent's
    # message, then the environment's results or the user's reply).
    expected = 1 + 2 + (2 + 2 if max_errors > 1 else 0) + 2 * (max_errors - 1)
    assert result["steps"] == expected


def test_rejected_turns_and_tool_errors_add_up() -> None:
    agent = [("bad",), ("err", 1), ("text", "Hm?"), ("bad",)]
    result = _compare(agent, [], max_errors=3)
    assert result["reason"] == "too_many_errors" and result["errors"] == 3


def test_errors_in_one_message_count_one_by_one() -> None:
    # Two failing calls in one message with max_errors=2: both count, the episode ends after the
    # environment hands back to the agent (not in the middle of the call).
    result = _compare([("err", 2)], [], max_errors=2)
    assert result["reason"] == "too_many_errors" and result["errors"] == 2
    assert result["steps"] == 3  # the user's answer, the agent's message, the results
    assert _compare([("err", 2)], [], max_errors=3)["reason"] == "max_steps"  # not reached


@pytest.mark.parametrize("max_steps", range(1, 10))
def test_max_steps_boundary(max_steps: int) -> None:
    agent = [("ok",), ("text", "Let me see."), ("ok",), ("ok",), ("text", "Done?")]
    result = _compare(agent, [], max_steps=max_steps)
    assert result["reason"] == "max_steps"
    # Steps into the environment do not end an episode: it runs on until the agent's turn.
    assert result["steps"] in (max_steps, max_steps + 1)


@pytest.mark.parametrize(
    "stop", ["###STOP###", "###TRANSFER###", "###OUT-OF-SCOPE###", "Thanks, bye! ###STOP###"]
)
def test_every_user_stop_marker(stop: str) -> None:
    result = _compare([("ok",), ("text", "Anything else?")], ["I need help.", stop])
    assert result["reason"] == "user_stop" and result["steps"] == 5
    assert result["roles"][-1] == "user"


def test_max_steps_overrides_a_stop_on_the_same_step() -> None:
    # The user stops on step 5; with max_steps=5 tau2 reports max_steps (checked after the stop).
    result = _compare([("ok",), ("text", "Anything else?")], ["Hi.", "###STOP###"], max_steps=5)
    assert result["reason"] == "max_steps"


def test_agent_stop() -> None:
    result = _compare([("ok",), ("text", "Goodbye. ###STOP###")], ["Hi."])
    assert result["reason"] == "agent_stop" and result["steps"] == 4


_moves = st.one_of(
    st.just(("ok",)),
    st.tuples(st.just("err"), st.integers(1, 2)),
    st.just(("bad",)),
    st.tuples(st.just("text"), st.sampled_from(["Sure.", "Anything else?", "Bye ###STOP###"])),
)
_replies = st.sampled_from(
    ["Hello.", "Please check.", "###STOP###", "###TRANSFER###", "ok ###OUT-OF-SCOPE###"]
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    agent=st.lists(_moves, max_size=8),
    user=st.lists(_replies, max_size=4),
    max_steps=st.integers(1, 14),
    max_errors=st.integers(1, 4),
)
def test_random_scripts_end_as_in_tau2(
    agent: list[tuple[Any, ...]], user: list[str], max_steps: int, max_errors: int
) -> None:
    _compare(agent, user, max_steps=max_steps, max_errors=max_errors)
