"""An independent check of kept token ids: at every model turn, the ids sent to the engine
against a fresh full render of the conversation so far, compared with difflib (not with
`Transcript.check`). Outside model turns they must be equal, except generation-prompt text that
a template is known to drop from history (given by hand) and the same text tokenized differently
across a model turn's edge."""

from __future__ import annotations

import difflib
from typing import Any

from tau_adapters.tokens.chat_messages import to_chat


def independent_drift(template, kept, spans, messages, tools, tails) -> list[str]:
    """Differences between `kept` and a fresh full render that lie outside model turns."""
    rendered = template.tokenizer.encode(
        template.tokenizer.apply_chat_template(
            messages,
            tools=tools,
            add_generation_prompt=True,
            tokenize=False,
            **template.template_kwargs,
        ),
        add_special_tokens=False,
    )
    model = [(s.start, s.end) for s in spans if s.kind in ("model", "close")]

    def inside(i1: int, i2: int) -> bool:
        return (
            any(s <= i1 and i2 <= e for s, e in model)
            if i2 > i1
            else any(s < i1 < e for s, e in model)
        )

    def slides_inside(i1: int, i2: int) -> bool:
        """A deletion has equivalent placements where the deleted run repeats next to it."""
        a, b = i1, i2
        while b < len(kept) and kept[a] == kept[b]:
            a, b = a + 1, b + 1
            if inside(a, b):
                return True
        a, b = i1, i2
        while a > 0 and kept[a - 1] == kept[b - 1]:
            a, b = a - 1, b - 1
            if inside(a, b):
                return True
        return False

    problems = []
    opcodes = difflib.SequenceMatcher(a=kept, b=rendered, autojunk=False).get_opcodes()
    for tag, i1, i2, j1, j2 in opcodes:
        if tag == "equal" or inside(i1, i2) or (tag == "delete" and slides_inside(i1, i2)):
            continue
        text_k = template.tokenizer.decode(kept[i1:i2])
        text_r = template.tokenizer.decode(rendered[j1:j2])
        starts_model = any(i2 == s for s, _ in model)
        if tag == "delete" and starts_model and text_k in tails:
            continue  # the template drops this generation-prompt part from history
        touches = any(s - 1 <= i1 <= e for s, e in model) or any(s <= i2 <= e for s, e in model)
        if touches and text_k == text_r:
            continue  # the same text tokenized differently across a model turn's edge
        problems.append(f"{tag} kept[{i1}:{i2}]={text_k!r} rendered[{j1}:{j2}]={text_r!r}")
    return problems


def _agent_visible(message: Any) -> bool:
    """tau2 messages the agent sees (not the user's own tool calls in telecom, nor their
    results)."""
    if message.role == "user" and message.is_tool_call():
        return False
    return not (message.role == "tool" and getattr(message, "requestor", None) != "assistant")


def sampled_texts(trajectory: Any, template: Any) -> list[str]:
    """Each model turn's text as the engine returned it (decoded, stop token left out)."""
    transcript = trajectory.transcript
    kept_all = transcript.ids.tolist()
    texts = []
    for span in transcript.spans:
        if span.kind != "model":
            continue
        ids = kept_all[span.start : span.end]
        if ids and ids[-1] in template.stop_ids:
            ids = ids[:-1]
        texts.append(template.tokenizer.decode(ids, skip_special_tokens=False))
    return texts


def reference_messages(trajectory: Any, template: Any) -> list[dict[str, Any]]:
    """The conversation as chat dicts, built from tau2's messages (not from the transcript's
    own record): the system prompt, then each message the agent saw, each agent turn after the
    greeting being the text the engine returned for it, except for templates that render turns
    from fields (harmony, Mistral), which get the turn as tau2 parsed it."""
    transcript = trajectory.transcript
    agent_turns = iter(sampled_texts(trajectory, template))
    reference = [transcript.chat_messages[0]]
    for message in to_chat([m for m in trajectory.messages if _agent_visible(m)]):
        if message["role"] == "assistant" and len(reference) > 1:
            text = next(agent_turns)
            if not template.structured_history:
                message = {"role": "assistant", "content": text}
        reference.append(message)
    return reference


def no_drift_at_every_model_turn(
    trajectory: Any, template: Any, tails: list[str] = (), *, user_first: bool = False
) -> None:
    """At every model turn, the ids sent to the engine against an independent render of
    `reference_messages` so far."""
    transcript = trajectory.transcript
    kept_all = transcript.ids.tolist()
    model_spans = [s for s in transcript.spans if s.kind == "model"]
    reference = reference_messages(trajectory, template)
    if user_first:
        # The user must speak first: tau2's greeting goes into the system message.
        greeting = reference.pop(1)
        assert greeting["role"] == "assistant"
        assert reference[0]["content"].endswith(
            "\n\nYou opened the conversation with: " + greeting["content"]
        )
    assert len(model_spans) >= 1
    first_user = next(i for i, m in enumerate(reference) if m["role"] == "user")
    assistant_at = [
        i for i, m in enumerate(reference) if m["role"] == "assistant" and i > first_user
    ]
    assert len(assistant_at) == len(model_spans), "one tau2 message per model turn"
    for turn, (span, upto) in enumerate(zip(model_spans, assistant_at, strict=True)):
        earlier = [s for s in transcript.spans if s.end <= span.start]
        problems = independent_drift(
            template,
            kept_all[: span.start],
            earlier,
            reference[:upto],
            transcript.tools,
            list(tails),
        )
        assert not problems, (template.name, turn, problems[:3])
