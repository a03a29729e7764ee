"""Upstream tau2-bench v1.x as the installed tau2 (CI leg ``.ci/legs/70-tau2-v1.sh``).

Every expected value comes from tau2 v1 itself: `evaluate_simulation` on tau2's own (fresh,
registry-built) environment with the ``env_kwargs`` tau2's runner derives (`tau2.runner.build`),
tau2's `UserSimulator.system_prompt`, tau2's registry, tau2's `Environment.get_user_tools`.
``TAU_ADAPTERS_TAU2V1_PARITY=full`` checks parity on every task instead of a sample.
"""

from __future__ import annotations

import asyncio
import os
from importlib.metadata import version
from typing import Any

import pytest

from tau_adapters.config import EpisodeConfig
from tau_adapters.domains import domain_names, get_domain
from tau_adapters.episode.rollout import rollout
from tau_adapters.episode.session import Session
from tau_adapters.users.scripted import ScriptedUser

from conftest import requires_tau2_v1
from helpers import PerturbedOracle

pytestmark = requires_tau2_v1

FULL = os.environ.get("TAU_ADAPTERS_TAU2V1_PARITY") == "full"
#: Per domain: the split and how many tasks the CI sample takes (every task with FULL).
SAMPLE = {"airline": ("test", 6), "retail": ("test", 6), "telecom": ("small", 6)}


def _reference(
    domain: str, task: Any, messages: list[Any], reason: str, variant: str = "bm25"
) -> Any:
    """tau2 v1's own score: its registry's constructor, its runner's env_kwargs."""
    from tau2.data_model.simulation import SimulationRun
    from tau2.evaluator.evaluator import EvaluationType, evaluate_simulation
    from tau2.runner.build import _derive_read_log_allowlist

    env_kwargs: dict[str, Any] = {}
    if domain == "banking_knowledge":
        env_kwargs = {
            "retrieval_variant": variant,
            "task": task,
            "read_log_allowlist": _derive_read_log_allowlist(task),
        }
    simulation = SimulationRun(
        id="reference",
        task_id=task.id,
        start_time="",
        end_time="",
        duration=0.0,
        termination_reason=reason,
        messages=messages,
    )
    return evaluate_simulation(
        simulation=simulation,
        task=task,
        evaluation_type=EvaluationType.ALL,
        solo_mode=False,
        domain=domain,
        env_kwargs=env_kwargs,
    )


async def _episode(domain: str, task: Any, variant: str) -> tuple[Any, bool]:
    config = EpisodeConfig.build(domain=domain)
    if variant == "oracle":
        return await rollout(task, config), True
    policy = PerturbedOracle(variant, domain)
    trajectory = await rollout(task, config, policy=policy)
    return trajectory, policy.applied


def _scorable(domain: str, split: str | None, count: int) -> list[Any]:
    backend = get_domain(domain)
    tasks = [t for t in backend.tasks(split) if not backend.needs_judge(t)]
    return tasks if FULL else tasks[:count]


def _check_parity(domain: str, tasks: list[Any]) -> dict[str, list[float]]:
    rewards: dict[str, list[float]] = {"oracle": [], "drop_write": [], "change_arg": []}
    for task in tasks:
        for variant in rewards:
            trajectory, applied = asyncio.run(_episode(domain, task, variant))
            if not applied:
                continue
            assert trajectory.reward_info is not None, (task.id, trajectory.error)
            reference = _reference(domain, task, trajectory.messages, trajectory.termination_reason)
            assert trajectory.reward_info.model_dump() == reference.model_dump(), (
                task.id,
                variant,
            )
            rewards[variant].append(trajectory.reward)
    return rewards


@pytest.mark.parametrize("domain", list(SAMPLE))
def test_scoring_equals_tau2_v1_on_oracle_and_perturbed_trajectories(domain: str) -> None:
    split, count = SAMPLE[domain]
    rewards = _check_parity(domain, _scorable(domain, split, count))
    assert rewards["oracle"] and all(r == 1.0 for r in rewards["oracle"])
    assert rewards["drop_write"], "no perturbation applied: the check compared nothing wrong"
    assert 0.0 in rewards["drop_write"] + rewards["change_arg"]


