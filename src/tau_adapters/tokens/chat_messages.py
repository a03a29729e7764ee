"""tau2 messages as the chat dicts that templates and OpenAI-compatible APIs take."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


def openai_tool_calls(calls: Sequence[Any], *, arguments_as_text: bool = False) -> list[dict]:
    out = []
    for call in calls:
        args: Any = call.arguments
        if arguments_as_text:
            args = json.dumps(args, ensure_ascii=False)
        out.append(
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": args}}
        )
    return out


def to_chat(messages: Sequence[Any], *, arguments_as_text: bool = False) -> list[dict[str, Any]]:
    """Agent-visible tau2 messages -> chat dicts (system, user, assistant, tool)."""
    out: list[dict[str, Any]] = []
    for message in messages:
        role = getattr(message, "role", None)
        if role == "tool":
            for sub in getattr(message, "tool_messages", None) or [message]:
                out.append({"role": "tool", "tool_call_id": sub.id, "content": sub.content or ""})
        elif role == "assistant":
            entry: dict[str, Any] = {"role": "assistant", "content": message.content or ""}
            if message.tool_calls:
                entry["tool_calls"] = openai_tool_calls(
                    message.tool_calls, arguments_as_text=arguments_as_text
                )
            out.append(entry)
        elif role in ("user", "system"):
            out.append({"role": role, "content": message.content or ""})
    return out


def tool_calls_from_openai(
    calls: Sequence[dict[str, Any]] | None, *, requestor: str, id_prefix: str
) -> tuple[list[Any], str | None]:
    """tau2 `ToolCall`s from an OpenAI-style ``tool_calls`` list; ``(calls, None)``, or
    ``([], reason)`` when a call has no name or its arguments are not a JSON object."""
    from tau_adapters.domains.tau2.api import api

    t = api()
    out = []
    for index, call in enumerate(calls or []):
        function = call.get("function") or {}
        arguments = function.get("arguments")
        try:
            parsed = json.loads(arguments) if isinstance(arguments, str) else (arguments or {})
        except json.JSONDecodeError as exc:
            return [], f"tool call arguments are not JSON: {exc.msg}"
        if not isinstance(parsed, dict) or not function.get("name"):
            return [], "tool call without a name or object arguments"
        out.append(
            t.ToolCall(
                id=call.get("id") or f"{id_prefix}_{index}",
                name=function["name"],
                arguments=parsed,
                requestor=requestor,
            )
        )
    return out, None
