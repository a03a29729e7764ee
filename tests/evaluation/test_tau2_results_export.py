"""`tau-adapters export RUN --format tau2`: files that tau2's own loader, metrics and viewer open."""

from __future__ import annotations

import json

import pytest

from tau_adapters.cli.main import main
from tau_adapters.errors import install_hint

from conftest import requires_tau2

pytestmark = requires_tau2


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs") / "oracle"
    args = ["eval", "--domain", "airline,retail", "--split", "test", "--num-tasks", "2"]
    assert main([*args, "--num-trials", "2", "--output", str(folder)]) == 0
    rows = [json.loads(line) for line in (folder / "trajectories.jsonl").read_text().splitlines()]
    # One episode scored 0 by tau2 and one infrastructure failure, as eval would have written them.
    airline = [i for i, row in enumerate(rows) if row["domain"] == "airline"]
    zero = rows[airline[1]]
    zero["reward"] = 0.0
    zero["reward_info"] = {**zero["reward_info"], "reward": 0.0}
    failed = rows[airline[2]]
    failed.update(status="failed", reward=0.0, reward_info=None, termination_reason="user_error")
    truncated = rows[airline[3]]
    truncated.update(status="truncated", termination_reason="token_budget")
    (folder / "trajectories.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder, rows


def test_tau2_loads_the_files_and_computes_the_same_rewards(run, tmp_path) -> None:
    from tau2.data_model.simulation import Results
    from tau2.metrics.agent_metrics import compute_metrics

    folder, rows = run
    out = tmp_path / "tau2"
    assert main(["export", str(folder), "--format", "tau2", "--output", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["airline.json", "retail.json"]
    airline = Results.load(out / "airline.json")
    retail = Results.load(out / "retail.json")
    assert len(airline.simulations) == 4 and len(retail.simulations) == 4
    assert airline.info.environment_info.domain_name == "airline"
    assert [t.id for t in airline.tasks] == sorted(
        {r["task_id"] for r in rows if r["domain"] == "airline"},
        key=[r["task_id"] for r in rows].index,
    )
    # tau2's metrics: airline rewards 1, 0, 0 (failed: tau2 counts skipped samples as 0), 1.
    assert compute_metrics(airline).avg_reward == pytest.approx(0.5)
    assert compute_metrics(retail).avg_reward == pytest.approx(1.0)
    skipped = [s.skipped for s in airline.simulations]
    assert skipped == [False, False, True, False]
    reasons = [s.termination_reason.value for s in airline.simulations]
    assert reasons == ["user_stop", "user_stop", "user_error", "max_steps"]
    first = next(r for r in rows if r["domain"] == "airline")
    assert [m.content for m in airline.simulations[0].messages] == [
        m["content"] for m in first["messages"]
    ]
    assert airline.simulations[0].trial == first["trial"]


def test_tau2_viewer_opens_the_file(run, tmp_path) -> None:
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    beside = Path(sys.executable).parent / "tau2"  # the venv's script, activated or not
    tau2 = str(beside) if beside.exists() else shutil.which("tau2")
    if tau2 is None:
        pytest.skip("the `tau2` command is not on PATH (" + install_hint("tau2") + ")")
    folder, _ = run
    out = tmp_path / "tau2"
    assert main(["export", str(folder), "--format", "tau2", "--output", str(out)]) == 0
    shown = subprocess.run(
        [tau2, "view", "--file", str(out / "retail.json")],
        input="1\n1\n2\n5\n",  # select the file, then its metrics, then exit
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    assert "Average Reward: 1.0000" in shown.stdout


def test_bad_outputs_exit_2(run, tmp_path, capsys) -> None:
    folder, _ = run
    a_file = tmp_path / "f.json"
    a_file.write_text("x")
    assert main(["export", str(folder), "--format", "tau2", "--output", str(a_file)]) == 2
    assert "is a file" in capsys.readouterr().err
    out = tmp_path / "t"
    assert main(["export", str(folder), "--format", "tau2", "--output", str(out)]) == 0
    before = (out / "airline.json").read_text()
    assert main(["export", str(folder), "--format", "tau2", "--output", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "airline.json").read_text() == before
