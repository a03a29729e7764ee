"""``python -m tau_adapters.testing --tokenizer DIR --port N``: serve the tiny engine on loopback.

Prints ``ready: URL`` (flushed) once the server accepts requests; a port that is already taken
exits with code 2 and says so, instead of leaving an eval to talk to whatever holds the port.
"""

from __future__ import annotations

import argparse
import sys
import time

from tau_adapters.testing.server import LoopbackEngine
from tau_adapters.tokens.local_tokenizer import STYLES, build_tokenizer
from tau_adapters.tokens.tokenizer import load_tokenizer

EXIT_PORT_IN_USE = 2
READY_PREFIX = "ready: "


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {value!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0-65535 (0: any free one), got {port}")
    return port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tau_adapters.testing",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--tokenizer", default=None, help="local Hugging Face tokenizer folder")
    parser.add_argument(
        "--style",
        default="chatml",
        choices=sorted(STYLES),
        help="built-in tokenizer/template when --tokenizer is not given",
    )
    parser.add_argument(
        "--port", type=_port, default=30000, help="loopback port, 0-65535 (0: any free one)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the tiny model's weights")
    parser.add_argument(
        "--turn-tokens",
        type=int,
        default=None,
        metavar="N",
        help="end each sampled turn with its stop token after N tokens (the random model never "
        "ends a turn itself, so without this every turn runs to --max-new-tokens)",
    )
    parser.add_argument(
        "--save-tokenizer",
        default=None,
        help="write the tokenizer to this folder (for --tokenizer elsewhere)",
    )
    args = parser.parse_args(argv)
    tokenizer = load_tokenizer(args.tokenizer) if args.tokenizer else build_tokenizer(args.style)
    if args.save_tokenizer:
        tokenizer.save_pretrained(args.save_tokenizer)
    try:
        engine = LoopbackEngine(tokenizer, seed=args.seed, turn_tokens=args.turn_tokens).start(
            args.port
        )
    except OSError as exc:
        print(f"tau_adapters.testing: error: {exc.strerror or exc}", file=sys.stderr, flush=True)
        return EXIT_PORT_IN_USE
    print(
        f"{READY_PREFIX}{engine.url} (SGLang /generate, OpenAI /v1/chat/completions); Ctrl-C stops",
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        engine.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
