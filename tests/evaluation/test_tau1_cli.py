"""`tau-adapters tasks`, `eval`, `score` and `report` with tau-bench v1 domains."""

from __future__ import annotations

import json

import pytest

from conftest import requires_tau2

pytest.importorskip(
    "tau_bench",
    reason="tau-bench v1 is not installed: pip install "
    '"tau_bench @ git+https://github.com/sierra-research/tau-bench@'
    '59a200c6d575d595120f1cb70fea53cef0632f6b"',
)

from tau_adapters.cli.main import main
from tau_adapters.evaluation.run_folder import read_rows

pytestmark = requires_tau2


def test_export_lists_every_split(tmp_path) -> None:
    from tau_bench.envs.retail.tasks_train import TASKS_TRAIN

    out = tmp_path / "train.jsonl"
    assert (
        main(
            ["tasks", "export", "--domain", "tau1-retail", "--split", "train", "--output", str(out)]
        )
        == 0
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == len(TASKS_TRAIN)
    assert rows[3] == {"domain": "tau1-retail", "split": "train", "task_id": "train-3"}


def test_eval_score_and_report_with_v1_and_tau2_side_by_side(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    args = ["eval", "--domain", "tau1-airline,airline", "--split", "test", "--num-tasks", "3"]
    assert main([*args, "--output", str(out), "--no-progress"]) == 0
    rows = read_rows(out / "trajectories.jsonl")
    assert len(rows) == 6
    by_benchmark = {row["domain"]: row["benchmark"] for row in rows}
    assert by_benchmark == {"tau1-airline": "tau1", "airline": "tau2"}
    assert all(row["reward"] == 1.0 for row in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tau_bench_version"].startswith("0.1.0")
    # Re-scoring with v1's rule agrees; a tampered trajectory does not.
    tampered = [dict(r) for r in rows]
    for row in tampered:
        if row["domain"] == "tau1-airline":
            row["messages"] = [m for m in row["messages"] if not m.get("tool_calls")]
    path = tmp_path / "tampered.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in tampered))
    capsys.readouterr()
    main(["score", str(out / "trajectories.jsonl")])
    assert "6 agree" in capsys.readouterr().out
    main(["score", str(path)])
    assert "3 agree" in capsys.readouterr().out
    assert main(["report", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert "tau1-airline" in json.dumps(report)


def test_unknown_v1_split_fails_at_start_up(capsys) -> None:
    code = main(["eval", "--domain", "tau1-airline", "--split", "train", "--no-progress"])
    assert code == 2
