"""tau-bench v1's user strategies (v1's own classes) over our transports, against a real
OpenAI-compatible HTTP server on loopback that answers as a well-behaved user model would."""

from __future__ import annotations

import asyncio
import re
from collections import Counter

import pytest

from conftest import requires_tau2

pytest.importorskip(
    "tau_bench",
    reason="tau-bench v1 is not installed: pip install "
    '"tau_bench @ git+https://github.com/sierra-research/tau-bench@'
    '59a200c6d575d595120f1cb70fea53cef0632f6b"',
)
pytest.importorskip("starlette", reason="the loopback server needs the testing extra")

from tau_adapters.config import EpisodeConfig
from tau_adapters.domains import get_domain
from tau_adapters.episode.rollout import rollout
from tau_adapters.errors import ConfigError
from tau_adapters.testing import LoopbackEngine

pytestmark = requires_tau2


class V1UserServer:
    """Plays v1's user model: opens with the instruction, then stops; answers v1's supervisor
    prompts (verify: ``false`` the first time when asked to, then ``true``; reflect: a new
    response)."""

    def __init__(self, reject_first: bool = False) -> None:
        self.kinds: Counter[str] = Counter()
        self.reject_first = reject_first
        self.systems: list[str] = []

    def __call__(self, body):
        messages = body["messages"]
        first = messages[0]["content"]
        if first.startswith("You are a supervisor"):
            if "Reflection:" in first:
                self.kinds["reflect"] += 1
                return {
                    "role": "assistant",
                    "content": "Reflection: fine.\nResponse:\nPlease go on.",
                }
            self.kinds["verify"] += 1
            verdict = "false" if self.reject_first and self.kinds["verify"] == 1 else "true"
            return {"role": "assistant", "content": verdict}
        self.kinds["user"] += 1
        self.systems.append(first)
        instruction = re.search(r"Instruction: (.*)\n", first).group(1)
        react = "User Response:" in first
        spoke = any(m["role"] == "assistant" for m in messages[1:])
        text = "###STOP###" if spoke else instruction
        return {"role": "assistant", "content": self.react(text) if react else text}

    @staticmethod
    def react(text: str) -> str:
        return f"Thought:\nI say what I need.\nUser Response:\n{text}"


@pytest.fixture(scope="module")
def server():
    engine = LoopbackEngine(canned=lambda ids, body: [0]).start()
    yield engine
    engine.stop()


def _run(config, tasks):
    async def run():
        return await asyncio.gather(*(rollout(t, config, trial=i) for i, t in enumerate(tasks)))

    return asyncio.run(run())


@pytest.mark.parametrize("strategy", ["llm", "react", "verify", "reflection"])
def test_v1_strategies_with_oracle_score_one(server, strategy) -> None:
    tasks = get_domain("tau1-retail").tasks("test")[:4]
    responder = V1UserServer()
    server.chat_responder = responder
    config = EpisodeConfig.build(
        domain="tau1-retail",
        user=f"openai:{server.url}/v1",
        user_model="user-sim",
        user_strategy=strategy,
    )
    trajectories = _run(config, tasks)
    for trajectory, task in zip(trajectories, tasks, strict=True):
        assert trajectory.reward == 1.0, (trajectory.task_id, trajectory.error)
        assert trajectory.termination_reason == "user_stop"
        first_user = next(m for m in trajectory.messages if m.role == "user")
        expected = task.user_scenario.instructions
        if strategy == "react":  # what v1's own parser makes of the server's ReAct answer
            from tau_bench.envs.user import ReactUserSimulationEnv

            expected = ReactUserSimulationEnv.parse_response(None, V1UserServer.react(expected))
            assert expected != task.user_scenario.instructions
        assert first_user.content == expected
        assert trajectory.usage["user"]["calls"] >= 2
    assert responder.kinds["user"] == 2 * len(tasks)
    if strategy in ("verify", "reflection"):
        assert responder.kinds["verify"] == 2 * len(tasks)
    else:
        assert responder.kinds["verify"] == 0
    react_prompts = ["User Response:" in s for s in responder.systems]
    assert all(react_prompts) if strategy == "react" else not any(react_prompts)


def test_reflection_reflects_after_a_rejected_answer(server) -> None:
    tasks = get_domain("tau1-airline").tasks("test")[:1]
    responder = V1UserServer(reject_first=True)
    server.chat_responder = responder
    config = EpisodeConfig.build(
        domain="tau1-airline",
        user=f"openai:{server.url}/v1",
        user_model="user-sim",
        user_strategy="reflection",
    )
    (trajectory,) = _run(config, tasks)
    assert responder.kinds["reflect"] == 1
    assert trajectory.reward == 1.0, trajectory.error


def test_litellm_transport_reaches_the_same_server(server, monkeypatch) -> None:
    pytest.importorskip("litellm", reason="litellm is not installed")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback")
    tasks = get_domain("tau1-airline").tasks("test")[:2]
    server.chat_responder = V1UserServer()
    config = EpisodeConfig.build(
        domain="tau1-airline",
        user="litellm:openai/user-sim",
        user_api_base=f"{server.url}/v1",
        user_strategy="react",
    )
    for trajectory in _run(config, tasks):
        assert trajectory.reward == 1.0, trajectory.error
        assert trajectory.usage["user"]["calls"] >= 2


def test_a_failing_user_endpoint_ends_the_episode_with_a_reason() -> None:
    tasks = get_domain("tau1-airline").tasks("test")[:1]
    config = EpisodeConfig.build(
        domain="tau1-airline",
        user="openai:http://127.0.0.1:9/v1",  # nothing listens on the discard port
        user_model="user-sim",
        user_attempts=1,
        user_timeout_s=2.0,
    )
    (trajectory,) = _run(config, tasks)
    assert trajectory.status == "failed"
    assert trajectory.termination_reason == "user_error"
    assert trajectory.error


def test_unknown_strategy_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="user_strategy"):
        EpisodeConfig.build(domain="tau1-airline", user_strategy="human")
