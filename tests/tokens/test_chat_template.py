"""ChatTemplate: prompt prefix reuse and the tools probe give exactly what a full render gives."""

from __future__ import annotations

import copy
import json

import pytest

pytest.importorskip("transformers", reason="chat templates need the testing extra")

from tau_adapters.testing import build_tokenizer
from tau_adapters.tokens.chat_template import ChatTemplate

from token_helpers import styles

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_user_details",
            "description": "Look a user up.",
            "parameters": {"type": "object", "properties": {"user_id": {"type": "string"}}},
        },
    }
]
OPENING = [
    {"role": "system", "content": "You are an airline agent. Follow the policy."},
    {"role": "assistant", "content": "Hi! How can I help you today?"},
    {"role": "user", "content": "I want to change my flight, my id is mia_li_3668."},
]


@pytest.mark.parametrize("style", styles())
def test_prompt_ids_equal_a_full_encode(style) -> None:
    from tau_adapters.agents.token_policy import load_template

    _, tokenizer, template_file = style
    template = load_template(tokenizer, template_file)
    for user in ("First question?", "Another, different question!"):
        messages = [*OPENING[:-1], {"role": "user", "content": user}]
        full = template.encode(template.render(messages, tools=TOOLS, add_generation_prompt=True))
        assert template.prompt_ids(messages, TOOLS) == full  # second call reuses the prefix
    assert template._prefix_cache


# A Mistral-like template (our own): tools are listed just before the last user message, so the
# delta after an assistant turn depends on them.
TOOLS_BEFORE_LAST_USER = (
    "{%- for m in messages -%}"
    "{%- if m.role == 'user' and loop.last and tools -%}"
    "{{- '[TOOLS]' + (tools | tojson) + '[/TOOLS]' -}}"
    "{%- endif -%}"
    "{{- '<|im_start|>' + m.role + '\\n' + (m.content or '') + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def test_tools_are_kept_in_deltas_when_the_template_needs_them() -> None:
    tokenizer = copy.copy(build_tokenizer("chatml"))
    tokenizer.chat_template = TOOLS_BEFORE_LAST_USER
    template = ChatTemplate(tokenizer, name="tools-before-last-user")
    delta = template.decode(template.delta_ids([{"role": "user", "content": "hi"}], TOOLS))
    assert template._deltas_need_tools is True
    assert "[TOOLS]" in delta and json.dumps(TOOLS[0]["function"]["name"]) in delta


def test_tools_are_skipped_in_deltas_when_they_change_nothing() -> None:
    template = ChatTemplate(build_tokenizer("chatml"), name="chatml")
    delta = template.decode(template.delta_ids([{"role": "user", "content": "hi"}], TOOLS))
    assert template._deltas_need_tools is False
    assert delta == "\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