def test_banking_knowledge_bm25_parity_and_oracle() -> None:
    backend = get_domain("banking_knowledge")
    assert backend.retrieval_variant == "bm25"
    tasks = [t for t in backend.tasks() if not backend.needs_judge(t)]
    if not FULL:
        # Tasks that name ###STOP### in their instructions, tasks with a read-log allowlist
        # (gold `call_discoverable_agent_tool` reads) and tasks limited to some user tools.
        stop_text = [t for t in tasks if "###STOP###" in str(t.user_scenario.instructions)]
        allowlist = [
            t
            for t in tasks
            if any(
                a.name == "call_discoverable_agent_tool"
                for a in (t.evaluation_criteria.actions or [])
            )
        ]
        limited = [t for t in tasks if t.user_tools]
        picked = {t.id: t for t in stop_text[:2] + allowlist[:2] + limited[:2]}
        tasks = list(picked.values())
    rewards = _check_parity("banking_knowledge", tasks)
    assert rewards["oracle"] and all(r == 1.0 for r in rewards["oracle"]), rewards


def test_rows_record_the_retrieval_variant_and_score_rebuilds_it() -> None:
    """A grep_only episode calls `grep`, a tool bm25's toolkit lacks: rescoring it as bm25 (what
    rows without the variant forced) refuses the row as another domain's. With the variant in
    the row, `score` rebuilds grep_only and agrees with tau2 v1's own score."""
    from tau2.data_model.message import AssistantMessage, ToolCall

    from tau_adapters.agents.oracle import OraclePolicy
    from tau_adapters.evaluation.rescore import rescore_row

    backend = get_domain("banking_knowledge", retrieval_variant="grep_only")
    task = next(t for t in backend.tasks() if not backend.needs_judge(t))

    class Grepping(OraclePolicy):
        async def start(self, context: Any) -> None:
            await super().start(context)
            call = ToolCall(id="grep_1", name="grep", arguments={"pattern": "credit card"})
            self._plan.insert(0, AssistantMessage(role="assistant", tool_calls=[call]))

    config = EpisodeConfig.build(domain="banking_knowledge", retrieval_variant="grep_only")
    trajectory = asyncio.run(rollout(task, config, policy=Grepping()))
    grep_results = [m for m in trajectory.messages if m.role == "tool" and m.id == "grep_1"]
    assert grep_results and not grep_results[0].error, grep_results
    row = trajectory.to_row()
    assert row["retrieval_variant"] == "grep_only"
    reference = _reference(
        "banking_knowledge",
        task,
        trajectory.messages,
        trajectory.termination_reason,
        variant="grep_only",
    )
    out = rescore_row(row)
    assert out["retrieval_variant"] == "grep_only"
    assert out["reward"] == reference.reward == row["reward"], (out, reference.reward)
    # Rows of other domains' variants stay distinct: a bm25 row has the field too.
    bm25 = asyncio.run(rollout(backend.tasks()[0], EpisodeConfig.build(domain="banking_knowledge")))
    assert bm25.to_row()["retrieval_variant"] == "bm25"


def test_mock_oracle_fails_exactly_the_two_tasks_with_incomplete_gold_actions() -> None:
    """tau2 v1's mock has two tasks no replay of the gold actions solves:
    ``update_task_with_history_and_env_assertions`` (no gold action; its env assertion wants
    task_2 completed) and ``update_task_with_user_tools`` (its env assertion wants notif_1 read by
    the user, which no gold action does)."""
    backend = get_domain("mock")
    failed = []
    for task in backend.tasks("all"):
        trajectory = asyncio.run(rollout(task, EpisodeConfig.build(domain="mock")))
        reference = _reference("mock", task, trajectory.messages, trajectory.termination_reason)
        assert trajectory.reward_info.model_dump() == reference.model_dump(), task.id
        if trajectory.reward != 1.0:
            failed.append(task.id)
    assert sorted(failed) == [
        "update_task_with_history_and_env_assertions",
        "update_task_with_user_tools",
    ]


