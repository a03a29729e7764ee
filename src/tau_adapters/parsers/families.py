"""Tool-call parsers for model families with their own native format (harmony, Mistral, DeepSeek,
Kimi-K2, GLM). Each inverts what the family's chat template renders for an assistant turn with
tool calls, never raises (problems go to ``ParsedOutput.error``), and evaluates nothing but JSON.

Registered in `tau_adapters.plugins.BUILTINS` as ``harmony`` (alias ``gpt-oss``),
``mistral``, ``deepseek``, ``kimi-k2`` and ``glm``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tau_adapters.errors import ConfigError
from tau_adapters.parsers.base import (
    ParsedOutput,
    ParsedToolCall,
    _decode,
    _guard,
    _join,
    no_argument,
    split_reasoning,
)


def _call_from(name: str, raw: str, label: str) -> ParsedToolCall | str:
    """A call named `name` whose arguments are the JSON object in `raw`, or why not."""
    name = name.strip()
    if not name:
        return f"{label}: empty tool name"
    body = raw.strip()
    if not body:
        return ParsedToolCall(name=name, arguments={})
    decoded = _decode(body)
    if isinstance(decoded, str):
        return f"{label}: {decoded}"
    value, end = decoded
    if body[end:].strip():
        return f"{label}: text after the JSON arguments"
    if not isinstance(value, dict):
        return f"{label}: arguments must be a JSON object, got {type(value).__name__}"
    return ParsedToolCall(name=name, arguments=value)


def _result(
    content: list[str], calls: list[ParsedToolCall], reasoning: str | None, errors: list[str]
) -> ParsedOutput:
    text = _join(content)
    if errors:
        return ParsedOutput(text, [], reasoning, errors[0])
    return ParsedOutput(text, calls, reasoning, None)


# -- gpt-oss / harmony ----------------------------------------------------------------------------

_HARMONY_MESSAGE = re.compile(r"<\|message\|>")
_HARMONY_CHANNEL = re.compile(r"<\|channel\|>\s*([A-Za-z_]+)")
_HARMONY_RECIPIENT = re.compile(r"\bto=([^\s<]+)")
_HARMONY_STOPS = ("<|end|>", "<|call|>", "<|return|>")


class HarmonyParser:
    """OpenAI harmony (gpt-oss): messages ``<|channel|>analysis<|message|>...<|end|>``, replies
    on ``final``, tool calls as ``to=functions.NAME`` on ``commentary`` with JSON arguments.

    The generation prompt ends with ``<|start|>assistant``, so the turn's first header has no
    ``<|start|>``; later messages of the same turn start with ``<|start|>assistant``.
    """

    name = "harmony"

    def parse(self, text: str) -> ParsedOutput:
        return _guard(self._parse, text)

    def format_instruction(self) -> str:
        return (
            "Call tools in the harmony format of your chat template: on the commentary channel, "
            "addressed to=functions.NAME, with the arguments as a JSON object. "
            "Give the answer for the user on the final channel."
        )

    def render_call(self, name: str, arguments: dict[str, Any]) -> str:
        """What the gpt-oss template renders for a call after ``<|start|>assistant`` (the turn
        ends with ``<|call|>``, the stop token, which is not part of the text)."""
        body = json.dumps(arguments, ensure_ascii=False)
        return f" to=functions.{name}<|channel|>commentary json<|message|>{body}"

    def render_final(self, content: str, analysis: str | None = None) -> str:
        head = (
            f"<|channel|>analysis<|message|>{analysis}<|end|><|start|>assistant" if analysis else ""
        )
        return f"{head}<|channel|>final<|message|>{content}"

    def _parse(self, text: str) -> ParsedOutput:
        if "<|message|>" not in text and "<|channel|>" not in text:
            return ParsedOutput(text.strip() or None, [], None, None)  # no harmony at all
        content: list[str] = []
        reasoning: list[str] = []
        calls: list[ParsedToolCall] = []
        errors: list[str] = []
        for index, segment in enumerate(text.split("<|start|>"), 1):
            if not segment.strip():
                continue
            marker = _HARMONY_MESSAGE.search(segment)
            if marker is None:
                errors.append(f"message {index}: no <|message|> after its header")
                continue
            header, body = segment[: marker.start()], segment[marker.end() :]
            for stop in _HARMONY_STOPS:
                cut = body.find(stop)
                if cut >= 0:
                    body = body[:cut]
            channel_match = _HARMONY_CHANNEL.search(header)
            channel = channel_match.group(1) if channel_match else None
            recipient = _HARMONY_RECIPIENT.search(header)
            if recipient is not None:
                target = recipient.group(1)
                if not target.startswith("functions."):
                    errors.append(f"message {index}: unsupported recipient {target!r}")
                    continue
                call = _call_from(target[len("functions.") :], body, f"tool call {len(calls) + 1}")
                if isinstance(call, str):
                    errors.append(call)
                else:
                    calls.append(call)
            elif channel == "analysis":
                reasoning.append(body)
            elif channel in ("final", "commentary"):
                content.append(body)
            else:
                errors.append(f"message {index}: unknown or missing channel {channel!r}")
        return _result(content, calls, _join(reasoning), errors)


# -- Mistral ---------------------------------------------------------------------------------------

_MISTRAL_CALLS = "[TOOL_CALLS]"
_MISTRAL_ARGS = "[ARGS]"
_MISTRAL_CALL_ID = "[CALL_ID]"


class MistralParser:
    """Mistral's ``[TOOL_CALLS]``: either ``[TOOL_CALLS]NAME[CALL_ID]ID[ARGS]{...}`` per call
    (Mistral-Small-3.2 and later templates) or ``[TOOL_CALLS][{"name": ..., "arguments": ...,
    "id": ...}]`` (the JSON list of earlier templates)."""

    name = "mistral"

    def __init__(self, style: str = "args") -> None:
        if style not in ("args", "json"):
            raise ValueError(f"mistral parser style must be 'args' or 'json', got {style!r}")
        self.style = style

    def parse(self, text: str) -> ParsedOutput:
        return _guard(self._parse, text)

    def format_instruction(self) -> str:
        return (
            "To call a tool, write [TOOL_CALLS] followed by the call in the format of your chat "
            f"template, for example {self.render_call('tool_name', {'argument': 'value'})}. "
            "When you do not call a tool, reply in plain text."
        )

    def render_call(self, name: str, arguments: dict[str, Any], call_id: str | None = None) -> str:
        body = json.dumps(arguments, ensure_ascii=False)
        if self.style == "json":
            call: dict[str, Any] = {"name": name, "arguments": arguments}
            if call_id:
                call["id"] = call_id
            return f"{_MISTRAL_CALLS}{json.dumps([call], ensure_ascii=False)}"
        ident = f"{_MISTRAL_CALL_ID}{call_id}" if call_id else ""
        return f"{_MISTRAL_CALLS}{name}{ident}{_MISTRAL_ARGS}{body}"

    def _parse(self, text: str) -> ParsedOutput:
        visible, reasoning = split_reasoning(text, (_MISTRAL_CALLS,))
        first = visible.find(_MISTRAL_CALLS)
        if first < 0:
            return ParsedOutput(visible.strip() or None, [], reasoning, None)
        content = [visible[:first]]
        calls: list[ParsedToolCall] = []
        errors: list[str] = []
        for index, chunk in enumerate(visible[first:].split(_MISTRAL_CALLS)[1:], 1):
            label = f"tool call {index}"
            stripped = chunk.strip()
            if stripped.startswith("["):  # the JSON-list form
                decoded = _decode(stripped)
                if isinstance(decoded, str):
                    errors.append(f"{label}: {decoded}")
                    continue
                value = decoded[0]
                items = value if isinstance(value, list) else [value]
                for item in items:
                    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                        errors.append(f"{label}: each call needs a name")
                        continue
                    args = item.get("arguments", item.get("parameters", {}))
                    raw = args if isinstance(args, str) else json.dumps(args)
                    call = _call_from(item["name"], raw, label)
                    if isinstance(call, ParsedToolCall) and isinstance(item.get("id"), str):
                        call.id = item["id"]
                    (errors.append if isinstance(call, str) else calls.append)(call)  # type: ignore[arg-type]
                continue
            if _MISTRAL_ARGS not in chunk:
                errors.append(f"{label}: no [ARGS] after the tool name")
                continue
            head, body = chunk.split(_MISTRAL_ARGS, 1)
            name, _, ident = head.partition(_MISTRAL_CALL_ID)
            call = _call_from(name, body, label)
            if isinstance(call, ParsedToolCall) and ident.strip():
                call.id = ident.strip()
            (errors.append if isinstance(call, str) else calls.append)(call)  # type: ignore[arg-type]
        return _result(content, calls, reasoning, errors)


# -- DeepSeek (R1 / V3 / V3.1) -------------------------------------------------------------------

_DS_CALL = re.compile(r"<｜tool▁call▁begin｜>(.*?)<｜tool▁call▁end｜>", re.DOTALL)
_DS_BEGIN = "<｜tool▁calls▁begin｜>"
_DS_END = "<｜tool▁calls▁end｜>"
_DS_SEP = "<｜tool▁sep｜>"
_FENCED = re.compile(r"^\s*```(?:json)?\s*\n?(.*?)\n?```\s*$", re.DOTALL)


class DeepSeekParser:
    """DeepSeek's ``<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>...<｜tool▁call▁end｜>`` blocks:
    R1/V3 write ``function<｜tool▁sep｜>NAME`` then the arguments in a ```json fence; V3.1 writes
    ``NAME<｜tool▁sep｜>{...}``. Both are read."""

    name = "deepseek"

    def __init__(self, style: str = "r1") -> None:
        if style not in ("r1", "v3.1"):
            raise ValueError(f"deepseek parser style must be 'r1' or 'v3.1', got {style!r}")
        self.style = style

    def parse(self, text: str) -> ParsedOutput:
        return _guard(self._parse, text)

    def format_instruction(self) -> str:
        return "Call tools in the tool-call format of your chat template."

    def render_call(self, name: str, arguments: dict[str, Any]) -> str:
        body = json.dumps(arguments, ensure_ascii=False)
        if self.style == "v3.1":
            inner = f"{name}{_DS_SEP}{body}"
        else:
            inner = f"function{_DS_SEP}{name}\n```json\n{body}\n```"
        return f"{_DS_BEGIN}<｜tool▁call▁begin｜>{inner}<｜tool▁call▁end｜>{_DS_END}"

    def _parse(self, text: str) -> ParsedOutput:
        visible, reasoning = split_reasoning(text, (_DS_BEGIN, "<｜tool▁call▁begin｜>"))
        start = visible.find(_DS_BEGIN)
        loose = visible.find("<｜tool▁call▁begin｜>")
        if start < 0 and loose < 0:
            return ParsedOutput(visible.strip() or None, [], reasoning, None)
        start = start if start >= 0 else loose
        content = [visible[:start]]
        end = visible.find(_DS_END, start)
        block = visible[start : end if end >= 0 else len(visible)]
        if end >= 0:
            content.append(visible[end + len(_DS_END) :])
        calls: list[ParsedToolCall] = []
        errors: list[str] = []
        bodies = _DS_CALL.findall(block)
        if not bodies:
            errors.append("tool call 1: no complete <｜tool▁call▁begin｜>...<｜tool▁call▁end｜>")
        for index, inner in enumerate(bodies, 1):
            label = f"tool call {index}"
            if _DS_SEP not in inner:
                errors.append(f"{label}: no <｜tool▁sep｜>")
                continue
            left, right = inner.split(_DS_SEP, 1)
            if left.strip() == "function" or "\n" in right.strip().split("{", 1)[0]:
                name, _, raw = right.partition("\n")  # R1: function<sep>NAME\n```json ...```
                fenced = _FENCED.match(raw)
                raw = fenced.group(1) if fenced else raw
            else:
                name, raw = left, right  # V3.1: NAME<sep>{...}
            call = _call_from(name, raw, label)
            (errors.append if isinstance(call, str) else calls.append)(call)  # type: ignore[arg-type]
        return _result(content, calls, reasoning, errors)


# -- Kimi-K2 ---------------------------------------------------------------------------------------

_KIMI_SECTION = re.compile(
    r"<\|tool_calls_section_begin\|>(.*?)(?:<\|tool_calls_section_end\|>|$)", re.DOTALL
)
_KIMI_CALL = re.compile(
    r"<\|tool_call_begin\|>\s*(.*?)\s*<\|tool_call_argument_begin\|>(.*?)<\|tool_call_end\|>",
    re.DOTALL,
)
_KIMI_ID = re.compile(r"^(?:functions\.)?([A-Za-z0-9_\-.]+?)(?::\d+)?$")


class KimiK2Parser:
    """Kimi-K2: ``<|tool_calls_section_begin|><|tool_call_begin|>functions.NAME:IDX
    <|tool_call_argument_begin|>{...}<|tool_call_end|><|tool_calls_section_end|>``."""

    name = "kimi-k2"

    def parse(self, text: str) -> ParsedOutput:
        return _guard(self._parse, text)

    def format_instruction(self) -> str:
        return "Call tools in the tool-call format of your chat template."

    def render_call(self, name: str, arguments: dict[str, Any], index: int = 0) -> str:
        body = json.dumps(arguments, ensure_ascii=False)
        return (
            f"<|tool_calls_section_begin|><|tool_call_begin|>functions.{name}:{index}"
            f"<|tool_call_argument_begin|>{body}<|tool_call_end|><|tool_calls_section_end|>"
        )

    def _parse(self, text: str) -> ParsedOutput:
        visible, reasoning = split_reasoning(
            text, ("<|tool_calls_section_begin|>", "<|tool_call_begin|>")
        )
        sections = list(_KIMI_SECTION.finditer(visible))
        if not sections:
            if "<|tool_call_begin|>" in visible:
                return ParsedOutput(None, [], reasoning, "tool call outside a tool-call section")
            return ParsedOutput(visible.strip() or None, [], reasoning, None)
        content: list[str] = []
        calls: list[ParsedToolCall] = []
        errors: list[str] = []
        pos = 0
        for section in sections:
            content.append(visible[pos : section.start()])
            pos = section.end()
            found = list(_KIMI_CALL.finditer(section.group(1)))
            if not found:
                errors.append(f"tool call {len(calls) + 1}: no complete call in the section")
            for match in found:
                label = f"tool call {len(calls) + len(errors) + 1}"
                ident = _KIMI_ID.match(match.group(1).strip())
                if ident is None:
                    errors.append(f"{label}: bad call id {match.group(1)!r:.60}")
                    continue
                call = _call_from(ident.group(1), match.group(2), label)
                (errors.append if isinstance(call, str) else calls.append)(call)  # type: ignore[arg-type]
        content.append(visible[pos:])
        return _result(content, calls, reasoning, errors)


# -- GLM-4.5 ---------------------------------------------------------------------------------------

_GLM_CALL = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)
_GLM_PAIR = re.compile(r"<arg_key>(.*?)</arg_key>\s*<arg_value>(.*?)</arg_value>", re.DOTALL)


class GLMParser:
    """GLM-4.5: ``<tool_call>NAME\\n<arg_key>K</arg_key>\\n<arg_value>V</arg_value>...
    </tool_call>``; a value that is not valid JSON is a string (the template writes strings
    bare and everything else as JSON)."""

    name = "glm"

    def parse(self, text: str) -> ParsedOutput:
        return _guard(self._parse, text)

    def format_instruction(self) -> str:
        return "Call tools in the tool-call format of your chat template."

    def render_call(self, name: str, arguments: dict[str, Any]) -> str:
        pairs = "".join(
            f"<arg_key>{k}</arg_key>\n<arg_value>"
            f"{v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}</arg_value>\n"
            for k, v in arguments.items()
        )
        return f"<tool_call>{name}\n{pairs}</tool_call>"

    def _parse(self, text: str) -> ParsedOutput:
        visible, reasoning = split_reasoning(text, ("<tool_call>",))
        matches = list(_GLM_CALL.finditer(visible))
        if not matches:
            return ParsedOutput(visible.strip() or None, [], reasoning, None)
        content: list[str] = []
        calls: list[ParsedToolCall] = []
        errors: list[str] = []
        pos = 0
        for index, match in enumerate(matches, 1):
            content.append(visible[pos : match.start()])
            pos = match.end()
            body = match.group(1)
            name, _, rest = body.partition("<arg_key>")
            name = name.strip()
            rest = "<arg_key>" + rest if rest else ""
            if not name or "\n" in name:
                errors.append(f"tool call {index}: missing tool name")
                continue
            arguments: dict[str, Any] = {}
            for key, value in _GLM_PAIR.findall(rest):
                decoded = _decode(value.strip()) if value.strip() else None
                if isinstance(decoded, tuple) and not value.strip()[decoded[1] :].strip():
                    arguments[key.strip()] = decoded[0]
                else:
                    arguments[key.strip()] = value
            leftover = _GLM_PAIR.sub("", rest).strip()
            if leftover:
                errors.append(f"tool call {index}: unreadable arguments {leftover!r:.60}")
                continue
            calls.append(ParsedToolCall(name=name, arguments=arguments))
        content.append(visible[pos:])
        return _result(content, calls, reasoning, errors)


def _with_variant(cls: type[Any], kind: str, arg: str | None) -> Any:
    if not arg:
        return cls()
    try:
        return cls(arg)
    except ValueError as exc:
        raise ConfigError(f"parser {kind!r}: {exc}") from None


def make_harmony(arg: str | None, tools: list[dict[str, Any]] | None) -> HarmonyParser:
    """``harmony`` (alias ``gpt-oss``)."""
    no_argument("harmony", arg)
    return HarmonyParser()


def make_mistral(arg: str | None, tools: list[dict[str, Any]] | None) -> MistralParser:
    """``mistral`` / ``mistral:json`` (the JSON-list form of older templates)."""
    return _with_variant(MistralParser, "mistral", arg)  # type: ignore[no-any-return]


def make_deepseek(arg: str | None, tools: list[dict[str, Any]] | None) -> DeepSeekParser:
    """``deepseek`` / ``deepseek:v3.1``."""
    return _with_variant(DeepSeekParser, "deepseek", arg)  # type: ignore[no-any-return]


def make_kimi_k2(arg: str | None, tools: list[dict[str, Any]] | None) -> KimiK2Parser:
    no_argument("kimi-k2", arg)
    return KimiK2Parser()


def make_glm(arg: str | None, tools: list[dict[str, Any]] | None) -> GLMParser:
    no_argument("glm", arg)
    return GLMParser()
