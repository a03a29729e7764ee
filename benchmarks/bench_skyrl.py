"""The SkyRL env under SkyRL's thread pool, against tau2's own gym env, in one run.

    python benchmarks/bench_skyrl.py --json                 # 256 episodes, 32 threads
    python benchmarks/bench_skyrl.py --episodes 8 --threads 4 --warmup 2 --tau2-episodes 4 --json

Both sides play the same airline and retail test tasks (cycled) with instant text actions: each
task's gold agent-side tool calls, then a closing question and a stop, written in each env's
action format (hermes ``<tool_call>`` blocks for ours, JSON calls for ``tau2.gym.AgentGymEnv``),
stepped from a thread pool of SkyRL's default size (32
``max_env_workers``). Both talk to the same instant user simulator: an OpenAI-compatible endpoint
on loopback that answers every user turn at once (``tau_adapters.testing.LoopbackEngine``), so the
figures are the environments' own overhead. tau2's side runs in a child process that imports only
tau2 (nothing this library does to its process flatters or hurts it).

Reported per side: env steps/s (all steps of all episodes over the wall time), p50/p99 step
latency, RSS growth per episode after a warm-up (target: flat), mean reward; and ours/tau2's
steps/s ratio. tau2's side measures 64 episodes by default (``--tau2-episodes``; about a second
per step on a small machine). Telecom is left out: tau2's gym re-reads telecom's 14 MB task file
on every step.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

DOMAINS = ("airline", "retail")
USER_MODEL = "bench-user"


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def instant_user(body: dict[str, Any]) -> dict[str, Any]:
    """The user simulator's answer, at once: carry on, and stop when thanked off."""
    messages = body.get("messages") or []
    last = str(messages[-1].get("content") or "") if messages else ""
    if "anything else" in last.lower():
        return {"role": "assistant", "content": "No, that's all. ###STOP###"}
    return {"role": "assistant", "content": "Yes, please go ahead."}


def plans(episodes: int) -> list[dict[str, Any]]:
    """Per episode: the task and the same turns as text in both formats (the oracle's own tool
    calls, then a closing question the instant user answers with a stop)."""
    from tau_adapters.core import AGENT_STOP_TOKEN
    from tau_adapters.episode.tasks import task_refs
    from tau_adapters.plugins import make_parser

    hermes = make_parser("hermes")
    refs = [ref for domain in DOMAINS for ref in task_refs(domain, "test")]
    closing = ["Is there anything else I can help you with?", AGENT_STOP_TOKEN]
    out = []
    for i in range(episodes):
        ref = refs[i % len(refs)]
        criteria = ref.load().evaluation_criteria
        calls = [a for a in criteria.actions or [] if a.requestor == "assistant"]
        out.append(
            {
                "ref": ref.to_row(),
                "hermes": [hermes.render_call(a.name, dict(a.arguments)) for a in calls] + closing,
                "json": [
                    json.dumps({"name": a.name, "arguments": dict(a.arguments)}) for a in calls
                ]
                + closing,
            }
        )
    return out


def drive(episodes: list[dict[str, Any]], threads: int, play: Any, warmup: int) -> dict[str, Any]:
    """Run `play(plan, latencies)` from a thread pool: the first `warmup` episodes unmeasured,
    then the rest; the figures."""
    with ThreadPoolExecutor(max_workers=threads) as pool:  # warm the threads' stacks too
        list(pool.map(lambda plan: play(plan, []), episodes[:warmup]))
    episodes = episodes[warmup:]
    latencies: list[float] = []
    lock = threading.Lock()
    rewards: list[float] = []
    steps = 0

    def one(plan: dict[str, Any]) -> None:
        nonlocal steps
        mine: list[float] = []
        reward = play(plan, mine)
        with lock:
            latencies.extend(mine)
            rewards.append(reward)
            steps += len(mine)

    before = rss_mib()
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, episodes))
    wall = time.perf_counter() - start
    after = rss_mib()
    return {
        "episodes": len(episodes),
        "threads": threads,
        "steps": steps,
        "wall_s": round(wall, 3),
        "steps_per_s": round(steps / wall, 1) if wall else 0.0,
        "step_latency_p50_ms": round(statistics.median(latencies) * 1000, 3) if latencies else 0.0,
        "step_latency_p99_ms": round(percentile(latencies, 0.99) * 1000, 3),
        "rss_growth_kib_per_episode": round((after - before) * 1024 / len(episodes), 1),
        "rss_mib_end": round(after, 1),
        "mean_reward": round(sum(rewards) / len(rewards), 4) if rewards else 0.0,
    }


