"""`tau_adapters.evaluation.report` and `tau-adapters report` on constructed rows (no tau2 needed)."""

from __future__ import annotations

import json
import struct
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tau_adapters.cli.main import main
from tau_adapters.errors import ConfigError
from tau_adapters.evaluation.metrics import is_success
from tau_adapters.evaluation.report import (
    build_report,
    compare,
    plot_pass_hat_k,
    print_comparison,
    print_report,
    write_report,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_row(
    domain: str,
    task_id: str,
    trial: int,
    reward: float | None,
    *,
    termination: str = "agent_stop",
    status: str = "completed",
    error: str | None = None,
    duration_s: float = 1.0,
    usage: dict[str, Any] | None = None,
    **counts: int,
) -> dict[str, Any]:
    """A row shaped like the ones `tau-adapters eval` writes."""
    row: dict[str, Any] = {
        "domain": domain,
        "split": "test",
        "task_id": task_id,
        "trial": trial,
        "seed": trial,
        "status": status,
        "termination_reason": termination,
        "reward": reward,
        "error": error,
        "duration_s": duration_s,
        "counts": {"steps": 4, "agent_turns": 2, "user_turns": 2, "tool_calls": 1, **counts},
        "messages": [],
    }
    if usage is not None:
        row["usage"] = usage
    return row


def rows_from(outcomes: dict[str, dict[str, list[int]]]) -> list[dict[str, Any]]:
    """{domain: {task_id: [1, 0, 1]}} -> rows, one per trial, reward 1.0 or 0.0."""
    return [
        make_row(domain, task, trial, float(hit))
        for domain, tasks in outcomes.items()
        for task, hits in tasks.items()
        for trial, hit in enumerate(hits)
    ]


def counts_of(rows: list[dict[str, Any]], domain: str) -> list[tuple[int, int]]:
    per_task: dict[str, list[bool]] = defaultdict(list)
    for row in rows:
        if row["domain"] == domain:
            per_task[row["task_id"]].append(is_success(row["reward"] or 0.0))
    return [(len(h), sum(h)) for h in per_task.values()]


MIXED = {
    "airline": {
        "a1": [1, 1, 1],
        "a2": [1, 0, 1],
        "a3": [0, 0, 1],
        "a4": [0, 0, 0],
        "a5": [1, 1, 0],
    },
    "retail": {"r1": [1, 1, 1, 1], "r2": [0, 1, 1], "r3": [1, 0, 0]},
}


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    return struct.unpack(">II", data[16:24])


# --------------------------------------------------------------------------- pass^k and CIs


# pass^k = mean over tasks of C(c, k) / C(n, k); pass@k = mean of 1 - C(n - c, k) / C(n, k), with n
# the task's trials and c its successes, worked out by hand for MIXED (k = 1, 2, 3):
# airline (n, c) = (3,3) (3,2) (3,1) (3,0) (3,2): pass^2 = (1 + 1/3 + 0 + 0 + 1/3) / 5 = 1/3,
#   pass@2 = (1 + 1 + 2/3 + 0 + 1) / 5 = 11/15; pass^3 = 1/5, pass@3 = 4/5.
# retail (4,4) (3,2) (3,1): pass^2 = (1 + 1/3 + 0) / 3 = 4/9, pass@2 = (1 + 1 + 2/3) / 3 = 8/9;
#   pass^3 = 1/3, pass@3 = 1.
MIXED_BY_HAND = {
    "airline": {"pass_hat_k": [8 / 15, 1 / 3, 1 / 5], "pass_at_k": [8 / 15, 11 / 15, 4 / 5]},
    "retail": {"pass_hat_k": [2 / 3, 4 / 9, 1 / 3], "pass_at_k": [2 / 3, 8 / 9, 1.0]},
}


def test_point_values_match_metrics_and_cis_contain_them() -> None:
    rows = rows_from(MIXED)
    report = build_report(rows, bootstrap=500, seed=1)
    assert set(report["domains"]) == {"airline", "retail"}
    for domain, block in report["domains"].items():
        counts = counts_of(rows, domain)
        assert block["tasks"] == len(counts)
        assert block["trials"] == min(n for n, _ in counts)
        assert block["episodes"] == sum(n for n, _ in counts)
        assert set(block["pass_hat_k"]) == {str(k) for k in range(1, block["trials"] + 1)}
        for k in range(1, block["trials"] + 1):
            for name in ("pass_hat_k", "pass_at_k"):
                entry = block[name][str(k)]
                assert entry["value"] == pytest.approx(MIXED_BY_HAND[domain][name][k - 1])
                low, high = entry["ci"]
                assert 0.0 <= low <= entry["value"] <= high <= 1.0
    assert report["domains"]["airline"]["trials"] == 3
    assert report["domains"]["retail"]["trials"] == 3
    assert report["domains"]["airline"]["avg_reward"] == pytest.approx(8 / 15)


def test_overall_pools_tasks_of_all_domains() -> None:
    rows = rows_from({"airline": {"t1": [1, 1], "t2": [0, 0]}, "retail": {"t1": [1, 0]}})
    overall = build_report(rows, bootstrap=200)["overall"]
    assert overall["tasks"] == 3  # airline/t1 and retail/t1 stay apart
    assert overall["episodes"] == 6
    assert overall["trials"] == 2
    # (n, c) = (2, 2), (2, 0), (2, 1): pass^1 = pass@1 = 1/2, pass^2 = 1/3, pass@2 = 2/3.
    for k, hat, at in ((1, 1 / 2, 1 / 2), (2, 1 / 3, 2 / 3)):
        assert overall["pass_hat_k"][str(k)]["value"] == pytest.approx(hat)
        assert overall["pass_at_k"][str(k)]["value"] == pytest.approx(at)
    assert overall["failures"]["statuses"] == {"completed": 6}


def test_ci_is_deterministic_with_a_seed_and_moves_with_another() -> None:
    rows = rows_from(MIXED)
    first = build_report(rows, bootstrap=300, seed=7)
    assert build_report(rows, bootstrap=300, seed=7) == first
    other = build_report(rows, bootstrap=300, seed=8)
    assert other["domains"]["airline"]["pass_hat_k"] != first["domains"]["airline"]["pass_hat_k"]


def test_ci_narrows_with_more_tasks() -> None:
    pattern = [[1, 1], [1, 0], [0, 0], [1, 1]]

    def width(copies: int) -> float:
        tasks = {f"t{i}-{j}": hits for i in range(copies) for j, hits in enumerate(pattern)}
        block = build_report(rows_from({"d": tasks}), bootstrap=2000, seed=0)["domains"]["d"]
        low, high = block["pass_hat_k"]["1"]["ci"]
        return high - low

    widths = [width(copies) for copies in (2, 8, 32)]
    assert widths[0] >= widths[1] >= widths[2]
    assert widths[2] < widths[0]


def test_degenerate_cases() -> None:
    all_pass = build_report(rows_from({"d": {"t1": [1, 1], "t2": [1, 1]}}))["domains"]["d"]
    assert all_pass["pass_hat_k"]["2"] == {"value": 1.0, "ci": [1.0, 1.0]}
    one_task = build_report(rows_from({"d": {"t1": [1, 0, 1]}}))["domains"]["d"]
    value = one_task["pass_hat_k"]["1"]["value"]
    assert value == pytest.approx(2 / 3)
    low, high = one_task["pass_hat_k"]["1"]["ci"]
    assert low <= value <= high and high - low < 1e-9
    no_ci = build_report(rows_from(MIXED), bootstrap=0)["domains"]["retail"]
    assert no_ci["pass_hat_k"]["1"]["ci"] is None
    assert build_report([]) == {
        "provenance": {
            "benchmark_versions": [],
            "task_sets": [],
            "gradings": [],
            "official": True,
        },
        "domains": {},
        "overall": None,
        "user": {"fingerprints": {}, "cache": None, "user_side": {}, "warnings": []},
        "bootstrap": {"resamples": 1000, "seed": 0, "confidence": 0.95, "unit": "task"},
    }


def test_null_reward_counts_as_failure() -> None:
    # A scored episode with a null reward is a zero; a *failed* one is not scored at all.
    rows = [make_row("d", "t1", 0, None), make_row("d", "t1", 1, 1.0)]
    block = build_report(rows)["domains"]["d"]
    assert block["pass_hat_k"]["1"]["value"] == pytest.approx(0.5)
    assert block["avg_reward"] == pytest.approx(0.5)


@pytest.mark.parametrize("key", ["domain", "task_id", "reward", "status"])
def test_missing_key_fields_raise_config_error(key: str) -> None:
    rows = rows_from(MIXED)
    del rows[3][key]
    with pytest.raises(ConfigError, match=rf"row 4 .*missing '{key}'"):
        build_report(rows)
    with pytest.raises(ConfigError, match=f"'{key}'"):
        compare(rows_from(MIXED), rows)


def test_bad_reward_and_options_raise_config_error() -> None:
    rows = rows_from(MIXED)
    rows[0]["reward"] = "1.0"
    with pytest.raises(ConfigError, match="reward must be a number"):
        build_report(rows)
    with pytest.raises(ConfigError, match="confidence"):
        build_report(rows_from(MIXED), confidence=1.5)


# --------------------------------------------------------------------------- failures


def failure_rows() -> list[dict[str, Any]]:
    long_error = "E" * 300
    return [
        make_row("d", "t1", 0, 1.0, tool_errors=2, rejected_turns=0, response_tokens=100),
        make_row("d", "t1", 1, 0.0, tool_errors=0, rejected_turns=3, response_tokens=300),
        make_row(
            "d",
            "t2",
            0,
            0.0,
            termination="user_error",
            status="failed",
            error="user simulator crashed",
            tool_errors=1,
            rejected_turns=1,
            usage={"user": {"prompt_tokens": 10, "completion_tokens": 5, "cost": 0.02}},
        ),
        make_row(
            "d",
            "t2",
            1,
            0.0,
            termination="agent_error",
            status="failed",
            error="user simulator crashed",
            usage={"user": {"prompt_tokens": 20, "completion_tokens": 7, "cost": 0.04}},
        ),
        make_row(
            "d",
            "t3",
            0,
            0.0,
            termination="agent_error",
            status="failed",
            error=long_error,
            duration_s=4.0,
        ),
        make_row("d", "t3", 1, 0.0, termination="max_steps", status="truncated", agent_turns=7),
    ]


def test_failure_breakdown_matches_hand_counts() -> None:
    failures = build_report(failure_rows())["domains"]["d"]["failures"]
    assert failures["terminations"] == {
        "agent_stop": 2,
        "user_error": 1,
        "agent_error": 2,
        "max_steps": 1,
    }
    assert failures["statuses"] == {"completed": 2, "failed": 3, "truncated": 1}
    assert failures["tool_errors"] == {"total": 3, "episodes_with_any": 2}
    assert failures["parse_errors"] == {"total": 4, "episodes_with_any": 2}
    assert failures["user_simulator_errors"] == 1
    assert failures["failed_episodes"] == {
        "count": 3,
        "top_errors": [
            {"error": "user simulator crashed", "count": 2},
            {"error": "E" * 200, "count": 1},
        ],
    }
    assert failures["avg_agent_turns"] == pytest.approx((2 * 5 + 7) / 6)
    assert failures["avg_response_tokens"] == pytest.approx(200.0)
    assert failures["avg_duration_s"] == pytest.approx((5 * 1.0 + 4.0) / 6)
    assert failures["avg_user_cost"] == pytest.approx(0.03)
    assert failures["total_user_tokens"] == 42


def test_failure_breakdown_without_optional_fields() -> None:
    rows = rows_from({"d": {"t1": [1, 0]}})
    for row in rows:
        del row["duration_s"]
    failures = build_report(rows)["domains"]["d"]["failures"]
    assert failures["avg_response_tokens"] is None
    assert failures["avg_duration_s"] is None
    assert failures["avg_user_cost"] is None
    assert failures["total_user_tokens"] is None
    assert failures["failed_episodes"] == {"count": 0, "top_errors": []}


def test_top_errors_keep_five() -> None:
    rows = [
        make_row("d", f"t{i}", 0, 0.0, status="failed", error=f"error {i % 7}") for i in range(21)
    ]
    top = build_report(rows)["domains"]["d"]["failures"]["failed_episodes"]["top_errors"]
    assert len(top) == 5
    assert all(entry["count"] == 3 for entry in top)


# --------------------------------------------------------------------------- plot


@pytest.mark.parametrize(("width", "height", "dpi"), [(800, 500, 100), (643, 381, 72)])
def test_plot_is_a_png_of_exact_size(tmp_path: Path, width: int, height: int, dpi: int) -> None:
    report = build_report(rows_from(MIXED), bootstrap=100)
    path = plot_pass_hat_k(
        report, tmp_path / "sub" / "plot.png", width_px=width, height_px=height, dpi=dpi
    )
    assert path == tmp_path / "sub" / "plot.png"
    assert path.is_file()
    assert png_size(path) == (width, height)


def test_plot_without_matplotlib_says_how_to_install(tmp_path: Path, monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(ConfigError, match="pip install matplotlib"):
        plot_pass_hat_k(build_report(rows_from(MIXED)), tmp_path / "p.png")


# --------------------------------------------------------------------------- comparison


RUN_A = {
    "airline": {"fixme": [0, 0, 1], "breakme": [1, 1, 0], "stable": [1, 1, 1], "gone": [1, 1, 1]},
    "retail": {"r1": [1, 0, 0]},
}
RUN_B = {
    "airline": {"fixme": [1, 1, 0], "breakme": [0, 0, 1], "stable": [1, 1, 1], "new": [0, 0, 0]},
    "telecom": {"x1": [1, 1]},
}


def test_compare_lists_flips_and_deltas() -> None:
    rows_a, rows_b = rows_from(RUN_A), rows_from(RUN_B)
    result = compare(rows_a, rows_b, label_a="base", label_b="tuned")
    assert result["labels"] == {"a": "base", "b": "tuned"}
    assert set(result["domains"]) == {"airline", "retail", "telecom"}
    assert result["flipped"]["airline"] == {
        "fixed": ["fixme"],
        "broken": ["breakme"],
        "only_in_a": ["gone"],
        "only_in_b": ["new"],
    }
    assert result["flipped"]["retail"] == {
        "fixed": [],
        "broken": [],
        "only_in_a": ["r1"],
        "only_in_b": [],
    }
    assert result["flipped"]["telecom"]["only_in_b"] == ["x1"]

    airline = result["domains"]["airline"]
    assert airline["k"] == 3
    reward_a, reward_b = 9 / 12, 6 / 12
    assert airline["avg_reward"]["a"] == pytest.approx(reward_a)
    assert airline["avg_reward"]["b"] == pytest.approx(reward_b)
    assert airline["avg_reward"]["delta"] == pytest.approx(reward_b - reward_a)
    # By hand: run A's airline tasks succeed 1, 2, 3, 3 times out of 3, run B's 2, 1, 3, 0.
    for key, a, b in (("pass_hat_1", 3 / 4, 1 / 2), ("pass_hat_k", 1 / 2, 1 / 4)):
        assert airline[key]["a"] == pytest.approx(a)
        assert airline[key]["b"] == pytest.approx(b)
        assert airline[key]["delta"] == pytest.approx(b - a)
    assert airline["tasks"]["fixme"]["a"] == pytest.approx(1 / 3)
    assert airline["tasks"]["fixme"]["b"] == pytest.approx(2 / 3)
    assert airline["tasks"]["gone"] == {"a": 1.0, "b": None, "delta": None}

    retail = result["domains"]["retail"]
    assert retail["k"] is None
    assert retail["avg_reward"]["b"] is None and retail["avg_reward"]["delta"] is None
    assert retail["pass_hat_k"] == {"a": None, "b": None, "delta": None}


def test_compare_uses_largest_common_k() -> None:
    rows_a = rows_from({"d": {"t": [1, 1, 1, 1]}})
    rows_b = rows_from({"d": {"t": [1, 1]}})
    assert compare(rows_a, rows_b)["domains"]["d"]["k"] == 2


def test_exactly_half_passing_counts_as_passing() -> None:
    result = compare(rows_from({"d": {"t": [0, 0]}}), rows_from({"d": {"t": [1, 0]}}))
    assert result["flipped"]["d"]["fixed"] == ["t"]


# --------------------------------------------------------------------------- printing


def test_print_report_and_comparison(tmp_path: Path) -> None:
    from rich.console import Console

    console = Console(record=True, width=250)
    print_report(build_report(failure_rows() + rows_from(MIXED), bootstrap=100, seed=3), console)
    text = console.export_text()
    assert "pass^1" in text and "airline" in text and "overall" in text
    assert "user simulator crashed" in text
    report = build_report(rows_from({"d": {"t1": [1, 1], "t2": [1, 0]}}), bootstrap=50)
    value = report["domains"]["d"]["pass_hat_k"]["1"]
    console = Console(record=True, width=250)
    print_report(report, console)
    low, high = value["ci"]
    assert f"{value['value']:.3f} [{low:.2f}, {high:.2f}]" in console.export_text()

    console = Console(record=True, width=250)
    print_comparison(compare(rows_from(RUN_A), rows_from(RUN_B), label_a="A", label_b="B"), console)
    text = console.export_text()
    assert "fixed (1): fixme" in text
    assert "broken (1): breakme" in text
    assert "only in A (1): gone" in text
    assert "only in B (1): new" in text


# --------------------------------------------------------------------------- files and CLI


def write_run(directory: Path, outcomes: dict[str, dict[str, list[int]]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "trajectories.jsonl").open("w", encoding="utf-8") as stream:
        for row in rows_from(outcomes):
            stream.write(json.dumps(row) + "\n")
    return directory


def test_write_report_writes_both_files(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", MIXED)
    report = write_report(run)
    assert json.loads((run / "report.json").read_text()) == report
    assert png_size(run / "pass_hat_k.png") == (800, 500)


def test_write_report_names_a_bad_line(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", MIXED)
    with (run / "trajectories.jsonl").open("a") as stream:
        stream.write("{not json\n")
    with pytest.raises(ConfigError, match=r"trajectories.jsonl:26"):
        write_report(run)


def test_cli_report_one_run(tmp_path: Path, capsys) -> None:
    run = write_run(tmp_path / "run", MIXED)
    assert main(["report", str(run)]) == 0
    assert (run / "report.json").is_file()
    assert png_size(run / "pass_hat_k.png") == (800, 500)
    out = capsys.readouterr().out
    assert "pass^3" in out
    assert str(run / "report.json") in out


def test_cli_report_compares_two_runs(tmp_path: Path, capsys, monkeypatch) -> None:
    run_a = write_run(tmp_path / "a", RUN_A)
    run_b = write_run(tmp_path / "b", RUN_B)
    monkeypatch.chdir(tmp_path)  # the comparison goes to the current folder, not into run B
    assert main(["report", str(run_a), str(run_b)]) == 0
    assert not (run_b / "comparison.json").exists()
    comparison = json.loads((tmp_path / "comparison.json").read_text())
    assert comparison["flipped"]["airline"]["fixed"] == ["fixme"]
    out = capsys.readouterr().out
    assert "fixme" in out and "breakme" in out

    elsewhere = tmp_path / "cmp"
    assert main(["report", str(run_a), str(run_b), "--output", str(elsewhere)]) == 0
    assert json.loads((elsewhere / "comparison.json").read_text()) == comparison


def test_cli_report_bad_usage_exits_2(tmp_path: Path, capsys) -> None:
    run = write_run(tmp_path / "run", MIXED)
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "trajectories.jsonl" in capsys.readouterr().err
    assert main(["report", str(run), str(tmp_path / "missing")]) == 2
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:  # argparse: RUN [OTHER], a third is refused
        main(["report", str(run), str(run), str(run)])
    assert exc.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err
