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

import threading
from collections.abc import Sequence
from typing import Any

from tau_adapters.errors import ConfigError

TURN_MARKER = "TAU_ADAPTERS_TURN_MARKER_5b1f"
_STANDIN_SYSTEM = "S"
_STANDIN_USER = "U"


class TemplateError(ConfigError):
    """The chat template cannot be used for exact token-in/token-out episodes."""


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
        self.template_kwargs = dict(template_kwargs or {})
        self.special_ids = self._special_ids()
        self._prefix_cache: dict[str, list[int]] = {}
        self.eot_id, self.eot_text = self._find_end_of_turn()
        self._deltas_need_tools: bool | None = None
        eos = getattr(tokenizer, "eos_token_id", None)
        self.stop_ids = frozenset({self.eot_id} | ({eos} if isinstance(eos, int) else set()))

    # -- basic operations ----------------------------------------------------------------------
    def render(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        tools: Sequence[dict[str, Any]] | None = None,
        add_generation_prompt: bool = False,
    ) -> str:
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
    ) -> list[int]:
        """Tokens of `new_messages` after a closed assistant turn, plus the generation prompt."""
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
                return self.encode(self._delta_text(new_messages, tools, calls))
            except TemplateError as exc:
                error = exc
            except Exception as exc:  # the template raised (raise_exception) for this variant
                error = TemplateError(f"chat template of {self.name!r} failed: {exc}")
        assert error is not None
        raise error

    def _after_standin_turn(self, text: str) -> str:
        marker = text.find(TURN_MARKER)
        if marker < 0:
            raise TemplateError(
                f"chat template of {self.name!r} dropped the content of an assistant turn; "
                "it cannot be extended turn by turn without re-rendering"
            )
        close = text.find(self.eot_text, marker + len(TURN_MARKER))
        if close < 0:
            raise TemplateError(
                f"chat template of {self.name!r} did not close an assistant turn with "
                f"{self.eot_text!r} when more messages followed; it cannot be extended turn by turn"
            )
        return text[close + len(self.eot_text) :]

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
    ) -> str:
        """The text after the stand-in assistant turn's end-of-turn token."""
        standin: dict[str, Any] = {"role": "assistant", "content": TURN_MARKER}
        if calls:
            standin["tool_calls"] = list(calls)
        conversation = [
            {"role": "system", "content": _STANDIN_SYSTEM},
            {"role": "user", "content": _STANDIN_USER},
            standin,
            *new_messages,
        ]
        text = self.render(conversation, tools=tools, add_generation_prompt=True)
        return self._after_standin_turn(text)

    # -- set-up ----------------------------------------------------------------------------------
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
