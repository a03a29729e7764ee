"""Each family's parser reads back what the family's own chat template renders for an assistant
turn with tool calls, and never raises on arbitrary text (property-based, like test_parsers)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tau_adapters.parsers.base import ParsedOutput
from tau_adapters.plugins import make_parser

ASSETS = Path(
    os.environ.get("TAU_ADAPTERS_TEST_ASSETS")
    or Path(__file__).resolve().parents[3] / "shared" / "assets"
)
TEMPLATES = ASSETS / "templates"

ARGS_1 = {"user_id": "mia_li_3668", "n": 3, "flags": [True, None], "note": 'say "hi" — ok'}
ARGS_2 = {"reservation_id": "ABC123", "amount": 1234.5, "nested": {"a": [1, {"b": "c"}]}}

#: family -> (template file, parser spec, text that ends the assistant turn in history,
#: arguments as JSON text, at most one call per turn, id of the call at index i).
FAMILIES = {
    "deepseek-r1": ("deepseek-r1.jinja", "deepseek", "<｜end▁of▁sentence｜>", True, False, None),
    "deepseek-v3.1": (
        "deepseek-v3.1.jinja", "deepseek:v3.1", "<｜end▁of▁sentence｜>", True, False, None,
    ),
    "kimi-k2": ("kimi-k2-instruct.jinja", "kimi-k2", "<|im_end|>", False, False, None),
    "glm-4.5": ("glm-4.5.jinja", "glm", "<|observation|>", False, False, None),
    "gpt-oss": ("gpt-oss.jinja", "harmony", "<|call|>", False, True, None),
    "mistral-small-3.2": (
        "mistral-small-3.2-24b-instruct-2506.jinja", "mistral", "</s>", False, False, "call{:05d}",
    ),
    "mistral-nemo": (
        "mistral-nemo-instruct-2407.jinja", "mistral:json", "</s>", False, False, "call{:05d}",
    ),
    "llama-3.1": ("llama-3.1-8b-instruct.jinja", "json", "<|eot_id|>", False, True, None),
    "qwen3": ("qwen3-0.6b-2025-05-original.jinja", "hermes", "<|im_end|>", False, False, None),
}  # fmt: skip


def _render(template_text: str, messages, add_generation_prompt=False) -> str:
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template(
        conversations=[messages],
        chat_template=template_text,
        add_generation_prompt=add_generation_prompt,
        bos_token="<BOS>",
        eos_token="</s>",  # only the Mistral templates use it (theirs is </s>)
    )
    return rendered[0]


@pytest.mark.skipif(
    not TEMPLATES.is_dir(), reason=f"shared chat templates not found at {TEMPLATES}"
)
@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("calls", [[("get_user_details", ARGS_1)], [("a", ARGS_1), ("b", ARGS_2)]])
def test_parser_reads_back_what_the_template_renders(family, calls) -> None:
    pytest.importorskip("transformers", reason="rendering templates needs transformers")
    file, spec, end, as_text, single, ids = FAMILIES[family]
    if single and len(calls) > 1:
        pytest.skip(f"{family}'s template renders one call per turn")
    text = (TEMPLATES / file).read_text(encoding="utf-8")
    tool_calls = [
        {
            "id": ids.format(i) if ids else f"functions.{name}:{i}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(args) if as_text else args},
        }
        for i, (name, args) in enumerate(calls)
    ]
    opening = [{"role": "system", "content": "S"}, {"role": "user", "content": "Please help."}]
    if family == "mistral-nemo":
        opening = opening[1:]  # Nemo writes the system prompt into the last user message only
    turn = {"role": "assistant", "content": "", "tool_calls": tool_calls}
    result = {"role": "tool", "tool_call_id": tool_calls[0]["id"], "content": "ok"}
    prompt = _render(text, opening, add_generation_prompt=True)
    history = _render(text, [*opening, turn, result])
    # DeepSeek-R1's generation prompt ends with "<think>\n", which its history omits.
    common = prompt[
        : next(
            (i for i, (x, y) in enumerate(zip(prompt, history, strict=False)) if x != y),
            len(prompt),
        )
    ]
    if prompt != common:
        common = common[: common.rfind(">") + 1]  # back to the end of the last whole tag
    sampled = history[len(common) :]
    sampled = sampled[: sampled.index(end)]  # the stop token is not part of the parsed text
    parsed = make_parser(spec).parse(sampled)
    assert parsed.error is None, (sampled, parsed.error)
    assert [(c.name, c.arguments) for c in parsed.tool_calls] == calls, sampled
    assert not parsed.content
    if spec == "mistral":
        assert [c.id for c in parsed.tool_calls] == [c["id"] for c in tool_calls]


SPECS = sorted({spec for _, spec, *_ in FAMILIES.values()} - {"json", "hermes"})
MARKUP = [
    "<|channel|>", "<|message|>", "<|start|>", "<|end|>", " to=functions.x", "commentary",
    "analysis", "final", "[TOOL_CALLS]", "[ARGS]", "[CALL_ID]", "<｜tool▁calls▁begin｜>",
    "<｜tool▁call▁begin｜>", "<｜tool▁sep｜>", "<｜tool▁call▁end｜>", "<｜tool▁calls▁end｜>",
    "function", "```json\n", "```", "<|tool_calls_section_begin|>", "<|tool_call_begin|>",
    "<|tool_call_argument_begin|>", "<|tool_call_end|>", "<|tool_calls_section_end|>",
    "functions.f:0", "<tool_call>", "</tool_call>", "<arg_key>", "</arg_key>", "<arg_value>",
    "</arg_value>", "<think>", "</think>", "{", "}", "[", "]", '"', ":", ",", "\n", "x",
]  # fmt: skip


@pytest.mark.parametrize("spec", SPECS)
@settings(max_examples=150, deadline=None)
@given(pieces=st.lists(st.sampled_from(MARKUP) | st.text(max_size=6), max_size=30))
def test_parsers_never_raise_and_never_half_parse(spec, pieces) -> None:
    parsed = make_parser(spec).parse("".join(pieces))
    assert isinstance(parsed, ParsedOutput)
    if parsed.error is not None:
        assert parsed.tool_calls == []  # a half-parsed turn never reaches a tool
    for call in parsed.tool_calls:
        assert isinstance(call.name, str) and call.name
        assert isinstance(call.arguments, dict)


NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
ARGS = st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), JSON, max_size=4)


@pytest.mark.parametrize("spec", [s for s in SPECS if s != "glm"])
@settings(max_examples=100, deadline=None)
@given(name=NAMES, arguments=ARGS, before=st.sampled_from(["", "Sure. ", "One moment.\n"]))
def test_render_call_round_trips(spec, name, arguments, before) -> None:
    parser = make_parser(spec)
    if spec == "harmony":
        before = ""  # harmony content lives on its own channel
    parsed = parser.parse(before + parser.render_call(name, arguments))
    assert parsed.error is None, parsed.error
    assert [(c.name, c.arguments) for c in parsed.tool_calls] == [(name, arguments)]
    assert (parsed.content or "") == before.strip()


@pytest.mark.parametrize("spec", [*SPECS, "hermes"])
@pytest.mark.parametrize("value", ["<think>", "</think>", "a <think>b</think> c"])
def test_think_tags_inside_call_arguments_are_call_data(spec, value) -> None:
    """Reasoning comes before a family's tool calls: think tags inside an argument (the case
    hypothesis found for deepseek:v3.1: ``{"_": "<think>"}``) are the argument's text."""
    if spec == "harmony":
        pytest.skip("harmony has no think tags: its reasoning is a channel")
    parser = make_parser(spec)
    text = "Let me check." + parser.render_call("a", {"_": value})
    parsed = parser.parse(text)
    assert parsed.error is None, parsed.error
    assert [(c.name, c.arguments) for c in parsed.tool_calls] == [("a", {"_": value})]
    assert parsed.content == "Let me check." and parsed.reasoning is None
    # Reasoning before the call is still taken out.
    parsed = parser.parse(
        "<think>plan</think>Let me check." + parser.render_call("a", {"_": value})
    )
    assert parsed.reasoning == "plan" and parsed.content == "Let me check."
    assert [(c.name, c.arguments) for c in parsed.tool_calls] == [("a", {"_": value})]


