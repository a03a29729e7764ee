"""Token-in/token-out record of one episode: exactly what the engine consumed and produced.

``ids`` = prompt + response. Over the response part (``len(ids) - prompt_len`` entries),
``loss_mask`` is 1 exactly on tokens the engine sampled and ``logprobs`` holds the engine's logprob
for those tokens (0.0 elsewhere). Model turns are appended verbatim; observations are appended as
the chat template's delta (see `chat_template`). Nothing earlier is ever re-tokenized.

`check()` compares the kept ids with a fresh render of the whole conversation (the re-tokenizing
way) and reports the first divergence. Differences inside model turns are expected and are exactly
what token-in/token-out protects against (a template that strips earlier ``<think>`` blocks or trims
whitespace, or a model that sampled a non-canonical tokenization); any difference in the tokens the
template or the environment wrote is a bug and makes ``ok`` false.
"""

from __future__ import annotations

import difflib
from array import array
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from tau_adapters.chat_template import ChatTemplate


@dataclass
class Span:
    """A stretch of ``ids``: ``kind`` is prompt, model, observation or close (template-closed turn)."""

    kind: str
    start: int
    end: int


@dataclass
class TokenCheck:
    """Result of comparing kept ids with a fresh full render."""

    ok: bool
    identical: bool
    first_divergence: int | None = None
    model_turn_differences: int = 0
    detail: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Transcript:
    """The token record of one episode (see module docstring for the invariants)."""

    template: ChatTemplate
    tools: list[dict[str, Any]] | None = None
    # Typed arrays, not lists: hundreds of live episodes hold millions of token ids, and arrays
    # are invisible to the cyclic garbage collector (no per-element traversal on each pass).
    ids: array = field(default_factory=lambda: array("l"))
    loss_mask: array = field(default_factory=lambda: array("b"))
    logprobs: array = field(default_factory=lambda: array("d"))
    prompt_len: int = 0
    spans: list[Span] = field(default_factory=list)
    chat_messages: list[dict[str, Any]] = field(default_factory=list)

    # -- building ------------------------------------------------------------------------------
    def start(self, messages: Sequence[dict[str, Any]]) -> list[int]:
        """Render the opening messages (with the generation prompt) as the prompt."""
        if self.ids:
            raise RuntimeError("transcript already started")
        prompt = self.template.prompt_ids(messages, self.tools)
        self.ids = array("l", prompt)
        self.prompt_len = len(prompt)
        self.spans.append(Span("prompt", 0, len(prompt)))
        self.chat_messages = [dict(m) for m in messages]
        return prompt

    def append_model(self, ids: Sequence[int], logprobs: Sequence[float]) -> str:
        """Append sampled tokens verbatim; return the turn's text without its stop token.

        If the engine stopped without the template's end-of-turn token (a stop string, another EOS,
        or a length cut), the end-of-turn token is appended with loss mask 0 so that the next
        observation delta starts where the template expects it.
        """
        ids = list(ids)
        if len(logprobs) != len(ids):
            raise ValueError(f"{len(ids)} sampled tokens but {len(logprobs)} logprobs")
        start = len(self.ids)
        self.ids.extend(ids)
        self.loss_mask.extend([1] * len(ids))
        self.logprobs.extend([float(x) for x in logprobs])
        self.spans.append(Span("model", start, len(self.ids)))
        visible = ids[:-1] if ids and ids[-1] in self.template.stop_ids else ids
        text = self.template.decode(visible)
        if not ids or ids[-1] != self.template.eot_id:
            self._append_fixed("close", [self.template.eot_id])
        self.chat_messages.append({"role": "assistant", "content": text})
        return text

    def observation_ids(
        self,
        messages: Sequence[dict[str, Any]],
        previous_tool_calls: Sequence[dict[str, Any]] | None = None,
    ) -> list[int]:
        """The delta that `append_observation` would add (for budget checks before adding it)."""
        return self.template.delta_ids(
            messages, self.tools, previous_tool_calls=previous_tool_calls
        )

    def append_observation(
        self, messages: Sequence[dict[str, Any]], delta: Sequence[int] | None = None
    ) -> list[int]:
        """Append the template's tokens for tool results / the user's reply and the next prompt."""
        if delta is None:
            delta = self.observation_ids(messages)
        self._append_fixed("observation", list(delta))
        self.chat_messages.extend(dict(m) for m in messages)
        return list(delta)

    def _append_fixed(self, kind: str, ids: list[int]) -> None:
        start = len(self.ids)
        self.ids.extend(ids)
        self.loss_mask.extend([0] * len(ids))
        self.logprobs.extend([0.0] * len(ids))
        self.spans.append(Span(kind, start, len(self.ids)))

    # -- reading -------------------------------------------------------------------------------
    @property
    def response_length(self) -> int:
        return len(self.ids) - self.prompt_len

    @property
    def sampled_tokens(self) -> int:
        return sum(self.loss_mask)

    @property
    def model_turns(self) -> int:
        return sum(1 for span in self.spans if span.kind == "model")

    def to_json(self) -> dict[str, Any]:
        return {
            "ids": self.ids.tolist(),
            "loss_mask": self.loss_mask.tolist(),
            "logprobs": self.logprobs.tolist(),
            "prompt_len": self.prompt_len,
            "spans": [[s.kind, s.start, s.end] for s in self.spans],
        }

    # -- checking ------------------------------------------------------------------------------
    def check(self) -> TokenCheck:
        """Compare the kept ids with a fresh render of the conversation (see module docstring)."""
        ends_with_prompt = bool(self.spans) and self.spans[-1].kind in ("prompt", "observation")
        text = self.template.render(
            self.chat_messages, tools=self.tools, add_generation_prompt=ends_with_prompt
        )
        rendered = self.template.encode(text)
        kept = self.ids.tolist()
        # After a final model turn the template may add a newline the model never sampled.
        if (
            not ends_with_prompt
            and rendered[: len(kept)] == kept
            and not self.template.decode(rendered[len(kept) :]).strip()
        ):
            rendered = rendered[: len(kept)]
        if rendered == kept:
            return TokenCheck(ok=True, identical=True)
        in_model = [0] * len(kept)
        for span in self.spans:
            if span.kind == "model":
                for i in range(span.start, span.end):
                    in_model[i] = 1
        matcher = difflib.SequenceMatcher(a=kept, b=rendered, autojunk=False)
        first: int | None = None
        model_diffs = 0
        bad: tuple[str, int, int, int, int] | None = None
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag == "equal":
                continue
            first = i1 if first is None else first
            trailing = tag == "insert" and i1 == len(kept) and not ends_with_prompt
            if trailing or self._inside_model_turn(in_model, i1, i2):
                model_diffs += 1
                continue
            bad = (tag, i1, i2, j1, j2)
            break
        if bad is None:
            return TokenCheck(
                ok=True,
                identical=False,
                first_divergence=first,
                model_turn_differences=model_diffs,
                detail="differences only inside model turns (the template rewrites them)",
            )
        tag, i1, i2, j1, j2 = bad
        detail = (
            f"{tag} at kept[{i1}:{i2}] vs rendered[{j1}:{j2}]: "
            f"kept {self.template.decode(kept[max(0, i1 - 8) : i2 + 8])!r} / "
            f"rendered {self.template.decode(rendered[max(0, j1 - 8) : j2 + 8])!r}"
        )
        return TokenCheck(
            ok=False,
            identical=False,
            first_divergence=i1,
            model_turn_differences=model_diffs,
            detail=f"template {self.template.name!r}: {detail}",
        )

    @staticmethod
    def _inside_model_turn(in_model: list[int], i1: int, i2: int) -> bool:
        if i2 > i1:
            return all(in_model[i1:i2])
        # An insertion at i1: allowed where it touches a model turn (the template adds to it).
        left = i1 > 0 and in_model[i1 - 1]
        right = i1 < len(in_model) and in_model[i1]
        return bool(left or right)
