"""The user side against tau2's own `UserSimulator` and `Orchestrator`, on one loopback server.

Each test plays the same scripted agent and the same scripted user-model replies twice: once through
tau2's real `Orchestrator` + `UserSimulator` (which call litellm), once through our `Session` +
`LLMUser`. A recording OpenAI-compatible server on 127.0.0.1 answers both. The requests it receives
and the trajectories that come out must match: tau2 is the reference for every expected value.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from conftest import requires_tau2

pytest.importorskip("starlette", reason="the loopback server needs the testing extra")
pytest.importorskip("litellm", reason="tau2's user simulator calls litellm")

from tau_adapters.config import EpisodeConfig
from tau_adapters.domains import get_domain
from tau_adapters.domains.tau2.api import api
from tau_adapters.episode.rollout import rollout
from tau_adapters.testing import LoopbackEngine

pytestmark = requires_tau2

SEED = 300
STOP = "###STOP###"
#: The request fields that carry meaning for the user model (litellm may add transport fields).
REQUEST_KEYS = ("model", "messages", "tools", "tool_choice", "temperature", "seed", "max_tokens")


class ReplyScript:
    """Chat responder: records every request body and answers with the next scripted reply."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.replies: list[dict[str, Any]] = []

    def load(self, replies: list[dict[str, Any]]) -> None:
        self.bodies = []
        self.replies = copy.deepcopy(replies)

    def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        self.bodies.append(copy.deepcopy(body))
        if self.replies:
            return self.replies.pop(0)
        return {"role": "assistant", "content": f"Thank you. {STOP}"}


@pytest.fixture(scope="module")
def server():
    engine = LoopbackEngine(canned=lambda ids, body: [0]).start()
    engine.chat_responder = ReplyScript()
    yield engine
    engine.stop()


@pytest.fixture(autouse=True)
def _api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback")


def text(content: str) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


def tool_call(call_id: str, name: str, arguments: str, content: str | None = None) -> dict:
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    return {"role": "assistant", "content": content, "tool_calls": [call]}


def agent_says(*contents: str) -> list[Any]:
    t = api()
    return [t.AssistantMessage(role="assistant", content=c) for c in contents]


# -- the two sides -----------------------------------------------------------------------------
def run_tau2(server, domain: str, task: Any, agent_script: list[Any], max_steps: int = 40):
    """tau2's own Orchestrator, UserSimulator (litellm) and environment."""
    from tau2.agent.base import BaseAgent
    from tau2.orchestrator.orchestrator import Orchestrator
    from tau2.user.user_simulator import UserSimulator
    from tau2.utils.utils import get_now

    t = api()

    class ReplayAgent(BaseAgent):
        def __init__(self) -> None:
            self.script = copy.deepcopy(agent_script)

        def get_init_state(self, message_history=None):
            return None

        def generate_next_message(self, message, state):
            # tau2 sorts the trajectory by timestamp: stamp the message when it is sent.
            reply = self.script.pop(0) if self.script else agent_says(STOP)[0]
            return reply.model_copy(update={"timestamp": get_now()}), state

        def stop(self, message=None, state=None) -> None:
            return None

        @classmethod
        def is_stop(cls, message) -> bool:
            return message.content is not None and STOP in message.content

        def set_seed(self, seed: int) -> None:
            return None

    env = t.registry.get_env_constructor(domain)()
    try:
        user_tools = env.get_user_tools()
    except Exception:  # tau2's run_task: domains without user tools
        user_tools = None
    user = UserSimulator(
        tools=user_tools,
        instructions=str(task.user_scenario),
        llm="openai/user-sim",
        llm_args={"api_base": f"{server.url}/v1", "temperature": 0.0},
    )
    orchestrator = Orchestrator(
        domain=domain,
        agent=ReplayAgent(),
        user=user,
        environment=env,
        task=task,
        max_steps=max_steps,
        seed=SEED,
    )
    return orchestrator.run()