@settings(max_examples=100, deadline=None)
@given(
    name=NAMES,
    arguments=st.dictionaries(
        st.from_regex(r"[a-z_]{1,8}", fullmatch=True),
        st.integers()
        | st.booleans()
        | st.from_regex(r"[a-z ]{1,10}", fullmatch=True)
        | st.lists(st.integers(), max_size=3),
        max_size=4,
    ),
)
def test_glm_render_call_round_trips(name, arguments) -> None:
    """GLM writes string values bare: a string that reads as JSON (e.g. "true") comes back as
    that JSON value, so strings here are plain words."""
    parser = make_parser("glm")
    parsed = parser.parse(parser.render_call(name, arguments))
    assert parsed.error is None
    assert [(c.name, c.arguments) for c in parsed.tool_calls] == [(name, arguments)]


def test_harmony_channels() -> None:
    parser = make_parser("harmony")
    text = (
        "<|channel|>analysis<|message|>Need the user first.<|end|>"
        "<|start|>assistant<|channel|>final<|message|>Your booking is cancelled."
    )
    parsed = parser.parse(text)
    assert parsed.reasoning == "Need the user first."
    assert parsed.content == "Your booking is cancelled."
    assert parsed.tool_calls == [] and parsed.error is None
    # The call form the model samples (recipient after the channel) and the one gpt-oss's
    # template renders in history (recipient before it) are both read.
    sampled = '<|channel|>commentary to=functions.lookup <|constrain|>json<|message|>{"id": 1}'
    for form in (sampled, ' to=functions.lookup<|channel|>commentary json<|message|>{"id": 1}'):
        call = parser.parse(form)
        assert call.error is None and [(c.name, c.arguments) for c in call.tool_calls] == [
            ("lookup", {"id": 1})
        ]
    assert parser.parse(" to=browser.search<|channel|>commentary<|message|>{}").error
    assert parser.parse("<|channel|>commentary to=functions.f<|message|>{bad").error


