"""Environment reset, scoring and memory: tau2's own way against tau-adapters, in one run.

    python benchmarks/bench_env.py --json

tau2's baseline runs in a child process that imports only tau2 (so that nothing this library does
to the process, such as freezing the parsed database out of the garbage collector, flatters or
hurts it). It times `registry.get_env_constructor(domain)()` and
`evaluate_simulation(..., EvaluationType.ALL, ...)` on the same trajectories this process scores.
Targets (issue 2): reset >= 100x, scoring >= 50x, <= 2 MiB per live airline episode.

tau-bench v1 (``tau1-airline``, ``tau1-retail``; issue 12) is measured the same way when
`tau_bench` is installed: its baseline child imports only tau_bench and times v1's own environment
constructor (what v1's runner builds per task, with a user that makes no model call) and v1's own
``calculate_reward`` after replaying the same trajectories' actions through ``Env.step``; ours
times ``initial_environment`` and ``score`` (replay included). Same targets: >= 100x reset,
>= 50x scoring. ``--only tau1 --tau1-tasks 3 --reset-repeat 2`` is a quick smoke run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def per_call(fn: Any, repeat: int) -> float:
    """Median seconds per call over `repeat` calls."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


# -- tau2's own way (child process) ------------------------------------------------------------
#: tau2 v1's knowledge domain: environments per task and retrieval variant (offline bm25 here).
KNOWLEDGE = ("banking_knowledge",)


def tau2_domains(registry: Any) -> list[str]:
    """airline and retail, plus banking_knowledge where the installed tau2 has it (v1.x)."""
    return ["airline", "retail", *(d for d in KNOWLEDGE if d in registry.get_domains())]


def tau2_env_kwargs(domain: str, task: Any) -> dict[str, Any]:
    """What tau2 v1's runner passes its constructor for `task` (`tau2.runner.build`)."""
    if domain not in KNOWLEDGE:
        return {}
    from tau2.runner.build import _derive_read_log_allowlist

    return {
        "retrieval_variant": "bm25",
        "task": task,
        "read_log_allowlist": _derive_read_log_allowlist(task),
    }


def baseline(trajectory_file: str, reset_repeat: int, mem_envs: int) -> dict[str, Any]:
    from loguru import logger

    logger.disable("tau2")
    from tau2.data_model.simulation import SimulationRun
    from tau2.evaluator.evaluator import EvaluationType, evaluate_simulation
    from tau2.registry import registry

    rows = [json.loads(line) for line in Path(trajectory_file).read_text().splitlines()]
    out: dict[str, Any] = {}
    for domain in tau2_domains(registry):
        tasks = {t.id: t for t in registry.get_tasks_loader(domain)(None)}
        first = next(iter(tasks.values()))
        kwargs = tau2_env_kwargs(domain, first)
        constructor = registry.get_env_constructor(domain)
        constructor(**kwargs)  # warm file caches
        out[f"{domain}_reset_s"] = per_call(lambda c=constructor, k=kwargs: c(**k), reset_repeat)
        times = []
        rewards = []
        for row in rows:
            if row["domain"] != domain:
                continue
            simulation = SimulationRun.model_validate(
                {
                    "id": "b",
                    "task_id": row["task_id"],
                    "start_time": "",
                    "end_time": "",
                    "duration": 0.0,
                    "termination_reason": row["termination_reason"],
                    "messages": row["messages"],
                }
            )
            task = tasks[row["task_id"]]
            extra = {"env_kwargs": tau2_env_kwargs(domain, task)} if domain in KNOWLEDGE else {}
            start = time.perf_counter()
            info = evaluate_simulation(simulation, task, EvaluationType.ALL, False, domain, **extra)
            times.append(time.perf_counter() - start)
            rewards.append(info.reward)
        out[f"{domain}_score_s"] = statistics.median(times)
        out[f"{domain}_rewards"] = rewards
    gc.collect()
    before = rss_mib()
    envs = [registry.get_env_constructor("airline")() for _ in range(mem_envs)]
    gc.collect()
    out["airline_mem_per_env_mib"] = (rss_mib() - before) / len(envs)
    return out


