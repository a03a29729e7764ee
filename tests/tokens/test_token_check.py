"""`Transcript.check()` on clean and corrupted transcripts, and the start-up probe.

Each corrupted transcript differs from a correct one by one token next to a model turn (or
elsewhere outside one); `check()` must call it drift (``ok`` false) and name it first. Expected
strings are written out by hand from the templates' text.
"""

from __future__ import annotations

import copy
import json

import pytest

pytest.importorskip("transformers", reason="chat templates need the testing extra")

from family_tokenizers import family_tokenizer, have_assets
from tau_adapters.errors import TemplateError
from tau_adapters.testing import build_tokenizer
from tau_adapters.tokens.chat_template import ChatTemplate
from tau_adapters.tokens.template_probe import probe_template
from tau_adapters.tokens.transcript import Transcript

from token_helpers import ASSETS

requires_assets = pytest.mark.skipif(
    not have_assets(), reason=f"shared tokenizer assets not found at {ASSETS}"
)

OPENING = [
    {"role": "system", "content": "You are an airline agent."},
    {"role": "assistant", "content": "Hi! How can I help you today?"},
    {"role": "user", "content": "Cancel booking AB12 please."},
]
CALL = '<tool_call>\n{"name": "lookup", "arguments": {"id": "AB12"}}\n</tool_call>'
RESULT = [{"role": "tool", "tool_call_id": "c1", "content": '{"status": "active"}'}]
REPLY = "It is cancelled."
USER = [{"role": "user", "content": "Thanks!"}]


def _chatml() -> ChatTemplate:
    return ChatTemplate(build_tokenizer("chatml"), name="chatml")


def _model(template: ChatTemplate, text: str) -> list[int]:
    return [*template.encode(text), template.eot_id]


def _episode(template: ChatTemplate, corrupt=None) -> Transcript:
    """Opening, a tool call, its result, a reply, the user's answer (ending with a prompt).
    `corrupt(step, delta)` may change the delta of observation `step` (0 or 1)."""
    transcript = Transcript(template)
    transcript.start(OPENING)
    for step, (text, observation) in enumerate([(CALL, RESULT), (REPLY, USER)]):
        ids = _model(template, text)
        transcript.append_model(ids, [-0.5] * len(ids))
        delta = transcript.observation_ids(observation)
        if corrupt is not None:
            delta = corrupt(step, list(delta))
        transcript.append_observation(observation, delta)
    return transcript


def test_a_clean_transcript_is_identical() -> None:
    template = _chatml()
    check = _episode(template).check()
    assert check.ok and check.identical, check.detail
    # Hand-written: what the chatml template writes after the tool call.
    text = template.decode(_episode(template).ids)
    assert (
        "</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n"
        '{"status": "active"}\n</tool_response><|im_end|>\n<|im_start|>assistant\n'
    ) in text


@pytest.mark.parametrize(
    ("name", "corrupt"),
    [
        ("first token of a delta lost", lambda step, d: d[1:] if step == 0 else d),
        ("last token of a delta lost", lambda step, d: d[:-1] if step == 0 else d),
        ("first token of the last delta lost", lambda step, d: d[1:] if step == 1 else d),
        ("last token of the last delta lost", lambda step, d: d[:-1] if step == 1 else d),
        ("a token inserted before a delta", lambda step, d: [d[0], *d] if step == 0 else d),
        ("a token inserted after a delta", lambda step, d: [*d, d[-1]] if step == 0 else d),
        ("a token dropped inside a delta", lambda step, d: d[:4] + d[5:] if step == 0 else d),
        ("two tokens swapped in a delta", lambda step, d: [d[1], d[0], *d[2:]] if step else d),
    ],
)
def test_corruption_next_to_a_model_turn_is_drift(name, corrupt) -> None:
    template = _chatml()
    check = _episode(template, corrupt).check()
    assert not check.ok, name
    assert check.detail and "drift at kept[" in check.detail.split(";")[0], check.detail


