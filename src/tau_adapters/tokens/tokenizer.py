"""Loading tokenizers: a local Hugging Face folder (never the hub), or ``local:<style>`` for the
small tokenizers `tau_adapters.testing` builds offline."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tau_adapters.errors import ConfigError, install_hint


def load_tokenizer(path: str | Path) -> Any:
    """A Hugging Face tokenizer from a local folder; its ``chat_template.jinja`` is used when the
    config carries no template."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    folder = Path(path)
    if not folder.is_dir():
        raise ConfigError(f"tokenizer folder {str(folder)!r} does not exist")
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise ConfigError(
            "loading a tokenizer needs transformers: pip install transformers, or "
            + install_hint("testing")
        ) from None
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    template_file = folder / "chat_template.jinja"
    if not getattr(tokenizer, "chat_template", None) and template_file.exists():
        tokenizer.chat_template = template_file.read_text(encoding="utf-8")
    return tokenizer


def get_tokenizer(spec: str) -> Any:
    """``local:<style>`` (chatml, chatml-think, headers) or a local folder path."""
    if spec.startswith("local:"):
        from tau_adapters.tokens.local_tokenizer import STYLES, build_tokenizer

        style = spec.split(":", 1)[1] or "chatml"
        if style not in STYLES:
            from tau_adapters.errors import UnknownNameError

            raise UnknownNameError("local tokenizer style", style, sorted(STYLES))
        return build_tokenizer(style)
    return load_tokenizer(spec)
