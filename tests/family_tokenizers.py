"""Tokenizers for model families whose own tokenizer is not in the shared assets: the real Qwen
BPE vocabulary plus each family's special tokens, with the family's real chat template."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from token_helpers import ASSETS

TEMPLATES = ASSETS / "templates"

_DEEPSEEK = [
    "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>",
    "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>",
    "<｜tool▁call▁end｜>", "<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>",
    "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>", "<｜tool▁sep｜>",
]  # fmt: skip

#: family -> template file, special tokens, tokens added as plain (non-special) tokens, bos, eos.
FAMILIES: dict[str, dict[str, Any]] = {
    "deepseek-r1": {
        "template": "deepseek-r1.jinja", "special": _DEEPSEEK, "added": ["<think>", "</think>"],
        "bos": "<｜begin▁of▁sentence｜>", "eos": "<｜end▁of▁sentence｜>",
    },
    "deepseek-v3.1": {
        "template": "deepseek-v3.1.jinja", "special": _DEEPSEEK, "added": ["<think>", "</think>"],
        "bos": "<｜begin▁of▁sentence｜>", "eos": "<｜end▁of▁sentence｜>",
    },
    "kimi-k2": {
        "template": "kimi-k2-instruct.jinja",
        "special": [
            "[BOS]", "[EOS]", "<|im_end|>", "<|im_user|>", "<|im_assistant|>", "<|im_system|>",
            "<|im_middle|>", "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>",
            "<|tool_call_begin|>", "<|tool_call_argument_begin|>", "<|tool_call_end|>",
        ],
        "added": [], "bos": "[BOS]", "eos": "[EOS]",
    },
    "glm-4.5": {
        "template": "glm-4.5.jinja",
        "special": [
            "<|endoftext|>", "[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>",
            "<|observation|>",
        ],
        "added": [
            "<think>", "</think>", "<tool_call>", "</tool_call>", "<arg_key>", "</arg_key>",
            "<arg_value>", "</arg_value>", "<tool_response>", "</tool_response>",
        ],
        "bos": None, "eos": "<|endoftext|>",
    },
    "gpt-oss": {
        "template": "gpt-oss.jinja",
        "special": [
            "<|startoftext|>", "<|endoftext|>", "<|start|>", "<|end|>", "<|message|>",
            "<|channel|>", "<|constrain|>", "<|return|>", "<|call|>",
        ],
        "added": [], "bos": "<|startoftext|>", "eos": "<|return|>",
    },
    "mistral-nemo": {
        "template": "mistral-nemo-instruct-2407.jinja",
        "special": [
            "<s>", "</s>", "[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]",
            "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]",
        ],
        "added": [], "bos": "<s>", "eos": "</s>",
    },
    "mistral-small-3.2": {
        "template": "mistral-small-3.2-24b-instruct-2506.jinja",
        "special": [
            "<s>", "</s>", "[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]",
            "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[TOOL_CONTENT]",
            "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[CALL_ID]", "[ARGS]",
        ],
        "added": [], "bos": "<s>", "eos": "</s>",
    },
}  # fmt: skip


def have_assets() -> bool:
    return (ASSETS / "qwen2.5-instruct" / "vocab.json").exists() and TEMPLATES.is_dir()


@functools.cache
def family_tokenizer(family: str) -> Any:
    """The real Qwen2 BPE (vocab + merges) with `family`'s special tokens and chat template."""
    from transformers import AddedToken, Qwen2Tokenizer

    spec = FAMILIES[family]
    folder = ASSETS / "qwen2.5-instruct"
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    merges = [
        tuple(line.split())
        for line in (folder / "merges.txt").read_text(encoding="utf-8").splitlines()[1:]
        if line.strip()
    ]
    first = spec["special"][0]
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, eos_token=None,
                               pad_token=None, bos_token=None)  # fmt: skip
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in spec["special"]],
                         special_tokens=True)  # fmt: skip
    if spec["added"]:
        tokenizer.add_tokens([AddedToken(t, special=False, normalized=False)
                              for t in spec["added"]])  # fmt: skip
    tokenizer.bos_token = spec["bos"]
    tokenizer.eos_token = spec["eos"]
    tokenizer.pad_token = first
    tokenizer.chat_template = Path(TEMPLATES / spec["template"]).read_text(encoding="utf-8")
    tokenizer.name_or_path = f"qwen-vocab+{family}"
    return tokenizer
