"""What every host adapter shares (`tau_adapters.hosts.common`): expected values worked out by hand."""

from __future__ import annotations

import asyncio
import math
from types import SimpleNamespace

import pytest

from tau_adapters.config import EpisodeConfig
from tau_adapters.errors import ConfigError
from tau_adapters.hosts.common import (
    groups_of,
    host_config,
    normalise_groups,
    rollout_within,
    should_remove,
    training_reward,
)

from conftest import requires_tau2


def test_normalise_groups_leaves_removed_samples_out() -> None:
    # Kept 1, 0, 1: mean 2/3, sample std sqrt(1/3); the removed 0.5 counts nowhere and gets 0.
    out = normalise_groups([1.0, 0.0, 1.0, 0.5], [[0, 1, 2, 3]], [False, False, False, True])
    std = math.sqrt(1 / 3)
    assert out == pytest.approx([(1 / 3) / std, -(2 / 3) / std, (1 / 3) / std, 0.0], rel=1e-5)
    centred = normalise_groups([1.0, 0.0, 0.0], [[0, 1], [2]], [False] * 3, use_std=False)
    assert centred == [0.5, -0.5, 0.0]
    assert normalise_groups([1.0, 1.0], [[0, 1]], [True, True]) == [0.0, 0.0]


def test_groups_by_key_or_consecutive_blocks() -> None:
    assert groups_of(5, 2) == [[0, 1], [2, 3], [4]]
    assert groups_of(4, 2, ["b", "a", "b", "a"]) == [[0, 2], [1, 3]]
    assert groups_of(3, 3, ["a", None, "a"]) == [[0, 1, 2]]


def _trajectory(**changes):
    values = {
        "status": "completed",
        "remove_sample": False,
        "token_level": True,
        "transcript": SimpleNamespace(ids=[1, 2, 3]),
        "reward": 1.0,
        "shaped_reward": 1.25,
        "counts": {"rejected_turns": 2},
    }
    return SimpleNamespace(**{**values, **changes})


def test_removal_policy_and_training_reward() -> None:
    assert not should_remove(_trajectory())
    assert should_remove(_trajectory(status="failed"))
    assert should_remove(_trajectory(remove_sample=True))
    assert should_remove(_trajectory(transcript=SimpleNamespace(ids=[])))
    assert not should_remove(_trajectory(status="aborted"))
    assert should_remove(_trajectory(status="aborted"), drop_aborted=True)
    assert not should_remove(_trajectory(status="failed"), evaluation=True)
    assert training_reward(_trajectory()) == 1.25
    assert training_reward(_trajectory(), shaped=False) == 1.0
    assert training_reward(_trajectory(), format_penalty=0.1) == pytest.approx(1.05)


def test_host_config_fills_what_the_host_knows() -> None:
    config = host_config(
        "X",
        {"max_steps": 7},
        policy="oracle",
        tokenizer="local:chatml",
        tokenizer_setting="--tok",
        max_context_tokens=4096,
        environ={"TAU2_MAX_STEPS": "9", "TAU_ADAPTERS_TEMPERATURE": "0.5"},
    )
    assert (config.max_steps, config.temperature, config.tokenizer) == (7, 0.5, "local:chatml")
    assert config.max_context_tokens == 4096
    with pytest.raises(ConfigError, match="--tok"):
        host_config("X", {}, policy="oracle", tokenizer_setting="--tok", environ={})
    text = host_config("X", {}, policy="oracle", tokenizer_setting=None, environ={})
    assert text.tokenizer is None and isinstance(text, EpisodeConfig)


def test_explicit_setting_wins_over_the_hosts_own_value_with_a_warning(monkeypatch, caplog) -> None:
    """Through slime's own path (`config_from_args`: ``--rollout-max-context-len`` and
    ``--hf-checkpoint``): the host's values fill what nobody set; an explicit
    ``TAU_ADAPTERS_*`` setting wins over them, and a warning names both values."""
    import logging
    from types import SimpleNamespace

    from tau_adapters.slime.adapter import config_from_args

    args = SimpleNamespace(hf_checkpoint="/models/qwen3", rollout_max_context_len=32768)
    for name in ("TAU_ADAPTERS_MAX_CONTEXT_TOKENS", "TAU_ADAPTERS_TOKENIZER"):
        monkeypatch.delenv(name, raising=False)
    with caplog.at_level(logging.WARNING, logger="tau_adapters.hosts"):
        config = config_from_args(args)
    assert (config.max_context_tokens, config.tokenizer) == (32768, "/models/qwen3")
    assert caplog.records == []  # nothing set explicitly: nothing to warn about
    monkeypatch.setenv("TAU_ADAPTERS_MAX_CONTEXT_TOKENS", "40000")
    monkeypatch.setenv("TAU_ADAPTERS_TOKENIZER", "local:chatml")
    with caplog.at_level(logging.WARNING, logger="tau_adapters.hosts"):
        config = config_from_args(SimpleNamespace(**vars(args)))  # a new args object: no cache
    assert (config.max_context_tokens, config.tokenizer) == (40000, "local:chatml")
    warned = caplog.text
    assert "40000" in warned and "32768" in warned
    assert "local:chatml" in warned and "/models/qwen3" in warned
    # The same explicit value as the host's: nothing to warn about.
    caplog.clear()
    monkeypatch.setenv("TAU_ADAPTERS_MAX_CONTEXT_TOKENS", "32768")
    monkeypatch.setenv("TAU_ADAPTERS_TOKENIZER", "/models/qwen3")
    with caplog.at_level(logging.WARNING, logger="tau_adapters.hosts"):
        config = config_from_args(SimpleNamespace(**vars(args)))
    assert config.max_context_tokens == 32768 and caplog.records == []


class _SlowOracle:
    """The oracle's policy, taking `delay` seconds per turn; records a cancellation."""

    def __init__(self, delay: float) -> None:
        from tau_adapters.agents.oracle import OraclePolicy

        self.inner = OraclePolicy()
        self.delay = delay
        self.cancelled = False

    async def start(self, context):
        await self.inner.start(context)

    async def act(self, observation):
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return await self.inner.act(observation)

    async def close(self):
        await self.inner.close()


@requires_tau2
def test_rollout_within_a_deadline_returns_aborted_and_host_cancellation_reaches_it() -> None:
    from tau_adapters.domains import get_domain

    task = next(t for t in get_domain("mock").tasks(None) if t.evaluation_criteria.actions)
    config = EpisodeConfig.build(domain="mock")
    slow = _SlowOracle(5.0)
    late = asyncio.run(rollout_within(task, config, slow, timeout_s=0.2))
    assert late.status == "aborted" and slow.cancelled

    slow = _SlowOracle(5.0)

    async def cancel_from_the_host():
        outer = asyncio.ensure_future(rollout_within(task, config, slow, timeout_s=None))
        await asyncio.sleep(0.2)
        outer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await outer
        await asyncio.sleep(0.05)
        assert slow.cancelled  # the episode did not run on, orphaned, while the loop lives

    asyncio.run(cancel_from_the_host())
    fast = asyncio.run(rollout_within(task, config, _SlowOracle(0.0), timeout_s=30))
    assert fast.status == "completed"
