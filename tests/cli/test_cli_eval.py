"""`tau-adapters eval` and `score` end to end, and what an interrupted run leaves behind."""

from __future__ import annotations

import asyncio
import json

import pytest

from tau_adapters.agents.oracle import OraclePolicy
from tau_adapters.cli.main import main
from tau_adapters.config import EpisodeConfig
from tau_adapters.evaluation.run import evaluate
from tau_adapters.evaluation.run_folder import read_rows
from tau_adapters.plugins import hookimpl, plugin_manager

from conftest import requires_tau2

pytestmark = requires_tau2

ROW_KEYS = {
    "domain",
    "split",
    "task_id",
    "trial",
    "reward",
    "reward_info",
    "termination_reason",
    "messages",
    "seed",
    "duration_s",
    "status",
}


def test_eval_writes_trajectories_and_summary(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    code = main(
        [
            "eval",
            "--domain",
            "airline,telecom",
            "--split",
            "test",
            "--num-trials",
            "2",
            "--num-tasks",
            "3",
            "--concurrency",
            "4",
            "--output",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    rows = read_rows(out / "trajectories.jsonl")
    assert len(rows) == 2 * 3 * 2
    for row in rows:
        assert set(row) >= ROW_KEYS
        assert row["reward"] == 1.0 and row["reward_info"]["reward"] == 1.0
    summary = json.loads((out / "summary.json").read_text())
    airline = summary["domains"]["airline"]
    assert airline["tasks"] == 3 and airline["trials"] == 2
    assert airline["pass_hat_k"] == {"1": 1.0, "2": 1.0}
    assert airline["pass_at_k"] == {"1": 1.0, "2": 1.0}
    assert airline["terminations"] == {"user_stop": 6}
    assert summary["config"]["num_trials"] == 2 and summary["partial"] is False
    printed = capsys.readouterr().out
    assert "pass^2" in printed and "pass@2" in printed


def test_saved_messages_rebuild_a_tau2_simulation_and_rescore(tmp_path, tau2_api) -> None:
    out = tmp_path / "run"
    assert (
        main(
            [
                "eval",
                "--domain",
                "retail",
                "--split",
                "test",
                "--num-tasks",
                "2",
                "--output",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    row = read_rows(out / "trajectories.jsonl")[0]
    simulation = tau2_api.SimulationRun.model_validate(
        {
            "id": "x",
            "task_id": row["task_id"],
            "start_time": "",
            "end_time": "",
            "duration": row["duration_s"],
            "termination_reason": row["termination_reason"],
            "messages": row["messages"],
        }
    )
    assert len(simulation.messages) == len(row["messages"])
    rescored = tmp_path / "rescored.jsonl"
    assert main(["score", str(out / "trajectories.jsonl"), "--output", str(rescored)]) == 0
    again = read_rows(rescored)
    assert [r["reward"] for r in again] == [1.0, 1.0]
    assert all(r["agrees"] for r in again)


class _SlowOracle(OraclePolicy):
    async def act(self, observation):
        await asyncio.sleep(0.01)
        return await super().act(observation)


class _SlowPlugin:
    @hookimpl
    def register_policies(self):
        return {"slow-oracle": lambda arg, config: _SlowOracle()}


@pytest.fixture
def slow_policy():
    pm = plugin_manager()
    plugin = _SlowPlugin()
    pm.register(plugin, name="test-slow")
    yield "slow-oracle"
    pm.unregister(plugin)


def test_interrupted_eval_leaves_valid_jsonl_and_partial_summary(tmp_path, slow_policy) -> None:
    out = tmp_path / "run"
    config = EpisodeConfig.build(domain="airline", policy=slow_policy)

    async def interrupted():
        task = asyncio.ensure_future(
            evaluate(["airline"], config, output=out, concurrency=2, show_progress=False)
        )
        path = out / "trajectories.jsonl"
        while not (path.exists() and path.read_text().count("\n") >= 3):
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(interrupted())
    rows = read_rows(out / "trajectories.jsonl")  # raises on any broken line
    assert 3 <= len(rows) < 50
    summary = json.loads((out / "summary.json").read_text())
    assert summary["partial"] is True
    assert summary["episodes"] == len(rows)


def test_tasks_export_rows(tmp_path) -> None:
    path = tmp_path / "tasks.jsonl"
    assert (
        main(
            [
                "tasks",
                "export",
                "--domain",
                "airline,telecom_small",
                "--split",
                "test",
                "--output",
                str(path),
            ]
        )
        == 2
    )  # telecom_small fixes split 'small'
    assert (
        main(
            [
                "tasks",
                "export",
                "--domain",
                "airline,retail",
                "--split",
                "test",
                "--output",
                str(path),
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 20 + 40
    assert rows[0] == {"domain": "airline", "split": "test", "task_id": rows[0]["task_id"]}
    assert {r["domain"] for r in rows} == {"airline", "retail"}
