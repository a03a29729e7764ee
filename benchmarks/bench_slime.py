"""Library overhead of the slime adapter: 256 concurrent samples through `generate`, 10 batches.

    python benchmarks/bench_slime.py --json

After warm-up batches (not measured), 10 consecutive batches are measured. The engine is the
loopback SGLang-protocol server in a separate process, with its generation
replaced by an instant canned continuation (three tool calls, then a goodbye), so what is measured
is tau-adapters: prompt and delta tokenization, parsing, tau2 tool execution, scripted user,
scoring, HTTP. Reported per measured batch: samples per second; over the measured batches:
event-loop lag p50/p99 (a ticker task that sleeps 5 ms and records how late it wakes) and
resident memory after each batch. Targets (issue 5): lag p99 < 50 ms; no per-sample memory growth
across 10 consecutive batches.
slime itself is used when importable, else the tests' stand-in `Sample`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def serve(port: int, latency_s: float = 0.0) -> None:
    """Child process: the loopback engine with a canned continuation (instant by default)."""
    from tau_adapters.agents.token_policy import load_template
    from tau_adapters.domains import get_domain
    from tau_adapters.parsers.base import HermesParser
    from tau_adapters.testing import LoopbackEngine

    template = load_template("local:chatml")
    users = list(get_domain("airline")._base.db.users)[:50]
    parser = HermesParser()
    calls = [
        [*template.encode(parser.render_call("get_user_details", {"user_id": u})), template.eot_id]
        for u in users
    ]
    goodbye = [*template.encode("Thanks, that is all I can do. Goodbye!"), template.eot_id]
    marker = template.encode("<|im_start|>assistant")

    def canned(input_ids: list[int], body: dict[str, Any]) -> list[int]:
        # Count assistant turns so far by the marker tokens (cheap, no decoding).
        head = marker[0]
        turns = sum(
            1
            for i, tok in enumerate(input_ids)
            if tok == head and input_ids[i : i + len(marker)] == marker
        )
        if turns <= 4:  # greeting + generation prompt + up to 3 tool-call turns
            return calls[(len(input_ids) + turns) % len(calls)]
        return goodbye

    engine = LoopbackEngine(template.tokenizer, canned=canned)
    if latency_s > 0:
        from tau_adapters.testing import Fault

        engine.fault_policy = lambda endpoint, body: Fault("delay", seconds=latency_s)
    engine.start(port)
    print("ready", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        engine.stop()


async def ticker(lags: list[float], stop: asyncio.Event, period: float = 0.005) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        start = loop.time()
        await asyncio.sleep(period)
        lags.append(max(0.0, loop.time() - start - period))


async def batch(args: Any, samples: list[Any], generate: Any) -> tuple[float, list[Any]]:
    params = {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 8192}
    start = time.perf_counter()
    out = await asyncio.gather(*(generate(args, s, dict(params)) for s in samples))
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--batches", type=int, default=10, help="measured batches")
    parser.add_argument(
        "--warmup-batches",
        type=int,
        default=10,
        help="batches run first and not measured (tau2, tokenizer, caches, allocator arenas)",
    )
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--engine-latency-ms",
        type=float,
        default=0.0,
        help="delay every engine answer (0: instant, only library overhead is measured)",
    )
    parser.add_argument("--_serve", type=int, default=None, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    from _requires import require

    require(
        "bench_slime.py",
        {
            "tau2": "tau2",
            "litellm": "tau2",
            "transformers": "testing",
            "torch": "testing",
            "uvicorn": "testing",
            "starlette": "testing",
        },
    )
    if opts._serve is not None:
        serve(opts._serve, opts.engine_latency_ms / 1000)
        return

    import socket

    from slime_helpers import slime_args, use_slime

    which = use_slime()
    import tau_adapters.slime as adapter
    from slime.utils.types import Sample

    from tau_adapters.domains import get_domain

    port = opts.port
    if not port:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
    child = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--_serve",
            str(port),
            "--engine-latency-ms",
            str(opts.engine_latency_ms),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"

        class _Engine:
            host, port = "127.0.0.1", 0

        engine = _Engine()
        engine.port = port
        args = slime_args(engine)
        tasks = get_domain("airline").tasks("test")

        def make_samples(batch_index: int) -> list[Any]:
            return [
                Sample(
                    index=batch_index * opts.samples + i,
                    group_index=i // 4,
                    prompt=f"airline/test/{tasks[i % len(tasks)].id}",
                    metadata={
                        "domain": "airline",
                        "split": "test",
                        "task_id": tasks[i % len(tasks)].id,
                    },
                )
                for i in range(opts.samples)
            ]

        async def run() -> dict[str, Any]:
            lags: list[float] = []
            rates, rss, statuses = [], [], {}
            for b in range(opts.warmup_batches):
                await batch(args, make_samples(b), adapter.generate)
            gc.collect()
            rss_start = rss_mib()
            for b in range(opts.warmup_batches, opts.warmup_batches + opts.batches):
                # The ticker runs while a batch runs.
                batch_lags: list[float] = []
                stop = asyncio.Event()
                tick = asyncio.create_task(ticker(batch_lags, stop))
                seconds, out = await batch(args, make_samples(b), adapter.generate)
                stop.set()
                await tick
                lags.extend(batch_lags)
                rates.append(len(out) / seconds)
                for sample in out:
                    statuses[sample.status.value] = statuses.get(sample.status.value, 0) + 1
                del out
                gc.collect()
                rss.append(rss_mib())
            lags_ms = sorted(x * 1e3 for x in lags)
            growth = (rss[-1] - rss_start) / (opts.batches * opts.samples) * 1024
            return {
                "slime": which,
                "engine_latency_ms": opts.engine_latency_ms,
                "samples_per_batch": opts.samples,
                "batches": opts.batches,
                "warmup_batches": opts.warmup_batches,
                "rss_mib_before_measured_batches": round(rss_start, 1),
                "samples_per_s": round(statistics.median(rates), 1),
                "samples_per_s_by_batch": [round(r, 1) for r in rates],
                "event_loop_lag_ms": {
                    "p50": round(lags_ms[len(lags_ms) // 2], 2),
                    "p99": round(lags_ms[int(len(lags_ms) * 0.99)], 2),
                    "max": round(lags_ms[-1], 2),
                },
                "rss_mib_after_batch": [round(x, 1) for x in rss],
                "rss_growth_kib_per_sample": round(growth, 3),
                "statuses": statuses,
                "targets": {"event_loop_lag_ms.p99": "< 50", "rss growth per sample": "about 0"},
            }

        result = asyncio.run(run())
    finally:
        child.terminate()
        child.wait(timeout=10)
    print(json.dumps(result) if opts.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
