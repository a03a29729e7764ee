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

from array import array
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from tau_adapters.tokens.chat_template import ChatTemplate


@dataclass
class Span:
    """A stretch of ``ids``: ``kind`` is prompt, model, observation or close (template-closed turn)."""

    kind: str
    start: int
    end: int
    #: Role of the last message the span carries (prompt, observation), for the check.
    role: str | None = None


@dataclass
class TokenCheck:
    """Result of comparing kept ids with a fresh full render."""

    ok: bool
    identical: bool
    #: Index in the kept ids of the first real drift when ``ok`` is false, else of the first
    #: difference of any kind.
    first_divergence: int | None = None
    #: Model turns the template renders differently in history (expected: the kept ids hold
    #: what was sampled).
    model_turn_differences: int = 0
    #: Template-written generation-prompt parts that the template drops or changes when it
    #: renders the same turn as history (e.g. Qwen3's empty think block with thinking off).
    history_rewrites: int = 0
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
    _had_tool_results: bool = field(default=False, repr=False)
    #: How many of `chat_messages` the prompt was rendered from.
    _opening: int = field(default=0, repr=False)

    # -- building ------------------------------------------------------------------------------
    def start(self, messages: Sequence[dict[str, Any]]) -> list[int]:
        """Render the opening messages (with the generation prompt) as the prompt."""
        if self.ids:
            raise RuntimeError("transcript already started")
        prompt = self.template.prompt_ids(messages, self.tools)
        self.ids = array("l", prompt)
        self.prompt_len = len(prompt)
        self.spans.append(Span("prompt", 0, len(prompt), _last_role(messages)))
        self.chat_messages = [dict(m) for m in messages]
        self._had_tool_results = _has_tool(messages)
        self._opening = len(messages)
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
        if not ids or ids[-1] not in self.template.stop_ids:
            self._append_fixed("close", [self.template.eot_id])
        self.chat_messages.append({"role": "assistant", "content": text})
        return text

    def record_turn(self, message: dict[str, Any]) -> None:
        """Replace the last model turn's chat message (its raw text) with the structured one the
        parser read (for templates that render turns from fields, e.g. harmony's channels)."""
        if not self.chat_messages or self.chat_messages[-1].get("role") != "assistant":
            raise RuntimeError("record_turn follows append_model")
        self.chat_messages[-1] = dict(message)

    def observation_ids(
        self,
        messages: Sequence[dict[str, Any]],
        previous_tool_calls: Sequence[dict[str, Any]] | None = None,
    ) -> list[int]:
        """The delta that `append_observation` would add (for budget checks before adding it)."""
        return self.template.delta_ids(
            messages,
            self.tools,
            previous_tool_calls=previous_tool_calls,
            earlier_tool_results=self._had_tool_results,
        )

    def append_observation(
        self, messages: Sequence[dict[str, Any]], delta: Sequence[int] | None = None
    ) -> list[int]:
        """Append the template's tokens for tool results / the user's reply and the next prompt."""
        if delta is None:
            delta = self.observation_ids(messages)
        self._append_fixed("observation", list(delta), _last_role(messages))
        self.chat_messages.extend(dict(m) for m in messages)
        self._had_tool_results = self._had_tool_results or _has_tool(messages)
        return list(delta)

    def _append_fixed(self, kind: str, ids: list[int], role: str | None = None) -> None:
        start = len(self.ids)
        self.ids.extend(ids)
        self.loss_mask.extend([0] * len(ids))
        self.logprobs.extend([0.0] * len(ids))
        self.spans.append(Span(kind, start, len(self.ids), role))

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

    # -- suspension (issue 23) -----------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything needed to continue this record in another process (JSON)."""
        return {
            **self.to_json(),
            "spans": [[s.kind, s.start, s.end, s.role] for s in self.spans],
            "chat_messages": [dict(m) for m in self.chat_messages],
            "had_tool_results": self._had_tool_results,
            "opening": self._opening,
        }

    @classmethod
    def from_state(
        cls, template: ChatTemplate, tools: list[dict[str, Any]] | None, state: dict[str, Any]
    ) -> Transcript:
        """The record `state()` saved, checked against this template: the prompt must render to
        the same ids (another tokenizer or template would make the kept ids meaningless)."""
        transcript = cls(template, tools=tools)
        transcript.ids = array("l", state["ids"])
        transcript.loss_mask = array("b", state["loss_mask"])
        transcript.logprobs = array("d", state["logprobs"])
        transcript.prompt_len = int(state["prompt_len"])
        transcript.spans = [Span(k, a, b, r) for k, a, b, r in state["spans"]]
        transcript.chat_messages = [dict(m) for m in state["chat_messages"]]
        transcript._had_tool_results = bool(state["had_tool_results"])
        transcript._opening = int(state["opening"])
        if transcript.ids:
            prompt = template.prompt_ids(transcript.chat_messages[: transcript._opening], tools)
            if list(prompt) != transcript.ids.tolist()[: transcript.prompt_len]:
                raise ValueError(
                    f"restored transcript: template {template.name!r} renders the prompt to other "
                    "ids than were recorded (another tokenizer or chat template?)"
                )
        response = len(transcript.ids) - transcript.prompt_len
        if len(transcript.loss_mask) != response or len(transcript.logprobs) != response:
            raise ValueError("restored transcript: ids, loss_mask and logprobs disagree in length")
        return transcript

    # -- checking ------------------------------------------------------------------------------
    def check(self) -> TokenCheck:
        """Compare the kept ids with a fresh render of the conversation (see module docstring).

        The comparison walks the spans in order. A stretch the template or the environment wrote
        (prompt, observation) must appear verbatim in the render; a model turn (sampled tokens
        plus a template-closed end-of-turn) is whatever the render has between the stretches
        around it, and it must end with an end-of-turn token, so a delta that lost or gained a
        token at either edge of a model turn is drift, not a model-turn difference. The one
        template-written part allowed to be missing from the render is the tail of a generation
        prompt that the template drops when it renders the same turn as history (Qwen3's empty
        think block with ``enable_thinking: false``, DeepSeek-R1's ``<think>``): those are
        counted as ``history_rewrites`` and keep ``ok`` true.

        ``identical`` is true exactly when the kept ids equal the fresh render: the template's
        own rendering of `history_messages` (with the tools and template kwargs, and the
        generation prompt when the episode ends waiting for the model), encoded, without the
        whitespace a template writes after the final end-of-turn. Every other difference, even
        the same text tokenized differently, makes it false.
        """
        ends_with_prompt = bool(self.spans) and self.spans[-1].kind in ("prompt", "observation")
        try:
            text = self.template.render(
                self.history_messages(), tools=self.tools, add_generation_prompt=ends_with_prompt
            )
        except Exception as exc:  # reported, never raised: a diagnostic must not end the episode
            return TokenCheck(
                ok=False,
                identical=False,
                detail=f"template {self.template.name!r}: the full render failed: "
                f"{type(exc).__name__}: {exc}",
            )
        rendered = self.template.encode(text)
        if not ends_with_prompt:
            rendered = self._without_trailing_separator(rendered)
        kept = self.ids.tolist()
        if rendered == kept:
            return TokenCheck(ok=True, identical=True)
        return _SpanComparison(self, kept, rendered).run()

    def _without_trailing_separator(self, rendered: list[int]) -> list[int]:
        """A finished conversation's render up to its final end-of-turn token.

        ChatML templates (Qwen, Hermes) write a newline after every ``<|im_end|>``: the separator
        before the next turn. After the final model turn no next turn comes, and the engine
        stopped at the end-of-turn, so the kept ids end there; the render's whitespace after it
        is not part of the conversation and must not make `identical` false (issue 27).
        Anything but whitespace after the last end-of-turn is kept, and compared.
        """
        cut = len(rendered)
        while cut and rendered[cut - 1] not in self.template.end_ids:
            cut -= 1
        if cut and cut < len(rendered) and not self.template.decode(rendered[cut:]).strip():
            return rendered[:cut]
        return rendered

    def history_messages(self) -> list[dict[str, Any]]:
        """The conversation as a full render sees it (assistant turns as the parser read them)."""
        return self.chat_messages


