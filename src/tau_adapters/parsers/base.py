"""Tool-call parsers: the text of one assistant turn -> content, tool calls, reasoning.

Model output is data, so parsing never raises and never evaluates anything (only ``json``): a
turn that tries to call a tool but gets the format wrong comes back with ``error`` set, which a
host can score or report back to the model instead of crashing the episode.

Parsers are selected by spec through the one registry (`tau_adapters.plugins.make_parser`), e.g.
``"hermes"``, ``"json"`` or ``"sglang:qwen25"``; the text after the first ``:`` goes to the factory.
"""

from __future__ import annotations

import bisect
import importlib
import importlib.util
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast, runtime_checkable

from tau_adapters.errors import ConfigError, UnknownNameError

__all__ = [
    "HermesParser",
    "JsonParser",
    "ParsedOutput",
    "ParsedToolCall",
    "Parser",
    "ParserFactory",
    "SGLangParser",
    "make_hermes",
    "make_json",
    "make_sglang",
    "no_argument",
    "split_reasoning",
]


@dataclass
class ParsedToolCall:
    name: str
    arguments: dict[str, Any]
    #: The call id the model wrote, for formats that carry one (Mistral's ``[CALL_ID]``).
    id: str | None = None


@dataclass
class ParsedOutput:
    """One parsed assistant turn.

    ``content`` is the text meant for the user (reasoning and tool-call blocks removed, stripped,
    None if empty); ``error`` is set when the text tried to call a tool and a call could not be
    parsed, and then ``tool_calls`` is empty, so a half-parsed turn never reaches a tool.
    """

    content: str | None
    tool_calls: list[ParsedToolCall] = field(default_factory=list)
    reasoning: str | None = None
    error: str | None = None

    @property
    def malformed(self) -> bool:
        return self.error is not None


@runtime_checkable
class Parser(Protocol):
    name: str

    def parse(self, text: str) -> ParsedOutput:
        """Never raises; problems go to ``ParsedOutput.error``."""
        ...

    def format_instruction(self) -> str:
        """One short paragraph for the system prompt: how to call tools in this format."""
        ...

    def render_call(self, name: str, arguments: dict[str, Any]) -> str:
        """The text of one call in this format (``parse`` inverts it)."""
        ...


#: ``factory(arg, tools)``: ``arg`` is the text after the first ``:`` of the spec, or None;
#: ``tools`` are the OpenAI-style tool schemas of the episode (needed by some formats).
ParserFactory = Callable[[str | None, list[dict[str, Any]] | None], Parser]

_DECODER = json.JSONDecoder()
_THINK_OPEN = re.compile(r"<\s*think\s*>")
_THINK_CLOSE = re.compile(r"<\s*/\s*think\s*>")
_CALL_OPEN = re.compile(r"<\s*tool_call\s*>")
_CALL_CLOSE = re.compile(r"<\s*/\s*tool_call\s*>")
_FENCE_OPEN = re.compile(r"```[A-Za-z0-9_+-]*")


def _join(pieces: list[str]) -> str | None:
    """Stripped non-empty pieces joined by newlines; None if nothing is left."""
    kept = [p.strip() for p in pieces if p.strip()]
    return "\n".join(kept) or None


def _as_text(text: object) -> str:
    """Parsers promise not to raise, even when a host hands them None or bytes."""
    if isinstance(text, str):
        return text
    if text is None:
        return ""
    if isinstance(text, bytes):
        return text.decode("utf-8", errors="replace")
    return str(text)


def _first_call(text: str, markers: tuple[str, ...]) -> int | None:
    """Where the first tool call opens: the first marker that is not inside an open think block
    (a model may think about a call without making it)."""
    found: list[int] = []
    for marker in markers:
        at = text.find(marker)
        while at >= 0:
            opens = [m.start() for m in _THINK_OPEN.finditer(text, 0, at)]
            closes = [m.start() for m in _THINK_CLOSE.finditer(text, 0, at)]
            if not opens or (closes and closes[-1] > opens[-1]):
                found.append(at)
                break
            at = text.find(marker, at + 1)
    return min(found) if found else None


