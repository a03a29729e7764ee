"""AReaL's think tool (`add_thinking_tool`): in the schema, answered locally with AReaL's string,
no environment step, kept in the transcript, left out of what tau2 scores."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tau_adapters.agents.oracle import OraclePolicy
from tau_adapters.config import EpisodeConfig
from tau_adapters.domains import get_domain
from tau_adapters.episode.rollout import rollout
from tau_adapters.errors import ConfigError

from conftest import requires_tau2

pytestmark = requires_tau2

#: AReaL examples/tau2/agent.py, written out by hand.
AREAL_ANSWER = "Your thoughts are recorded. Please continue your work."


def test_think_schema_is_what_tau2_makes_of_areal_function() -> None:
    from tau2.environment.tool import as_tool

    from tau_adapters.domains.tau2.solo import THINK_TOOL_SCHEMA

    def think(thoughts: str) -> str:
        """Use this tool to think. The thoughts will be visible in the history.

        Only use this tool to think when necessary.
        """
        return AREAL_ANSWER

    assert as_tool(think).openai_schema == THINK_TOOL_SCHEMA


class ThinkingOracle(OraclePolicy):
    """The oracle, with a think-only turn before each action and a think call beside it."""

    async def act(self, observation: list[Any]) -> Any:
        from tau_adapters.domains.tau2.api import api

        t = api()
        self.n = getattr(self, "n", 0) + 1
        think = t.ToolCall(
            id=f"think_{self.n}", name="think", arguments={"thoughts": f"step {self.n}"}
        )
        if self.n % 2:
            return t.AssistantMessage(role="assistant", tool_calls=[think])
        message = await super().act(observation)
        if message.tool_calls:  # a real call with a think call before it, in one turn
            message.tool_calls = [think, *message.tool_calls]
        return message


def _run(task: Any, config: EpisodeConfig, policy: Any) -> Any:
    return asyncio.run(rollout(task, config, policy=policy))


@pytest.mark.parametrize(
    ("domain", "split", "solo"), [("airline", "test", False), ("telecom", "full", True)]
)
def test_think_calls_cost_no_env_step_stay_in_transcript_and_are_not_scored(
    domain: str, split: str, solo: bool, tau2_api: Any
) -> None:
    task = max(
        get_domain(domain).tasks(split)[:30], key=lambda t: len(t.evaluation_criteria.actions)
    )
    plain = EpisodeConfig.build(domain=domain, split=split, solo_mode=solo)
    thinking = plain.model_copy(update={"add_thinking_tool": True})
    base = _run(task, plain, OraclePolicy())
    run = _run(task, thinking, ThinkingOracle())
    assert base.reward == 1.0
    assert run.status == "completed" and run.reward == base.reward, run.error
    # Every think call was answered with AReaL's string, and nothing else was.
    calls = [c for m in run.messages if m.role == "assistant" for c in m.tool_calls or []]
    thinks = [c for c in calls if c.name == "think"]
    answers = {m.id: m.content for m in run.messages if m.role == "tool"}
    assert thinks and all(answers[c.id] == AREAL_ANSWER for c in thinks)
    assert run.counts["think_calls"] == len(thinks)
    assert run.counts["tool_calls"] == base.counts["tool_calls"]
    # Think-only turns cost the agent's message (one step) and nothing for the answer.
    think_only = sum(
        1
        for m in run.messages
        if m.role == "assistant" and [c.name for c in m.tool_calls or []] == ["think"]
    )
    assert run.counts["steps"] == base.counts["steps"] + think_only
    # tau2 itself (26.3) cannot score the transcript with the think calls in it: that is why
    # they are left out. On the stripped trajectory tau2's score equals ours.
    from tau_adapters.domains.tau2.solo import strip_think

    official = tau2_api.evaluate_simulation
    simulation = tau2_api.SimulationRun(
        id="r", task_id=task.id, start_time="", end_time="", duration=0.0,
        termination_reason=run.termination_reason, messages=strip_think(run.messages),
    )  # fmt: skip
    expected = official(
        simulation=simulation,
        task=task,
        evaluation_type=tau2_api.EvaluationType.ALL,
        solo_mode=solo,
        domain=domain,
    )
    assert expected.reward == run.reward
    if tau2_api.version.startswith("26."):
        simulation.messages = run.messages
        with pytest.raises(ValueError, match="think"):
            official(
                simulation=simulation,
                task=task,
                evaluation_type=tau2_api.EvaluationType.ALL,
                solo_mode=solo,
                domain=domain,
            )


def test_think_tool_is_in_the_schema_where_areal_puts_it() -> None:
    from tau_adapters.episode.session import Session, SoloUser

    backend = get_domain("telecom")
    task = backend.tasks("full")[0]
    config = EpisodeConfig.build(domain="telecom", solo_mode=True, add_thinking_tool=True)
    names = [t["function"]["name"] for t in Session(task, config, SoloUser()).context.tools]
    agent = [t["function"]["name"] for t in backend.tool_schemas]
    user = [t["function"]["name"] for t in backend.user_tool_schemas]
    # AReaL: agent tools + think, then the user's tools; tau2's solo agent appends `done`.
    assert names == [*agent, "think", *user, "done"]


def test_think_tool_refused_where_the_domain_has_its_own() -> None:
    pytest.importorskip("tau_bench", reason="tau-bench v1 (tau_bench) is not installed")
    from tau_adapters.episode.session import Session

    backend = get_domain("tau1-retail")
    config = EpisodeConfig.build(domain="tau1-retail", add_thinking_tool=True)
    with pytest.raises(ConfigError, match="think"):
        Session(backend.tasks()[0], config, None)
