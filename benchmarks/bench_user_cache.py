"""A cached re-evaluation against an uncached one, in one run: episodes/s with the user-response
cache replaying the user simulator, against the same evaluation calling the user model.

    python benchmarks/bench_user_cache.py --json

The user model is the project's loopback OpenAI-compatible server (`tau_adapters.testing`) with a
fixed latency per chat request (``--latency-ms``, default 200: a small hosted model's answer),
answering as a well-behaved user (the task's opening, then tau2's stop token) opposite the oracle
policy, on the first ``--episodes`` retail tasks (base split, one trial each). Three evaluations
through `tau_adapters.evaluation.run.evaluate`:

1. uncached (the baseline),
2. with ``user_cache`` in an empty folder (fills it: all misses, the cache's write overhead),
3. the same again (the cached re-evaluation: all hits, zero requests to the server).

Printed: episodes/s of each, the ratio replay / uncached, the server's chat request count per run
(the replay must make none) and whether the replay's rows equal the uncached run's (wall times and
timestamps aside).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

VOLATILE = ("duration_s", "timings", "turn_timings", "usage")


class UserModel:
    """The task's opening, then tau2's stop token (what a well-behaved user model says)."""

    def __init__(self, tasks: list[Any]) -> None:
        self.tasks = {str(task.user_scenario): task for task in tasks}

    def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        from tau_adapters.users.scripted import opening_message

        system = body["messages"][0]["content"]
        task = next(t for scenario, t in self.tasks.items() if scenario in system)
        if not any(m["role"] == "assistant" for m in body["messages"][1:]):
            return {"role": "assistant", "content": opening_message(task)}
        return {"role": "assistant", "content": "Thanks, that is all. ###STOP###"}


def stable_rows(output: Path) -> list[dict[str, Any]]:
    rows = []
    for line in (output / "trajectories.jsonl").read_text().splitlines():
        row = {k: v for k, v in json.loads(line).items() if k not in VOLATILE}
        row["messages"] = [
            {k: v for k, v in m.items() if k != "timestamp"} for m in row["messages"]
        ]
        rows.append(row)
    return sorted(rows, key=lambda r: (r["task_id"], r["trial"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", action="store_true", help="print one JSON line only")
    args = parser.parse_args()

    from tau_adapters.config import EpisodeConfig
    from tau_adapters.domains import get_domain
    from tau_adapters.evaluation.run import evaluate
    from tau_adapters.testing import Fault, LoopbackEngine

    tasks = get_domain("retail").tasks("base")[: args.episodes]
    engine = LoopbackEngine(canned=lambda ids, body: [0]).start()
    engine.chat_responder = UserModel(tasks)
    delay = Fault("delay", seconds=args.latency_ms / 1000)
    engine.fault_policy = lambda endpoint, body: delay if endpoint == "chat" else None
    results: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            base = EpisodeConfig.build(
                domain="retail",
                user=f"openai:{engine.url}/v1",
                user_model="user-sim",
                user_concurrency=args.concurrency,
            )
            cached = base.model_copy(update={"user_cache": str(root / "cache")})
            for name, config in (("uncached", base), ("fill", cached), ("replay", cached)):
                before = engine.requests["chat"]
                started = time.perf_counter()
                summary = asyncio.run(
                    evaluate(
                        ["retail"],
                        config,
                        output=root / name,
                        split="base",
                        num_tasks=args.episodes,
                        concurrency=args.concurrency,
                        show_progress=False,
                    )
                )
                wall = time.perf_counter() - started
                results[name] = {
                    "episodes": summary["episodes"],
                    "wall_s": round(wall, 3),
                    "episodes_per_s": round(summary["episodes"] / wall, 2),
                    "user_requests": engine.requests["chat"] - before,
                    "avg_reward": summary["domains"]["retail"]["avg_reward"],
                    "cache": summary["user"]["cache"],
                }
            same = stable_rows(root / "replay") == stable_rows(root / "uncached")
    finally:
        engine.stop()
    line = {
        "bench": "user_cache",
        "episodes": args.episodes,
        "latency_ms": args.latency_ms,
        "concurrency": args.concurrency,
        "uncached_eps": results["uncached"]["episodes_per_s"],
        "fill_eps": results["fill"]["episodes_per_s"],
        "replay_eps": results["replay"]["episodes_per_s"],
        "replay_vs_uncached": round(
            results["replay"]["episodes_per_s"] / results["uncached"]["episodes_per_s"], 2
        ),
        "fill_vs_uncached": round(
            results["fill"]["episodes_per_s"] / results["uncached"]["episodes_per_s"], 2
        ),
        "user_requests": {name: r["user_requests"] for name, r in results.items()},
        "replay_rows_equal_uncached": same,
        "runs": results,
    }
    if not args.json:
        for name, r in results.items():
            print(
                f"{name:9s} {r['episodes_per_s']:8.2f} episodes/s, {r['user_requests']} user "
                f"requests, avg reward {r['avg_reward']}"
            )
    print(json.dumps(line))


if __name__ == "__main__":
    main()
