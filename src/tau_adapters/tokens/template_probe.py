"""The start-up probe: prove, for the chat template in use, that appending deltas equals a full
render, before any episode runs.

A synthetic conversation exercises every transition an episode can make (user->assistant,
assistant->tool, tool->tool with several results in a row, tool->assistant, a second and a third
tool round, assistant->user). It is built the way an episode builds its transcript: the opening
rendered as the prompt, each assistant turn appended as the tokens the template itself writes for
it, each observation appended as a delta. Before every model turn and at the end, the kept ids
are compared with an independent full render (`Transcript.check`). The first delta strategy that
stays exact is kept (`ChatTemplate.delta_strategy`); a template that no strategy makes exact is
refused with its name and the reason. Nothing here swallows an error: a template that raises on
a transition an episode will make is refused with the template's own message.
"""

from __future__ import annotations

import json
from typing import Any

from tau_adapters.errors import TemplateError
from tau_adapters.tokens.chat_template import ChatTemplate
from tau_adapters.tokens.transcript import Transcript

STRATEGIES = ("standin", "stateful")

PROBE_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": f"Probe tool {name}.",
            "parameters": {
                "type": "object",
                "properties": {"key": {"type": "string"}},
                "required": ["key"],
            },
        },
    }
    for name in ("lookup", "update", "notify")
]


def _call(index: int, name: str) -> dict[str, Any]:
    return {
        "id": f"call{index:05d}",  # 9 characters: Mistral templates insist on it
        "type": "function",
        "function": {"name": name, "arguments": {"key": f"v{index}"}},
    }


def _tool(index: int, content: Any) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": f"call{index:05d}", "content": json.dumps(content)}


def probe_conversation(parallel: bool = True) -> list[dict[str, Any]]:
    """System, the agent's greeting, then every transition an episode can make.

    With `parallel` false, the turn with two calls becomes two turns of one call each (for
    templates that accept one call per turn, e.g. Llama 3.1's); tool->tool is then not a
    transition the template can render.
    """
    conversation: list[dict[str, Any]] = [
        {"role": "system", "content": "You are an agent. Follow the policy."},
        {"role": "assistant", "content": "Hi! How can I help you today?"},
        {"role": "user", "content": "Please change my booking, id AB12."},
        {"role": "assistant", "content": "", "tool_calls": [_call(1, "lookup")]},
        _tool(1, {"booking": "AB12", "status": "active"}),
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [_call(2, "update"), _call(3, "notify")],
        },
        _tool(2, {"ok": True}),
        _tool(3, "sent"),
        {"role": "assistant", "content": "Done. Anything else?"},
        {"role": "user", "content": "Yes, check AB13 too."},
        {"role": "assistant", "content": "", "tool_calls": [_call(4, "lookup")]},
        _tool(4, {"booking": "AB13", "status": "cancelled"}),
        {"role": "assistant", "content": "AB13 is cancelled."},
        {"role": "user", "content": "Thanks, bye."},
        {"role": "assistant", "content": "Goodbye."},
    ]
    if not parallel:
        at = next(i for i, m in enumerate(conversation) if len(m.get("tool_calls") or []) > 1)
        first, second = conversation[at]["tool_calls"]
        conversation[at : at + 3] = [
            {"role": "assistant", "content": "", "tool_calls": [first]},
            conversation[at + 1],
            {"role": "assistant", "content": "", "tool_calls": [second]},
            conversation[at + 2],
        ]
    return conversation


def probe_template(template: ChatTemplate, tools: list[dict[str, Any]] | None = None) -> str:
    """Pick the first exact delta strategy for `template` (and return it) or raise
    `TemplateError` naming the template and why each strategy failed."""
    tools = tools if tools is not None else PROBE_TOOLS
    reasons: list[str] = []
    parallel = _renders_parallel_calls(template, tools)
    for strategy in STRATEGIES:
        template.delta_strategy = strategy
        reason = _run(template, tools, parallel)
        if reason is None:
            return strategy
        reasons.append(f"{strategy} deltas: {reason}")
    if template.supports_tools:
        # Mistral templates list the tools before the latest user message, so every user turn
        # moves them; with the schemas in the system prompt instead, deltas can be exact.
        template.supports_tools = False
        for strategy in STRATEGIES:
            template.delta_strategy = strategy
            reason = _run(template, tools, parallel)
            if reason is None:
                template.tool_placement = "system"
                return strategy
            reasons.append(f"{strategy} deltas, tool schemas in the system prompt: {reason}")
        template.supports_tools = True
    template.delta_strategy = STRATEGIES[0]
    raise TemplateError(
        f"chat template {template.name!r} cannot be extended turn by turn exactly, so it is "
        "refused for token-level episodes; " + " | ".join(reasons)
    )


