"""The Python API refuses what would fail later or score the wrong thing (issue 26): unknown
names and splits at `EpisodeConfig.build`, a non-task or another domain's task at `rollout`."""

from __future__ import annotations

import asyncio

import pytest

from tau_adapters.config import EpisodeConfig
from tau_adapters.domains import get_domain
from tau_adapters.episode.rollout import rollout
from tau_adapters.errors import ConfigError

from conftest import requires_tau2

pytestmark = requires_tau2


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"split": "tset"}, "unknown split of domain 'airline' 'tset'"),
        ({"domain": "mock", "split": "test"}, "valid values: base, all"),
        ({"user": "scriptd"}, "unknown user simulator 'scriptd'"),
        ({"policy": "orcale"}, "unknown policy 'orcale'"),
        ({"reward": "partal"}, "unknown reward shaper 'partal'"),
        ({"parser": "hermez"}, "unknown tool-call parser 'hermez'"),
        ({"policy": "sglang:127.0.0.1:30000"}, "sglang:http://127.0.0.1:30000"),
        ({"user": "openai:localhost:8000"}, "openai:http://localhost:8000/v1"),
    ],
)
def test_build_refuses_unknown_names_and_splits(values, fragment) -> None:
    with pytest.raises(ConfigError) as raised:
        EpisodeConfig.build(**values)
    assert fragment in str(raised.value)


def test_build_accepts_every_real_split() -> None:
    for split in ("train", "test", "base", "all"):
        assert EpisodeConfig.build(domain="retail", split=split).split == split
    assert EpisodeConfig.build(domain="telecom", split="small").split == "small"


def test_rollout_refuses_another_domains_task() -> None:
    retail_task = get_domain("retail").tasks("test")[0]
    airline = EpisodeConfig.build(domain="airline")
    with pytest.raises(ConfigError) as raised:
        asyncio.run(rollout(retail_task, airline))
    message = str(raised.value)
    assert f"task {retail_task.id!r}" in message and "domain 'airline' does not have" in message
    # The same task under its own domain runs (and the oracle solves it: tau2's gold actions).
    row = asyncio.run(rollout(retail_task, EpisodeConfig.build(domain="retail")))
    assert row.domain == "retail" and row.reward == 1.0


def test_rollout_of_a_task_id_says_how_to_get_the_task() -> None:
    with pytest.raises(ConfigError) as raised:
        asyncio.run(rollout("0", EpisodeConfig.build(domain="airline")))
    assert "get_domain('airline').task('0')" in str(raised.value)
