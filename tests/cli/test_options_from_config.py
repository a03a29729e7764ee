"""The eval options come from `EpisodeConfig` (issue 20/26): names, help, choices, bounds and
defaults in one place, so help texts cannot drift and a new field needs no CLI edit."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from pydantic import Field

from tau_adapters.cli import options
from tau_adapters.cli.main import build_parser
from tau_adapters.config import EpisodeConfig

ROOT = Path(__file__).resolve().parents[2]


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


def _help(*args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), COLUMNS="100")
    result = subprocess.run(
        [sys.executable, "-m", "tau_adapters.cli.main", *args, "--help"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_every_field_is_an_eval_option_with_its_description_and_default() -> None:
    actions = {a.dest: a for a in _subparser("eval")._actions}
    for field, info in EpisodeConfig.model_fields.items():
        if field in options.EVAL_OWN:
            continue
        assert field in actions, f"EpisodeConfig.{field} has no eval option"
        action = actions[field]
        assert info.description and info.description.rstrip(".") in action.help, field
        if typing.get_origin(options._base_type(info)) is typing.Literal:
            assert list(action.choices) == list(typing.get_args(options._base_type(info)))


def test_a_new_field_shows_up_without_touching_the_cli(monkeypatch) -> None:
    class WithCache(EpisodeConfig):
        user_cache: str | None = Field(None, description="Folder of cached user replies.")
        max_turns: int = Field(5, ge=1, description="Agent turns at most.")

    monkeypatch.setattr(options, "EpisodeConfig", WithCache)
    parser = argparse.ArgumentParser()
    added = options.add_config_options(parser)
    assert "user_cache" in added and "max_turns" in added
    groups = {a.dest: g.title for g in parser._action_groups for a in g._group_actions}
    assert groups["user_cache"].startswith("user simulator")
    args = parser.parse_args(["--user-cache", "/tmp/c", "--max-turns", "3"])
    assert options.config_overrides(args, added) == {"user_cache": "/tmp/c", "max_turns": 3}
    with pytest.raises(SystemExit):
        parser.parse_args(["--max-turns", "0"])  # the field's own bound, checked by argparse


def test_bounds_come_from_the_fields(capsys) -> None:
    parser = _subparser("eval")
    for argv, fragment in (
        (["--max-steps", "0"], "greater than or equal to 1"),
        (["--top-p", "1.5"], "less than or equal to 1"),
        (["--chat-template-kwargs", "{oops"], "expected a JSON object"),
        (["--on-malformed", "ignore"], "invalid choice"),
    ):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(argv)
        assert exc.value.code == 2
        assert fragment in capsys.readouterr().err, argv


def test_help_texts_people_read() -> None:
    text = " ".join(_help("export").split())
    assert text.count("(default: sft)") == 1  # not printed twice
    assert "valid: completed, truncated, aborted, failed" in text
    text = " ".join(_help("eval").split())
    assert "--max-steps N tau2's max_steps: messages passed, all roles (default: 200)" in text
    domains = text.split("--domain DOMAIN")[1].split("--split")[0]  # the registry's names
    assert "valid:" in domains and all(
        name in domains for name in ("airline", "retail", "telecom", "mock", "telecom_small")
    )
    assert "Task split: train, test, base" in text  # --split
    assert "--request-timeout SECONDS Seconds per engine request (default: 600.0)" in text
    assert "--no-session-routing" in text and "(default: on; this turns it off)" in text
    report = _help("report")
    assert "run [other]" in report and "runs [runs ...]" not in report
    score = " ".join(_help("score").split())
    assert "trajectories a trajectories.jsonl" in score and "never the input file" in score


def test_tasks_list_has_plain_output_for_scripts() -> None:
    pytest.importorskip("tau2", reason="task lists come from tau2")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))

    def run(fmt: str) -> list[str]:
        result = subprocess.run(
            [sys.executable, "-m", "tau_adapters.cli.main", "tasks", "list", "--domain", "mock",
             "--format", fmt],
            capture_output=True, text=True, timeout=120, env=env,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()

    from tau_adapters.domains import get_domain

    expected = [t.id for t in get_domain("mock").tasks()]  # tau2's own order
    assert run("ids") == expected
    rows = [json.loads(line) for line in run("json")]
    assert [r["task_id"] for r in rows] == expected and {r["domain"] for r in rows} == {"mock"}
