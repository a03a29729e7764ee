"""Episodes/s of a local eval against `--executor ray` on this machine, in one run, and the
figures the multi-node plan in docs/scaling.md is computed from.

    python benchmarks/bench_ray.py --json

Both sides run the same oracle episodes (airline + retail test, scripted user, K trials) through
`tau_adapters.evaluation.run.evaluate`, writing the same files. The local side is one process (one event
loop, CPU work on its small thread pool); the Ray side is a local 2-CPU Ray cluster with
`--workers-per-node` worker processes. Ray's start-up is measured apart and not counted in the
episode rate. Also printed: CPU seconds per episode (process time of the local run / episodes) and
the mean agent turns per episode, which with a user simulator's latency per turn give the plan's
episode wall time. Needs the `ray` extra.
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


def run_eval(output: Path, trials: int, concurrency: int, executor: Any = None) -> dict[str, Any]:
    from tau_adapters.config import EpisodeConfig
    from tau_adapters.evaluation.run import evaluate

    base = EpisodeConfig.build(domain="airline")
    started = time.perf_counter()
    cpu = time.process_time()
    summary = asyncio.run(
        evaluate(
            ["airline", "retail"],
            base,
            output=output,
            split="test",
            num_trials=trials,
            concurrency=concurrency,
            show_progress=False,
            executor=executor,
        )
    )
    wall = time.perf_counter() - started
    rows = [json.loads(line) for line in (output / "trajectories.jsonl").read_text().splitlines()]
    assert all(row["reward"] == 1.0 for row in rows), "the oracle must score 1.0 on every episode"
    return {
        "episodes": len(rows),
        "wall_s": round(wall, 3),
        "episodes_per_s": round(len(rows) / wall, 2),
        "driver_cpu_s_per_episode": round((time.process_time() - cpu) / len(rows), 5),
        "agent_turns_per_episode": round(
            sum(row["counts"]["agent_turns"] for row in rows) / len(rows), 2
        ),
        "avg_reward": {d: s["avg_reward"] for d, s in summary["domains"].items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=4, help="trials of each of the 60 tasks")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers-per-node", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()
    from _requires import require

    require("bench_ray.py", {"tau2": "tau2", "litellm": "tau2", "ray": "ray"})

    import ray

    from tau_adapters.domains import get_domain
    from tau_adapters.evaluation.ray_executor import RayExecutor

    for name in ("airline", "retail"):  # parse once before timing, as the Ray workers will
        get_domain(name).tasks("test")
    with tempfile.TemporaryDirectory() as tmp:
        run_eval(Path(tmp) / "warm", 1, args.concurrency)  # warm-up: imports, parsed databases
        local = run_eval(Path(tmp) / "local", args.trials, args.concurrency)
        started = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        executor = RayExecutor(
            per_node=args.concurrency, workers_per_node=args.workers_per_node
        ).start()
        try:
            run_eval(Path(tmp) / "ray-warm", 1, args.concurrency, executor)  # workers load tau2
            ray_start_s = time.perf_counter() - started
            remote = run_eval(Path(tmp) / "ray", args.trials, args.concurrency, executor)
        finally:
            executor.close()
            ray.shutdown()
    result = {
        "bench": "ray",
        "cpus": os.cpu_count(),
        "trials": args.trials,
        "concurrency": args.concurrency,
        "workers_per_node": args.workers_per_node,
        "local": local,
        "ray": remote,
        "ray_start_and_warm_s": round(ray_start_s, 2),
        "ray_vs_local_ratio": round(remote["episodes_per_s"] / local["episodes_per_s"], 2),
        "local_cpu_s_per_episode": local["driver_cpu_s_per_episode"],
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