def split_reasoning(text: str, calls_start: tuple[str, ...] = ()) -> tuple[str, str | None]:
    """``(visible text, reasoning)``: ``<think>`` blocks taken out of the text.

    Text before a first ``</think>`` that has no ``<think>`` before it is reasoning too (Qwen3
    templates put the opening tag in the prompt), and an unclosed ``<think>`` runs to the end
    (the model stopped while thinking). Stray closing tags are dropped from the visible text.

    `calls_start`: the markers that open a family's tool calls. Reasoning comes before them, so
    think tags after the first marker are call data (an argument may hold the text ``<think>``)
    and are left as they are.
    """
    at = _first_call(text, calls_start)
    if at is not None and (_THINK_OPEN.search(text, at) or _THINK_CLOSE.search(text, at)):
        shown, reasoning_before = split_reasoning(text[:at])
        tail = text[at:].rstrip()
        return (f"{shown}\n{tail}" if shown else tail), reasoning_before
    reasoning: list[str] = []
    visible: list[str] = []
    pos = 0
    first_close = _THINK_CLOSE.search(text)
    first_open = _THINK_OPEN.search(text)
    if first_close and (first_open is None or first_close.start() < first_open.start()):
        reasoning.append(text[: first_close.start()])
        pos = first_close.end()
    while pos <= len(text):
        opened = _THINK_OPEN.search(text, pos)
        if opened is None:
            visible.append(text[pos:])
            break
        visible.append(text[pos : opened.start()])
        closed = _THINK_CLOSE.search(text, opened.end())
        if closed is None:
            reasoning.append(text[opened.end() :])
            break
        reasoning.append(text[opened.end() : closed.start()])
        pos = closed.end()
    shown = _join([part for piece in visible for part in _THINK_CLOSE.split(piece)]) or ""
    return shown, _join(reasoning)


def _decode(text: str, start: int = 0) -> tuple[Any, int] | str:
    """``(value, end)`` of the JSON value at ``start`` (anything after it is ignored), or why not.

    The position in the message counts from the start of the JSON, which is what a model can act
    on.
    """
    try:
        return _DECODER.raw_decode(text, start)
    except json.JSONDecodeError as exc:
        at = "" if exc.msg.endswith(" at") else " at"  # "Unterminated string starting at"
        return f"invalid JSON: {exc.msg}{at} char {exc.pos - start}"
    except RecursionError:
        return "invalid JSON: nested too deeply"


def _to_call(obj: Any) -> ParsedToolCall | str:
    """A call from a decoded JSON value, or the reason it is not one."""
    if not isinstance(obj, dict):
        return f"expected a JSON object with name and arguments, got {type(obj).__name__}"
    obj = cast(dict[str, Any], obj)
    if "name" not in obj and isinstance(obj.get("function"), dict):
        obj = obj["function"]  # OpenAI wire shape {"type": "function", "function": {...}}
    if "name" not in obj:
        return 'missing "name"'
    name = obj["name"]
    if not isinstance(name, str) or not name.strip():
        return f'"name" must be a non-empty string, got {name!r:.40}'
    key = "arguments" if "arguments" in obj else "parameters"
    arguments = obj.get(key)
    if arguments is None or arguments == "":
        arguments = {}
    elif isinstance(arguments, str):
        decoded = _decode(arguments.strip())
        if isinstance(decoded, str):
            return f'"{key}" string: {decoded}'
        arguments = decoded[0]
    if not isinstance(arguments, dict):
        return f'"{key}" must be a JSON object, got {type(arguments).__name__}'
    return ParsedToolCall(name=name, arguments=arguments)


def _collect_calls(
    value: object, label: str, item_label: str = "{label} item {i}"
) -> tuple[list[ParsedToolCall], list[str]]:
    """Calls from one decoded value (an object or a list of objects), with labelled errors."""
    if isinstance(value, list):
        if not value:
            return [], [f"{label}: empty list"]
        items = [(item_label.format(label=label, i=i), v) for i, v in enumerate(value, 1)]
    else:
        items = [(label, value)]
    calls: list[ParsedToolCall] = []
    errors: list[str] = []
    for where, item in items:
        call = _to_call(item)
        if isinstance(call, str):
            errors.append(f"{where}: {call}")
        else:
            calls.append(call)
    return calls, errors