def test_harmony_commentary_without_recipient_is_a_preamble_for_the_user() -> None:
    """OpenAI's harmony format: a ``commentary`` message with no ``to=`` recipient is a
    preamble, text meant for the user (e.g. announcing the tool calls that follow); only
    ``analysis`` is chain of thought, and only ``to=functions.NAME`` is a call. So the preamble
    is the turn's content, beside the call, and nothing is an error."""
    parser = make_parser("harmony")
    preamble = "Let me look up your reservation."
    call = '<|channel|>commentary to=functions.lookup <|constrain|>json<|message|>{"id": 1}'
    text = (
        f"<|channel|>analysis<|message|>Need the booking.<|end|>"
        f"<|start|>assistant<|channel|>commentary<|message|>{preamble}<|end|>"
        f"<|start|>assistant{call}"
    )
    parsed = parser.parse(text)
    assert parsed.error is None
    assert parsed.content == preamble
    assert parsed.reasoning == "Need the booking."
    assert [(c.name, c.arguments) for c in parsed.tool_calls] == [("lookup", {"id": 1})]
    # On its own (no call): the user-facing reply of the turn.
    alone = parser.parse(f"<|channel|>commentary<|message|>{preamble}")
    assert (alone.content, alone.tool_calls, alone.error) == (preamble, [], None)


def test_sglang_detectors_agree_when_installed() -> None:
    module = pytest.importorskip(
        "sglang.srt.function_call.function_call_parser",
        reason="sglang is not installed: the comparison with its detectors needs it",
    )
    from tau_adapters.parsers.base import _sglang_tool_class

    tool_class = _sglang_tool_class()
    tools = [
        tool_class.model_validate(
            {"type": "function", "function": {"name": "get_user_details", "parameters": {
                "type": "object", "properties": {k: {} for k in ARGS_1}}}}
        )
    ]  # fmt: skip
    cases = {
        "deepseekv3": make_parser("deepseek").render_call("get_user_details", ARGS_1),
        "kimi_k2": make_parser("kimi-k2").render_call("get_user_details", ARGS_1),
        "mistral": make_parser("mistral:json").render_call("get_user_details", ARGS_1),
    }
    for detector, text in cases.items():
        _, items = module.FunctionCallParser(tools, detector).parse_non_stream(text)
        theirs = [(i.name, json.loads(i.parameters)) for i in items]
        assert theirs == [("get_user_details", ARGS_1)], (detector, text)