def test_version_label_and_row_field() -> None:
    from tau_adapters.domains.tau2.api import benchmark_version

    expected = f"tau2 {version('tau2')}"
    assert benchmark_version() == expected
    task = get_domain("mock").tasks()[0]
    row = asyncio.run(rollout(task, EpisodeConfig.build(domain="mock"))).to_row()
    assert row["benchmark_version"] == expected


def test_domains_come_from_tau2_registry() -> None:
    from tau2.registry import registry

    names = domain_names()
    for name in registry.get_domains():
        # tau_adapters:<domain> are this package's scoring constructors, registered on first use
        assert name in names or name.startswith("tau_adapters:"), name
    assert "banking_knowledge" in names and "telecom-workflow" in names
    assert (
        get_domain("telecom-workflow").policy
        == registry.get_env_constructor("telecom-workflow")().get_policy()
    )


def test_user_prompt_is_tau2_v1s() -> None:
    from tau2.user.user_simulator import UserSimulator

    from tau_adapters.domains.tau2.api import api

    backend = get_domain("telecom")
    task = backend.tasks("small")[0]
    tools = backend.environment().get_user_tools()
    expected = UserSimulator(
        llm="unused", instructions=str(task.user_scenario), tools=tools
    ).system_prompt
    assert api().user_system_prompt(task, with_tools=True) == expected


def test_each_task_offers_only_its_user_tools() -> None:
    from tau2.registry import registry

    backend = get_domain("banking_knowledge")
    fresh = registry.get_env_constructor("banking_knowledge")(retrieval_variant="bm25")
    checked = 0
    for task in backend.tasks()[:30]:
        session = Session(task, EpisodeConfig.build(domain="banking_knowledge"), ScriptedUser())
        ours = sorted(t["function"]["name"] for t in session.context.user_tools)
        theirs = sorted(t.name for t in fresh.get_user_tools(include=task.user_tools))
        assert ours == theirs, task.id
        checked += task.user_tools is not None
    assert checked


def test_agent_tools_hide_discoverable_tools_as_tau2_does() -> None:
    from tau2.registry import registry

    fresh = registry.get_env_constructor("banking_knowledge")(retrieval_variant="bm25")
    expected = sorted(t.name for t in fresh.get_tools())
    ours = sorted(s["function"]["name"] for s in get_domain("banking_knowledge").tool_schemas)
    assert ours == expected
    assert "KB_search" in ours and len(fresh.tools.tools) > len(ours)


def test_retrieval_index_is_built_once_per_variant(monkeypatch: pytest.MonkeyPatch) -> None:
    from tau2.domains.banking_knowledge import environment as bk

    backend = get_domain("banking_knowledge")
    calls = []
    original = bk.build_tools
    monkeypatch.setattr(bk, "build_tools", lambda *a, **k: calls.append(1) or original(*a, **k))
    task = backend.tasks()[0]
    trajectory = asyncio.run(rollout(task, EpisodeConfig.build(domain="banking_knowledge")))
    assert trajectory.reward_info is not None
    assert calls == []  # episode set-up and three scoring environments reuse the index


def test_stop_token_in_instructions_does_not_end_the_first_message() -> None:
    backend = get_domain("banking_knowledge")
    task = next(t for t in backend.tasks() if "###STOP###" in str(t.user_scenario.instructions))
    trajectory = asyncio.run(rollout(task, EpisodeConfig.build(domain="banking_knowledge")))
    first_user = next(m for m in trajectory.messages if m.role == "user")
    assert "###STOP###" not in (first_user.content or "")
    assert trajectory.counts["agent_turns"] > 1


def test_event_loop_finaliser_is_asyncios_own() -> None:
    import asyncio.base_events

    from tau_adapters.domains.tau2.api import api

    api()
    assert asyncio.base_events.BaseEventLoop.__del__.__module__ == "asyncio.base_events"