def _guard(parse: Callable[[str], ParsedOutput], text: object) -> ParsedOutput:
    """Turns an unexpected failure of a parser into an ``error`` instead of an exception."""
    raw = _as_text(text)
    try:
        return parse(raw)
    except Exception as exc:  # a bug here must not end an episode
        return ParsedOutput(
            content=raw.strip() or None,
            tool_calls=[],
            reasoning=None,
            error=f"parser failure: {type(exc).__name__}: {exc}",
        )


class HermesParser:
    """Qwen / Hermes format: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``."""

    name = "hermes"

    def parse(self, text: str) -> ParsedOutput:
        return _guard(self._parse, text)

    def format_instruction(self) -> str:
        return (
            "To call a tool, write the call as a JSON object with the keys "
            '"name" and "arguments" inside <tool_call></tool_call> tags, for example '
            f"{self.render_call('tool_name', {'argument': 'value'})}. "
            "Use one block per call. When you do not call a tool, reply in plain text."
        )

    def render_call(self, name: str, arguments: dict[str, Any]) -> str:
        body = json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)
        return f"<tool_call>\n{body}\n</tool_call>"

    def _parse(self, text: str) -> ParsedOutput:
        visible, reasoning = split_reasoning(text, ("<tool_call>",))
        opens, closes = _Tags(_CALL_OPEN, visible), _Tags(_CALL_CLOSE, visible)
        outside: list[str] = []
        calls: list[ParsedToolCall] = []
        errors: list[str] = []
        pos = 0
        index = 0
        while True:
            opened, stray = opens.after(pos), closes.after(pos)
            if stray and (opened is None or stray < opened):
                # A closing tag with no opening one: the model tried a call and lost the format.
                index += 1
                errors.append(f"tool call {index}: </tool_call> without a matching <tool_call>")
                outside.append(visible[pos : stray[0]])
                pos = stray[1]
                continue
            if opened is None:
                outside.append(visible[pos:])
                break
            index += 1
            outside.append(visible[pos : opened[0]])
            label = f"tool call {index}"
            # After the first problem the turn is malformed anyway: skip decoding the rest, which
            # also keeps a pathological turn with thousands of broken blocks linear.
            decode = not errors
            pos = _parse_block(visible, opened[1], opens, closes, label, calls, errors, decode)
        content = _join(outside)
        if errors:
            return ParsedOutput(content, [], reasoning, errors[0])
        return ParsedOutput(content, calls, reasoning, None)


class _Tags:
    """Where one tag occurs in a text; finds the next one in O(log n), so many tags stay cheap."""

    def __init__(self, pattern: re.Pattern[str], text: str) -> None:
        self.spans = [m.span() for m in pattern.finditer(text)]
        self.starts = [start for start, _ in self.spans]

    def after(self, pos: int) -> tuple[int, int] | None:
        i = bisect.bisect_left(self.starts, pos)
        return self.spans[i] if i < len(self.spans) else None


def _parse_block(
    text: str,
    start: int,
    opens: _Tags,
    closes: _Tags,
    label: str,
    calls: list[ParsedToolCall],
    errors: list[str],
    decode: bool = True,
) -> int:
    """Parses the ``<tool_call>`` block whose body begins at ``start``; returns where to resume.

    The JSON is decoded before the closing tag is looked for, so a ``</tool_call>`` inside a JSON
    string does not cut the block short; a following ``<tool_call>`` ends a block whose closing
    tag is missing (the model went on, or stopped, without it).
    """

    def block_end(after: int) -> tuple[int, int, bool]:
        """(end of the body, where scanning resumes, whether a closing tag was found)."""
        nxt, close = opens.after(after), closes.after(after)
        if close and (nxt is None or close < nxt):
            return close[0], close[1], True
        if nxt:
            return nxt[0], nxt[0], False
        return len(text), len(text), False

    body_end, resume, closed = block_end(start)
    if not decode:
        return resume
    json_start = _json_start(text, start, body_end)
    if json_start < 0:
        errors.append(f"{label}: no JSON object inside <tool_call>")
        return resume
    decoded = _decode(text, json_start)
    if isinstance(decoded, str):
        missing = "" if closed else " (no closing </tool_call>)"
        errors.append(f"{label}: {decoded}{missing}")
        return resume
    value, json_end = decoded
    found, problems = _collect_calls(value, label)
    calls.extend(found)
    errors.extend(problems)
    return block_end(json_end)[1]


