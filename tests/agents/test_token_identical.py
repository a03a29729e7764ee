"""`token_check.identical` is true exactly when the kept ids equal a fresh render (issue 27).

One oracle episode per model family through the real token path (a real HTTP engine with a tiny
model, teacher-forced). The reference is the family's own Hugging Face chat template applied to a
conversation built from tau2's messages and the sampled texts (`independent_render`), not
`Transcript.check`'s own render. A conversation that ends with a model turn ends at that turn's
end-of-turn token: the newline ChatML templates write after ``<|im_end|>`` is the separator of a
next turn that never came (stripped by hand below for exactly those templates).

Each case also states what `identical` must be, read off the template by hand: Qwen3 with thinking
off drops the empty think block of earlier generation prompts (never identical), DeepSeek-R1 drops
its ``<think>\\n``, gpt-oss drops analysis before a later final message, Qwen3 writes an empty think
block into the last turn when the model did not think.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from typing import Any

import pytest

from conftest import requires_tau2

pytest.importorskip("torch", reason="token-level tests need the testing extra (torch)")
pytest.importorskip("transformers", reason="token-level tests need the testing extra")

from family_tokenizers import family_tokenizer, have_assets
from independent_render import reference_messages
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


class HarmonyOracle(ForcedOracle):
    """The oracle in harmony: a call on commentary (ending with <|call|>) or the reply on final
    (ending with <|return|>), with an analysis message first when `analysis` is set."""

    def __init__(self, *args: Any, analysis: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.analysis = analysis

    async def act(self, observation):
        message = await self.oracle.act(observation)
        calls = message.tool_calls or []
        lead = "<|channel|>analysis<|message|>Look it up.<|end|><|start|>assistant"
        if calls:
            text = (lead if self.analysis else "") + self.parser.render_call(
                calls[0].name, calls[0].arguments
            )
            stop = "<|call|>"
        else:
            analysis = "Answer." if self.analysis else None
            text = self.parser.render_final(message.content or "", analysis=analysis)
            stop = "<|return|>"
        self.texts.append(text)
        stop_id = self.template.tokenizer.convert_tokens_to_ids(stop)
        self.forced = [*self.template.encode(text), stop_id]
        return await RecordingPolicy.act(self, observation)


class NonCanonical(ForcedOracle):
    """The oracle, but its first answer is sampled in a non-canonical tokenization of the same
    text: one multi-character token spelled out one character at a time."""

    async def act(self, observation):
        turn = len(self.texts)
        result = await super().act(observation) if turn else None
        if turn:
            return result
        message = await self.oracle.act(observation)
        text = (message.content or "") + "".join(
            self.parser.render_call(c.name, c.arguments) for c in message.tool_calls or []
        )
        self.texts.append(text)
        ids = self.template.encode(text)
        for i, token in enumerate(ids):
            piece = self.template.decode([token])
            spelled = [self.template.encode(ch) for ch in piece]
            if len(piece) >= 3 and piece.isalpha() and all(len(s) == 1 for s in spelled):
                ids = [*ids[:i], *(s[0] for s in spelled), *ids[i + 1 :]]
                break
        else:
            raise AssertionError("no token to spell out")
        assert self.template.decode(ids) == text and ids != self.template.encode(text)
        self.forced = [*ids, self.template.eot_id]
        return await RecordingPolicy.act(self, observation)


def _family_folder(family: str) -> str:
    if family in ("qwen2.5", "qwen3-hybrid"):
        return str(ASSETS / ("qwen2.5-instruct" if family == "qwen2.5" else "qwen3-hybrid"))
    folder = tempfile.mkdtemp(prefix=f"tok-{family}-")
    family_tokenizer(family).save_pretrained(folder)
    return folder


#: case -> (tokenizer family, template kwargs, parser, policy kind, identical by hand)
CASES = {
    "qwen2.5": ("qwen2.5", {}, "hermes", "plain", True),
    "qwen2.5-non-canonical": ("qwen2.5", {}, "hermes", "non-canonical", False),
    "qwen3-thinking": ("qwen3-hybrid", {}, "hermes", "think", True),
    "qwen3-thinking-on-no-think": ("qwen3-hybrid", {}, "hermes", "plain", False),
    "qwen3-thinking-off": ("qwen3-hybrid", {"enable_thinking": False}, "hermes", "plain", False),
    "gpt-oss": ("gpt-oss", {}, "harmony", "harmony", True),
    "gpt-oss-analysis": ("gpt-oss", {}, "harmony", "harmony-analysis", False),
    "deepseek-r1": ("deepseek-r1", {}, "deepseek", "think", False),
}
CHATML = ("qwen2.5", "qwen3-hybrid")


def _policy(kind: str, url: str, config: EpisodeConfig) -> ForcedOracle:
    if kind.startswith("harmony"):
        return HarmonyOracle(url, config, analysis=kind == "harmony-analysis")
    if kind == "non-canonical":
        return NonCanonical(url, config)
    return ForcedOracle(url, config, think=kind == "think")


def _fresh_render(trajectory: Any, template: Any, family: str) -> list[int]:
    """The family's own template over the reference conversation, encoded."""
    tokenizer = template.tokenizer
    messages = reference_messages(trajectory, template)
    if family.startswith("deepseek"):  # DeepSeek templates concatenate arguments as text
        for message in messages:
            for call in message.get("tool_calls") or []:
                call["function"]["arguments"] = json.dumps(call["function"]["arguments"])
    ends_with_model = trajectory.transcript.spans[-1].kind in ("model", "close")
    if ends_with_model:  # the user's closing ###STOP### came after the model's last turn
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        messages = messages[: last + 1]
    text = tokenizer.apply_chat_template(
        messages,
        tools=trajectory.transcript.tools,
        add_generation_prompt=not ends_with_model,
        tokenize=False,
        **template.template_kwargs,
    )
    if ends_with_model and family in CHATML:
        assert text.endswith("<|im_end|>\n")
        text = text[: -len("\n")]
    return tokenizer.encode(text, add_special_tokens=False)


@pytest.mark.parametrize("case", sorted(CASES))
def test_identical_is_true_exactly_when_the_kept_ids_equal_a_fresh_render(case: str) -> None:
    family, kwargs, parser, kind, by_hand = CASES[case]
    config = EpisodeConfig.build(
        domain="airline",
        policy="sglang:loopback",
        tokenizer=_family_folder(family),
        chat_template_kwargs=kwargs,
        parser=parser,
        check_tokens=True,
        temperature=1.0,
    )
    template = template_for(config)
    # A short task whose user speaks once before the agent's calls: nothing of Qwen3's thinking
    # is dropped for being before the latest user message.
    task = sorted(
        get_domain("airline").tasks("test"), key=lambda t: len(t.evaluation_criteria.actions or [])
    )[3]
    with LoopbackEngine(template.tokenizer, seed=5).start() as engine:
        policy = _policy(kind, engine.url, config)
        trajectory = asyncio.run(rollout(task, config, policy=policy))
    assert trajectory.status == "completed", trajectory.error
    assert trajectory.reward == 1.0
    check = trajectory.token_check
    assert check.ok, check.detail
    kept = trajectory.transcript.ids.tolist()
    equal = kept == _fresh_render(trajectory, template, family)
    assert equal is by_hand, (case, check)
    assert check.identical is equal, (case, check)
    if not equal:
        assert check.detail, "a false `identical` says why"
    if kind == "non-canonical":
        assert check.model_turn_differences == 0 and check.history_rewrites == 0
        assert "tokenized differently" in check.detail