def _has_tool(messages: Sequence[dict[str, Any]]) -> bool:
    return any(m.get("role") == "tool" for m in messages)


def _last_role(messages: Sequence[dict[str, Any]]) -> str | None:
    return str(messages[-1].get("role")) if messages else None


def _regions(spans: Sequence[Span]) -> list[tuple[str, int, int, str | None]]:
    """Spans merged into alternating ``fixed`` / ``model`` regions (a model turn's template-closed
    end-of-turn belongs to the turn), each with the role of the last message it carries."""
    regions: list[tuple[str, int, int, str | None]] = []
    for span in spans:
        kind = "model" if span.kind in ("model", "close") else "fixed"
        if regions and regions[-1][0] == kind:
            regions[-1] = (kind, regions[-1][1], span.end, span.role or regions[-1][3])
        else:
            regions.append((kind, span.start, span.end, span.role))
    return regions


def _find(haystack: list[int], needle: list[int], start: int) -> list[int]:
    """Every index >= start where `needle` occurs in `haystack` (needle non-empty)."""
    found: list[int] = []
    first = needle[0]
    limit = len(haystack) - len(needle)
    i = start
    while i <= limit:
        try:
            i = haystack.index(first, i, limit + 1)
        except ValueError:
            break
        if haystack[i : i + len(needle)] == needle:
            found.append(i)
        i += 1
    return found