def _json_start(text: str, start: int, end: int) -> int:
    """Where the JSON of a block starts: after whitespace and a code fence, else the first ``{``."""
    i = start
    while i < end and text[i].isspace():
        i += 1
    fence = _FENCE_OPEN.match(text, i, end)
    if fence:
        i = fence.end()
        while i < end and text[i].isspace():
            i += 1
    if i < end and text[i] in "{[":
        return i
    return text.find("{", start, end)


def _unfence(body: str) -> str:
    """The inside of a markdown code fence around the whole text (closing fence optional)."""
    fence = _FENCE_OPEN.match(body)
    if fence is None:
        return body
    inner = body[fence.end() :].rstrip()
    if inner.endswith("```"):
        inner = inner[:-3]
    return inner.strip()


class JsonParser:
    """Bare JSON: the whole visible turn is a call object, or a list of them."""

    name = "json"

    def parse(self, text: str) -> ParsedOutput:
        return _guard(self._parse, text)

    def format_instruction(self) -> str:
        return (
            "To call a tool, reply with only a JSON object with the keys "
            '"name" and "arguments", for example '
            f"{self.render_call('tool_name', {'argument': 'value'})}, "
            "or a JSON list of such objects to make several calls, and nothing else. "
            "When you do not call a tool, reply in plain text that does not start with { or [."
        )

    def render_call(self, name: str, arguments: dict[str, Any]) -> str:
        return json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)

    def _parse(self, text: str) -> ParsedOutput:
        visible, reasoning = split_reasoning(text)
        body = visible.strip()
        candidate = _unfence(body)
        if not candidate.startswith(("{", "[")):
            return ParsedOutput(body or None, [], reasoning, None)
        decoded = _decode(candidate)  # trailing junk after the value is ignored
        if isinstance(decoded, str):
            return ParsedOutput(None, [], reasoning, decoded)
        value = decoded[0]
        label = "tool calls" if isinstance(value, list) else "tool call 1"
        calls, errors = _collect_calls(value, label, item_label="tool call {i}")
        if errors:
            return ParsedOutput(None, [], reasoning, errors[0])
        return ParsedOutput(None, calls, reasoning, None)


def _sglang_tool_class() -> Any:
    """sglang's pydantic ``Tool``; its module moved between sglang releases."""
    for module in ("sglang.srt.entrypoints.openai.protocol", "sglang.srt.openai_api.protocol"):
        try:
            return importlib.import_module(module).Tool
        except (ImportError, AttributeError):
            continue
    raise ImportError("sglang's Tool model was not found in its OpenAI protocol module")


