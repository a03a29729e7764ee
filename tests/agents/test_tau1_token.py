"""tau-bench v1 episodes at the token level, through a real HTTP engine with a real (tiny) model."""

from __future__ import annotations

import asyncio

import pytest

from conftest import requires_tau2

pytest.importorskip(
    "tau_bench",
    reason="tau-bench v1 is not installed: pip install "
    '"tau_bench @ git+https://github.com/sierra-research/tau-bench@'
    '59a200c6d575d595120f1cb70fea53cef0632f6b"',
)
pytest.importorskip("torch", reason="token-level tests need the testing extra (torch)")
pytest.importorskip("transformers", reason="token-level tests need the testing extra")

from tau_adapters.agents.token_policy import template_for
from tau_adapters.config import EpisodeConfig
from tau_adapters.domains import get_domain
from tau_adapters.episode.rollout import rollout
from tau_adapters.testing import LoopbackEngine

from token_helpers import ForcedOracle

pytestmark = requires_tau2


@pytest.mark.parametrize("domain", ["tau1-airline", "tau1-retail"])
def test_v1_oracle_through_tokens_scores_one_with_exact_bookkeeping(domain: str) -> None:
    config = EpisodeConfig.build(
        domain=domain,
        split="test",
        policy="sglang:loopback",
        tokenizer="local:chatml",
        check_tokens=True,
    )
    template = template_for(config)
    backend = get_domain(domain)
    tasks = sorted(backend.tasks("test"), key=lambda t: -len(t.evaluation_criteria.actions))[:2]
    with LoopbackEngine(template.tokenizer, seed=7).start() as engine:
        policies = [ForcedOracle(engine.url, config) for _ in tasks]

        async def run():
            return await asyncio.gather(
                *(rollout(t, config, policy=p) for t, p in zip(tasks, policies, strict=True))
            )

        trajectories = asyncio.run(run())
    for trajectory, policy in zip(trajectories, policies, strict=True):
        assert trajectory.benchmark == "tau1"
        assert trajectory.status == "completed", trajectory.error
        assert trajectory.reward == 1.0, trajectory.reward_info
        transcript = trajectory.transcript
        ids, mask = transcript.ids, transcript.loss_mask
        assert len(mask) == len(ids) - transcript.prompt_len == len(transcript.logprobs)
        sampled = [ids[transcript.prompt_len + i] for i, m in enumerate(mask) if m == 1]
        assert sampled == [tok for turn in policy.generated for tok in turn]
        assert trajectory.token_check.ok, trajectory.token_check.detail
        text = template.decode(ids)
        # v1's agent: the wiki is its system prompt; it never sees the greeting the user answers.
        assert backend.wiki[:200] in text
        assert "Hi! How can I help you today?" not in text
        assert trajectory.messages[1].content in text  # the user's first words