# -- tau-bench v1's own way (child process) ---------------------------------------------------------
TAU1 = {"tau1-airline": ("airline", "tau_bench.envs.airline.env", "MockAirlineDomainEnv"),
        "tau1-retail": ("retail", "tau_bench.envs.retail.env", "MockRetailDomainEnv")}  # fmt: skip


def baseline_tau1(trajectory_file: str, reset_repeat: int) -> dict[str, Any]:
    import importlib

    from tau_bench.types import Action

    rows = [json.loads(line) for line in Path(trajectory_file).read_text().splitlines()]
    out: dict[str, Any] = {}
    for domain, (_, module, name) in TAU1.items():
        env_cls = getattr(importlib.import_module(module), name)
        env_cls(user_strategy="human", task_split="test", task_index=0)  # warm file caches
        out[f"{domain}_reset_s"] = per_call(
            lambda c=env_cls: c(user_strategy="human", task_split="test", task_index=0),
            reset_repeat,
        )
        times, rewards = [], []
        for row in rows:
            if row["domain"] != domain:
                continue
            index = int(row["task_id"].split("-")[1])
            env = env_cls(user_strategy="human", task_split="test", task_index=index)
            result = None
            for message in row["messages"]:
                if message["role"] != "assistant":
                    continue
                if message.get("tool_calls"):
                    for call in message["tool_calls"]:
                        response = env.step(Action(name=call["name"], kwargs=call["arguments"]))
                        if response.done:
                            result = response.info.reward_info
                elif message.get("content"):
                    env.actions.append(
                        Action(name="respond", kwargs={"content": message["content"]})
                    )
            start = time.perf_counter()
            if result is None:  # a terminating tool already scored inside step()
                result = env.calculate_reward()
                times.append(time.perf_counter() - start)
            rewards.append(result.reward)
        out[f"{domain}_score_s"] = statistics.median(times) if times else None
        out[f"{domain}_rewards"] = rewards
    return out