class _SpanComparison:
    """One `Transcript.check` run: kept ids against a full render, span by span."""

    def __init__(self, transcript: Transcript, kept: list[int], rendered: list[int]) -> None:
        self.transcript = transcript
        self.template = transcript.template
        self.kept = kept
        self.rendered = rendered
        self.model_diffs = 0
        self.rewrites = 0
        self.first_difference: int | None = None

    def _note(self, at: int) -> None:
        if self.first_difference is None or at < self.first_difference:
            self.first_difference = at

    def run(self) -> TokenCheck:
        kept, rendered = self.kept, self.rendered
        regions = _regions(self.transcript.spans)
        ends_with_prompt = self.transcript.spans[-1].kind in ("prompt", "observation")
        p = 0  # position in `rendered`
        # The kept tokens of the model turn waiting for the next fixed stretch (with the plain
        # text that ended the stretch before it: a tokenizer may merge that text with the first
        # sampled characters when the whole is re-encoded), and where they start in `kept`.
        pending: tuple[list[int], int] | None = None
        for index, (kind, a, b, role) in enumerate(regions):
            if kind == "model":
                if kept[b - 1] not in self._ends():
                    return self._drift(b, None, "a model turn does not end with an end-of-turn")
                carried, start = pending if pending is not None else ([], a)
                pending = ([*carried, *kept[a:b]], start)
                continue
            before_model = index + 1 < len(regions) or ends_with_prompt
            if before_model:
                ending = self.template.generation_prompt(role)
                if ending and not self.template.decode(kept[a:b]).endswith(ending):
                    return self._drift(
                        max(a, b - 1),
                        None,
                        f"the stretch before a model turn does not end with the generation "
                        f"prompt {ending!r}",
                    )
            tails: list[list[int]] = [[]]
            if index + 1 < len(regions):
                tails += [
                    c
                    for c in self.template.rewritten_tail_ids(role)
                    if len(c) < b - a and kept[b - len(c) : b] == c
                ]
            best: tuple[int, tuple[int, int], int, int, list[int]] | None = None
            failure: TokenCheck | None = None
            for tail in tails:
                matched = self._match_fixed(a, b - len(tail), p, pending)
                if isinstance(matched, TokenCheck):
                    failure = failure or matched
                    continue
                model_at, after, exact_end = matched
                soft = kept[exact_end : b - len(tail)]
                if rendered[after : after + len(soft) + len(tail)] == [*soft, *tail]:
                    score = 0  # the render has it all: nothing rewritten
                elif self._text_continues(after, soft):
                    score = 1  # the same text, merged with what follows; or the tail rewritten
                else:
                    failure = failure or self._mismatch(exact_end, after, soft)
                    continue
                if best is None or score < best[0]:
                    best = (score, model_at, after, exact_end, tail)
            if best is None:
                assert failure is not None
                return failure
            score, model_at, p, exact_end, tail = best
            if pending is not None:
                self._model_turn(pending, *model_at)
            body_end = b - len(tail)
            soft = kept[exact_end:body_end]
            pending = None
            if score == 0:
                p += len(soft) + len(tail)
                continue
            if tail:
                self.rewrites += 1
                self._note(body_end)
            if index + 1 == len(regions):
                return self._mismatch(exact_end, p, soft)
            pending = (soft, exact_end)
        if pending is not None:
            # The render of a finished conversation ends at its final end-of-turn (`check`).
            if not rendered[p:] or rendered[-1] not in self._ends():
                return self._drift(
                    len(kept),
                    len(rendered),
                    "the render does not end where the last model turn does",
                )
            self._model_turn(pending, p, len(rendered))
        elif p != len(rendered):
            return self._drift(len(kept), p, "the render has tokens after the kept ids end")
        parts = []
        if self.model_diffs or self.rewrites:
            parts.append(
                f"{self.model_diffs} model turn(s) rendered differently in history (expected), "
                f"{self.rewrites} template-written generation-prompt part(s) rewritten in "
                "history (history_rewrite)"
            )
        if not parts:  # why `identical` is false when nothing above differs
            parts.append(
                "the same text tokenized differently (a model turn sampled in a non-canonical "
                "tokenization, or text merged across a turn's edge when re-encoded)"
            )
        return TokenCheck(
            ok=True,
            identical=False,
            first_divergence=self.first_difference,
            model_turn_differences=self.model_diffs,
            history_rewrites=self.rewrites,
            detail="; ".join(parts),
        )

    def _match_fixed(
        self,
        a: int,
        body_end: int,
        p: int,
        pending: tuple[list[int], int] | None,
    ) -> tuple[tuple[int, int], int, int] | TokenCheck:
        """Find kept[a:body_end] in the render at `p` (right after a model turn: at the first
        place after `p` that follows an end-of-turn token). The plain-text tokens after the last
        special token need not match token for token: a tokenizer may merge them with the text
        that follows when the whole is encoded again (the caller compares their text). Returns
        the model turn's place in the render, the new position and where the exactly matched
        part ends, or the drift."""
        kept, rendered = self.kept, self.rendered
        exact_end = body_end
        special = self.template.special_ids
        while exact_end > a + 1 and kept[exact_end - 1] not in special:
            exact_end -= 1
        body = kept[a:exact_end]
        if pending is None:
            if rendered[p : p + len(body)] != body:
                return self._mismatch(a, p, body)
            return (p, p), p + len(body), exact_end
        candidates = _find(rendered, body, p) if body else [p]
        closed = [q for q in candidates if q > p and rendered[q - 1] in self._ends()]
        if closed:
            return (p, closed[0]), closed[0] + len(body), exact_end
        if candidates:
            return self._drift(
                a,
                candidates[0],
                "the render writes tokens between a model turn's end and the next stretch that "
                "the kept ids lack, or the turn is not closed",
            )
        return self._drift(
            a, None, "a stretch written after a model turn is missing from the render"
        )

    def _text_continues(self, at: int, soft: list[int]) -> bool:
        """Whether the render's text at `at` starts with the text of `soft`."""
        if not soft:
            return True
        text = self.template.decode(soft)
        window = self.template.decode(self.rendered[at : at + len(soft) + 2])
        return window.startswith(text)

    def _ends(self) -> frozenset[int]:
        return self.template.end_ids

    def _model_turn(self, turn: tuple[list[int], int], r1: int, r2: int) -> None:
        ids, start = turn
        if ids != self.rendered[r1:r2]:
            if self.template.decode(ids) == self.template.decode(self.rendered[r1:r2]):
                return  # the same text tokenized differently (sampled non-canonically)
            self.model_diffs += 1
            pairs = zip(ids, self.rendered[r1:r2], strict=False)
            offset = next((i for i, (x, y) in enumerate(pairs) if x != y), len(ids))
            self._note(start + offset)

    def _mismatch(self, a: int, p: int, body: list[int]) -> TokenCheck:
        rendered = self.rendered
        offset = next(
            (i for i, x in enumerate(body) if p + i >= len(rendered) or rendered[p + i] != x),
            len(body),
        )
        return self._drift(
            a + offset, p + offset, "kept ids and the render differ outside model turns"
        )

    def _drift(self, at: int, r_at: int | None, why: str) -> TokenCheck:
        decode = self.template.decode
        kept = self.kept
        parts = [f"drift at kept[{at}]: {why}", f"kept {decode(kept[max(0, at - 8) : at + 8])!r}"]
        if r_at is not None:
            parts.append(f"rendered {decode(self.rendered[max(0, r_at - 8) : r_at + 8])!r}")
        others = []
        if self.model_diffs:
            others.append(f"{self.model_diffs} earlier model-turn difference(s) (expected)")
        if self.rewrites:
            others.append(f"{self.rewrites} earlier history_rewrite(s)")
        if others:
            parts.append("also " + ", ".join(others))
        return TokenCheck(
            ok=False,
            identical=False,
            first_divergence=at,
            model_turn_differences=self.model_diffs,
            history_rewrites=self.rewrites,
            detail=f"template {self.template.name!r}: " + "; ".join(parts),
        )
