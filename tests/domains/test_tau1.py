"""The tau-bench v1 backend (``tau1-airline``, ``tau1-retail``) against the real `tau_bench`.

The reference for every reward is tau-bench v1's own environment: its constructor (which loads the
data from its JSON files), its ``reset``, ``step`` and ``calculate_reward``, with a v1 user object
(a subclass of v1's own ``BaseUserSimulationEnv``) that answers every reply with the same text.

Checking every perturbation of every task against v1's own reward takes v1 about a second per
trajectory (it reloads and hashes the whole database twice), so by default the perturbations run
on every fourth task; ``TAU_ADAPTERS_TAU1_PARITY=full`` runs every task (the oracle always runs on
every task).
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
from typing import Any

import pytest

from conftest import requires_tau2

pytest.importorskip(
    "tau_bench",
    reason="tau-bench v1 is not installed: pip install "
    '"tau_bench @ git+https://github.com/sierra-research/tau-bench@'
    '59a200c6d575d595120f1cb70fea53cef0632f6b"',
)

from tau_adapters.agents.oracle import CLOSING_WITHOUT_INFO, OraclePolicy
from tau_adapters.config import EpisodeConfig
from tau_adapters.domains import get_domain
from tau_adapters.episode.rollout import rollout

pytestmark = requires_tau2

FULL = os.environ.get("TAU_ADAPTERS_TAU1_PARITY") == "full"
STRIDE = 1 if FULL else 5
SPLITS = {"tau1-airline": "test", "tau1-retail": "test"}
READ_PREFIXES = ("get_", "search_", "find_", "list_", "calculate", "think", "transfer_")


def _is_write(name: str) -> bool:
    return not name.startswith(READ_PREFIXES)


def _v1_env_class(domain: str) -> Any:
    if domain == "tau1-airline":
        from tau_bench.envs.airline.env import MockAirlineDomainEnv

        return MockAirlineDomainEnv
    from tau_bench.envs.retail.env import MockRetailDomainEnv

    return MockRetailDomainEnv


class _QuietUser:
    """A v1 user (v1's own base class) that never calls a model."""

    def __new__(cls) -> Any:
        from tau_bench.envs.user import BaseUserSimulationEnv

        class Quiet(BaseUserSimulationEnv):
            def reset(self, instruction: str | None = None) -> str:
                return "Hello."

            def step(self, content: str) -> str:
                return "Okay."

            def get_total_cost(self) -> float:
                return 0.0

        return Quiet()


_reference_envs: dict[tuple[str, str], Any] = {}


def v1_reference(domain: str, task_id: str, messages: list[Any]) -> Any:
    """tau-bench v1's own reward for the agent actions of a message list."""
    from tau_bench.types import Action

    split, _, index = task_id.partition("-")
    key = (domain, split)
    env = _reference_envs.get(key)
    if env is None:
        env = _v1_env_class(domain)(user_strategy="human", task_split=split, task_index=0)
        env.user = _QuietUser()
        _reference_envs[key] = env
    env.reset(task_index=int(index))  # v1's reset: fresh data from its files, the task, no actions
    actions = []
    for message in messages:
        if message.role != "assistant":
            continue
        if message.tool_calls:
            actions += [Action(name=c.name, kwargs=dict(c.arguments)) for c in message.tool_calls]
        elif message.content:
            actions.append(Action(name="respond", kwargs={"content": message.content}))
    for action in actions:
        response = env.step(action)
        if response.done:
            return response.info.reward_info
    return env.calculate_reward()


def _same(ours: Any, reference: Any) -> None:
    assert ours.reward == reference.reward
    assert type(ours.info).__name__ == type(reference.info).__name__
    mine, theirs = ours.info.model_dump(), reference.info.model_dump()
    assert mine == theirs  # gt_data_hash included: ours is v1's own hash string
    assert [a.model_dump() for a in ours.actions] == [a.model_dump() for a in reference.actions]


def _changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "_changed"
    if isinstance(value, list) and value:
        return value[:-1] if len(value) > 1 else [_changed(value[0])]
    if isinstance(value, dict) and value:
        key = sorted(value)[0]
        return {**value, key: _changed(value[key])}
    return "changed"


class PerturbedOracle(OraclePolicy):
    """The oracle with one mistake: drop_write, change_arg, extra_write or missing_output."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.applied = False

    async def start(self, context: Any) -> None:
        await super().start(context)
        plan = self._plan
        writes = [i for i, m in enumerate(plan) if m.tool_calls and _is_write(m.tool_calls[0].name)]
        if self.kind == "drop_write" and writes:
            del plan[writes[0]]
            self.applied = True
        elif self.kind == "change_arg" and writes:
            message = copy.deepcopy(plan[writes[0]])
            call = message.tool_calls[0]
            key = sorted(call.arguments)[0]
            call.arguments = {**call.arguments, key: _changed(call.arguments[key])}
            plan[writes[0]] = message
            self.applied = True
        elif self.kind == "extra_write" and writes:
            message = copy.deepcopy(plan[writes[0]])
            message.tool_calls[0].id = "extra_call"
            plan.insert(len(plan) - 1, message)
            self.applied = True
        elif self.kind == "missing_output" and context.task.evaluation_criteria.communicate_info:
            plan[-1] = plan[-1].model_copy(update={"content": CLOSING_WITHOUT_INFO})
            self.applied = True


async def _run(domain: str, tasks: list[Any], policy_factory: Any = None) -> list[Any]:
    config = EpisodeConfig.build(domain=domain, split=SPLITS[domain])
    return await asyncio.gather(
        *(
            rollout(task, config, policy=policy_factory() if policy_factory else None, trial=i)
            for i, task in enumerate(tasks)
        )
    )


@pytest.mark.parametrize(("domain", "expected"), [("tau1-airline", 50), ("tau1-retail", 115)])
def test_oracle_scores_one_on_every_test_task(domain: str, expected: int) -> None:
    tasks = get_domain(domain).tasks("test")
    trajectories = asyncio.run(_run(domain, tasks))
    assert len(trajectories) == expected
    failures = [
        (t.task_id, t.reward, t.termination_reason, t.error)
        for t in trajectories
        if t.reward != 1.0 or t.status != "completed"
    ]
    assert failures == []
    assert {t.benchmark for t in trajectories} == {"tau1"}
    assert all(t.to_row()["benchmark"] == "tau1" for t in trajectories[:3])
    # A terminating tool ends the episode, as in v1.
    for trajectory in trajectories:
        names = [
            c.name for m in trajectory.messages for c in (getattr(m, "tool_calls", None) or [])
        ]
        if "transfer_to_human_agents" in names:
            assert trajectory.termination_reason == "terminate_tool"
            assert trajectory.messages[-1].role == "tool"
            assert trajectory.reward_info.tau_adapters["ending"] == "terminate_tool"


@pytest.mark.parametrize("domain", ["tau1-airline", "tau1-retail"])
def test_oracle_rewards_equal_v1s_own(domain: str) -> None:
    tasks = get_domain(domain).tasks("test")[::STRIDE]
    trajectories = asyncio.run(_run(domain, tasks))
    for trajectory in trajectories:
        reference = v1_reference(domain, trajectory.task_id, trajectory.messages)
        assert reference.reward == 1.0
        _same(trajectory.reward_info, reference)


@pytest.mark.parametrize("kind", ["drop_write", "change_arg", "extra_write", "missing_output"])
@pytest.mark.parametrize("domain", ["tau1-airline", "tau1-retail"])
def test_perturbed_rewards_equal_v1s_own(domain: str, kind: str) -> None:
    tasks = [
        task
        for i, task in enumerate(get_domain(domain).tasks("test"))
        # Few tasks require outputs (airline: 4): missing_output always takes all of them.
        if i % STRIDE == 0
        or (kind == "missing_output" and task.evaluation_criteria.communicate_info)
    ]
    policies: list[PerturbedOracle] = []

    def factory() -> PerturbedOracle:
        policies.append(PerturbedOracle(kind))
        return policies[-1]

    trajectories = asyncio.run(_run(domain, tasks, factory))
    applied = 0
    zeros = 0
    for policy, trajectory in zip(policies, trajectories, strict=True):
        if not policy.applied:
            continue
        applied += 1
        reference = v1_reference(domain, trajectory.task_id, trajectory.messages)
        _same(trajectory.reward_info, reference)
        zeros += trajectory.reward == 0.0
    assert applied > 0
    if kind != "extra_write":  # a repeated retail write is refused (e.g. already cancelled)
        assert zeros > 0  # the perturbations are mistakes v1 catches


def test_views_are_isolated_and_the_base_is_untouched() -> None:
    from tau_bench.envs.airline.data import load_data
    from tau_bench.envs.base import consistent_hash, to_hashable

    backend = get_domain("tau1-airline")
    t = backend.tau2
    first, second = backend.environment(), backend.environment()
    reservation_id = sorted(backend.base.tables["reservations"])[0]
    call = t.ToolCall(
        id="a", name="get_reservation_details", arguments={"reservation_id": reservation_id}
    )
    before = second.get_response(call).content
    cancel = t.ToolCall(
        id="b", name="cancel_reservation", arguments={"reservation_id": reservation_id}
    )
    assert not first.get_response(cancel).error
    assert json.loads(first.get_response(call).content)["status"] == "cancelled"
    assert second.get_response(call).content == before
    assert json.loads(before).get("status") != "cancelled"
    # v1's own hash of the shared data equals that of a fresh load from v1's files.
    assert consistent_hash(to_hashable(backend.base.tables)) == consistent_hash(
        to_hashable(load_data())
    )


def test_digest_agrees_with_v1_full_hash() -> None:
    from tau_bench.envs.base import consistent_hash, to_hashable

    backend = get_domain("tau1-retail")
    base = backend.base
    order_id = sorted(base.tables["orders"])[0]
    views = [base.view() for _ in range(4)]
    views[1]["orders"][order_id]["status"] = "cancelled"
    views[2]["orders"][order_id]["status"] = "cancelled"
    _ = views[3]["orders"][order_id]  # read in copy mode: owned, unchanged
    full = [consistent_hash(to_hashable(base.materialize(v))) for v in views]
    digests = [base.digest(v) for v in views]
    for i in range(4):
        for j in range(4):
            assert (digests[i] == digests[j]) == (full[i] == full[j]), (i, j)
    assert full[0] == full[3] and full[1] == full[2] and full[0] != full[1]


def test_concurrent_episodes_of_one_task_get_their_own_reward() -> None:
    from tau_bench.envs.base import consistent_hash, to_hashable

    domain = "tau1-retail"
    backend = get_domain(domain)
    task = next(
        t
        for t in backend.tasks("test")
        if any(_is_write(a.name) for a in t.evaluation_criteria.actions)
    )
    base_hash = consistent_hash(to_hashable(backend.base.tables))
    config = EpisodeConfig.build(domain=domain, split="test")

    async def many() -> list[Any]:
        return await asyncio.gather(
            *(
                rollout(
                    task,
                    config,
                    policy=None if i % 2 == 0 else PerturbedOracle("change_arg"),
                    trial=i,
                )
                for i in range(40)
            )
        )

    trajectories = asyncio.run(many())
    for i, trajectory in enumerate(trajectories):
        assert trajectory.reward == (1.0 if i % 2 == 0 else 0.0), (i, trajectory.reward_info)
    for trajectory in trajectories[:4]:
        assert v1_reference(domain, task.id, trajectory.messages).reward == trajectory.reward
    assert consistent_hash(to_hashable(backend.base.tables)) == base_hash


def test_tasks_splits_and_ids() -> None:
    retail = get_domain("tau1-retail")
    assert retail.splits() == ["train", "dev", "test"]
    from tau_bench.envs.retail.tasks_dev import TASKS_DEV
    from tau_bench.envs.retail.tasks_train import TASKS_TRAIN

    assert len(retail.tasks("train")) == len(TASKS_TRAIN)
    assert len(retail.tasks("dev")) == len(TASKS_DEV)
    task = retail.task("train-7")
    assert task.user_scenario.instructions == TASKS_TRAIN[7].instruction
    assert get_domain("tau1-airline").splits() == ["test"]
    from tau_adapters.errors import UnknownNameError

    with pytest.raises(UnknownNameError):
        retail.task("test-9999")
    with pytest.raises(UnknownNameError):
        get_domain("tau1-airline").tasks("train")


def test_agent_sees_wiki_and_v1_tools_but_not_the_greeting() -> None:
    from tau_bench.envs.retail.tools import ALL_TOOLS
    from tau_bench.envs.retail.wiki import WIKI

    from tau_adapters.episode.session import Session
    from tau_adapters.users.scripted import ScriptedUser

    backend = get_domain("tau1-retail")
    task = backend.task("test-0")
    session = Session(task, EpisodeConfig.build(domain="tau1-retail"), ScriptedUser())
    assert session.context.system_prompt == WIKI
    assert session.context.tools == [tool.get_info() for tool in ALL_TOOLS]
    first = asyncio.run(session.start())
    assert [m.role for m in first] == ["user"]
    assert first[0].content == task.user_scenario.instructions
    assert session.messages[0].role == "assistant"  # the greeting is kept in the trajectory


def test_the_stored_label_never_decides_the_reward() -> None:
    """v1's runner scores what happened: the ending is re-derived from the messages."""
    backend = get_domain("tau1-airline")
    trajectory = asyncio.run(_run("tau1-airline", [backend.task("test-0")]))[0]
    assert trajectory.reward == 1.0
    info = backend.score(backend.task("test-0"), trajectory.messages, "max_steps")
    assert info.reward == 1.0
    assert info.tau_adapters["ending"] == "user_stop"
    assert info.tau_adapters["label_agrees"] is False
    cut = trajectory.messages[:-1]  # without the user's ###STOP###, v1's episode never ended
    info = backend.score(backend.task("test-0"), cut, "user_stop")
    assert info.reward == 0.0
    assert info.tau_adapters["ending"] == "not_done"
