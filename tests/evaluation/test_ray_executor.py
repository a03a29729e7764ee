"""`eval --executor ray`: a local Ray cluster (2 CPUs) runs the episodes; rows, files and accounting
must be what a local run gives, and a killed worker costs only its in-flight episodes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
from pathlib import Path

import pytest

from tau_adapters.config import EpisodeConfig
from tau_adapters.errors import install_hint
from tau_adapters.evaluation.run import evaluate

from conftest import requires_tau2

ray = pytest.importorskip("ray", reason="the ray executor tests need Ray: " + install_hint("ray"))

pytestmark = requires_tau2


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _rows(folder: Path) -> dict[tuple, dict]:
    rows = [json.loads(line) for line in (folder / "trajectories.jsonl").read_text().splitlines()]
    keyed = {(r["domain"], r["task_id"], r["trial"]): r for r in rows}
    assert len(keyed) == len(rows), "a (domain, task, trial) row written twice"
    return keyed


def _comparable(row: dict) -> dict:
    messages = [{k: v for k, v in m.items() if k not in ("timestamp",)} for m in row["messages"]]
    keep = ("status", "termination_reason", "reward", "reward_info", "seed", "split", "error")
    return {**{k: row.get(k) for k in keep}, "messages": messages}


def _executor(**kw):
    from tau_adapters.evaluation.ray_executor import RayExecutor

    return RayExecutor(**kw).start()


def test_ray_eval_writes_what_a_local_eval_writes(cluster, tmp_path) -> None:
    base = EpisodeConfig.build(domain="airline")
    common = {"split": "test", "num_trials": 2, "num_tasks": 3, "show_progress": False}
    domains = ["airline", "retail"]
    local = asyncio.run(evaluate(domains, base, output=tmp_path / "local", **common))
    executor = _executor(per_node=4)
    try:
        remote = asyncio.run(
            evaluate(domains, base, output=tmp_path / "ray", executor=executor, **common)
        )
    finally:
        executor.close()
    a, b = _rows(tmp_path / "local"), _rows(tmp_path / "ray")
    assert sorted(a) == sorted(b) and len(a) == 12
    for key in a:
        assert _comparable(a[key]) == _comparable(b[key]), key
    assert local["domains"] == remote["domains"]
    assert remote["config"]["executor"]["kind"] == "ray"
    assert remote["config"]["executor"]["retried"] == 0


def _slow_chat_server(delay_s: float):
    """An OpenAI-compatible endpoint whose model thinks for `delay_s`, then ends the episode."""
    from aiohttp import web

    async def complete(request: web.Request) -> web.Response:
        await asyncio.sleep(delay_s)
        message = {"role": "assistant", "content": "Goodbye. ###STOP###"}
        return web.json_response(
            {"choices": [{"message": message, "finish_reason": "stop"}], "usage": {}}
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", complete)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def stop() -> None:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)

    return f"http://127.0.0.1:{port}/v1", stop


async def _kill_when(executor, wanted, kills: list[int], max_kills: int) -> None:
    """SIGKILL the worker process whenever an episode in `wanted` is in flight on it."""
    while len(kills) < max_kills:
        for worker in executor.workers().values():
            try:
                running = await worker.in_flight.remote()
                pid = await worker.pid.remote()
            except ray.exceptions.RayActorError:
                continue
            if any(wanted(key) for key in running) and pid not in kills:
                os.kill(pid, signal.SIGKILL)
                kills.append(pid)
        await asyncio.sleep(0.05)


def _slow_config(url: str) -> EpisodeConfig:
    return EpisodeConfig.build(domain="airline", policy=f"openai:{url}", model="slow")


def test_a_killed_worker_costs_only_its_in_flight_episodes_which_are_retried(
    cluster, tmp_path
) -> None:
    url, stop = _slow_chat_server(1.0)
    executor = _executor(per_node=3)
    kills: list[int] = []

    async def main():
        watcher = asyncio.ensure_future(_kill_when(executor, lambda key: True, kills, 1))
        try:
            return await evaluate(
                ["airline"],
                _slow_config(url),
                output=tmp_path / "run",
                split="test",
                num_tasks=6,
                concurrency=3,
                show_progress=False,
                executor=executor,
            )
        finally:
            watcher.cancel()

    try:
        summary = asyncio.run(main())
    finally:
        executor.close()
        stop()
    assert len(kills) == 1
    rows = _rows(tmp_path / "run")
    assert len(rows) == 6  # started = written, none lost, none twice
    stats = summary["config"]["executor"]
    assert 1 <= stats["retried"] <= 3  # the episodes in flight on the killed worker
    assert all(r["status"] == "completed" for r in rows.values()), [
        r["error"] for r in rows.values()
    ]
    assert all(r["termination_reason"] == "agent_stop" for r in rows.values())


def test_an_episode_whose_worker_dies_twice_is_failed_with_the_reason(cluster, tmp_path) -> None:
    url, stop = _slow_chat_server(0.5)
    executor = _executor(per_node=1)
    kills: list[int] = []
    poison = "airline/2/0"  # the first airline test task, trial 0

    async def main():
        watcher = asyncio.ensure_future(_kill_when(executor, lambda key: key == poison, kills, 2))
        try:
            return await evaluate(
                ["airline"],
                _slow_config(url),
                output=tmp_path / "run",
                split="test",
                num_tasks=3,
                concurrency=1,
                show_progress=False,
                executor=executor,
            )
        finally:
            watcher.cancel()

    try:
        summary = asyncio.run(main())
    finally:
        executor.close()
        stop()
    rows = _rows(tmp_path / "run")
    assert len(rows) == 3 and len(kills) == 2
    failed = rows[("airline", "2", 0)]
    assert failed["status"] == "failed"
    assert "ray worker died" in failed["error"] and "attempt 2" in failed["error"]
    others = [r for key, r in rows.items() if key != ("airline", "2", 0)]
    assert [r["status"] for r in others] == ["completed", "completed"]
    # Failed episodes are infrastructure: counted beside the scores, not as zeros in them.
    assert summary["config"]["executor"]["retried"] == 1


def test_resume_works_across_executors(cluster, tmp_path) -> None:
    """A run interrupted locally and resumed on Ray (and the other way) ends with every row once.

    The interruption is simulated by cutting finished rows off the trajectories file; the resume
    keeps the settings of the run (`--resume` refuses changed ones, issue 26), only the executor
    differs."""
    from tau_adapters.cli.main import main

    run = tmp_path / "run"
    common = ["eval", "--domain", "airline", "--split", "test", "--num-tasks", "4",
              "--no-progress", "--output", str(run)]  # fmt: skip

    def interrupt(keep: int) -> dict[tuple, dict]:
        path = run / "trajectories.jsonl"
        lines = path.read_text().splitlines()[:keep]
        path.write_text("".join(line + "\n" for line in lines))
        return _rows(run)

    assert main(common) == 0
    first = interrupt(2)
    assert main([*common, "--resume", "--executor", "ray"]) == 0
    second = _rows(run)
    assert len(second) == 4
    for key, row in first.items():  # finished rows are kept as they were, not run again
        assert second[key]["duration_s"] == row["duration_s"]
    kept = interrupt(3)
    assert main([*common, "--resume"]) == 0
    third = _rows(run)
    assert len(third) == 4
    for key, row in kept.items():
        assert third[key]["duration_s"] == row["duration_s"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["domains"]["airline"]["tasks"] == 4
