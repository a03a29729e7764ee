"""Soak: thousands of episodes against endpoints that fail one request in five; every episode is
accounted for, memory stays flat, nothing leaks.

    python benchmarks/soak.py --json                 # 10,000 episodes
    python benchmarks/soak.py --episodes 500 --json  # a quick look

A child process serves the loopback engine (SGLang ``/generate`` for the policy: an instant canned
policy, two tool calls then a goodbye, or with ``--tiny-model`` the tiny model, which one CPU
process cannot serve to 64 episodes within the deadline; OpenAI chat for the LLM user simulator)
and injects faults into 20% of requests, seeded: timeouts (the answer comes after
the client's deadline), HTTP 5xx, connections reset mid-body and garbage bodies. Episodes alternate
between the oracle policy with the LLM user (user-endpoint faults) and the tiny-model policy with the
LLM user (both endpoints' faults), over airline and retail test tasks, 64 at once, through the
library's own ``rollout``.

Printed: episodes started and finished by status (completed + truncated + aborted + failed must equal
started; each (task, trial) exactly once), fault and request counts from the server, RSS after
warm-up and its growth per 1,000 episodes, and threads and open sockets at the end against the start.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

FAULT_KINDS = ("timeout", "status", "drop", "malformed")


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def open_sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:
            continue
    return count


# -- the server (child process) ---------------------------------------------------------------
def _canned() -> Any:
    """An instant policy for the engine: two tool calls, then a goodbye (as bench_slime's)."""
    from tau_adapters.agents.token_policy import load_template
    from tau_adapters.parsers.base import HermesParser

    template = load_template("local:chatml")
    call = [
        *template.encode(
            HermesParser().render_call("get_user_details", {"user_id": "mia_li_3668"})
        ),
        template.eot_id,
    ]
    goodbye = [*template.encode("Thanks, that is all. Goodbye! ###STOP###"), template.eot_id]
    marker = template.encode("<|im_start|>assistant")

    def canned(input_ids: list[int], body: dict[str, Any]) -> list[int]:
        head = marker[0]
        turns = sum(
            1
            for i, tok in enumerate(input_ids)
            if tok == head and input_ids[i : i + len(marker)] == marker
        )
        return call if turns <= 3 else goodbye

    return canned


def serve(rate: float, timeout_s: float, seed: int, tiny: bool = False) -> None:
    """Loopback engine with seeded faults; prints its URL, then a JSON count line on stdin EOF."""
    from tau_adapters.testing.server import Fault, LoopbackEngine

    rng = random.Random(seed)
    injected: Counter[str] = Counter()

    def faults(endpoint: str, body: dict[str, Any]) -> Fault | None:
        if rng.random() >= rate:
            return None
        kind = rng.choice(FAULT_KINDS)
        injected[f"{endpoint}:{kind}"] += 1
        if kind == "timeout":
            return Fault("delay", seconds=timeout_s + 0.5)
        if kind == "status":
            return Fault("status", status=rng.choice((500, 502, 503)))
        return Fault(kind)

    def user(body: dict[str, Any]) -> dict[str, Any]:
        # The user simulator's side of the chat: open with a request, then end the conversation.
        turns = sum(1 for m in body.get("messages") or [] if m.get("role") == "assistant")
        text = "###STOP###" if turns >= 2 else "Hi, I need help with my reservation."
        return {"role": "assistant", "content": text}

    engine = LoopbackEngine(style="chatml", seed=seed, canned=None if tiny else _canned())
    engine.fault_policy = faults
    engine.chat_responder = user
    engine.start(0)
    print(engine.url, flush=True)
    sys.stdin.read()  # the parent closes stdin when it is done
    print(json.dumps({"requests": dict(engine.requests), "faults": dict(injected)}), flush=True)


# -- the episodes (this process) --------------------------------------------------------------
async def soak(url: str, episodes: int, concurrency: int, timeout_s: float) -> dict[str, Any]:
    from tau_adapters.config import EpisodeConfig
    from tau_adapters.domains import get_domain
    from tau_adapters.episode.rollout import rollout

    tasks = [(d, t) for d in ("airline", "retail") for t in get_domain(d).tasks("test")]
    common = {
        "user": f"openai:{url}/v1",
        "user_model": "user-sim",
        "user_timeout_s": timeout_s,
        "request_timeout_s": timeout_s,
        "split": "test",
    }
    configs = {
        (domain, kind): EpisodeConfig.build(
            domain=domain,
            **common,
            **(
                {}
                if kind == "oracle"
                else {
                    "policy": f"sglang:{url}",
                    "tokenizer": "local:chatml",
                    "max_new_tokens": 128,
                    "max_steps": 12,
                }
            ),
        )
        for domain in ("airline", "retail")
        for kind in ("oracle", "engine")
    }
    statuses: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    seen: Counter[tuple] = Counter()
    samples: list[tuple[int, float]] = []
    semaphore = asyncio.Semaphore(concurrency)
    done = 0
    started = 0

    async def one(index: int) -> None:
        nonlocal done, started
        domain, task = tasks[index % len(tasks)]
        kind = "oracle" if index % 2 == 0 else "engine"
        async with semaphore:
            started += 1
            trajectory = await rollout(task, configs[domain, kind], trial=index)
        statuses[trajectory.status] += 1
        if trajectory.status == "failed":
            reasons[f"{kind}: {(trajectory.error or '')[:60]}"] += 1
        seen[(domain, task.id, trajectory.trial)] += 1
        done += 1
        if done % 500 == 0:
            samples.append((done, rss_mib()))

    begin = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(episodes)))
    wall = time.perf_counter() - begin
    return {
        "started": started,
        "statuses": dict(statuses),
        "top_failure_reasons": dict(reasons.most_common(5)),
        "finished": sum(statuses.values()),
        "duplicates": sum(1 for count in seen.values() if count > 1),
        "wall_s": round(wall, 1),
        "episodes_per_s": round(episodes / wall, 1),
        "rss_samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--timeout-s", type=float, default=5.0, help="client deadline per request")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--tiny-model",
        action="store_true",
        help="the engine samples from the tiny model (slow on CPU) instead of an instant canned policy",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    from _requires import require

    require(
        "soak.py",
        {
            "tau2": "tau2",
            "litellm": "tau2",
            "transformers": "testing",
            "torch": "testing",
            "uvicorn": "testing",
            "starlette": "testing",
        },
    )
    if args.serve:
        serve(args.fault_rate, args.timeout_s, args.seed, tiny=args.tiny_model)
        return

    from tau_adapters.domains import get_domain

    for domain in ("airline", "retail"):
        get_domain(domain).tasks("test")
    child = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--serve",
            "--fault-rate",
            str(args.fault_rate),
            "--timeout-s",
            str(args.timeout_s),
            "--seed",
            str(args.seed),
            *(["--tiny-model"] if args.tiny_model else []),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = child.stdout.readline().strip()
        threads_start, sockets_start = threading.active_count(), open_sockets()
        # Warm-up (imports, parsed databases, tokenizer, caches), then the measured soak.
        asyncio.run(soak(url, 200, args.concurrency, args.timeout_s))
        rss_warm = rss_mib()
        result = asyncio.run(soak(url, args.episodes, args.concurrency, args.timeout_s))
        rss_end = rss_mib()
        threads_end, sockets_end = threading.active_count(), open_sockets()
    finally:
        child.stdin.close()
        server = json.loads(child.stdout.readline() or "{}")
        child.terminate()  # requests held by injected delays need not finish
        child.wait(30)
    accounted = result["finished"] == result["started"] == args.episodes
    growth = (rss_end - rss_warm) / (args.episodes / 1000)
    out = {
        "bench": "soak",
        "episodes": args.episodes,
        "fault_rate": args.fault_rate,
        **{k: v for k, v in result.items() if k != "rss_samples"},
        "all_accounted": accounted and result["duplicates"] == 0,
        "server": server,
        "rss_after_warmup_mib": round(rss_warm, 1),
        "rss_end_mib": round(rss_end, 1),
        "rss_growth_mib_per_1000": round(growth, 2),
        "rss_samples_mib": [[n, round(r, 1)] for n, r in result["rss_samples"]],
        "threads": [threads_start, threads_end],
        "sockets": [sockets_start, sockets_end],
    }
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
