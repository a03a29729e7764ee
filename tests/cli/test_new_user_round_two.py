"""Issue 26, the first hour round two: each fault a new user hit, run as they ran it (the real
`tau-adapters` command in a subprocess, real HTTP servers on loopback)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import requires_tau2

ROOT = Path(__file__).resolve().parents[2]
pytestmark = requires_tau2


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("TAU_ADAPTERS_") or k.startswith("TAU2_"))
        or k in ("TAU_ADAPTERS_TEST_ASSETS", "TAU_ADAPTERS_SHARED")
    }
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def cli(*args: str, cwd: Path | None = None, timeout: float = 300, **env: str):
    """``tau-adapters ARGS`` as a user runs it; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "tau_adapters.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=_env(**env),
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mock_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "mock"
    result = cli("eval", "--domain", "mock", "--no-progress", "--output", str(run))
    assert result.returncode == 0, result.stderr
    return run


def _copy_run(run: Path, dest: Path, rows: list[dict] | None = None) -> Path:
    dest.mkdir(parents=True)
    for name in ("trajectories.jsonl", "summary.json"):
        (dest / name).write_bytes((run / name).read_bytes())
    if rows is not None:
        (dest / "trajectories.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return dest


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "trajectories.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------- silently wrong/lost


def test_resume_refuses_other_settings_and_a_missing_folder(mock_run, tmp_path) -> None:
    run = _copy_run(mock_run, tmp_path / "run")
    before = (run / "trajectories.jsonl").read_bytes()
    steps = cli("eval", "--domain", "mock", "--output", str(run), "--resume", "--no-progress",
                "--num-trials", "4", "--max-steps", "3")  # fmt: skip
    assert steps.returncode == 2, steps.stderr
    assert "max_steps: run 200, now 3" in steps.stderr
    assert "num_trials: run 1, now 4" in steps.stderr
    other = cli("eval", "--domain", "airline", "--num-tasks", "2", "--output", str(run),
                "--resume")  # fmt: skip
    assert other.returncode == 2 and "domains: run ['mock'], now ['airline']" in other.stderr
    assert (run / "trajectories.jsonl").read_bytes() == before  # nothing was run or rewritten
    same = cli(
        "eval",
        "--domain",
        "mock",
        "--output",
        str(run),
        "--resume",
        "--no-progress",
        "--concurrency",
        "3",
    )  # fmt: skip  (concurrency changes no result)
    assert same.returncode == 0, same.stderr
    missing = tmp_path / "never-ran"
    gone = cli("eval", "--domain", "mock", "--output", str(missing), "--resume")
    assert gone.returncode == 2 and "not a run folder" in gone.stderr
    assert not missing.exists()


def test_report_and_score_apply_one_duplicate_rule(mock_run, tmp_path) -> None:
    rows = _rows(mock_run)[:5]
    run = _copy_run(mock_run, tmp_path / "dup", rows + rows)  # every row twice, trial 0
    for args in (["report", str(run)], ["score", str(run / "trajectories.jsonl")]):
        result = cli(*args)
        assert result.returncode == 2, (args, result.stdout)
        assert "lines 1 and 6 are the same episode" in result.stderr, args


def test_outputs_never_replace_the_input_or_an_existing_file(mock_run, tmp_path) -> None:
    source = _copy_run(mock_run, tmp_path / "run") / "trajectories.jsonl"
    before = source.read_bytes()
    same = cli("score", str(source), "--output", str(source), "--overwrite")
    assert same.returncode == 2 and "is the input file" in same.stderr
    assert source.read_bytes() == before  # the transcripts are still there
    existing = tmp_path / "existing.jsonl"
    existing.write_text("keep me\n")
    for args in (
        ["score", str(source), "--output", str(existing)],
        ["tasks", "export", "--domain", "mock", "--output", str(existing)],
    ):
        result = cli(*args)
        assert result.returncode == 2 and "--overwrite" in result.stderr, args
        assert existing.read_text() == "keep me\n"
    assert cli("tasks", "export", "--domain", "mock", "--output", str(existing),
               "--overwrite").returncode == 0  # fmt: skip
    assert len(existing.read_text().splitlines()) == 9  # tau2's mock base split: 9 tasks
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary behind
    warm = cli("export", str(source.parent), "--output", str(source), "--overwrite")
    assert warm.returncode == 2 and "is an input file" in warm.stderr
    assert source.read_bytes() == before


def test_unknown_status_negative_wait_and_check_tokens_without_tokens(mock_run, tmp_path) -> None:
    status = cli("export", str(mock_run), "--output", str(tmp_path / "x.jsonl"), "--status",
                 "finished")  # fmt: skip
    assert status.returncode == 2 and "unknown status finished" in status.stderr
    assert "completed, truncated, aborted, failed" in status.stderr
    assert not (tmp_path / "x.jsonl").exists()
    wait = cli("eval", "--domain", "mock", "--wait-ready", "-5", "--output", str(tmp_path / "w"))
    assert wait.returncode == 2 and "0 or more seconds" in wait.stderr
    check = cli("eval", "--domain", "mock", "--check-tokens", "--output", str(tmp_path / "c"))
    assert check.returncode == 2 and "--check-tokens" in check.stderr
    assert "keeps no token ids" in check.stderr and not (tmp_path / "c").exists()


def test_summary_of_a_multi_domain_run_records_its_domains(tmp_path) -> None:
    run = tmp_path / "two"
    result = cli("eval", "--domain", "mock,airline", "--num-tasks", "1", "--no-progress",
                 "--output", str(run))  # fmt: skip
    assert result.returncode == 0, result.stderr
    config = json.loads((run / "summary.json").read_text())["config"]
    assert config["domains"] == ["mock", "airline"]
    assert "domain" not in config  # one domain would be a lie


# --------------------------------------------------------------------------- hangs


def test_absurd_concurrency_is_refused(tmp_path) -> None:
    result = cli("eval", "--domain", "mock", "--concurrency", "100000", "--output",
                 str(tmp_path / "r"))  # fmt: skip
    assert result.returncode == 2 and "at most 4096" in result.stderr


def test_a_huge_plan_starts_at_once_and_answers_ctrl_c(tmp_path) -> None:
    run = tmp_path / "huge"
    process = subprocess.Popen(
        [sys.executable, "-m", "tau_adapters.cli.main", "eval", "--domain", "mock",
         "--num-trials", "100000", "--concurrency", "4096", "--no-progress", "--output", str(run)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        rows = 0
        while time.monotonic() < deadline and rows < 500:
            time.sleep(0.5)
            path = run / "trajectories.jsonl"
            rows = len(path.read_bytes().splitlines()) if path.exists() else 0
        assert rows >= 500, "rows did not start flowing"  # 900,000 planned, none listed first
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=30)
        answered = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 130, process.stderr.read()[-2000:]
    assert answered < 5.0, f"Ctrl-C took {answered:.1f} s"  # ~0.3 s alone; this box is shared
    summary = json.loads((run / "summary.json").read_text())
    assert summary["partial"] is True and summary["planned_episodes"] == 900_000


def test_dead_ray_address_exits_2_in_bounded_time(tmp_path) -> None:
    port = _free_port()  # nothing listens there
    started = time.monotonic()
    result = cli("eval", "--domain", "mock", "--executor", "ray", "--address",
                 f"127.0.0.1:{port}", "--output", str(tmp_path / "r"), timeout=60)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert f"--address '127.0.0.1:{port}'" in result.stderr and "no Ray cluster" in result.stderr
    assert time.monotonic() - started < 30


# --------------------------------------------------------------------------- tracebacks


def test_bad_bytes_and_bad_rewards_exit_2_naming_file_and_line(mock_run, tmp_path) -> None:
    run = _copy_run(mock_run, tmp_path / "latin")
    lines = (run / "trajectories.jsonl").read_bytes().splitlines()
    lines[2] = lines[2].replace(b'"messages"', b'"m\xe9ssages"', 1)
    (run / "trajectories.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    for args in (["score", str(run / "trajectories.jsonl")], ["report", str(run)]):
        result = cli(*args)
        assert result.returncode == 2 and "Traceback" not in result.stderr, args
        assert f"{run / 'trajectories.jsonl'}:3: not UTF-8" in result.stderr, args
    rows = _rows(mock_run)
    rows[1]["reward"] = "abc"
    bad = _copy_run(mock_run, tmp_path / "abc", rows)
    out = tmp_path / "out.jsonl"
    for args in (["score", str(bad / "trajectories.jsonl")], ["export", str(bad), "--output",
                                                              str(out)]):  # fmt: skip
        result = cli(*args)
        assert result.returncode == 2 and "Traceback" not in result.stderr, args
        assert ":2: reward 'abc' is not a number" in result.stderr, args


def test_loopback_port_out_of_range_exits_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tau_adapters.testing", "--port", "70000"],
        capture_output=True, text=True, timeout=120, env=_env(),
    )  # fmt: skip
    assert result.returncode == 2 and "0-65535" in result.stderr
    assert "Traceback" not in result.stderr


def test_areal_adapter_without_areal_says_what_to_install() -> None:
    code = "import tau_adapters.areal"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, env=_env())  # fmt: skip
    try:
        import areal  # noqa: F401
    except ImportError:
        assert result.returncode != 0
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("ImportError: tau_adapters.areal needs AReaL"), last
        assert "adapters/areal/README.md" in last
    else:  # pragma: no cover - AReaL present: the import works
        assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------- late or misleading


def test_url_without_scheme_and_openai_without_v1_say_the_fix(tmp_path) -> None:
    result = cli("eval", "--domain", "mock", "--policy", "sglang:127.0.0.1:30000", "--user",
                 "scripted", "--output", str(tmp_path / "a"))  # fmt: skip
    assert result.returncode == 2 and "sglang:http://127.0.0.1:30000" in result.stderr
    pytest.importorskip("torch", reason="the loopback engine needs torch (testing extra)")
    from tau_adapters.testing import LoopbackEngine

    with LoopbackEngine() as engine:  # a real OpenAI-compatible server, API under /v1
        result = cli("eval", "--domain", "mock", "--policy", f"openai:{engine.url}",
                     "--user", "scripted", "--model", "tiny", "--output", str(tmp_path / "b"))  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "GET /models -> HTTP 404" in result.stderr
    assert f"try openai:{engine.url}/v1" in result.stderr


def test_env_errors_offer_only_user_settings(tmp_path) -> None:
    result = cli("eval", "--domain", "mock", "--output", str(tmp_path / "r"),
                 TAU_ADAPTERS_MAX_STEP="3")  # fmt: skip
    assert result.returncode == 2 and "did you mean TAU_ADAPTERS_MAX_STEPS" in result.stderr
    listed = result.stderr.split("valid TAU_ADAPTERS_* names:")[1]
    assert "TAU_ADAPTERS_MAX_STEPS" in listed and "TAU_ADAPTERS_CPU_THREADS" in listed
    for internal in ("TAU_ADAPTERS_SHARED", "TAU_ADAPTERS_TEST_ASSETS",
                     "TAU_ADAPTERS_REQUIRE_THUNDERAGENT", "TAU_ADAPTERS_TAU1_PARITY"):  # fmt: skip
        assert internal not in listed, internal


def test_token_demo_is_a_real_multi_turn_episode_and_explains_its_fields(tmp_path) -> None:
    pytest.importorskip("torch", reason="the loopback engine needs torch (testing extra)")
    import urllib.request

    from tau_adapters.testing import LoopbackEngine

    with LoopbackEngine(turn_tokens=16) as engine:
        # The user simulator's request at tau2's temperature 0: a non-empty reply.
        request = urllib.request.Request(
            engine.url + "/v1/chat/completions",
            data=json.dumps(
                {
                    "model": "tau-adapters-tiny",
                    "temperature": 0,
                    "messages": [{"role": "user", "content": "Hi, how can I help?"}],
                }
            ).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            reply = json.loads(response.read())["choices"][0]["message"]
        assert (reply.get("content") or "").strip() or reply.get("tool_calls")
        run = tmp_path / "tiny"
        result = cli("eval", "--domain", "airline", "--num-tasks", "1", "--policy",
                     f"sglang:{engine.url}", "--tokenizer", "local:chatml", "--user",
                     f"openai:{engine.url}/v1", "--user-model", "tau-adapters-tiny",
                     "--check-tokens", "--max-new-tokens", "64", "--max-steps", "12",
                     "--no-progress", "--output", str(run))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "ThunderAgent" not in result.stderr + result.stdout  # nobody asked about it
    (row,) = _rows(run)
    roles = [m["role"] for m in row["messages"]]
    assert roles.count("assistant") >= 3 and roles.count("user") >= 2, roles
    assert row["termination_reason"] == "max_steps"  # not cut at the first turn's token cap
    check = row["token_check"]
    assert check["ok"] is True
    if not check["identical"]:
        assert check["detail"], check  # says why
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "--turn-tokens 16" in readme and "`identical` is true exactly when" in readme


def test_install_hints_never_name_the_package_on_an_index() -> None:
    import re

    # A named extra without a URL or checkout ("[...]" is how the docs name the mistake).
    bare = re.compile(r"""pip install ['"]tau-adapters\[(?!\.\.\.)[^\]]*\]['"]""")
    offenders = []
    for folder in ("src", "adapters", "tests", "benchmarks", "examples"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".md") and path.is_file():
                text = path.read_text(encoding="utf-8")
                offenders += [f"{path}: {m.group(0)}" for m in bare.finditer(text)]
    offenders += [f"README.md: {m.group(0)}" for m in bare.finditer(
        (ROOT / "README.md").read_text())]  # fmt: skip
    offenders = [o for o in offenders if "test_new_user_round_two" not in o]
    assert not offenders, offenders


def test_readme_test_command_takes_cpu_torch() -> None:
    text = (ROOT / "README.md").read_text()
    command = text.split("<!-- test-command -->")[1].split("```bash\n")[1].split("```")[0]
    torch_part = command.split("&&")[2]
    assert 'torch==2.13.0"' in torch_part
    assert "download.pytorch.org/whl/cpu" in torch_part  # +cpu sorts above the CUDA build


@pytest.mark.parametrize(
    ("module", "script", "extra"),
    [("transformers", "soak.py", "testing"), ("skyrl_gym", "bench_skyrl.py", "skyrl"),
     ("ray", "bench_ray.py", "ray")],
)  # fmt: skip
def test_benchmarks_name_the_extra_they_miss(module, script, extra) -> None:
    code = (
        f"import sys, runpy; sys.modules[{module!r}] = None; sys.argv = [{script!r}]; "
        f"sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); "
        f"runpy.run_path({str(ROOT / 'benchmarks' / script)!r}, run_name='__main__')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, env=_env())  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"{script}: missing module(s) {module}." in result.stderr
    assert f'pip install -e ".[{extra}]"' in result.stderr and "Traceback" not in result.stderr


def test_oracle_on_mock_scores_8_of_9_and_the_readme_says_why(mock_run) -> None:
    rows = _rows(mock_run)
    failed = [r["task_id"] for r in rows if r["reward"] < 1.0]
    assert len(rows) == 9 and len(failed) == 1  # 0.889 = 8/9
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "0.889" in readme and f"`{failed[0]}`" in readme
