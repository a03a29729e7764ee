"""CPU time per turn: our transcript against re-rendering + re-tokenizing the whole conversation.

    python benchmarks/bench_transcript.py --json

The conversation is a real airline one (tau2's policy and tool schemas in the system prompt, real
tool results from the airline environment, user replies), the same for both ways, with the same
tokenizer: the real Qwen2.5 tokenizer when the shared assets are present, else the built-in one.
Per turn, "ours" appends the engine's sampled ids verbatim and the observation's template delta;
"re-render" renders the full conversation with the chat template and tokenizes it again (what
existing recipes do every turn). Reported: CPU microseconds of turn N (median of repeats) for
N in 5, 10, 30, 60, and speedups. Targets (issue 3): >= 20x at 30 turns, our cost flat in N.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

TURNS = (5, 10, 30, 60)


def conversation(turns: int) -> tuple[list[dict], list[dict], list[str], list[list[dict]]]:
    """System + opening messages, tools, model texts and observations for `turns` turns."""
    from tau_adapters.domains import get_domain
    from tau_adapters.domains.tau2.prompts import system_prompt
    from tau_adapters.parsers.base import HermesParser

    backend = get_domain("airline")
    env = backend.environment()
    t = backend.tau2
    parser = HermesParser()
    reservations = list(backend._base.db.reservations)
    opening = [
        {"role": "system", "content": system_prompt(backend.policy)},
        {"role": "assistant", "content": "Hi! How can I help you today?"},
        {"role": "user", "content": "I want to check my reservations, my user id is mia_li_3668."},
    ]
    texts, observations = [], []
    for i in range(turns):
        if i % 3 == 2:
            texts.append("Here is what I found so far. Is there anything else?")
            observations.append([{"role": "user", "content": f"Yes, please check one more ({i})."}])
            continue
        rid = reservations[i % len(reservations)]
        call = t.ToolCall(
            id=f"c{i}", name="get_reservation_details", arguments={"reservation_id": rid}
        )
        texts.append(parser.render_call(call.name, call.arguments))
        result = env.get_response(call)
        observations.append([{"role": "tool", "tool_call_id": call.id, "content": result.content}])
    return opening, backend.tool_schemas, texts, observations


def ours(template: Any, opening, tools, sampled, observations, turns: int) -> float:
    """CPU seconds spent on turn `turns` (append the sampled ids + the observation delta)."""
    from tau_adapters.tokens.transcript import Transcript

    transcript = Transcript(template, tools=tools if template.supports_tools else None)
    transcript.start(opening)
    cost = 0.0
    for i in range(turns):
        start = time.process_time()
        transcript.append_model(sampled[i], [0.0] * len(sampled[i]))
        transcript.append_observation(observations[i])
        cost = time.process_time() - start
    return cost


def rerender(template: Any, opening, tools, texts, observations, turns: int) -> float:
    """CPU seconds spent on turn `turns` by rendering and tokenizing everything again."""
    messages = list(opening)
    cost = 0.0
    for i in range(turns):
        start = time.process_time()
        messages.append({"role": "assistant", "content": texts[i]})
        messages.extend(observations[i])
        template.encode(template.render(messages, tools=tools, add_generation_prompt=True))
        cost = time.process_time() - start
    return cost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from _requires import require

    require("bench_transcript.py", {"transformers": "testing", "tokenizers": "testing"})

    from tau_adapters.tokens.chat_template import ChatTemplate
    from tau_adapters.tokens.tokenizer import get_tokenizer

    assets = Path(
        os.environ.get("TAU_ADAPTERS_TEST_ASSETS")
        or Path(__file__).resolve().parents[2] / "shared" / "assets"
    )
    spec = (
        str(assets / "qwen2.5-instruct")
        if (assets / "qwen2.5-instruct").is_dir()
        else "local:chatml"
    )
    template = ChatTemplate(get_tokenizer(spec), name=spec)
    opening, tools, texts, observations = conversation(max(TURNS))
    sampled = [[*template.encode(text), template.eot_id] for text in texts]

    result: dict[str, Any] = {"tokenizer": spec, "per_turn_us": {}}
    for turns in TURNS:
        mine = statistics.median(
            ours(template, opening, tools, sampled, observations, turns)
            for _ in range(args.repeats)
        )
        theirs = statistics.median(
            rerender(template, opening, tools, texts, observations, turns)
            for _ in range(args.repeats)
        )
        result["per_turn_us"][str(turns)] = {
            "ours": round(mine * 1e6, 1),
            "rerender": round(theirs * 1e6, 1),
            "speedup": round(theirs / mine, 1) if mine else None,
        }
    per = result["per_turn_us"]
    result["speedup_at_30_turns"] = per["30"]["speedup"]
    result["speedup_at_60_turns"] = per["60"]["speedup"]
    result["ours_growth_5_to_60"] = round(per["60"]["ours"] / per["5"]["ours"], 2)
    result["targets"] = {"speedup_at_30_turns": ">= 20", "ours_growth_5_to_60": "about 1 (flat)"}
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
