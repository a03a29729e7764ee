"""Full oracle episodes through each model family's real chat template, token level.

Each family's tokenizer is the real Qwen BPE plus the family's special tokens (`family_tokenizers`)
saved to a folder and loaded the way a user loads one (so the start-up probe runs). At every model
turn, the ids sent to the engine are compared with an independent full render of the conversation
so far: outside model turns they must be equal, except the generation-prompt parts that a family's
template is known to drop from history (written out by hand below).
"""

from __future__ import annotations

import asyncio
import difflib

import pytest

from conftest import requires_tau2

pytest.importorskip("torch", reason="token-level tests need the testing extra (torch)")
pytest.importorskip("transformers", reason="token-level tests need the testing extra")

from family_tokenizers import family_tokenizer, have_assets
from tau_adapters.chat_messages import to_chat
from tau_adapters.config import EpisodeConfig
from tau_adapters.domains import get_domain
from tau_adapters.rollout import rollout
from tau_adapters.testing import LoopbackEngine
from tau_adapters.token_policy import template_for
from test_token_rollout import _assert_token_invariants

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


def _independent_drift(template, kept, spans, messages, tools, tails) -> list[str]:
    """Differences between `kept` and a fresh full render that lie outside model turns."""
    rendered = template.tokenizer.encode(
        template.tokenizer.apply_chat_template(
            messages,
            tools=tools,
            add_generation_prompt=True,
            tokenize=False,
            **template.template_kwargs,
        ),
        add_special_tokens=False,
    )
    model = [(s.start, s.end) for s in spans if s.kind in ("model", "close")]

    def inside(i1: int, i2: int) -> bool:
        return (
            any(s <= i1 and i2 <= e for s, e in model)
            if i2 > i1
            else any(s < i1 < e for s, e in model)
        )

    def slides_inside(i1: int, i2: int) -> bool:
        """A deletion has equivalent placements where the deleted run repeats next to it."""
        a, b = i1, i2
        while b < len(kept) and kept[a] == kept[b]:
            a, b = a + 1, b + 1
            if inside(a, b):
                return True
        a, b = i1, i2
        while a > 0 and kept[a - 1] == kept[b - 1]:
            a, b = a - 1, b - 1
            if inside(a, b):
                return True
        return False

    problems = []
    opcodes = difflib.SequenceMatcher(a=kept, b=rendered, autojunk=False).get_opcodes()
    for tag, i1, i2, j1, j2 in opcodes:
        if tag == "equal" or inside(i1, i2) or (tag == "delete" and slides_inside(i1, i2)):
            continue
        text_k = template.tokenizer.decode(kept[i1:i2])
        text_r = template.tokenizer.decode(rendered[j1:j2])
        starts_model = any(i2 == s for s, _ in model)
        if tag == "delete" and starts_model and text_k in tails:
            continue  # the template drops this generation-prompt part from history
        touches = any(s - 1 <= i1 <= e for s, e in model) or any(s <= i2 <= e for s, e in model)
        if touches and text_k == text_r:
            continue  # the same text tokenized differently across a model turn's edge
        problems.append(f"{tag} kept[{i1}:{i2}]={text_k!r} rendered[{j1}:{j2}]={text_r!r}")
    return problems


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
        transcript = trajectory.transcript
        # An independent reference: tau2's messages as chat dicts, with the model's own text for
        # each of its turns (after the greeting), rendered from scratch at every model turn.
        agent_turns = iter(policy.texts)
        reference = [transcript.chat_messages[0]]
        for message in to_chat(trajectory.messages):
            if message["role"] == "assistant" and len(reference) > 1:
                text = next(agent_turns)
                if not template.structured_history:  # harmony turns stay as tau2 parsed them
                    message = {"role": "assistant", "content": text}
            reference.append(message)
        if name.startswith("mistral"):
            # Mistral wants the user first: tau2's greeting goes into the system message.
            greeting = reference.pop(1)
            assert greeting["role"] == "assistant"
            assert reference[0]["content"].endswith(
                "\n\nYou opened the conversation with: " + greeting["content"]
            )
        model_spans = [s for s in transcript.spans if s.kind == "model"]
        assert len(model_spans) == len(policy.texts) >= 3
        assistant_at = [i for i, m in enumerate(reference) if m["role"] == "assistant"]
        assistant_at = assistant_at[len(assistant_at) - len(model_spans) :]
        kept_all = transcript.ids.tolist()
        for turn, (span, upto) in enumerate(zip(model_spans, assistant_at, strict=True)):
            kept = kept_all[: span.start]
            earlier = [s for s in transcript.spans if s.end <= span.start]
            problems = _independent_drift(
                template, kept, earlier, reference[:upto], transcript.tools, tails
            )
            assert not problems, (name, turn, problems[:3])
        assert trajectory.token_check.ok, trajectory.token_check.detail
