"""Oracle policy + scripted user: the offline calibration run must score 1.0 everywhere."""

from __future__ import annotations

import asyncio

import pytest

from tau_adapters.config import EpisodeConfig
from tau_adapters.domains import get_domain
from tau_adapters.episode.rollout import rollout

from conftest import requires_tau2

pytestmark = requires_tau2


async def _run_all(domain: str, split: str) -> list:
    config = EpisodeConfig.build(domain=domain, split=split)
    tasks = get_domain(domain).tasks(split)
    return await asyncio.gather(*(rollout(task, config, split=split) for task in tasks))


@pytest.mark.parametrize(
    ("domain", "expected_tasks"), [("airline", 50), ("retail", 114), ("telecom", 114)]
)
def test_oracle_scores_one_on_every_base_task(domain: str, expected_tasks: int) -> None:
    trajectories = asyncio.run(_run_all(domain, "base"))
    assert len(trajectories) == expected_tasks
    failures = [
        (t.task_id, t.reward, t.termination_reason, t.error)
        for t in trajectories
        if t.reward != 1.0 or t.status != "completed" or t.termination_reason != "user_stop"
    ]
    assert failures == []


def test_oracle_on_mock_matches_tau2(official_score) -> None:
    """The mock domain has one task the oracle cannot solve; tau2 agrees on every score."""
    trajectories = asyncio.run(_run_all("mock", "base"))
    backend = get_domain("mock")
    for trajectory in trajectories:
        reference = official_score(
            "mock",
            backend.task(trajectory.task_id),
            trajectory.messages,
            trajectory.termination_reason,
        )
        assert trajectory.reward_info.model_dump() == reference.model_dump()
    assert sum(t.reward for t in trajectories) == 8.0


def test_telecom_user_actions_run_on_the_user_side() -> None:
    backend = get_domain("telecom")
    task = next(
        t
        for t in backend.tasks("test")
        if any(a.requestor == "user" for a in t.evaluation_criteria.actions or [])
    )
    config = EpisodeConfig.build(domain="telecom", split="test")
    trajectory = asyncio.run(rollout(task, config))
    user_calls = [m for m in trajectory.messages if m.role == "user" and m.is_tool_call()]
    user_results = [m for m in trajectory.messages if m.role == "tool" and m.requestor == "user"]
    expected = [a.name for a in task.evaluation_criteria.actions if a.requestor == "user"]
    assert [m.tool_calls[0].name for m in user_calls] == expected
    assert len(user_results) == len(expected)
    assert trajectory.reward == 1.0