# -- ours ----------------------------------------------------------------------------------------
def run_ours(episodes: list[dict[str, Any]], threads: int, user_url: str, warmup: int) -> dict:
    import skyrl_gym
    from tau_adapters.skyrl import register

    register()
    env_config = {"user": f"openai:{user_url}/v1", "user_model": USER_MODEL}

    def play(plan: dict[str, Any], latencies: list[float]) -> float:
        extras = {"extra_info": plan["ref"], "max_turns": 100}
        env = skyrl_gym.make("tau2", env_config=env_config, extras=extras)
        mark = time.perf_counter()
        env.init([])
        latencies.append(time.perf_counter() - mark)
        reward = 0.0
        for text in plan["hermes"]:
            mark = time.perf_counter()
            out = env.step(text)
            latencies.append(time.perf_counter() - mark)
            if out["done"]:
                reward = float(out["reward"])
                break
        env.get_metrics()
        env.close()
        return reward

    return drive(episodes, threads, play, warmup)


# -- tau2's gym (child process) ------------------------------------------------------------------
def run_tau2(episodes: list[dict[str, Any]], threads: int, user_url: str, warmup: int) -> dict:
    from loguru import logger

    logger.disable("tau2")
    from tau2.gym import AgentGymEnv

    def play(plan: dict[str, Any], latencies: list[float]) -> float:
        env = AgentGymEnv(
            domain=plan["ref"]["domain"],
            task_id=plan["ref"]["task_id"],
            max_steps=200,
            user_llm=f"openai/{USER_MODEL}",
            user_llm_args={"api_base": f"{user_url}/v1", "api_key": "none", "temperature": 0.0},
        )
        mark = time.perf_counter()
        env.reset()
        latencies.append(time.perf_counter() - mark)
        reward = 0.0
        for text in plan["json"]:
            mark = time.perf_counter()
            _, reward, terminated, truncated, _ = env.step(text)
            latencies.append(time.perf_counter() - mark)
            if terminated or truncated:
                break
        return float(reward)

    return drive(episodes, threads, play, warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=256)
    parser.add_argument("--threads", type=int, default=32, help="SkyRL's max_env_workers")
    parser.add_argument(
        "--warmup",
        type=int,
        default=60,
        help="episodes before measuring (default: one pass over the 60 tasks, so per-task caches "
        "such as the gold-side database hash are filled)",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--skip-tau2", action="store_true", help="our side only")
    parser.add_argument(
        "--tau2-episodes",
        type=int,
        default=64,
        help="measured episodes on tau2's side (its steps take ~1 s each on a small machine; "
        "the ratio is of steps/s, so the counts may differ)",
    )
    parser.add_argument("--tau2-warmup", type=int, default=8)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    from _requires import require

    require(
        "bench_skyrl.py",
        {
            "tau2": "tau2",
            "litellm": "tau2",
            "skyrl_gym": "skyrl",
            "transformers": "testing",
            "torch": "testing",
            "uvicorn": "testing",
            "starlette": "testing",
        },
    )

    if args.child:  # tau2's side: plans and the user URL come from the parent
        with open(args.child) as stream:
            spec = json.load(stream)
        result = run_tau2(spec["episodes"], spec["threads"], spec["user_url"], spec["warmup"])
        print(json.dumps(result))
        return

    from tau_adapters.testing import LoopbackEngine

    engine = LoopbackEngine(canned=lambda ids, body: [])
    engine.chat_responder = instant_user
    engine.start()
    try:
        episodes = plans(args.episodes)
        warm = plans(args.warmup)
        result: dict[str, Any] = {"tasks": f"{'+'.join(DOMAINS)} test, cycled"}
        ours = run_ours(warm + episodes, args.threads, engine.url, len(warm))
        result["tau_adapters_skyrl_env"] = ours
        if not args.skip_tau2:
            import tempfile

            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as spec:
                json.dump(
                    {
                        "episodes": warm[: args.tau2_warmup] + episodes[: args.tau2_episodes],
                        "threads": args.threads,
                        "user_url": engine.url,
                        "warmup": min(args.tau2_warmup, len(warm)),
                    },
                    spec,
                )
            child = subprocess.run(
                [sys.executable, __file__, "--child", spec.name],
                capture_output=True,
                text=True,
                check=False,
            )
            os.unlink(spec.name)
            if child.returncode != 0:
                result["tau2_gym"] = {"error": child.stderr[-2000:]}
            else:
                theirs = json.loads(child.stdout.strip().splitlines()[-1])
                result["tau2_gym"] = theirs
                if theirs.get("steps_per_s"):
                    result["steps_per_s_ratio"] = round(
                        ours["steps_per_s"] / theirs["steps_per_s"], 2
                    )
    finally:
        engine.stop()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
