"""Reward post-process variants through slime's public hook, and the curriculum's bookkeeping.

Expected advantages are computed by hand (the numbers in the comments), not with the code under
test: GRPO divides by the group's sample standard deviation (n - 1, as torch's default), REINFORCE++
with baseline and GRPO without std normalisation only subtract the group mean, and with
``rewards_normalization`` off (or an estimator outside the GRPO family) the rewards go through
unchanged. Removed samples get 0 and are left out of their group's statistics.
"""

from __future__ import annotations

import asyncio
import math
from argparse import Namespace
from typing import Any

import pytest

from slime_helpers import use_slime

from conftest import requires_tau2

use_slime()

import tau_adapters.slime as adapter  # noqa: E402
from slime.utils.types import Sample  # noqa: E402

SQRT3 = math.sqrt(3.0)


def _args(**changes: Any) -> Namespace:
    values = {
        "hf_checkpoint": "local:chatml",
        "rollout_max_context_len": None,
        "n_samples_per_prompt": 4,
        "advantage_estimator": "grpo",
        "rewards_normalization": True,
        "grpo_std_normalization": True,
        "reward_key": None,
    }
    values.update(changes)
    return Namespace(**values)


def _samples(rewards: list[float], removed: set[int], *, grouped: bool = True) -> list[Any]:
    samples = []
    for i, reward in enumerate(rewards):
        sample = Sample(
            index=i,
            group_index=i // 4 if grouped else None,
            reward=reward,
            metadata={"domain": "airline", "task_id": str(i // 4), "raw_reward": reward},
        )
        sample.remove_sample = i in removed
        samples.append(sample)
    return samples


# Group 0: [1, 0, 0, (1 removed)] -> kept mean 1/3, sample std sqrt(((2/3)^2 + 2 (1/3)^2) / 2)
# = 1/sqrt(3). Group 1: [1, 1, 0, 0] -> mean 1/2, sample std sqrt(4 (1/2)^2 / 3) = 1/sqrt(3).
REWARDS = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0]
REMOVED = {3}
MEAN_ONLY = [2 / 3, -1 / 3, -1 / 3, 0.0, 0.5, 0.5, -0.5, -0.5]
STD = 1 / SQRT3
WITH_STD = [a / (STD + 1e-6) for a in MEAN_ONLY]


@pytest.fixture(autouse=True)
def binary_reward(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAU_ADAPTERS_REWARD", raising=False)
    monkeypatch.delenv("TAU2_REWARD", raising=False)
    adapter.adapter._configs.clear()


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, WITH_STD),
        ({"advantage_estimator": "gspo"}, WITH_STD),
        ({"advantage_estimator": "reinforce_plus_plus_baseline"}, MEAN_ONLY),
        ({"grpo_std_normalization": False}, MEAN_ONLY),
        ({"rewards_normalization": False}, REWARDS),
        ({"advantage_estimator": "ppo"}, REWARDS),
    ],
    ids=["grpo", "gspo", "reinforce_plus_plus_baseline", "grpo-no-std", "normalisation-off", "ppo"],
)
def test_post_process_variants_by_hand(changes: dict[str, Any], expected: list[float]) -> None:
    samples = _samples(REWARDS, REMOVED)
    rewards, advantages = adapter.reward_post_process(_args(**changes), samples)
    assert rewards == REWARDS
    assert advantages == pytest.approx(expected, abs=1e-9)
    assert [s.metadata["raw_reward"] for s in samples] == REWARDS


def test_groups_are_consecutive_blocks_without_group_index() -> None:
    samples = _samples(REWARDS, set(), grouped=False)
    _, advantages = adapter.reward_post_process(
        _args(advantage_estimator="reinforce_plus_plus_baseline"), samples
    )
    # Group 0 is [1, 0, 0, 1] (mean 1/2) when nothing is removed.
    assert advantages == pytest.approx([0.5, -0.5, -0.5, 0.5, 0.5, 0.5, -0.5, -0.5])


def test_a_group_with_every_sample_removed_gives_zeros() -> None:
    samples = _samples(REWARDS, {0, 1, 2, 3})
    _, advantages = adapter.reward_post_process(_args(grpo_std_normalization=False), samples)
    assert advantages[:4] == [0.0, 0.0, 0.0, 0.0]
    assert advantages[4:] == pytest.approx([0.5, 0.5, -0.5, -0.5])


@requires_tau2
def test_curriculum_skips_failed_episodes_but_counts_the_model_s_failures() -> None:
    from tau_adapters.config import EpisodeConfig
    from tau_adapters.domains import get_domain
    from tau_adapters.episode.rollout import rollout
    from tau_adapters.rewards.shapers import get_shaper
    from tau_adapters.users.scripted import ScriptedUser

    from helpers import PerturbedOracle

    class BrokenUser(ScriptedUser):
        async def respond(self, message: Any) -> Any:
            raise ConnectionError("user simulator endpoint down")

    # A window nobody else uses, so that this test gets its own process-wide shaper.
    config = EpisodeConfig.build(domain="airline", reward="curriculum", curriculum_window=13)
    task = next(
        t for t in get_domain("airline").tasks("test") if len(t.evaluation_criteria.actions) > 2
    )
    shaper = get_shaper(config)
    failed = asyncio.run(rollout(task, config, user=BrokenUser()))
    assert failed.status == "failed" and failed.reward == 0.0
    assert shaper.success_rate("airline", task.id) == (None, 0)  # infrastructure: not counted
    good = asyncio.run(rollout(task, config))
    assert good.status == "completed" and good.reward == 1.0
    assert shaper.success_rate("airline", task.id) == (1.0, 1)
    bad = asyncio.run(rollout(task, config, policy=PerturbedOracle("drop_write", "airline")))
    assert bad.status == "completed" and bad.reward == 0.0
    assert shaper.success_rate("airline", task.id) == (0.5, 2)  # the model's zero counts
