"""The LLM user simulator against a real OpenAI-compatible HTTP server on loopback that plays the
user from a script (what tau2's user simulator would do with a well-behaved model)."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from conftest import requires_tau2

pytest.importorskip("starlette", reason="the loopback server needs the testing extra")

from tau_adapters.config import EpisodeConfig
from tau_adapters.domains import get_domain
from tau_adapters.episode.rollout import rollout
from tau_adapters.testing import Fault, LoopbackEngine
from tau_adapters.users.scripted import opening_message

pytestmark = requires_tau2


def _matches(text: str, name: str) -> bool:
    lowered = text.lower()
    return name.lower() in lowered or name.replace("_", " ").lower() in lowered


class ScriptedUserServer:
    """Answers chat completions as the task's user: opening, requested device actions, stop.

    Episode ``i`` of a run uses seed ``config.seed + i``, which the simulator sends: that is how
    the server knows which task a conversation belongs to (telecom tasks can share a scenario)."""

    def __init__(self, tasks, base_seed=300):
        self.tasks = list(tasks)
        self.base_seed = base_seed

    def __call__(self, body):
        messages = body["messages"]
        system = messages[0]["content"]
        task = self.tasks[(body["seed"] - self.base_seed) % len(self.tasks)]
        assert "<scenario>" in system and str(task.user_scenario) in system
        last = messages[-1]
        if last["role"] == "tool":
            return {"role": "assistant", "content": "Done, it is set."}
        if not any(m["role"] == "assistant" for m in messages[1:]):
            return {"role": "assistant", "content": opening_message(task)}
        done = [
            call["function"]["name"]
            for m in messages
            if m["role"] == "assistant"
            for call in m.get("tool_calls") or []
        ]
        pending = [a for a in task.evaluation_criteria.actions or [] if a.requestor == "user"]
        for name in done:
            index = next(i for i, a in enumerate(pending) if a.name == name)
            del pending[index]
        for action in pending:
            if _matches(last["content"], action.name):
                assert body.get("tools"), "user tools must be offered in telecom"
                call = {
                    "id": f"u{len(done)}",
                    "type": "function",
                    "function": {"name": action.name, "arguments": json.dumps(action.arguments)},
                }
                return {"role": "assistant", "content": None, "tool_calls": [call]}
        return {"role": "assistant", "content": "Thanks! ###STOP###"}


@pytest.fixture(scope="module")
def server():
    engine = LoopbackEngine(canned=lambda ids, body: [0]).start()
    yield engine
    engine.stop()


def _tasks(domain):
    return get_domain(domain).tasks("test")


@pytest.mark.parametrize("domain", ["airline", "retail", "telecom"])
def test_llm_user_with_oracle_scores_one(server, domain) -> None:
    tasks = _tasks(domain)
    server.chat_responder = ScriptedUserServer(tasks)
    config = EpisodeConfig.build(
        domain=domain, user=f"openai:{server.url}/v1", user_model="user-sim", split="test"
    )

    async def run():
        return await asyncio.gather(*(rollout(t, config, trial=i) for i, t in enumerate(tasks)))

    trajectories = asyncio.run(run())
    assert len(trajectories) == len(tasks)
    for trajectory in trajectories:
        assert trajectory.reward == 1.0, (trajectory.task_id, trajectory.error)
        assert trajectory.termination_reason == "user_stop"
        assert trajectory.usage["user"]["calls"] >= 2
    if domain == "telecom":
        user_calls = sum(
            1 for t in trajectories for m in t.messages if m.role == "user" and m.is_tool_call()
        )
        assert user_calls > 0


def test_litellm_transport_reaches_the_same_server(server, monkeypatch) -> None:
    pytest.importorskip("litellm", reason="litellm is not installed")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback")
    tasks = _tasks("airline")[:3]
    server.chat_responder = ScriptedUserServer(tasks)
    config = EpisodeConfig.build(
        domain="airline", user="litellm:openai/user-sim", user_api_base=f"{server.url}/v1"
    )

    async def run():
        return await asyncio.gather(*(rollout(t, config, trial=i) for i, t in enumerate(tasks)))

    for trajectory in asyncio.run(run()):
        assert trajectory.reward == 1.0, trajectory.error
        assert trajectory.usage["user"]["calls"] >= 2


def test_litellm_user_plays_telecom_with_its_phone_tools(server, monkeypatch) -> None:
    """The user has tools in telecom, so litellm is called with ``tools=``: recent litellm then
    imports `mcp`, which the ``tau2`` extra must install (issue: every episode ended user_error)."""
    pytest.importorskip("litellm", reason="litellm is not installed")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback")
    tasks = [
        task
        for task in _tasks("telecom")
        if any(a.requestor == "user" for a in task.evaluation_criteria.actions or [])
    ][:2]
    server.chat_responder = ScriptedUserServer(tasks)
    config = EpisodeConfig.build(
        domain="telecom",
        split="test",
        user="litellm:openai/user-sim",
        user_api_base=f"{server.url}/v1",
    )

    async def run():
        return await asyncio.gather(*(rollout(t, config, trial=i) for i, t in enumerate(tasks)))

    trajectories = asyncio.run(run())
    for trajectory in trajectories:
        assert trajectory.status == "completed", trajectory.error
        assert trajectory.reward == 1.0, (trajectory.task_id, trajectory.reward_info)
        assert any(m.role == "user" and m.is_tool_call() for m in trajectory.messages)


def test_recipe_environment_names_configure_the_user() -> None:
    config = EpisodeConfig.from_env(
        {
            "TAU2_USER_MODEL": "openai/Qwen/Qwen3-4B-Instruct-2507",
            "TAU2_USER_API_BASE": "http://127.0.0.1:30001/v1",
            "TAU2_USER_TEMPERATURE": "0.7",
        }
    )
    assert config.user_model == "openai/Qwen/Qwen3-4B-Instruct-2507"
    assert config.user_api_base == "http://127.0.0.1:30001/v1"
    assert config.user_temperature == 0.7


def test_injected_faults_never_lose_or_crash_an_episode(server) -> None:
    """20% of user-simulator calls fail (timeouts, 500, 429, malformed JSON, dropped
    connections) over 500 episodes: every episode ends with a status and a reason."""
    tasks = _tasks("airline") + _tasks("retail")
    server.chat_responder = ScriptedUserServer(tasks, base_seed=0)
    rng = random.Random(1234)
    faulted: set[int] = set()
    kinds = [
        Fault("delay", seconds=2.0),  # longer than the call timeout below
        Fault("status", status=500),
        Fault("status", status=429),
        Fault("malformed"),
        Fault("drop"),
    ]

    def inject(endpoint, body):
        if endpoint == "chat" and rng.random() < 0.2:
            faulted.add(body["seed"])
            return rng.choice(kinds)
        return None

    server.fault_policy = inject
    config = EpisodeConfig.build(
        domain="airline",
        user=f"openai:{server.url}/v1",
        user_model="user-sim",
        user_attempts=2,
        user_timeout_s=1.0,  # generous: a loaded CI machine must not time out normal calls
        seed=0,
    )
    jobs = []
    for trial in range(500):
        task = tasks[trial % len(tasks)]
        domain = "airline" if task in _tasks("airline") else "retail"
        jobs.append((task, config.model_copy(update={"domain": domain}), trial))

    async def run():
        semaphore = asyncio.Semaphore(100)

        async def one(task, cfg, trial):
            async with semaphore:
                return await rollout(task, cfg, trial=trial)

        return await asyncio.gather(*(one(*job) for job in jobs), return_exceptions=True)

    try:
        results = asyncio.run(run())
    finally:
        server.fault_policy = None
    assert len(results) == 500
    assert not [r for r in results if isinstance(r, BaseException)]
    failed = [r for r in results if r.status != "completed"]
    for trajectory in results:
        assert trajectory.status in ("completed", "failed")
        if trajectory.seed not in faulted:
            assert trajectory.status == "completed" and trajectory.reward == 1.0
        if trajectory.status == "completed":
            assert trajectory.reward == 1.0
        else:
            assert trajectory.termination_reason == "user_error"
            assert trajectory.error and "gave up after 2 attempts" in trajectory.error
    assert len(faulted) > 100  # the faults really happened
    assert failed  # and some outlasted the retries
