"""A real engine for tests and offline development (needs the ``testing`` extra: torch,
transformers, uvicorn, starlette). Nothing here is imported by ``import tau_adapters``."""

from __future__ import annotations

from tau_adapters.testing.router import LoopbackRouter
from tau_adapters.testing.server import Fault, Lognormal, LoopbackEngine
from tau_adapters.tokens.local_tokenizer import STYLES, build_tokenizer
from tau_adapters.tokens.tokenizer import get_tokenizer, load_tokenizer

__all__ = [
    "STYLES",
    "Fault",
    "Lognormal",
    "LoopbackEngine",
    "LoopbackRouter",
    "build_tokenizer",
    "get_tokenizer",
    "load_tokenizer",
]