def _renders_parallel_calls(template: ChatTemplate, tools: list[dict[str, Any]]) -> bool:
    conversation = probe_conversation()
    at = next(i for i, m in enumerate(conversation) if len(m.get("tool_calls") or []) > 1)
    try:
        template.render(template.opening_messages(conversation[: at + 1]), tools=tools)
    except Exception:
        return False
    return True


def _run(template: ChatTemplate, tools: list[dict[str, Any]], parallel: bool) -> str | None:
    """None if every step is exact, else the first failure."""
    conversation = template.opening_messages(probe_conversation(parallel))
    transcript = Transcript(template, tools=tools if template.supports_tools else None)
    # The greeting (if the template keeps one) belongs to the opening, as in an episode.
    first_reply = next(
        i
        for i, m in enumerate(conversation)
        if m["role"] == "assistant" and any(x["role"] == "user" for x in conversation[:i])
    )
    try:
        transcript.start(conversation[:first_reply])
    except Exception as exc:
        return f"rendering the opening failed: {type(exc).__name__}: {exc}"
    i = first_reply
    previous_calls: list[dict[str, Any]] | None = None
    turn = 0
    while i < len(conversation):
        message = conversation[i]
        if message["role"] == "assistant":
            turn += 1
            check = transcript.check()
            if not check.ok:
                return f"before model turn {turn}: {check.detail}"
            try:
                ids = _model_ids(template, conversation, i, transcript.tools)
            except Exception as exc:
                return f"rendering model turn {turn} failed: {type(exc).__name__}: {exc}"
            transcript.append_model(ids, [0.0] * len(ids))
            transcript.chat_messages[-1] = dict(message)
            previous_calls = message.get("tool_calls")
            i += 1
            continue
        j = i
        while j < len(conversation) and conversation[j]["role"] != "assistant":
            j += 1
        group = conversation[i:j]
        try:
            delta = transcript.observation_ids(group, previous_calls)
        except Exception as exc:
            roles = "+".join(m["role"] for m in group)
            return f"the delta for {roles} after model turn {turn} failed: {exc}"
        transcript.append_observation(group, delta)
        i = j
    check = transcript.check()
    if not check.ok:
        return f"after the last model turn: {check.detail}"
    return None


def _model_ids(
    template: ChatTemplate,
    conversation: list[dict[str, Any]],
    i: int,
    tools: list[dict[str, Any]] | None,
) -> list[int]:
    """What the template writes for assistant turn `i` after its generation prompt, to the end
    of the turn: what a model trained on the template samples there."""
    prompt = template.render(conversation[:i], tools=tools, add_generation_prompt=True)
    history = template.render(conversation[: i + 2], tools=tools)
    rest = history[template.aligned_prefix(prompt, history) :]
    ids = template.encode(rest)
    for n, token_id in enumerate(ids):
        if token_id in template.end_ids:
            return ids[: n + 1]
    return ids


def check_system_only_opening(template: ChatTemplate) -> None:
    """Refuse a template that cannot render an episode without a user turn (tau2's solo mode).

    tau2's solo agent starts from its system prompt alone and never hears a user; some templates
    (Qwen3's: "No user query found in messages.") raise on such a conversation. Rendered here:
    the opening with its generation prompt, and a tool round after it (what every model turn and
    the end-of-episode check render). The error names the template, its message and the opt-in
    that adds a user turn."""
    tools = PROBE_TOOLS if template.supports_tools else None
    system = {"role": "system", "content": "You are an agent. Solve the ticket."}
    call = {"role": "assistant", "content": "", "tool_calls": [_call(1, "lookup")]}
    openings: list[list[dict[str, Any]]] = [[system], [system, call, _tool(1, {"ok": True})]]
    for conversation in openings:
        try:
            template.render(conversation, tools=tools, add_generation_prompt=True)
        except Exception as exc:
            raise TemplateError(
                f"chat template {template.name!r} cannot render tau2's solo conversation (a "
                f"system prompt and tool calls, no user turn): {type(exc).__name__}: {exc}. "
                "Set solo_ticket_as_user (CLI: --solo-ticket-as-user) to send the ticket as a "
                "first user turn (not tau2's protocol), or use another template"
            ) from None
