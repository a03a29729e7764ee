"""Full oracle episodes through each model family's real chat template, token level.

Each family's tokenizer is the real Qwen BPE plus the family's special tokens (`family_tokenizers`)
saved to a folder and loaded the way a user loads one (so the start-up probe runs). At every model
turn, the ids sent to the engine are compared with an independent full render of the conversation
so far: outside model turns they must be equal, except the generation-prompt parts that a family's
template is known to drop from history (written out by hand below).
"""

from __future__ import annotations

import asyncio

import pytest

from conftest import requires_tau2

pytest.importorskip("torch", reason="token-level tests need the testing extra (torch)")
pytest.importorskip("transformers", reason="token-level tests need the testing extra")

from test_token_rollout import _assert_token_invariants

from family_tokenizers import family_tokenizer, have_assets
from independent_render import no_drift_at_every_model_turn
from tau_adapters.agents.token_policy import template_for
from tau_adapters.config import EpisodeConfig
from tau_adapters.domains import get_domain
from tau_adapters.episode.rollout import rollout
from tau_adapters.testing import LoopbackEngine

from token_helpers import ASSETS, ForcedOracle, RecordingPolicy

pytestmark = [
    requires_tau2,
    pytest.mark.skipif(not have_assets(), reason=f"shared tokenizer assets not found at {ASSETS}"),
]

#: family -> (template kwargs, text the template writes in a generation prompt but drops when it
#: renders the turn as history (read off each template by hand), parser).
FAMILIES = {
    "deepseek-r1": ({}, ["<think>\n"], "deepseek"),
    "deepseek-v3.1": ({}, [], "deepseek:v3.1"),
    "kimi-k2": ({}, [], "kimi-k2"),
    "qwen3-hybrid-thinking-off": (
        {"enable_thinking": False},
        ["<think>\n\n</think>\n\n"],
        "hermes",
    ),
    "gpt-oss": ({}, [], "harmony"),
    "mistral-small-3.2": ({}, [], "mistral"),
}


class HarmonyOracle(ForcedOracle):
    """The oracle's messages in harmony: analysis, then a call on commentary (ending with
    <|call|>) or the reply on final (ending with <|return|>)."""

    async def act(self, observation):
        message = await self.oracle.act(observation)
        calls = message.tool_calls or []
        assert len(calls) <= 1  # harmony: one call per message
        if calls:
            text = "<|channel|>analysis<|message|>Look it up.<|end|><|start|>assistant"
            text += self.parser.render_call(calls[0].name, calls[0].arguments)
            stop = "<|call|>"
        else:
            text = self.parser.render_final(message.content or "", analysis="Answer.")
            stop = "<|return|>"
        self.texts.append(text)
        stop_id = self.template.tokenizer.convert_tokens_to_ids(stop)
        self.forced = [*self.template.encode(text), stop_id]
        return await RecordingPolicy.act(self, observation)


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request, tmp_path_factory):
    name = request.param
    kwargs, tails, parser = FAMILIES[name]
    if name.startswith("qwen3-hybrid"):
        folder = str(ASSETS / "qwen3-hybrid")
    else:
        folder = tmp_path_factory.mktemp(name)
        family_tokenizer(name).save_pretrained(folder)
        folder = str(folder)
    config = EpisodeConfig.build(
        domain="airline",
        policy="sglang:loopback",
        tokenizer=folder,
        chat_template_kwargs=kwargs,
        parser=parser,
        check_tokens=True,
        temperature=1.0,
    )
    template = template_for(config)  # runs the start-up probe
    engine = LoopbackEngine(template.tokenizer, seed=5).start()
    yield name, config, template, engine, tails
    engine.stop()


def test_oracle_episodes_have_no_drift_outside_model_turns(family) -> None:
    name, config, template, engine, tails = family
    tasks = sorted(
        get_domain("airline").tasks("test"),
        key=lambda t: -len(t.evaluation_criteria.actions or []),
    )[:1]
    oracle = HarmonyOracle if config.parser == "harmony" else ForcedOracle
    policies = [oracle(engine.url, config) for _ in tasks]

    async def run():
        return await asyncio.gather(
            *(rollout(t, config, policy=p) for t, p in zip(tasks, policies, strict=True))
        )

    for trajectory, policy in zip(asyncio.run(run()), policies, strict=True):
        assert trajectory.status == "completed", trajectory.error
        assert trajectory.reward == 1.0
        _assert_token_invariants(trajectory, policy, engine, template)
        assert len(policy.texts) >= 3
        no_drift_at_every_model_turn(
            trajectory, template, tails, user_first=name.startswith("mistral")
        )
        assert trajectory.token_check.ok, trajectory.token_check.detail
