"""Grading as tau2 v1.0.x grades, with upstream tau2 v1.x installed (CI leg .ci/legs/70-tau2-v1.sh).

v1.0.x retail has 40 tasks with natural-language assertions, which tau2's ``EvaluationType.ALL``
grades with an LLM judge. A real HTTP judge on loopback (`tau_adapters.testing.judge`) answers from
the assertions in tau2's own prompt. Expected values come from tau2 v1 itself: `evaluate_simulation`
on tau2's registry-built environment, with tau2's judge call (``generate``) handed the same answers
the server gives. ``TAU_ADAPTERS_TAU2V1_PARITY=full`` compares every judged task with tau2's
reference instead of a sample.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tau_adapters.config import EpisodeConfig
from tau_adapters.domains import get_domain
from tau_adapters.episode.rollout import rollout
from tau_adapters.testing.judge import LoopbackJudge, answer_for

ROOT = Path(__file__).resolve().parents[2]
FULL = os.environ.get("TAU_ADAPTERS_TAU2V1_PARITY") == "full"

try:
    HAVE_TAU2_V1 = importlib.util.find_spec("tau2.user.user_simulator_base") is not None
except ImportError:  # no tau2 at all
    HAVE_TAU2_V1 = False

pytestmark = pytest.mark.skipif(
    not HAVE_TAU2_V1,
    reason="needs upstream tau2-bench v1.x as the installed tau2 (CI leg .ci/legs/70-tau2-v1.sh)",
)


def _judged_tasks() -> list[Any]:
    backend = get_domain("retail")
    return [task for task in backend.tasks("base") if backend.needs_judge(task)]


def _config(judge: LoopbackJudge | None = None, **extra: Any) -> EpisodeConfig:
    values: dict[str, Any] = {"domain": "retail", "judge_attempts": 2, "judge_timeout_s": 30}
    if judge is not None:
        values.update(judge_model=f"openai:{judge.base_url}", judge_model_name="loopback-judge")
    return EpisodeConfig.build(**values, **extra)


def _reference(task: Any, messages: list[Any], reason: str, verdict: bool) -> Any:
    """tau2 v1's own score (`EvaluationType.ALL`, as its runner scores), judge answered `verdict`."""
    from tau2.data_model.message import AssistantMessage
    from tau2.data_model.simulation import SimulationRun
    from tau2.evaluator import evaluator_nl_assertions
    from tau2.evaluator.evaluator import EvaluationType, evaluate_simulation

    def generate(model: str, messages: list[Any], **kwargs: Any) -> Any:
        return AssistantMessage(role="assistant", content=answer_for(messages[-1].content, verdict))

    simulation = SimulationRun(
        id="reference",
        task_id=task.id,
        start_time="",
        end_time="",
        duration=0.0,
        termination_reason=reason,
        messages=messages,
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(evaluator_nl_assertions, "generate", generate)
        return evaluate_simulation(
            simulation=simulation,
            task=task,
            evaluation_type=EvaluationType.ALL,
            solo_mode=False,
            domain="retail",
        )


def _play(tasks: list[Any], config: EpisodeConfig) -> list[Any]:
    async def all_of() -> list[Any]:
        return await asyncio.gather(*(rollout(task, config) for task in tasks))

    return asyncio.run(all_of())


def test_v1_retail_has_the_40_judged_tasks() -> None:
    tasks = _judged_tasks()
    assert len(tasks) == 40  # tau2 v1.0.1's data: 40 retail tasks carry nl_assertions
    assert all(task.evaluation_criteria.nl_assertions for task in tasks)


def test_oracle_calibration_with_the_loopback_judge_scores_one_on_every_judged_task() -> None:
    tasks = _judged_tasks()
    with LoopbackJudge(verdict=True) as judge:
        trajectories = _play(tasks, _config(judge))
    failed = [(t.task_id, t.status, t.error) for t in trajectories if t.reward != 1.0]
    assert not failed
    assert len(judge.requests) == len(tasks)  # one judge call per task, none without assertions
    for trajectory in trajectories:
        row = trajectory.to_row()
        assert row["grading"] == "official" and "NL_ASSERTION" in row["reward_components"]
    sample = trajectories if FULL else trajectories[:5]
    for trajectory in sample:
        task = get_domain("retail").task(trajectory.task_id)
        expected = _reference(task, trajectory.messages, trajectory.termination_reason, True)
        assert trajectory.reward == expected.reward, trajectory.task_id


def test_an_unmet_assertion_scores_zero_as_tau2_computes_it() -> None:
    tasks = _judged_tasks() if FULL else _judged_tasks()[:5]
    with LoopbackJudge(verdict=False) as judge:
        trajectories = _play(tasks, _config(judge))
    for trajectory in trajectories:
        assert trajectory.status == "completed", trajectory.error
        task = get_domain("retail").task(trajectory.task_id)
        expected = _reference(task, trajectory.messages, trajectory.termination_reason, False)
        assert trajectory.reward == expected.reward == 0.0, trajectory.task_id
        assert [(c.nl_assertion, c.met) for c in trajectory.reward_info.nl_assertions] == [
            (c.nl_assertion, c.met) for c in expected.nl_assertions
        ]


def test_oracle_calibration_without_a_judge_is_db_only_and_labelled() -> None:
    tasks = _judged_tasks()
    trajectories = _play(tasks, _config(reward="official-no-judge"))
    assert [t.task_id for t in trajectories if t.reward != 1.0] == []
    row = trajectories[0].to_row()
    assert row["reward_components"] == ["DB"]
    assert "NOT the official score" in row["grading_note"]


def test_judge_down_fails_the_episode_with_the_reason() -> None:
    task = _judged_tasks()[0]
    with LoopbackJudge(mode="down") as judge:
        (trajectory,) = _play([task], _config(judge))
    assert trajectory.status == "failed"
    assert "judge endpoint" in (trajectory.error or "") and "HTTP 503" in trajectory.error


def test_eval_without_a_judge_stops_at_start_up_naming_both_fixes(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-m", "tau_adapters", "eval", "--domain", "retail", "--no-progress"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert done.returncode == 2, done.stderr
    assert "--judge-model" in done.stderr and "--reward official-no-judge" in done.stderr
    assert not list(tmp_path.glob("runs/*/trajectories.jsonl"))  # nothing ran