def test_an_end_of_turn_lost_from_a_model_turn_is_drift() -> None:
    """The close token written by the transcript is template text: losing it is drift."""
    template = _chatml()
    transcript = _episode(template)
    close = next(s for s in transcript.spans if s.kind == "model")
    del transcript.ids[close.end - 1]
    del transcript.loss_mask[close.end - 1 - transcript.prompt_len]
    del transcript.logprobs[close.end - 1 - transcript.prompt_len]
    for span in transcript.spans:
        if span.start >= close.end:
            span.start -= 1
        if span.end >= close.end:
            span.end -= 1
    check = transcript.check()
    assert not check.ok, check


def test_a_sampled_difference_is_expected_and_real_drift_is_named_first() -> None:
    template = ChatTemplate(build_tokenizer("chatml-think"), name="chatml-think")
    think = "<think>\nlook it up\n</think>\n\n"

    def episode(corrupt):
        transcript = Transcript(template)
        transcript.start(OPENING)
        for step, (text, observation) in enumerate([(think + CALL, RESULT), (REPLY, USER)]):
            ids = _model(template, text)
            transcript.append_model(ids, [0.0] * len(ids))
            delta = transcript.observation_ids(observation)
            transcript.append_observation(observation, corrupt(step, delta))
        return transcript

    clean = episode(lambda step, d: d).check()
    # The chatml-think template drops <think> from turns before the last user message.
    assert clean.ok and not clean.identical, clean
    assert clean.model_turn_differences == 1 and clean.history_rewrites == 0
    broken = episode(lambda step, d: d[1:] if step == 1 else d)
    check = broken.check()
    assert not check.ok
    # The drift (in the second delta) is named first, before the earlier expected difference.
    second = [s for s in broken.spans if s.kind == "observation"][1]
    assert check.first_divergence == second.start
    assert check.detail.split(": ", 1)[1].startswith(f"drift at kept[{second.start}]")
    assert "1 earlier model-turn difference(s) (expected)" in check.detail


