"""Tool-call parsers: a corpus of tricky model outputs, round trips, fuzzing, lookup by name."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tau_adapters.errors import ConfigError, UnknownNameError
from tau_adapters.parsers.base import (
    HermesParser,
    JsonParser,
    ParsedOutput,
    ParsedToolCall,
    Parser,
    SGLangParser,
    split_reasoning,
)
from tau_adapters.plugins import BUILTINS, hookimpl, make_parser, names, plugin_manager

HAVE_SGLANG = importlib.util.find_spec("sglang") is not None
BUILTIN_NAMES = {"hermes", "qwen", "json", "sglang"} | {
    "harmony", "gpt-oss", "mistral", "deepseek", "kimi-k2", "glm",  # family_parsers
}  # fmt: skip


def call(name: str, **arguments: Any) -> ParsedToolCall:
    return ParsedToolCall(name=name, arguments=arguments)


@dataclass
class Expect:
    content: str | None = None
    calls: list[ParsedToolCall] = field(default_factory=list)
    reasoning: str | None = None
    error: str | None = None  # a substring of the expected error; None: no error


def check(out: ParsedOutput, expected: Expect) -> None:
    assert out.content == expected.content
    assert out.tool_calls == expected.calls
    assert out.reasoning == expected.reasoning
    if expected.error is None:
        assert out.error is None and not out.malformed
    else:
        assert out.error is not None and expected.error in out.error, out.error
        assert out.malformed and out.tool_calls == []


def check_invariants(out: object) -> None:
    """What every parse result promises, whatever the input."""
    assert isinstance(out, ParsedOutput)
    assert out.malformed == (out.error is not None)
    if out.error is not None:
        assert isinstance(out.error, str) and out.error
        assert out.tool_calls == []
    for parsed in out.tool_calls:
        assert isinstance(parsed, ParsedToolCall)
        assert isinstance(parsed.name, str) and parsed.name.strip()
        assert isinstance(parsed.arguments, dict)
    for text in (out.content, out.reasoning):
        assert text is None or (isinstance(text, str) and text and text == text.strip())


GET_USER = '{"name": "get_user", "arguments": {"user_id": "u1"}}'
CANCEL = '{"name": "cancel_order", "arguments": {"order_id": "#W1", "reason": "no longer needed"}}'
U1 = call("get_user", user_id="u1")
CANCELLED = call("cancel_order", order_id="#W1", reason="no longer needed")

HERMES_CASES = [
    pytest.param(f"<tool_call>\n{GET_USER}\n</tool_call>", Expect(calls=[U1]), id="single"),
    pytest.param(
        f"<tool_call>\n{GET_USER}\n</tool_call>\n<tool_call>\n{CANCEL}\n</tool_call>",
        Expect(calls=[U1, CANCELLED]),
        id="two-calls",
    ),
    pytest.param(
        f"Let me look that up.\n<tool_call>\n{GET_USER}\n</tool_call>\nOne moment.",
        Expect(content="Let me look that up.\nOne moment.", calls=[U1]),
        id="text-before-and-after",
    ),
    pytest.param(
        f"A <tool_call>{GET_USER}</tool_call> B <tool_call>{CANCEL}</tool_call> C",
        Expect(content="A\nB\nC", calls=[U1, CANCELLED]),
        id="text-between",
    ),
    pytest.param(
        f"<think>\nI need the user first.\n</think>\n\n<tool_call>\n{GET_USER}\n</tool_call>",
        Expect(calls=[U1], reasoning="I need the user first."),
        id="think-then-call",
    ),
    pytest.param(
        f"The user wants a refund.\n</think>\n\nSure.\n<tool_call>\n{GET_USER}\n</tool_call>",
        Expect(content="Sure.", calls=[U1], reasoning="The user wants a refund."),
        id="closing-think-only",
    ),
    pytest.param(
        "<think>a</think>x <think>b</think> y",
        Expect(content="x\ny", reasoning="a\nb"),
        id="two-think-blocks",
    ),
    pytest.param(
        "<think>\n\n</think>\n\nHello!",
        Expect(content="Hello!"),
        id="empty-think-is-no-reasoning",
    ),
    pytest.param(
        "<think>still thinking about it",
        Expect(reasoning="still thinking about it"),
        id="unclosed-think",
    ),
    pytest.param(
        f"<think>maybe <tool_call>{GET_USER}</tool_call>?</think>No call is needed.",
        Expect(content="No call is needed.", reasoning=f"maybe <tool_call>{GET_USER}</tool_call>?"),
        id="call-inside-think-is-not-a-call",
    ),
    pytest.param(
        f"<tool_call>\n```json\n{GET_USER}\n```\n</tool_call>",
        Expect(calls=[U1]),
        id="fenced-json",
    ),
    pytest.param(
        f"<tool_call>```\n{GET_USER}\n```</tool_call>", Expect(calls=[U1]), id="fenced-plain"
    ),
    pytest.param(f"<tool_call>   {GET_USER}   </tool_call>", Expect(calls=[U1]), id="spaces"),
    pytest.param(
        '<tool_call>\n\n\t{\n  "name": "get_user",\n  "arguments": {\n    "user_id": "u1"\n  }\n}'
        "\n\n</tool_call>",
        Expect(calls=[U1]),
        id="pretty-printed",
    ),
    pytest.param(f"< tool_call >{GET_USER}</ tool_call >", Expect(calls=[U1]), id="spaced-tags"),
    pytest.param(
        f"<tool_call>{GET_USER}}}</tool_call>", Expect(calls=[U1]), id="trailing-extra-brace"
    ),
    pytest.param(
        f"<tool_call>{GET_USER} that is all</tool_call>done",
        Expect(content="done", calls=[U1]),
        id="trailing-junk",
    ),
    pytest.param(
        '<tool_call>{"name": "get_user", "arguments": "{\\"user_id\\": \\"u1\\"}"}</tool_call>',
        Expect(calls=[U1]),
        id="arguments-as-json-string",
    ),
    pytest.param(
        '<tool_call>{"name": "get_user", "parameters": {"user_id": "u1"}}</tool_call>',
        Expect(calls=[U1]),
        id="parameters-alias",
    ),
    pytest.param(
        '<tool_call>{"name": "list_all"}</tool_call>',
        Expect(calls=[call("list_all")]),
        id="missing-arguments",
    ),
    pytest.param(
        '<tool_call>{"name": "list_all", "arguments": null}</tool_call>',
        Expect(calls=[call("list_all")]),
        id="null-arguments",
    ),
    pytest.param(
        '<tool_call>{"type": "function", "function": {"name": "get_user", '
        '"arguments": "{\\"user_id\\": \\"u1\\"}"}}</tool_call>',
        Expect(calls=[U1]),
        id="openai-wire-shape",
    ),
    pytest.param(
        f"<tool_call>[{GET_USER}, {CANCEL}]</tool_call>",
        Expect(calls=[U1, CANCELLED]),
        id="list-in-one-block",
    ),
    pytest.param(
        f"Checking.\n<tool_call>\n{GET_USER}\n",
        Expect(content="Checking.", calls=[U1]),
        id="unclosed-final-call",
    ),
    pytest.param(
        f"<tool_call>{GET_USER}\n<tool_call>{CANCEL}</tool_call>",
        Expect(calls=[U1, CANCELLED]),
        id="missing-close-before-next-call",
    ),
    pytest.param(
        '<tool_call>{"name": "say", "arguments": {"text": "</tool_call> <tool_call>"}}</tool_call>'
        " after",
        Expect(content="after", calls=[call("say", text="</tool_call> <tool_call>")]),
        id="tags-inside-json-string",
    ),
    pytest.param(
        '<tool_call>{"name": "note", "arguments": {"text": "café ✓ 東京"}}</tool_call>',
        Expect(calls=[call("note", text="café ✓ 東京")]),
        id="unicode",
    ),
    pytest.param(
        '<tool_call>\n{"name": "get_user", "arguments": {"user_id": "u1"} "x"}\n</tool_call>',
        Expect(error="tool call 1: invalid JSON: Expecting ',' delimiter at char 52"),
        id="malformed-json",
    ),
    pytest.param(
        f"First <tool_call>{GET_USER}</tool_call> then "
        '<tool_call>{"name": "b" "arguments": {}}</tool_call> end',
        Expect(
            content="First\nthen\nend",
            error="tool call 2: invalid JSON: Expecting ',' delimiter at char 13",
        ),
        id="second-call-malformed-drops-all",
    ),
    pytest.param(
        '<tool_call>\n{"name": "get_user", "arguments": {"user_id": "u',
        Expect(error="tool call 1: invalid JSON: Unterminated string starting at char 46"),
        id="truncated-unclosed-call",
    ),
    pytest.param(
        '<tool_call>{"arguments": {"user_id": "u1"}}</tool_call>',
        Expect(error='tool call 1: missing "name"'),
        id="name-missing",
    ),
    pytest.param(
        '<tool_call>{"name": "", "arguments": {}}</tool_call>',
        Expect(error='"name" must be a non-empty string'),
        id="name-empty",
    ),
    pytest.param(
        '<tool_call>{"name": 123, "arguments": {}}</tool_call>',
        Expect(error='"name" must be a non-empty string, got 123'),
        id="name-not-a-string",
    ),
    pytest.param(
        '<tool_call>{"name": "a", "arguments": [1, 2]}</tool_call>',
        Expect(error='tool call 1: "arguments" must be a JSON object, got list'),
        id="arguments-not-a-dict",
    ),
    pytest.param(
        '<tool_call>{"name": "a", "arguments": "[1, 2]"}</tool_call>',
        Expect(error='"arguments" must be a JSON object, got list'),
        id="arguments-string-of-a-list",
    ),
    pytest.param(
        '<tool_call>{"name": "a", "arguments": "{not json"}</tool_call>',
        Expect(error='tool call 1: "arguments" string: invalid JSON'),
        id="arguments-string-not-json",
    ),
    pytest.param(
        '<tool_call>get_user(user_id="u1")</tool_call>',
        Expect(error="tool call 1: no JSON object inside <tool_call>"),
        id="no-json-in-block",
    ),
    pytest.param(
        f"{GET_USER}\n</tool_call>",
        Expect(content=GET_USER, error="tool call 1: </tool_call> without a matching <tool_call>"),
        id="stray-closing-tag",
    ),
    pytest.param(
        "Your order has been cancelled.",
        Expect(content="Your order has been cancelled."),
        id="plain-text",
    ),
    pytest.param(
        'Use {"name": ...} to describe it.',
        Expect(content='Use {"name": ...} to describe it.'),
        id="plain-text-with-braces",
    ),
    pytest.param("", Expect(), id="empty"),
    pytest.param("  \n\t ", Expect(), id="whitespace-only"),
    pytest.param(
        "<think>only thoughts</think>", Expect(reasoning="only thoughts"), id="only-think"
    ),
    pytest.param("only thoughts</think>\n", Expect(reasoning="only thoughts"), id="only-reasoning"),
]


@pytest.mark.parametrize(("text", "expected"), HERMES_CASES)
def test_hermes_corpus(text: str, expected: Expect) -> None:
    out = HermesParser().parse(text)
    check(out, expected)
    check_invariants(out)


JSON_CASES = [
    pytest.param(GET_USER, Expect(calls=[U1]), id="object"),
    pytest.param(f"  \n{GET_USER}\n", Expect(calls=[U1]), id="object-with-whitespace"),
    pytest.param('{"name": "list_all"}', Expect(calls=[call("list_all")]), id="no-arguments"),
    pytest.param(f"[{GET_USER}, {CANCEL}]", Expect(calls=[U1, CANCELLED]), id="list"),
    pytest.param(f"```json\n{GET_USER}\n```", Expect(calls=[U1]), id="fenced-json"),
    pytest.param(f"```\n{GET_USER}\n```", Expect(calls=[U1]), id="fenced-plain"),
    pytest.param(f"```json\n{GET_USER}", Expect(calls=[U1]), id="fence-left-open"),
    pytest.param(
        f"<think>look up the user</think>\n{GET_USER}",
        Expect(calls=[U1], reasoning="look up the user"),
        id="think-then-object",
    ),
    pytest.param(
        f"look up the user</think>{GET_USER}",
        Expect(calls=[U1], reasoning="look up the user"),
        id="closing-think-only",
    ),
    pytest.param(
        '{"name": "get_user", "parameters": "{\\"user_id\\": \\"u1\\"}"}',
        Expect(calls=[U1]),
        id="parameters-alias-as-string",
    ),
    pytest.param(f"{GET_USER}\nI looked the user up.", Expect(calls=[U1]), id="trailing-junk"),
    pytest.param(f"{GET_USER}}}]", Expect(calls=[U1]), id="trailing-brackets"),
    pytest.param("Hello! How can I help?", Expect(content="Hello! How can I help?"), id="plain"),
    pytest.param(
        "```python\nprint('hi')\n```",
        Expect(content="```python\nprint('hi')\n```"),
        id="code-block-message",
    ),
    pytest.param('"just a string"', Expect(content='"just a string"'), id="json-scalar-is-text"),
    pytest.param(
        '{"name": "a", "arguments": {"x": 1,}}',
        Expect(error="invalid JSON: Expecting property name enclosed in double quotes at char 35"),
        id="broken-json",
    ),
    pytest.param(
        '{"name": "get_user", "arguments": {"user_id": "u',
        Expect(error="invalid JSON: Unterminated string"),
        id="truncated",
    ),
    pytest.param('{"answer": 42}', Expect(error='tool call 1: missing "name"'), id="not-a-call"),
    pytest.param(
        '{"name": "a", "arguments": [1]}',
        Expect(error='"arguments" must be a JSON object, got list'),
        id="arguments-not-a-dict",
    ),
    pytest.param(
        f'[{GET_USER}, "cancel"]',
        Expect(error="tool call 2: expected a JSON object with name and arguments, got str"),
        id="list-with-non-object",
    ),
    pytest.param("[]", Expect(error="empty list"), id="empty-list"),
    pytest.param("[" * 5000, Expect(error="invalid JSON"), id="deeply-nested"),
    pytest.param("", Expect(), id="empty"),
    pytest.param("<think>hmm</think>", Expect(reasoning="hmm"), id="only-reasoning"),
]


@pytest.mark.parametrize(("text", "expected"), JSON_CASES)
def test_json_corpus(text: str, expected: Expect) -> None:
    out = JsonParser().parse(text)
    check(out, expected)
    check_invariants(out)


def test_split_reasoning_drops_stray_closing_tags() -> None:
    assert split_reasoning("<think>a</think>b</think>c") == ("b\nc", "a")
    assert split_reasoning("no reasoning") == ("no reasoning", None)


@pytest.mark.parametrize("parser", [HermesParser(), JsonParser()], ids=["hermes", "json"])
def test_non_string_input_does_not_raise(parser: Parser) -> None:
    assert parser.parse(None) == ParsedOutput(None, [], None, None)  # type: ignore[arg-type]
    assert parser.parse(b"hello").content == "hello"  # type: ignore[arg-type]


def test_hermes_render_call_format() -> None:
    text = HermesParser().render_call("note", {"text": "café", "n": [1, 2]})
    assert (
        text
        == '<tool_call>\n{"name": "note", "arguments": {"text": "café", "n": [1, 2]}}\n</tool_call>'
    )


def test_json_render_call_format() -> None:
    text = JsonParser().render_call("note", {"text": "café"})
    assert json.loads(text) == {"name": "note", "arguments": {"text": "café"}}
    assert "café" in text  # not \u-escaped: the model sees the text it would write


def test_format_instructions_describe_the_format() -> None:
    hermes = HermesParser().format_instruction()
    assert "<tool_call></tool_call>" in hermes and '"name"' in hermes and '"arguments"' in hermes
    assert "plain text" in hermes
    as_json = JsonParser().format_instruction()
    assert '"name"' in as_json and "list" in as_json and "plain text" in as_json


@pytest.mark.parametrize("parser", [HermesParser(), JsonParser()], ids=["hermes", "json"])
def test_parsers_satisfy_the_protocol(parser: Parser) -> None:
    assert isinstance(parser, Parser)
    assert parser.name in BUILTIN_NAMES


ROUND_TRIP = [
    ("get_user", {"user_id": "u1"}),
    ("list_all", {}),
    ("book", {"legs": [{"from": "SFO", "to": "東京"}], "seats": 2, "insure": True, "note": None}),
    ("say", {"text": 'quotes " and \\ and {braces} and </tool_call><tool_call> tags'}),
]


@pytest.mark.parametrize("parser", [HermesParser(), JsonParser()], ids=["hermes", "json"])
@pytest.mark.parametrize(("name", "arguments"), ROUND_TRIP)
def test_round_trip(parser: Parser, name: str, arguments: dict[str, Any]) -> None:
    out = parser.parse(parser.render_call(name, arguments))
    assert out == ParsedOutput(None, [ParsedToolCall(name, arguments)], None, None)


# Strings without "<", so generated values cannot contain <think> tags, which are stripped
# before any tool-call parsing (as a reasoning parser in front of a tool parser would).
SAFE_TEXT = st.text(st.characters(blacklist_characters="<", blacklist_categories=("Cs",)))
NAMES = SAFE_TEXT.filter(lambda s: bool(s.strip()))
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | SAFE_TEXT,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(SAFE_TEXT, children, max_size=4)
    ),
    max_leaves=12,
)
ARGUMENTS = st.dictionaries(SAFE_TEXT, JSON_VALUES, max_size=5)
FUZZ = settings(max_examples=300, deadline=None)
PARSERS = [HermesParser(), JsonParser()]


@FUZZ
@given(name=NAMES, arguments=ARGUMENTS)
def test_round_trip_property(name: str, arguments: dict[str, Any]) -> None:
    for parser in PARSERS:
        out = parser.parse(parser.render_call(name, arguments))
        assert out.error is None, out.error
        assert out.tool_calls == [ParsedToolCall(name, arguments)]


@FUZZ
@given(text=st.text())
def test_arbitrary_text_never_raises(text: str) -> None:
    for parser in PARSERS:
        check_invariants(parser.parse(text))


FRAGMENTS = st.sampled_from(
    [
        "<tool_call>",
        "</tool_call>",
        "<think>",
        "</think>",
        "{",
        "}",
        '"',
        "[",
        "]",
        ":",
        ",",
        "```",
        "```json\n",
        '"name"',
        '"arguments"',
        '"get_user"',
        "\n",
        "\\",
        GET_USER,
    ]
)


@FUZZ
@given(pieces=st.lists(st.one_of(st.text(max_size=8), FRAGMENTS), max_size=30))
def test_spliced_fragments_never_raise(pieces: list[str]) -> None:
    text = "".join(pieces)
    for parser in PARSERS:
        check_invariants(parser.parse(text))


@FUZZ
@given(name=NAMES, arguments=ARGUMENTS, data=st.data())
def test_truncated_calls_never_raise(name: str, arguments: dict[str, Any], data: Any) -> None:
    for parser in PARSERS:
        text = parser.render_call(name, arguments)
        cut = data.draw(st.integers(0, len(text)), label="cut")
        out = parser.parse(text[:cut])
        check_invariants(out)
        # A truncated call is either still whole (only the closing tag was cut) or not a call:
        # it never comes back as some other call.
        assert out.tool_calls in ([], [ParsedToolCall(name, arguments)])
        if cut == len(text):
            assert out.tool_calls == [ParsedToolCall(name, arguments)]


def test_parser_names_and_make_parser() -> None:
    assert set(names("parser")) >= BUILTIN_NAMES
    assert set(BUILTINS["parser"]) == BUILTIN_NAMES
    assert isinstance(make_parser("hermes"), HermesParser)
    assert isinstance(make_parser("qwen"), HermesParser)
    assert isinstance(make_parser(" json "), JsonParser)
    assert make_parser("hermes").parse(f"<tool_call>{GET_USER}</tool_call>").tool_calls == [U1]


def test_unknown_parser_lists_valid_names() -> None:
    with pytest.raises(UnknownNameError, match="unknown parser 'nope'; valid values: ") as info:
        make_parser("nope:arg")
    assert info.value.kind == "parser"
    assert set(info.value.valid) >= BUILTIN_NAMES
    assert all(name in str(info.value) for name in BUILTIN_NAMES)


def test_builtin_parsers_take_no_argument() -> None:
    with pytest.raises(ConfigError, match="takes no argument"):
        make_parser("hermes:extra")


class _EchoParser:
    name = "echo"

    def __init__(self, arg: str | None, tools: list[dict[str, Any]] | None) -> None:
        self.arg, self.tools = arg, tools

    def parse(self, text: str) -> ParsedOutput:
        return ParsedOutput(text or None, [], None, None)

    def format_instruction(self) -> str:
        return "Reply in plain text."

    def render_call(self, name: str, arguments: dict[str, Any]) -> str:
        return name


class _ParserPlugin:
    @hookimpl
    def register_parsers(self) -> dict[str, Any]:
        return {"echo": _EchoParser, "json": lambda arg, tools: _EchoParser("override", tools)}


def test_plugins_add_and_override_parsers() -> None:
    pm = plugin_manager()
    plugin = _ParserPlugin()
    pm.register(plugin, name="test-parsers")
    try:
        tools = [{"type": "function", "function": {"name": "get_user", "parameters": {}}}]
        echo = make_parser("echo:a:b", tools)
        assert isinstance(echo, _EchoParser) and (echo.arg, echo.tools) == ("a:b", tools)
        assert isinstance(echo, Parser)
        overridden = make_parser("json")
        assert isinstance(overridden, _EchoParser) and overridden.arg == "override"
        assert {"echo", *BUILTIN_NAMES} <= set(names("parser"))
    finally:
        pm.unregister(plugin)
    assert "echo" not in names("parser")
    assert isinstance(make_parser("json"), JsonParser)


@pytest.mark.skipif(HAVE_SGLANG, reason="sglang is installed; this checks the error without it")
def test_sglang_missing_is_a_config_error_naming_the_fix() -> None:
    with pytest.raises(ConfigError, match="sglang") as info:
        make_parser("sglang:qwen25")
    assert "pip install sglang" in str(info.value)
    with pytest.raises(ConfigError, match="pip install sglang"):
        SGLangParser("llama3", tools=[])


def test_sglang_needs_a_detector() -> None:
    with pytest.raises(ConfigError, match="sglang:qwen25"):
        make_parser("sglang")


WEATHER_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


def need_sglang() -> None:
    pytest.importorskip("sglang", reason="sglang is not installed (pip install sglang)")


def test_sglang_delegation() -> None:
    need_sglang()
    parser = make_parser("sglang:qwen25", WEATHER_TOOLS)
    assert isinstance(parser, SGLangParser) and parser.name == "sglang:qwen25"
    out = parser.parse(
        "<think>I should check.</think>Let me check.\n<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    )
    assert out.error is None, out.error
    assert out.tool_calls == [call("get_weather", city="Paris")]
    assert out.reasoning == "I should check."
    assert out.content == "Let me check."
    assert parser.parse("It is sunny.") == ParsedOutput("It is sunny.", [], None, None)
    unknown = parser.parse('<tool_call>\n{"name": "launch", "arguments": {}}\n</tool_call>')
    assert unknown.malformed and unknown.tool_calls == []
    truncated = parser.parse('<tool_call>\n{"name": "get_weather", "argu')
    check_invariants(truncated)
    assert truncated.malformed
    assert "<tool_call>" in parser.format_instruction()


@pytest.mark.parametrize("detector", ["qwen25", "llama3", "mistral", "deepseekv3", "kimi_k2"])
def test_sglang_round_trip(detector: str) -> None:
    need_sglang()
    parser = make_parser(f"sglang:{detector}", WEATHER_TOOLS)
    out = parser.parse(parser.render_call("get_weather", {"city": "東京"}))
    assert out == ParsedOutput(None, [call("get_weather", city="東京")], None, None)


def test_sglang_edge_cases() -> None:
    need_sglang()
    # Without tool schemas sglang parses nothing: say so instead of passing a call off as text.
    no_tools = make_parser("sglang:qwen25")
    out = no_tools.parse('<tool_call>\n{"name": "get_weather", "arguments": {}}\n</tool_call>')
    assert out.tool_calls == [] and out.error is not None and "tool schemas" in out.error
    # Bare function schemas are accepted as tools too.
    bare = make_parser("sglang:qwen25", [WEATHER_TOOLS[0]["function"]])
    assert bare.parse(bare.render_call("get_weather", {})).tool_calls == [call("get_weather")]
    # A detector without a call template does not pretend to have one.
    glm = make_parser("sglang:glm45", WEATHER_TOOLS)
    with pytest.raises(NotImplementedError, match="glm45"):
        glm.render_call("get_weather", {})
    assert "chat template" in glm.format_instruction()
    with pytest.raises(UnknownNameError, match="sglang detector"):
        make_parser("sglang:no-such-detector", WEATHER_TOOLS)


def test_sglang_forwarding_unknown_tools_is_still_rejected(monkeypatch) -> None:
    need_sglang()
    # With this setting sglang passes calls to undefined functions through; ours rejects them.
    monkeypatch.setenv("SGLANG_FORWARD_UNKNOWN_TOOLS", "1")
    parser = make_parser("sglang:qwen25", WEATHER_TOOLS)
    out = parser.parse('<tool_call>\n{"name": "launch", "arguments": {}}\n</tool_call>')
    assert out.malformed and out.tool_calls == [] and "launch" in out.error