class SGLangParser:
    """Any of sglang's tool-call detectors (``qwen25``, ``llama3``, ``mistral``, ...).

    sglang is imported here and not at module import, so the library stays light where sglang
    is absent. sglang only returns calls to tools it was given, so pass the episode's tools.
    """

    def __init__(self, detector: str, tools: list[dict[str, Any]] | None = None) -> None:
        detector = (detector or "").strip()
        if not detector:
            raise ConfigError("parser 'sglang' needs a detector name, e.g. 'sglang:qwen25'")
        self.detector = detector
        self.name = f"sglang:{detector}"
        if importlib.util.find_spec("sglang") is None:
            raise ConfigError(
                f"parser {self.name!r} needs the 'sglang' package, which is not installed; "
                "fix: pip install sglang (or choose the 'hermes' or 'json' parser)"
            )
        try:
            module = importlib.import_module("sglang.srt.function_call.function_call_parser")
            self._parser_class: Any = module.FunctionCallParser
            tool_class = _sglang_tool_class()
        except Exception as exc:
            raise ConfigError(
                f"parser {self.name!r}: sglang is installed but its function-call parser could "
                f"not be imported ({type(exc).__name__}: {exc}); fix: pip install -U sglang"
            ) from exc
        known = getattr(self._parser_class, "ToolCallParserEnum", None)
        if isinstance(known, dict) and detector not in known:
            raise UnknownNameError("sglang detector", detector, sorted(known))
        try:
            schemas = [_openai_tool(t) for t in tools or []]
            self._tools = [tool_class.model_validate(t) for t in schemas]
            # Checked here too: sglang forwards calls to unknown tools when the server sets
            # SGLANG_FORWARD_UNKNOWN_TOOLS, and not every detector filters them.
            self._tool_names = frozenset(t["function"]["name"] for t in schemas)
        except Exception as exc:
            raise ConfigError(f"parser {self.name!r}: a tool schema is invalid: {exc}") from exc
        try:
            self._new()
        except Exception as exc:
            raise ConfigError(f"parser {self.name!r}: sglang refused it: {exc}") from exc

    def _new(self) -> Any:
        """A fresh sglang parser per turn: its detectors keep streaming state."""
        return self._parser_class(self._tools, self.detector)

    def parse(self, text: str) -> ParsedOutput:
        return _guard(self._parse, text)

    def _parse(self, text: str) -> ParsedOutput:
        visible, reasoning = split_reasoning(text)
        try:
            parser = self._new()
            marked = bool(parser.detector.has_tool_call(visible))
            if not self._tools:
                error = "no tool schemas were given to the sglang parser" if marked else None
                return ParsedOutput(visible or None, [], reasoning, error)
            normal, items = parser.parse_non_stream(visible)
        except Exception as exc:
            return ParsedOutput(
                visible or None, [], reasoning, f"sglang: {type(exc).__name__}: {exc}"
            )
        content = _join([normal if isinstance(normal, str) else ""])
        calls: list[ParsedToolCall] = []
        errors: list[str] = []
        for i, item in enumerate(items or [], 1):
            call = _item_to_call(item)
            if isinstance(call, str):
                errors.append(f"tool call {i}: {call}")
            elif call.name not in self._tool_names:
                errors.append(f"tool call {i}: unknown tool {call.name!r}")
            else:
                calls.append(call)
        if not errors and marked and not calls:
            errors.append(
                "tool-call markers found but no call parsed (invalid JSON or unknown tool)"
            )
        if errors:
            return ParsedOutput(content, [], reasoning, errors[0])
        return ParsedOutput(content, calls, reasoning, None)

    def render_call(self, name: str, arguments: dict[str, Any]) -> str:
        """From the detector's structure info (the begin/end text sglang constrains calls with).

        Raises NotImplementedError for detectors without one (e.g. ``glm45``, ``gpt-oss``):
        guessing a format would teach a model the wrong one; use the model's chat template.
        """
        try:
            info = self._new().detector.structure_info()(name)
            begin, end = info.begin, info.end
        except Exception as exc:
            raise NotImplementedError(
                f"sglang detector {self.detector!r} has no call template "
                f"({type(exc).__name__}); render calls with the model's chat template"
            ) from exc
        return f"{begin}{json.dumps(arguments, ensure_ascii=False)}{end}"

    def format_instruction(self) -> str:
        try:
            example = f", for example {self.render_call('tool_name', {'argument': 'value'})}"
        except NotImplementedError:
            example = ""
        return (
            f"To call a tool, use the tool-call format of your chat template{example}, "
            "one per call. When you do not call a tool, reply in plain text."
        )


def _openai_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """``{"type": "function", "function": {...}}`` from either that or a bare function schema."""
    if "function" in tool:
        return {"type": "function", **tool}
    return {"type": "function", "function": tool}


def _item_to_call(item: Any) -> ParsedToolCall | str:
    """Our call from sglang's ``ToolCallItem`` (whose ``parameters`` is a JSON string)."""
    return _to_call(
        {"name": getattr(item, "name", None), "arguments": getattr(item, "parameters", None)}
    )


def no_argument(kind: str, arg: str | None) -> None:
    if arg:
        raise ConfigError(f"parser {kind!r} takes no argument, got {kind}:{arg}")


def make_hermes(arg: str | None, tools: list[dict[str, Any]] | None) -> Parser:
    """``hermes`` (alias ``qwen``): ``<tool_call>{json}</tool_call>`` blocks."""
    no_argument("hermes", arg)
    return HermesParser()


def make_json(arg: str | None, tools: list[dict[str, Any]] | None) -> Parser:
    """``json``: the whole turn is one JSON object (or list) of calls."""
    no_argument("json", arg)
    return JsonParser()


def make_sglang(arg: str | None, tools: list[dict[str, Any]] | None) -> Parser:
    """``sglang:<detector>``: SGLang's own detector of that name."""
    return SGLangParser(arg or "", tools)
