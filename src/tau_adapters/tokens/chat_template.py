"""A tokenizer's chat template, used only for what it is needed for: prompts and observation deltas.

The model's own turns are never rendered or re-encoded here. After a model turn, what comes next
(tool results, the user's reply, the next generation prompt) is computed as a *delta*: the template
renders a fixed three-message stand-in conversation ending with an assistant turn that contains a
marker, followed by the new messages; everything after the end-of-turn token that closes the marker
turn is the delta. Templates that rewrite earlier turns (Qwen3's hybrid template strips ``<think>``
from assistant turns before the last user message) cannot change the delta, because the stand-in
turn is all that precedes it. A template that does not close an assistant turn with a special token
cannot be extended this way, and `ChatTemplate` says so when it is built.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any

from tau_adapters.errors import TemplateError

TURN_MARKER = "TAU_ADAPTERS_TURN_MARKER_5b1f"
_STANDIN_SYSTEM = "S"
_STANDIN_USER = "U"


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _text_arguments(message: dict[str, Any]) -> dict[str, Any]:
    """The message with tool-call arguments as JSON text (unchanged when there are none)."""
    calls = message.get("tool_calls")
    if not calls:
        return message
    converted = []
    for call in calls:
        function = dict(call.get("function") or {})
        if not isinstance(function.get("arguments"), str):
            function["arguments"] = json.dumps(function.get("arguments") or {}, ensure_ascii=False)
        converted.append({**call, "function": function})
    return {**message, "tool_calls": converted}


def _marked_call(call: dict[str, Any]) -> dict[str, Any]:
    """The call with the turn marker as its arguments (the name and id are kept: templates
    render tool results with them)."""
    function = dict(call.get("function") or {})
    function["arguments"] = {"marker": TURN_MARKER}
    return {**call, "function": function}


def standin_call(call_id: str = "call00001", name: str = "lookup") -> dict[str, Any]:
    """A stand-in tool call (a 9-character id: Mistral templates insist on it)."""
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": {"key": "value"}},
    }


def _standin_tool_round(calls: Sequence[dict[str, Any]] | None) -> list[dict[str, Any]]:
    call = standin_call("call00000")
    return [
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "R"},
    ]


def _standin_followers() -> list[list[dict[str, Any]]]:
    """What may follow a prompt: a plain reply, or a tool call, each then a user message."""
    return [
        [
            {"role": "assistant", "content": TURN_MARKER},
            {"role": "user", "content": _STANDIN_USER},
        ],
        [
            {"role": "assistant", "content": TURN_MARKER, "tool_calls": [standin_call()]},
            {"role": "tool", "tool_call_id": "call00001", "content": "R"},
        ],
    ]


def template_mentions_tools(template: str | None) -> bool:
    return bool(template) and "tools" in (template or "")


class ChatTemplate:
    """Renders chat messages with a Hugging Face tokenizer's template and encodes the result."""

    def __init__(
        self,
        tokenizer: Any,
        *,
        template_kwargs: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self._lock = threading.RLock()
        self.name = name or getattr(tokenizer, "name_or_path", None) or type(tokenizer).__name__
        template = getattr(tokenizer, "chat_template", None)
        if not template:
            raise TemplateError(
                f"tokenizer {self.name!r} has no chat template; pass a tokenizer folder whose "
                "tokenizer_config.json (or chat_template.jinja) defines one"
            )
        self.supports_tools = template_mentions_tools(template)
        #: Harmony (gpt-oss) templates refuse channel markup in an assistant's content: turns
        #: must be given to them as thinking / content / tool_calls (`Transcript.record_turn`).
        self.structured_history = "<|channel|>" in template or "[TOOL_CALLS]" in template
        #: Where tool schemas go: "template" (``tools=``), or "system" when the probe found the
        #: template's own placement cannot be extended exactly (Mistral's list before the latest
        #: user message); then they are written into the system prompt (`token_policy`).
        self.tool_placement = "template" if self.supports_tools else "system"
        self.template_kwargs = dict(template_kwargs or {})
        self.special_ids = self._special_ids()
        self._prefix_cache: dict[str, list[int]] = {}
        #: Whether tool-call arguments must be given as JSON text (DeepSeek templates concatenate
        #: them into the prompt) rather than as an object.
        self.arguments_as_text = self._needs_text_arguments()
        #: Whether tool-call ids must be 9 alphanumeric characters (Mistral templates raise
        #: otherwise); `token_policy` then gives calls such ids.
        self.short_call_ids = self._needs_short_call_ids()
        self.eot_id, self.eot_text = self._find_end_of_turn()
        self._deltas_need_tools: bool | None = None
        eos = getattr(tokenizer, "eos_token_id", None)
        self.stop_ids = frozenset({self.eot_id} | ({eos} if isinstance(eos, int) else set()))
        #: Tokens that may end a model turn in the kept ids or in a render of it as history
        #: (harmony: ``<|return|>`` when sampled, ``<|end|>`` / ``<|call|>`` in history).
        self.end_ids = self.stop_ids | self._history_turn_ends()
        self.stop_ids = self.end_ids - self._history_only_ends()
        #: How deltas are rendered: "standin" (a fixed three-message stand-in before the new
        #: messages) or "stateful" (the stand-in also carries one earlier tool round when the real
        #: conversation had one, for templates with flags such as DeepSeek-R1's first-tool-output
        #: marker). `template_probe.probe_template` picks the first that is exact, or refuses.
        self.delta_strategy = "standin"
        self._user_first: bool | None = None
        self._generation_prompts: dict[str | None, str] = {}
        self._rewritten_tails: dict[str | None, list[list[int]]] = {}

    # -- basic operations ----------------------------------------------------------------------
    def render(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        tools: Sequence[dict[str, Any]] | None = None,
        add_generation_prompt: bool = False,
    ) -> str:
        if getattr(self, "arguments_as_text", False):
            messages = [_text_arguments(m) for m in messages]
        return self.tokenizer.apply_chat_template(
            list(messages),
            tools=list(tools) if tools and self.supports_tools else None,
            add_generation_prompt=add_generation_prompt,
            tokenize=False,
            **self.template_kwargs,
        )

    def encode(self, text: str) -> list[int]:
        with self._lock:  # HF fast tokenizers are not safe to share between threads
            return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        with self._lock:
            return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    # -- what the transcript needs ---------------------------------------------------------------
    def prompt_ids(
        self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]] | None
    ) -> list[int]:
        """The prompt: the opening messages rendered with the generation prompt.

        The first turn (system prompt, policy, tool schemas: thousands of tokens, the same for
        every episode of a domain) is encoded once and reused. Cutting right after a special
        token is safe: tokenizers split added special tokens out before anything else, so the
        two halves encode exactly as the whole does.
        """
        text = self.render(messages, tools=tools, add_generation_prompt=True)
        cut = text.find(self.eot_text)
        if cut < 0:
            return self.encode(text)
        cut += len(self.eot_text)
        head = text[:cut]
        ids = self._prefix_cache.get(head)
        if ids is None:
            ids = self.encode(head)
            if len(self._prefix_cache) >= 64:
                self._prefix_cache.pop(next(iter(self._prefix_cache)))
            self._prefix_cache[head] = ids
        return [*ids, *self.encode(text[cut:])]

    def delta_ids(
        self,
        new_messages: Sequence[dict[str, Any]],
        tools: Sequence[dict[str, Any]] | None,
        *,
        previous_tool_calls: Sequence[dict[str, Any]] | None = None,
        earlier_tool_results: bool = False,
    ) -> list[int]:
        """Tokens of `new_messages` after a closed assistant turn, plus the generation prompt.

        `earlier_tool_results`: whether the conversation had tool results before the assistant
        turn that just closed; the "stateful" strategy mirrors that in the stand-in, so the cost
        stays that of rendering a handful of messages however long the conversation is.
        """
        prior = earlier_tool_results and self.delta_strategy == "stateful"
        if tools and not self._delta_depends_on_tools(tools):
            tools = None  # converting dozens of tool schemas for every render is the main cost
        # Some templates insist that tool results follow an assistant turn with tool calls, others
        # render tool calls instead of the content: try with them first, then without.
        attempts: list[Sequence[dict[str, Any]] | None] = []
        if previous_tool_calls and any(m.get("role") == "tool" for m in new_messages):
            attempts.append(previous_tool_calls)
        attempts.append(None)
        error: TemplateError | None = None
        for calls in attempts:
            try:
                return self.encode(self._delta_text(new_messages, tools, calls, prior))
            except TemplateError as exc:
                error = exc
            except Exception as exc:  # the template raised (raise_exception) for this variant
                error = TemplateError(f"chat template of {self.name!r} failed: {exc}")
        assert error is not None
        raise error

    def _after_standin_turn(self, text: str) -> str:
        # The stand-in's content and its tool calls' arguments carry the marker; whatever the
        # template renders last of the turn, the turn closes at the first end-of-turn token after
        # the last marker (harmony closes a call with <|call|>, DeepSeek-R1 drops the content of
        # a second tool-call turn but renders its arguments).
        marker = text.rfind(TURN_MARKER)
        if marker < 0:
            raise TemplateError(
                f"chat template of {self.name!r} dropped the content of an assistant turn; "
                "it cannot be extended turn by turn without re-rendering"
            )
        after = marker + len(TURN_MARKER)
        closes = [
            (at, len(token)) for token in self._end_texts() if (at := text.find(token, after)) >= 0
        ]
        if not closes:
            raise TemplateError(
                f"chat template of {self.name!r} did not close an assistant turn with "
                f"{self.eot_text!r} when more messages followed; it cannot be extended turn by turn"
            )
        at, length = min(closes)
        return text[at + length :]

    def _end_texts(self) -> list[str]:
        ends = getattr(self, "end_ids", None) or frozenset({self.eot_id})
        return [self.decode([token_id]) for token_id in sorted(ends)]

    def _delta_depends_on_tools(self, tools: Sequence[dict[str, Any]]) -> bool:
        """Whether this template renders anything after an assistant turn differently when tools
        are given (most put them in the system block; Mistral-style ones before the last user
        message). Probed once with a tool result and a user message."""
        if self._deltas_need_tools is None:
            probe = [
                {"role": "tool", "tool_call_id": "probe", "content": '{"ok": true}'},
                {"role": "assistant", "content": "A"},
                {"role": "user", "content": "B"},
            ]
            calls = [
                {"id": "probe", "type": "function", "function": {"name": "f", "arguments": {}}}
            ]
            self._deltas_need_tools = True  # unless the probe shows otherwise
            for standin_calls in (calls, None):
                try:
                    with_tools = self._delta_text(probe, tools, standin_calls)
                    without = self._delta_text(probe, None, standin_calls)
                except Exception:
                    continue
                self._deltas_need_tools = with_tools != without
                break
        return self._deltas_need_tools

    def _delta_text(
        self,
        new_messages: Sequence[dict[str, Any]],
        tools: Sequence[dict[str, Any]] | None,
        calls: Sequence[dict[str, Any]] | None,
        prior_tool_round: bool = False,
    ) -> str:
        """The text after the stand-in assistant turn's end-of-turn token."""
        standin: dict[str, Any] = {"role": "assistant", "content": TURN_MARKER}
        if calls:
            standin["tool_calls"] = [_marked_call(call) for call in calls]
        conversation = [
            {"role": "system", "content": _STANDIN_SYSTEM},
            {"role": "user", "content": _STANDIN_USER},
            *(_standin_tool_round(calls) if prior_tool_round else []),
            standin,
            *new_messages,
        ]
        text = self.render(conversation, tools=tools, add_generation_prompt=True)
        return self._after_standin_turn(text)

    def opening_messages(self, messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The opening as this template can take it.

        tau2 opens with the agent's greeting, before the user speaks. Templates that demand
        alternating roles starting with the user (Mistral's) raise on that; for them the
        greeting moves into the system message ("You opened the conversation with: ..."), so
        the model still knows what it said and the roles alternate as the family requires.
        """
        messages = [dict(m) for m in messages]
        if self._user_first is None:
            self._user_first = self._requires_user_first()
        if not self._user_first:
            return messages
        system = [m for m in messages[:1] if m.get("role") == "system"]
        rest = messages[len(system) :]
        greetings: list[str] = []
        while rest and rest[0].get("role") == "assistant" and not rest[0].get("tool_calls"):
            greetings.append(str(rest.pop(0).get("content") or ""))
        if not greetings:
            return messages
        note = "You opened the conversation with: " + " ".join(greetings)
        if system:
            head = dict(system[0])
            head["content"] = f"{head.get('content') or ''}\n\n{note}"
        else:
            head = {"role": "system", "content": note}
        return [head, *rest]

    def _requires_user_first(self) -> bool:
        greeting_first = [
            {"role": "system", "content": _STANDIN_SYSTEM},
            {"role": "assistant", "content": "G"},
            {"role": "user", "content": _STANDIN_USER},
        ]
        try:
            self.render(greeting_first, add_generation_prompt=True)
            return False
        except Exception:
            try:
                self.render([greeting_first[0], greeting_first[2]], add_generation_prompt=True)
            except Exception:
                return False  # it fails either way: the probe reports the template's message
            return True

    # -- what the token check needs ---------------------------------------------------------------
    def generation_prompt(self, last_role: str | None) -> str:
        """The text the template adds with ``add_generation_prompt`` after a message of
        `last_role` ("" when it adds nothing there, e.g. DeepSeek-R1 after tool results)."""
        if last_role not in self._generation_prompts:
            try:
                context = self._context_ending_with(last_role)
                with_prompt = self.render(context, add_generation_prompt=True)
                without = self.render(context, add_generation_prompt=False)
                found = with_prompt[len(without) :] if with_prompt.startswith(without) else ""
            except Exception:
                found = ""  # the probe reports templates that cannot render this context
            self._generation_prompts[last_role] = found
        return self._generation_prompts[last_role]

    def rewritten_tail_ids(self, last_role: str | None) -> list[list[int]]:
        """Token tails of a prompt ending with a `last_role` message that the template drops
        when it renders the next assistant turn as history (Qwen3 thinking-off's empty think
        block, DeepSeek-R1's ``<think>``, R1's tool-outputs-end before a second tool call)."""
        if last_role not in self._rewritten_tails:
            tails: list[list[int]] = []
            # Templates with flags render the same prompt differently once a tool round has
            # happened (DeepSeek-R1 drops <｜Assistant｜> before every tool call but the first).
            for prior in (False, True):
                try:
                    context = self._context_ending_with(last_role, prior)
                    prompt = self.render(context, add_generation_prompt=True)
                except Exception:
                    continue
                for follow in _standin_followers():
                    try:
                        history = self.render([*context, *follow])
                    except Exception:
                        continue
                    tail = prompt[self.aligned_prefix(prompt, history) :]
                    if tail and TURN_MARKER not in tail:
                        ids = self.encode(tail)
                        if ids and ids not in tails and self.decode(ids) == tail:
                            tails.append(ids)
            self._rewritten_tails[last_role] = sorted(tails, key=len)
        return self._rewritten_tails[last_role]

    def aligned_prefix(self, prompt: str, other: str) -> int:
        """Length of the common text prefix of `prompt` and `other`, cut back to the start of
        the prompt token in which they part (so what follows starts on a token of `prompt`)."""
        common = _common_prefix(prompt, other)
        if common == len(prompt):
            return common
        ids = self.encode(prompt)
        k = len(ids)
        while k and len(self.decode(ids[:k])) > common:
            k -= 1
        return len(self.decode(ids[:k]))

    def _context_ending_with(
        self, last_role: str | None, prior_tool_round: bool = False
    ) -> list[dict[str, Any]]:
        context: list[dict[str, Any]] = [
            {"role": "system", "content": _STANDIN_SYSTEM},
            {"role": "user", "content": _STANDIN_USER},
        ]
        if prior_tool_round:
            context += [*_standin_tool_round(None), {"role": "assistant", "content": "A"}]
            context.append({"role": "user", "content": _STANDIN_USER})
        if last_role == "tool":
            context.extend(_standin_tool_round(None))
        elif last_role == "assistant":
            context.append({"role": "assistant", "content": TURN_MARKER})
        return context

    # -- set-up ----
    def _history_turn_ends(self) -> frozenset[int]:
        """How the template closes an assistant turn in history: the first special token after a
        plain reply followed by a user message, and the last special token of a tool-call turn
        (harmony: ``<|end|>`` and ``<|call|>``)."""
        found: set[int] = set()
        head = [
            {"role": "system", "content": _STANDIN_SYSTEM},
            {"role": "user", "content": _STANDIN_USER},
        ]
        plain, with_call = _standin_followers()
        try:
            text = self.render([*head, *plain])
            marker = text.find(TURN_MARKER)
            if marker >= 0:
                for token_id in self.encode(text[marker + len(TURN_MARKER) :]):
                    if token_id in self.special_ids:
                        found.add(token_id)
                        break
        except Exception:
            pass  # the probe reports templates that cannot render this
        try:
            text = self.render([*head, with_call[0]])
            specials = [t for t in self.encode(text) if t in self.special_ids]
            if specials:
                found.add(specials[-1])
        except Exception:
            pass
        return frozenset(found)

    def _history_only_ends(self) -> frozenset[int]:
        """End tokens the model must not stop on: harmony's ``<|end|>`` closes an analysis
        message, and the model goes on with the final one in the same turn."""
        template = self.tokenizer.chat_template or ""
        if "<|channel|>" not in template or self.eot_text == "<|end|>":
            return frozenset()
        token_id = self.tokenizer.convert_tokens_to_ids("<|end|>")
        return frozenset({token_id}) if token_id in self.special_ids else frozenset()

    def _needs_short_call_ids(self) -> bool:
        call = standin_call("call_1_0")
        conversation: list[dict[str, Any]] = [
            {"role": "system", "content": _STANDIN_SYSTEM},
            {"role": "user", "content": _STANDIN_USER},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1_0", "content": "R"},
        ]
        try:
            self.render(conversation)
            return False
        except Exception:
            pass
        try:
            self.render(conversation[:2] + _standin_tool_round(None))
        except Exception:
            return False  # fails either way: the probe reports why
        return True

    def _needs_text_arguments(self) -> bool:
        conversation = [
            {"role": "system", "content": _STANDIN_SYSTEM},
            {"role": "user", "content": _STANDIN_USER},
            *_standin_tool_round(None),
        ]
        try:
            self.render(conversation)
            return False
        except Exception as as_object:
            try:
                self.render([_text_arguments(m) for m in conversation])
            except Exception:
                # Neither works: the start-up probe reports why (`template_probe`).
                del as_object
                return False
            return True

    def _special_ids(self) -> frozenset[int]:
        ids = set(getattr(self.tokenizer, "all_special_ids", []) or [])
        decoder = getattr(self.tokenizer, "added_tokens_decoder", None) or {}
        ids.update(i for i, token in decoder.items() if getattr(token, "special", False))
        return frozenset(ids)

    def _find_end_of_turn(self) -> tuple[int, str]:
        conversation = [
            {"role": "system", "content": _STANDIN_SYSTEM},
            {"role": "user", "content": _STANDIN_USER},
            {"role": "assistant", "content": TURN_MARKER},
        ]
        text = self.render(conversation)
        marker = text.find(TURN_MARKER)
        if marker < 0:
            raise TemplateError(f"chat template of {self.name!r} does not render assistant content")
        for token_id in self.encode(text[marker + len(TURN_MARKER) :]):
            if token_id in self.special_ids:
                return token_id, self.decode([token_id])
        raise TemplateError(
            f"chat template of {self.name!r} does not end an assistant turn with a special token, "
            "so the tokens a model samples cannot be kept verbatim across turns with it"
        )
