"""Reports people read (issue 26): comparisons of runs with long names, natural task order,
a plot that names its run and says when there is nothing to draw."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tau_adapters.evaluation.report import build_report, compare, pass_hat_k_figure, task_order

ROOT = Path(__file__).resolve().parents[2]


def _row(task: str, reward: float, *, domain: str = "airline", status: str = "completed") -> dict:
    return {"domain": domain, "split": "test", "task_id": task, "trial": 0, "status": status,
            "termination_reason": "user_stop", "reward": reward, "messages": []}  # fmt: skip


def test_task_ids_sort_naturally() -> None:
    ids = ["49", "5", "51", "10", "task_10", "task_9"]
    assert sorted(ids, key=task_order) == ["5", "10", "49", "51", "task_9", "task_10"]
    comparison = compare([_row(t, 1.0) for t in ("5", "49")], [_row(t, 1.0) for t in ("51",)])
    assert comparison["domains"]["airline"]["tasks"].keys() == {"5", "49", "51"}
    assert list(comparison["domains"]["airline"]["tasks"]) == ["5", "49", "51"]
    assert comparison["flipped"]["airline"]["only_in_a"] == ["5", "49"]


def test_compare_of_long_run_names_keeps_columns_and_cuts_long_lists(tmp_path) -> None:
    a, b = tmp_path / "step100" / "eval", tmp_path / "step200" / "eval"
    for run, ids in ((a, range(0, 45)), (b, range(45, 50))):
        run.mkdir(parents=True)
        rows = [_row(str(i), 1.0) for i in ids]
        (run / "trajectories.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    result = subprocess.run(
        [sys.executable, "-m", "tau_adapters.cli.main", "report", str(a), str(b), "--output",
         str(tmp_path)], capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"A = {a}" in out and f"B = {b}" in out
    table = [line for line in out.splitlines() if line.startswith(("│", "┃"))]
    assert any("airline" in line for line in table)  # not squeezed to "ai..."
    assert any(" k " in f" {line} " or "┃ k" in line for line in table)  # the k column stays
    listed = next(line for line in out.splitlines() if "only in A (45)" in line)
    assert "0, 1, 2" in listed and "and 33 more (all in comparison.json)" in listed
    saved = json.loads((tmp_path / "comparison.json").read_text())
    assert len(saved["flipped"]["airline"]["only_in_a"]) == 45


def test_plot_names_its_run_says_partial_and_explains_an_empty_plot() -> None:
    pytest.importorskip("matplotlib", reason="the plot needs matplotlib")
    rows = [_row(str(i), 0.0, status="failed") for i in range(3)]
    report = build_report(rows, bootstrap=0)
    report["partial"] = {"reason": "interrupted", "episodes": 3, "planned_episodes": 10}
    figure = pass_hat_k_figure(report, run="runs/step100/eval")
    (axes,) = figure.axes
    title = axes.get_title()
    assert "runs/step100/eval" in title and "PARTIAL RUN: 3 of 10 episodes" in title
    texts = [t.get_text() for t in axes.texts]
    assert any("nothing to plot: 3 failed" in t for t in texts), texts