def run_ours(server, domain: str, task: Any, agent_script: list[Any], transport: str, **extra):
    class ReplayPolicy:
        async def start(self, context) -> None:
            self.script = copy.deepcopy(agent_script)

        async def act(self, observation):
            if self.script:
                return self.script.pop(0)
            return api().AssistantMessage(role="assistant", content=STOP)

        async def close(self) -> None:
            return None

    if transport == "litellm":
        user = {"user": "litellm:openai/user-sim", "user_api_base": f"{server.url}/v1"}
    else:
        user = {"user": f"openai:{server.url}/v1", "user_model": "user-sim"}
    config = EpisodeConfig.build(
        domain=domain, seed=SEED, max_steps=extra.pop("max_steps", 40), **user, **extra
    )
    return asyncio.run(rollout(task, config, policy=ReplayPolicy()))


def requests(bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The meaningful fields of each request. tau2 also puts a non-standard ``name`` next to
    ``function`` in each tool call it sends back; we deliberately don't (see `user_sim`), so it is
    left out of the comparison, and only it."""
    out = []
    for body in bodies:
        kept = copy.deepcopy({k: body[k] for k in REQUEST_KEYS if k in body})
        for message in kept.get("messages", []):
            for call in message.get("tool_calls") or []:
                call.pop("name", None)
        out.append(kept)
    return out


def shape(messages: list[Any]) -> list[tuple]:
    """A trajectory without timestamps, costs and usage."""
    out = []
    for m in messages:
        if m.role == "tool":
            out.append((m.role, m.id, m.content, m.requestor, m.error))
        else:
            calls = [(c.id, c.name, c.arguments, c.requestor) for c in (m.tool_calls or [])]
            out.append((m.role, m.content, calls or None))
    return out


def both(server, domain, task, agent_script, replies, transports=("litellm", "openai"), **extra):
    """Run tau2 and ours on the same script; return (tau2 result or exception, tau2 requests,
    {transport: (trajectory, requests)})."""
    script = server.chat_responder
    script.load(replies)
    try:
        reference: Any = run_tau2(server, domain, task, agent_script, extra.get("max_steps", 40))
    except Exception as exc:  # tau2 raises where we end the episode with a reason
        reference = exc
    tau2_requests = requests(script.bodies)
    ours = {}
    for transport in transports:
        script.load(replies)
        trajectory = run_ours(server, domain, task, agent_script, transport, **extra)
        ours[transport] = (trajectory, requests(script.bodies))
    for transport in transports:
        assert ours[transport][1] == tau2_requests, transport
    return reference, tau2_requests, ours


def telecom_task() -> Any:
    return get_domain("telecom").tasks("test")[0]


def airline_task() -> Any:
    return get_domain("airline").tasks("test")[0]


# -- point 5: the requests themselves --------------------------------------------------------
def test_user_tool_turns_are_sent_as_tau2_sends_them(server) -> None:
    replies = [
        text("My phone has no mobile data."),
        tool_call("u1", "set_network_mode_preference", '{"mode": "4g_5g_préféré"}'),
        tool_call("u2", "check_status_bar", "{}"),
        text(f"It still fails. {STOP}"),
    ]
    agent = agent_says("Please set your network mode preference.", "Anything else?")
    reference, tau2_requests, ours = both(server, "telecom", telecom_task(), agent, replies)
    for trajectory, sent in ours.values():
        assert shape(trajectory.messages) == shape(reference.messages)
        assert trajectory.termination_reason == reference.termination_reason.value == "user_stop"
        assert all(r["tool_choice"] == "auto" and r["tools"] for r in sent)
        own_turn = sent[-1]["messages"][4]
        assert own_turn["role"] == "assistant" and "content" not in own_turn
        assert "\\u00e9" in own_turn["tool_calls"][0]["function"]["arguments"]
    assert len(tau2_requests) == 4


# -- point 2: a stop signal next to a tool call ----------------------------------------------
def test_stop_signal_with_a_tool_call_runs_the_call_and_goes_on(server) -> None:
    replies = [
        text("My phone has no mobile data."),
        tool_call("u1", "check_status_bar", "{}", content=f"Let me look. {STOP}"),
        text(f"It shows no signal. {STOP}"),
    ]
    agent = agent_says("Please check your status bar.", "Anything else?")
    reference, tau2_requests, ours = both(server, "telecom", telecom_task(), agent, replies)
    assert len(tau2_requests) == 3  # the call ran, its result went back to the user model
    for trajectory, _ in ours.values():
        assert shape(trajectory.messages) == shape(reference.messages)
        assert trajectory.termination_reason == reference.termination_reason.value == "user_stop"
        assert trajectory.status == "completed" and trajectory.error is None
        assert trajectory.reward_info is not None  # scored (no "Tool message expected")
        roles = [m.role for m in trajectory.messages]
        assert roles[-3:] == ["user", "tool", "user"]


# -- point 3: empty replies are asked again --------------------------------------------------
EMPTIES = [text(""), {"role": "assistant", "content": None}, text("  \n\t"), text(" ")]


@pytest.mark.parametrize("empties", [1, 3])
def test_empty_user_replies_are_asked_again(server, empties) -> None:
    replies = [*EMPTIES[:empties], text("I want to cancel my reservation."), text(STOP)]
    agent = agent_says("Sure, what is your user id?")
    reference, tau2_requests, ours = both(server, "airline", airline_task(), agent, replies)
    assert len(tau2_requests) == empties + 2
    for trajectory, _ in ours.values():
        assert shape(trajectory.messages) == shape(reference.messages)
        assert trajectory.termination_reason == reference.termination_reason.value
        assert trajectory.usage["user"]["calls"] == empties + 2


def test_a_user_that_stays_empty_ends_the_episode_after_tau2s_retries(server) -> None:
    replies = [*EMPTIES, text("never reached")]
    reference, tau2_requests, ours = both(server, "airline", airline_task(), [], replies)
    assert isinstance(reference, ValueError)  # tau2 gives up: the empty message fails validation
    assert len(tau2_requests) == 4  # the first call and 3 more
    for trajectory, _ in ours.values():
        assert trajectory.termination_reason == "user_error"
        assert trajectory.status == "failed"
        assert "empty reply" in trajectory.error


def test_the_number_of_empty_retries_is_configurable(server) -> None:
    script = server.chat_responder
    script.load([text(""), text(""), text("hello")])
    trajectory = run_ours(server, "airline", airline_task(), [], "openai", user_empty_retries=1)
    assert len(script.bodies) == 2
    assert trajectory.termination_reason == "user_error"
    script.load([text(""), text(""), text("hello")])
    trajectory = run_ours(server, "airline", airline_task(), [], "openai", user_empty_retries=2)
    assert len(script.bodies) == 3
    assert trajectory.status == "completed"


# -- point 4: a task that starts from a message history -----------------------------------------
def with_history(task: Any, history: list[Any]) -> Any:
    from tau2.data_model.tasks import InitialState

    copied = task.model_copy(deep=True)
    state = copied.initial_state
    copied.initial_state = InitialState(
        initialization_data=state.initialization_data if state else None,
        initialization_actions=state.initialization_actions if state else None,
        message_history=history,
    )
    return copied


@pytest.mark.parametrize("last", ["agent", "user", "user_tool_result"])
def test_message_history_reaches_the_user_as_in_tau2(server, last) -> None:
    t = api()
    domain = "telecom" if last == "user_tool_result" else "airline"
    base_task = telecom_task() if domain == "telecom" else airline_task()
    history = [
        t.AssistantMessage(role="assistant", content="Hi! How can I help you today?"),
        t.UserMessage(role="user", content="I need help with my account."),
        t.AssistantMessage(role="assistant", content="Sure. Please check your status bar."),
    ]
    if last == "user":
        history.append(t.UserMessage(role="user", content="It is mia_li_3668."))
    if last == "user_tool_result":
        call = t.ToolCall(id="h1", name="check_status_bar", arguments={}, requestor="user")
        env = get_domain("telecom").initial_environment(base_task)
        result = env.get_response(call)  # the history must replay to the same result
        history += [t.UserMessage(role="user", tool_calls=[call]), result]
    task = with_history(base_task, history)
    agent = agent_says("Thanks. Anything else?")
    replies = [text("It shows no signal."), text(STOP)]
    reference, tau2_requests, ours = both(server, domain, task, agent, replies)
    assert not isinstance(reference, Exception), reference
    first = tau2_requests[0]["messages"]
    contents = [m.get("content") for m in first[1:] if m.get("content")]
    assert len(contents) == len(set(contents))  # every message once
    for trajectory, _ in ours.values():
        assert shape(trajectory.messages) == shape(reference.messages)
        assert trajectory.termination_reason == reference.termination_reason.value