def measure_tau1(args: Any, result: dict[str, Any]) -> None:
    """v1's reset and scoring against ours, on the oracle trajectories of each v1 test split."""
    from tau_adapters.domains import get_domain

    trajectories = {}
    for domain in TAU1:
        runs = asyncio.run(make_trajectories(domain, "test"))
        trajectories[domain] = runs[: args.tau1_tasks] if args.tau1_tasks else runs
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as stream:
        for domain_trajectories in trajectories.values():
            for trajectory in domain_trajectories:
                stream.write(json.dumps(trajectory.to_row()) + "\n")
        trajectory_file = stream.name
    child = subprocess.run(
        [
            *(sys.executable, __file__, "--_baseline_tau1", trajectory_file),
            *("--reset-repeat", str(args.reset_repeat)),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    base = json.loads(child.stdout.strip().splitlines()[-1])
    os.unlink(trajectory_file)
    for domain in TAU1:
        backend = get_domain(domain)
        task = backend.tasks("test")[0]
        ours_reset = per_call(lambda b=backend, t=task: b.initial_environment(t), 500)
        scores, rewards = [], []
        for trajectory in trajectories[domain]:
            task = backend.task(trajectory.task_id)
            start = time.perf_counter()
            info = backend.score(task, trajectory.messages, trajectory.termination_reason)
            scores.append(time.perf_counter() - start)
            rewards.append(info.reward)
        if rewards != base[f"{domain}_rewards"]:
            raise SystemExit(f"{domain}: our rewards differ from v1's on the same trajectories")
        ours_score = statistics.median(scores)
        result[f"{domain}_reset_ms"] = {
            "tau1": base[f"{domain}_reset_s"] * 1e3,
            "ours": ours_reset * 1e3,
        }
        result[f"{domain}_reset_speedup"] = base[f"{domain}_reset_s"] / ours_reset
        if base[f"{domain}_score_s"] is not None:
            result[f"{domain}_score_ms"] = {
                "tau1": base[f"{domain}_score_s"] * 1e3,
                "ours": ours_score * 1e3,
            }
            result[f"{domain}_score_speedup"] = base[f"{domain}_score_s"] / ours_score
        result[f"{domain}_scored_trajectories"] = len(rewards)
    result.setdefault("targets", {}).update(
        {"tau1-airline_reset_speedup": ">= 100", "tau1-airline_score_speedup": ">= 50"}
    )


# -- ours ------------------------------------------------------------------------------------------
async def make_trajectories(domain: str, split: str) -> list[Any]:
    from tau_adapters.config import EpisodeConfig
    from tau_adapters.domains import get_domain
    from tau_adapters.episode.rollout import rollout

    config = EpisodeConfig.build(domain=domain, split=split)
    backend = get_domain(domain)
    # tau2 v1 grades 40 retail tasks with an LLM judge: only tasks scored without one are timed.
    tasks = [t for t in backend.tasks(split) if not backend.needs_judge(t)]
    return await asyncio.gather(*(rollout(task, config) for task in tasks))


async def live_sessions(domain: str, count: int) -> list[Any]:
    """`count` live episodes, each past the opening and a few oracle actions."""
    from tau_adapters.agents.oracle import OraclePolicy
    from tau_adapters.config import EpisodeConfig
    from tau_adapters.domains import get_domain
    from tau_adapters.episode.session import Session
    from tau_adapters.users.scripted import ScriptedUser

    backend = get_domain(domain)
    tasks = backend.tasks("base")
    config = EpisodeConfig.build(domain=domain)
    sessions = []
    for i in range(count):
        session = Session(tasks[i % len(tasks)], config, ScriptedUser(), domain=backend)
        policy = OraclePolicy()
        observation = await session.start()
        await policy.start(session.context)
        for _ in range(3):
            if session.done:
                break
            observation = (await session.step(await policy.act(observation))).observation
        sessions.append((session, policy))
    return sessions


def import_time_s() -> float:
    """Cumulative import time of `tau_adapters` as `python -X importtime` reports it."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import tau_adapters"],
        capture_output=True,
        text=True,
        check=True,
    )
    for line in proc.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s+tau_adapters$", line)
        if match:
            return int(match.group(1)) / 1e6
    raise RuntimeError("tau_adapters not found in -X importtime output")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    parser.add_argument("--reset-repeat", type=int, default=15)
    parser.add_argument("--mem-episodes", type=int, default=200)
    parser.add_argument("--baseline-mem-envs", type=int, default=10)
    parser.add_argument("--_baseline", help=argparse.SUPPRESS)
    parser.add_argument("--_baseline_tau1", help=argparse.SUPPRESS)
    parser.add_argument(
        "--only", choices=["all", "tau2", "tau1"], default="all", help="which benchmark to measure"
    )
    parser.add_argument("--tau1-tasks", type=int, default=0, help="v1 trajectories per domain")
    args = parser.parse_args()
    from _requires import require

    require("bench_env.py", {"tau2": "tau2", "litellm": "tau2"})
    if args._baseline:
        print(json.dumps(baseline(args._baseline, args.reset_repeat, args.baseline_mem_envs)))
        return
    if args._baseline_tau1:
        print(json.dumps(baseline_tau1(args._baseline_tau1, args.reset_repeat)))
        return
    if args.only == "tau1":
        result: dict[str, Any] = {}
        measure_tau1(args, result)
        print(json.dumps(result, indent=None if args.json else 2))
        return

    result: dict[str, Any] = {"import_tau_adapters_s": import_time_s()}

    # Telecom tasks: a 14 MB file, parsed once per process, then every split is a filter.
    from tau_adapters.domains import get_domain

    telecom = get_domain("telecom")  # imports tau2 and builds the template environment
    start = time.perf_counter()
    telecom.tasks("base")
    result["telecom_task_load_s"] = time.perf_counter() - start
    start = time.perf_counter()
    for split in ("train", "test", "small", "full"):
        telecom.tasks(split)
    result["telecom_other_splits_s"] = time.perf_counter() - start

    from tau_adapters.domains import domain_names
    from tau_adapters.domains.tau2.api import benchmark_version
    from tau_adapters.domains.tau2.knowledge import BUILD_SECONDS

    result["benchmark_version"] = benchmark_version()
    domains = ["airline", "retail"]
    if "banking_knowledge" in domain_names():
        start = time.perf_counter()
        get_domain("banking_knowledge")  # knowledge base + bm25 index: once per process
        result["banking_knowledge_backend_build_s"] = time.perf_counter() - start
        result["banking_knowledge_index_build_s"] = dict(BUILD_SECONDS)
        domains.append("banking_knowledge")
    trajectories = {
        domain: asyncio.run(
            make_trajectories(domain, "test" if domain != "banking_knowledge" else "all")
        )
        for domain in domains
    }
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as stream:
        for domain_trajectories in trajectories.values():
            for trajectory in domain_trajectories:
                stream.write(json.dumps(trajectory.to_row()) + "\n")
        trajectory_file = stream.name
    child = subprocess.run(
        [
            sys.executable,
            __file__,
            "--_baseline",
            trajectory_file,
            "--reset-repeat",
            str(args.reset_repeat),
            "--baseline-mem-envs",
            str(args.baseline_mem_envs),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    base = json.loads(child.stdout.strip().splitlines()[-1])
    os.unlink(trajectory_file)

    for domain in domains:
        backend = get_domain(domain)
        task = backend.task(trajectories[domain][0].task_id)
        ours_reset = per_call(lambda b=backend, t=task: b.initial_environment(t), 500)
        scores = []
        rewards = []
        for trajectory in trajectories[domain]:
            task = backend.task(trajectory.task_id)
            start = time.perf_counter()
            info = backend.score(task, trajectory.messages, trajectory.termination_reason)
            scores.append(time.perf_counter() - start)
            rewards.append(info.reward)
        ours_score = statistics.median(scores)
        if rewards != base[f"{domain}_rewards"]:
            raise SystemExit(f"{domain}: our rewards differ from tau2's on the same trajectories")
        result[f"{domain}_reset_ms"] = {
            "tau2": base[f"{domain}_reset_s"] * 1e3,
            "ours": ours_reset * 1e3,
        }
        result[f"{domain}_score_ms"] = {
            "tau2": base[f"{domain}_score_s"] * 1e3,
            "ours": ours_score * 1e3,
        }
        result[f"{domain}_reset_speedup"] = base[f"{domain}_reset_s"] / ours_reset
        result[f"{domain}_score_speedup"] = base[f"{domain}_score_s"] / ours_score
        result[f"{domain}_scored_trajectories"] = len(rewards)

    gc.collect()
    before = rss_mib()
    sessions = asyncio.run(live_sessions("airline", args.mem_episodes))
    gc.collect()
    result["airline_mem_per_episode_mib"] = (rss_mib() - before) / len(sessions)
    result["tau2_airline_mem_per_env_mib"] = base["airline_mem_per_env_mib"]
    result["targets"] = {
        "airline_reset_speedup": ">= 100",
        "airline_score_speedup": ">= 50",
        "airline_mem_per_episode_mib": "<= 2",
        "import_tau_adapters_s": "< 0.3",
    }
    if args.only == "all":
        try:
            import tau_bench  # noqa: F401
        except ImportError:
            result["tau1"] = "skipped: tau_bench is not installed"
        else:
            measure_tau1(args, result)
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
