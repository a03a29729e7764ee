"""``python -m tau_adapters.testing --tokenizer DIR --port N``: serve the tiny engine on loopback."""

from __future__ import annotations

import argparse
import time

from tau_adapters.testing.server import LoopbackEngine
from tau_adapters.testing.tokenizer import STYLES, build_tokenizer
from tau_adapters.tokenizer import load_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokenizer", default=None, help="local Hugging Face tokenizer folder")
    parser.add_argument(
        "--style",
        default="chatml",
        choices=sorted(STYLES),
        help="built-in tokenizer/template when --tokenizer is not given",
    )
    parser.add_argument("--port", type=int, default=30000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--save-tokenizer",
        default=None,
        help="write the tokenizer to this folder (for --tokenizer elsewhere)",
    )
    args = parser.parse_args()
    tokenizer = load_tokenizer(args.tokenizer) if args.tokenizer else build_tokenizer(args.style)
    if args.save_tokenizer:
        tokenizer.save_pretrained(args.save_tokenizer)
    engine = LoopbackEngine(tokenizer, seed=args.seed).start(args.port)
    print(
        f"tiny engine on {engine.url} (SGLang /generate, OpenAI /v1/chat/completions); Ctrl-C stops"
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        engine.stop()


if __name__ == "__main__":
    main()
