"""Our scoring equals tau2's `evaluate_simulation(..., EvaluationType.ALL)` field for field."""

from __future__ import annotations

import asyncio

import pytest

from tau_adapters.config import EpisodeConfig
from tau_adapters.domains import get_domain
from tau_adapters.episode.rollout import rollout

from conftest import requires_tau2
from helpers import PerturbedOracle

pytestmark = requires_tau2

VARIANTS = ["oracle", "drop_write", "change_arg", "extra_write", "no_communicate", "max_steps"]


async def _episode(domain: str, task, variant: str):
    if variant == "max_steps":
        config = EpisodeConfig.build(domain=domain, split="test", max_steps=2)
        return await rollout(task, config), True
    config = EpisodeConfig.build(domain=domain, split="test")
    if variant == "oracle":
        return await rollout(task, config), True
    policy = PerturbedOracle(variant, domain)
    trajectory = await rollout(task, config, policy=policy)
    return trajectory, policy.applied


@pytest.mark.parametrize("domain", ["airline", "retail"])
def test_scoring_matches_tau2_on_every_test_task(domain: str, official_score) -> None:
    backend = get_domain(domain)
    tasks = backend.tasks("test")
    assert tasks
    compared = {variant: 0 for variant in VARIANTS}
    rewards = {variant: [] for variant in VARIANTS}
    for task in tasks:
        for variant in VARIANTS:
            trajectory, applied = asyncio.run(_episode(domain, task, variant))
            if not applied:
                continue
            assert trajectory.reward_info is not None, trajectory.error
            reference = official_score(
                domain, task, trajectory.messages, trajectory.termination_reason
            )
            ours = trajectory.reward_info.model_dump()
            theirs = reference.model_dump()
            assert ours == theirs, (task.id, variant)
            compared[variant] += 1
            rewards[variant].append(trajectory.reward)
    # Each perturbation was exercised on most tasks, and they really change outcomes.
    assert compared["oracle"] == len(tasks)
    assert compared["max_steps"] == len(tasks)
    for variant in ("drop_write", "change_arg", "extra_write"):
        assert compared[variant] >= len(tasks) // 2, (variant, compared)
    assert all(r == 1.0 for r in rewards["oracle"])
    assert all(r == 0.0 for r in rewards["max_steps"])
    # Mistakes usually cost the reward (not always: some gold writes fail or repeat anyway).
    for variant in ("drop_write", "change_arg"):
        assert rewards[variant].count(0.0) >= len(rewards[variant]) // 2, (variant, rewards)
    assert all(r == 0.0 for r in rewards["no_communicate"])


def test_premature_termination_is_max_steps_with_zero_reward() -> None:
    backend = get_domain("airline")
    task = backend.tasks("test")[0]
    config = EpisodeConfig.build(domain="airline", max_steps=3)
    trajectory = asyncio.run(rollout(task, config))
    assert trajectory.termination_reason == "max_steps"
    assert trajectory.status == "truncated"
    assert trajectory.reward == 0.0
    assert trajectory.counts["steps"] == 3
