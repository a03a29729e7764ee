"""Library overhead of the AReaL adapter: 256 concurrent episodes through `Tau2Workflow`.

    python benchmarks/bench_areal.py --json

Like bench_slime: after warm-up batches (not measured), consecutive batches of concurrent
``arun_episode`` calls are measured. Every model turn goes through AReaL's own
`RemoteSGLangEngine.agenerate` to the loopback SGLang-protocol server in a separate process
(bench_slime's instant canned continuation: three tool calls, then a goodbye), so what is measured
is tau-adapters plus AReaL's client: tokenization, parsing, tau2 tool execution, scripted user,
scoring, HTTP, tensor building. Reported: episodes per second (median over measured batches),
event-loop lag p50/p99 (a ticker that sleeps 5 ms and records how late it wakes; target p99 < 50 ms
on an idle machine) and resident memory after each batch (target: no growth per episode).
Needs ``areal`` (``pip install --no-deps areal==1.0.4`` and the ``areal`` extra).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_slime import rss_mib, ticker  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--episodes", type=int, default=256, help="concurrent episodes per batch")
    parser.add_argument("--batches", type=int, default=10, help="measured batches")
    parser.add_argument("--warmup-batches", type=int, default=5)
    parser.add_argument("--export-style", choices=["concat", "individual"], default="concat")
    parser.add_argument("--engine-latency-ms", type=float, default=0.0)
    opts = parser.parse_args()
    from _requires import require

    require(
        "bench_areal.py",
        {
            "tau2": "tau2",
            "litellm": "tau2",
            "transformers": "testing",
            "torch": "testing",
            "uvicorn": "testing",
            "starlette": "testing",
            "areal": "pip install --no-deps areal==1.0.4, then the areal extra",
        },
    )
    # AReaL's loggers write to stdout; keep stdout for the one JSON line.
    result_stream, sys.stdout = sys.stdout, sys.stderr

    from areal.api.cli_args import InferenceEngineConfig
    from areal.engine.sglang_remote import RemoteSGLangEngine
    from tau_adapters.areal import Tau2Workflow

    from tau_adapters.domains import get_domain

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, str(HERE / "bench_slime.py"), "--_serve", str(port)]
    command += ["--engine-latency-ms", str(opts.engine_latency_ms)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    engine = None
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        config = InferenceEngineConfig(
            experiment_name="bench", trial_name="areal", setup_timeout=60
        )
        engine = RemoteSGLangEngine(config)
        engine.initialize(addr=f"127.0.0.1:{port}", train_data_parallel_size=1)
        econfig = {"domain": "airline", "max_new_tokens": 8192, "export_style": opts.export_style}
        workflow = Tau2Workflow(econfig, tokenizer="local:chatml")
        tasks = get_domain("airline").tasks("test")
        rows = [
            {"domain": "airline", "split": "test", "task_id": tasks[i % len(tasks)].id}
            for i in range(opts.episodes)
        ]

        async def batch() -> tuple[float, list[Any]]:
            start = time.perf_counter()
            out = await asyncio.gather(*(workflow.arun_episode(engine, row) for row in rows))
            return time.perf_counter() - start, out

        async def run() -> dict[str, Any]:
            for _ in range(opts.warmup_batches):
                await batch()
            gc.collect()
            rss_start = rss_mib()
            lags: list[float] = []
            rates, rss, rejected = [], [], 0
            for _ in range(opts.batches):
                batch_lags: list[float] = []
                stop = asyncio.Event()
                tick = asyncio.create_task(ticker(batch_lags, stop))
                seconds, out = await batch()
                stop.set()
                await tick
                lags.extend(batch_lags)
                rates.append(len(out) / seconds)
                rejected += sum(1 for x in out if x is None)
                del out
                gc.collect()
                rss.append(rss_mib())
            lags_ms = sorted(x * 1e3 for x in lags) or [0.0]
            growth = (rss[-1] - rss_start) / (opts.batches * opts.episodes) * 1024
            return {
                "engine": "areal RemoteSGLangEngine -> loopback (canned, separate process)",
                "engine_latency_ms": opts.engine_latency_ms,
                "export_style": opts.export_style,
                "episodes_per_batch": opts.episodes,
                "batches": opts.batches,
                "warmup_batches": opts.warmup_batches,
                "episodes_per_s": round(statistics.median(rates), 1),
                "episodes_per_s_by_batch": [round(r, 1) for r in rates],
                "event_loop_lag_ms": {
                    "p50": round(lags_ms[len(lags_ms) // 2], 2),
                    "p99": round(lags_ms[int(len(lags_ms) * 0.99)], 2),
                    "max": round(lags_ms[-1], 2),
                },
                "rss_mib_before_measured_batches": round(rss_start, 1),
                "rss_mib_after_batch": [round(x, 1) for x in rss],
                "rss_growth_kib_per_episode": round(growth, 3),
                "rejected": rejected,
                "targets": {"event_loop_lag_ms.p99": "< 50", "rss growth per episode": "about 0"},
            }

        result = asyncio.run(run())
    finally:
        if engine is not None:
            engine.destroy()
        child.terminate()
        child.wait(timeout=10)
    print(json.dumps(result) if opts.json else json.dumps(result, indent=2), file=result_stream)


if __name__ == "__main__":
    main()
