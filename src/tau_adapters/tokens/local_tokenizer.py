"""Tokenizers for offline work: built locally (no hub), or loaded from a local folder."""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import Any

#: Template styles shipped with the test engine, and the special tokens each one needs.
STYLES: dict[str, dict[str, Any]] = {
    "chatml": {
        "template": "chatml_tools.jinja",
        "special": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "added": ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"],
        "bos": None,
        "eos": "<|im_end|>",
        "pad": "<|endoftext|>",
    },
    "chatml-think": {
        "template": "chatml_think.jinja",
        "special": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "added": [
            "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>",
            "<think>", "</think>",
        ],
        "bos": None,
        "eos": "<|im_end|>",
        "pad": "<|endoftext|>",
    },
    "headers": {
        "template": "headers.jinja",
        "special": [
            "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
            "<|eot_id|>", "<|eom_id|>",
        ],
        "added": [],
        "bos": "<|begin_of_text|>",
        "eos": "<|eot_id|>",
        "pad": "<|end_of_text|>",
    },
}  # fmt: skip


#: Pre-tokenization pattern in the style of Qwen2 / Llama-3 tokenizers.
SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def template_text(style: str) -> str:
    name = STYLES[style]["template"]
    return resources.files("tau_adapters.tokens").joinpath("templates", name).read_text()


def _corpus() -> list[str]:
    """Training text: tau2's domain policies when tau2 is installed, plus JSON-ish filler."""
    texts: list[str] = []
    try:
        import tau2

        data = Path(tau2.__file__).parent / "data" / "tau2" / "domains"
        for path in sorted(data.glob("*/*.md")):
            texts.append(path.read_text(encoding="utf-8"))
    except Exception:
        pass
    filler = [
        '{"name": "get_user_details", "arguments": {"user_id": "mia_li_3668"}}',
        '{"reservation_id": "ABC123", "status": "cancelled", "amount": 1234.56}',
        "Hi! How can I help you today? I want to cancel my reservation, please.",
        "The quick brown fox jumps over the lazy dog 0123456789 ###STOP###",
    ]
    return texts + filler * 50


@functools.cache
def build_tokenizer(style: str = "chatml", vocab_size: int = 2048) -> Any:
    """A small byte-level BPE tokenizer with the special tokens and chat template of `style`."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    spec = STYLES[style]
    bpe = Tokenizer(models.BPE())
    # Split like Qwen2/Llama-3 tokenizers do (newline runs are one piece whatever follows), then
    # map bytes to symbols.
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(spec["special"]),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=spec["bos"],
        eos_token=spec["eos"],
        pad_token=spec["pad"],
    )
    if spec["added"]:
        tokenizer.add_tokens(list(spec["added"]), special_tokens=False)
    tokenizer.chat_template = template_text(style)
    tokenizer.name_or_path = f"tau-adapters-local-{style}"
    return tokenizer