@requires_assets
def test_thinking_off_empty_think_block_is_a_history_rewrite() -> None:
    from tau_adapters.tokens.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(ASSETS / "qwen3-hybrid")
    template = ChatTemplate(tokenizer, template_kwargs={"enable_thinking": False}, name="q3")
    transcript = _episode(template)
    # Hand-written from the Qwen3 template: the generation prompt with thinking off.
    assert template.decode(transcript.ids).endswith(
        "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )
    check = transcript.check()
    assert check.ok, check.detail
    assert check.history_rewrites == 2 and check.model_turn_differences == 0
    assert "history_rewrite" in check.detail
    # Losing the empty think block's last token is still drift.
    broken = _episode(template, lambda step, d: d[:-1] if step == 0 else d).check()
    assert not broken.ok


# -- the start-up probe -----------------------------------------------------------------------


def test_probe_accepts_plain_templates_without_a_stateful_stand_in() -> None:
    assert probe_template(_chatml()) == "standin"


# A template that numbers tool results across the whole conversation: a delta cannot know the
# number without the real history, and no stand-in reproduces it.
NUMBERED = (
    "{%- set ns = namespace(n=0) -%}"
    "{%- for m in messages -%}"
    "{%- if m.role == 'tool' %}{% set ns.n = ns.n + 1 %}"
    "{{- '<|im_start|>tool ' ~ ns.n ~ '\\n' + m.content + '<|im_end|>\\n' -}}"
    "{%- else -%}"
    "{{- '<|im_start|>' + m.role + '\\n' + (m.content or '') -}}"
    "{%- for c in m.tool_calls or [] %}{{ '<tool_call>' + c.function.name + '</tool_call>' }}"
    "{%- endfor %}{{- '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def test_probe_refuses_a_template_no_strategy_makes_exact_with_name_and_reason() -> None:
    tokenizer = copy.copy(build_tokenizer("chatml"))
    tokenizer.chat_template = NUMBERED
    with pytest.raises(TemplateError) as error:
        probe_template(ChatTemplate(tokenizer, name="numbered-tools"))
    message = str(error.value)
    assert "'numbered-tools'" in message and "refused" in message
    assert "standin deltas:" in message and "stateful deltas:" in message
    assert "drift at kept[" in message


RAISES_ON_SECOND_TOOL_ROUND = (
    "{%- set ns = namespace(tools=0) -%}"
    "{%- for m in messages -%}"
    "{%- if m.role == 'tool' and loop.previtem.role == 'assistant' %}{% set ns.tools = ns.tools + 1"
    " %}{% endif -%}"
    "{%- if ns.tools > 1 %}{{ raise_exception('one tool round only, please') }}{% endif -%}"
    "{{- '<|im_start|>' + m.role + '\\n' + (m.content or '') + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def test_probe_does_not_swallow_a_template_error() -> None:
    tokenizer = copy.copy(build_tokenizer("chatml"))
    tokenizer.chat_template = RAISES_ON_SECOND_TOOL_ROUND
    with pytest.raises(TemplateError, match="one tool round only, please"):
        probe_template(ChatTemplate(tokenizer, name="one-round"))


@requires_assets
def test_deepseek_r1_is_exact_with_stateful_deltas() -> None:
    template = ChatTemplate(family_tokenizer("deepseek-r1"), name="deepseek-r1")
    assert probe_template(template) == "stateful"
    first = template.decode(template.delta_ids(RESULT, None))
    later = template.decode(template.delta_ids(RESULT, None, earlier_tool_results=True))
    # Hand-written from the R1 template: the outputs-begin marker only before the first result.
    assert first == (
        '<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>{"status": "active"}'
        "<｜tool▁output▁end｜><｜tool▁outputs▁end｜>"
    )
    assert later == (
        '<｜tool▁output▁begin｜>{"status": "active"}<｜tool▁output▁end｜><｜tool▁outputs▁end｜>'
    )


@requires_assets
@pytest.mark.parametrize(
    ("family", "why"),
    [
        ("glm-4.5", "does not end an assistant turn with a special token"),
        ("mistral-nemo", "drift at kept["),
    ],
)
def test_families_that_cannot_be_exact_are_refused(family, why) -> None:
    with pytest.raises(TemplateError) as error:
        probe_template(ChatTemplate(family_tokenizer(family), name=family))
    assert why in str(error.value) and family in str(error.value)


def test_probe_conversation_exercises_every_transition() -> None:
    from tau_adapters.tokens.template_probe import probe_conversation

    def kind(m):
        return "assistant-call" if m.get("tool_calls") else m["role"]

    pairs = {
        (kind(a), kind(b))
        for a, b in zip(probe_conversation()[:-1], probe_conversation()[1:], strict=True)
    }
    for pair in [
        ("assistant-call", "tool"),
        ("tool", "tool"),
        ("tool", "assistant"),
        ("tool", "assistant-call"),
        ("assistant", "user"),
        ("user", "assistant"),
        ("user", "assistant-call"),
    ]:
        assert pair in pairs, pair
    rounds = sum(1 for m in probe_conversation() if m.get("tool_calls"))
    assert rounds >= 3
    assert json.dumps(probe_conversation())  # plain data


@requires_assets
def test_cli_refuses_a_template_that_cannot_be_exact_with_exit_2(tmp_path, capsys) -> None:
    pytest.importorskip("tau2", reason="the eval CLI needs tau2")
    from tau_adapters.cli.main import main

    folder = tmp_path / "nemo"
    family_tokenizer("mistral-nemo").save_pretrained(folder)
    code = main(
        [
            "eval", "--domain", "airline", "--num-tasks", "1",
            "--policy", "sglang:http://127.0.0.1:9", "--tokenizer", str(folder), "--user", "scripted",
            "--output", str(tmp_path / "run"),
        ]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert str(folder) in err and "refused for token-level episodes" in err


def test_a_full_render_that_fails_is_reported_not_raised() -> None:
    template = _chatml()
    transcript = _episode(template)
    transcript.chat_messages.append({"role": "user", "content": "late"})
    tokenizer = copy.copy(template.tokenizer)
    tokenizer.chat_template = "{{ raise_exception('cannot render this conversation') }}"
    transcript.template = copy.copy(template)
    transcript.template.tokenizer = tokenizer
    check = transcript.check()
    assert not check.ok
    assert "the full render failed" in check.detail
    assert "cannot render this conversation" in check.detail
