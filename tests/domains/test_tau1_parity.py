"""tau-bench v1 episodes end and score as v1's own runner ends and scores them (issues #25, #27).

Every expected value comes from tau-bench v1 itself (`tau1_reference.replay`: v1's ``get_env``,
``Env.step``, ``get_data_hash``, ``calculate_reward`` and its runner's loop): the same agent
messages and the same scripted user answers go through v1 and through our session (live, with the
v1 backend), and the saved messages go through ``tau-adapters score``'s path (`rescore_row`) with a
wrong stored label. Compared: whether and how the episode ended, the reward, v1's reward info
(``gt_data_hash`` included, as v1's hash string), v1's hash of the agent's data, each tool
observation, and what the user heard.

The sweep over every airline and retail test task samples every fifth task by default;
``TAU_ADAPTERS_TAU1_PARITY=full`` runs them all.
"""

from __future__ import annotations

import asyncio
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

import tau1_reference as ref
from tau1_reference import STOP, call, calls, say
from tau_adapters.config import EpisodeConfig
from tau_adapters.domains import get_domain
from tau_adapters.episode.rollout import rollout
from tau_adapters.evaluation.rescore import rescore_row

pytestmark = requires_tau2

FULL = os.environ.get("TAU_ADAPTERS_TAU1_PARITY") == "full"
STRIDE = 1 if FULL else 5
DOMAINS = {"airline": "tau1-airline", "retail": "tau1-retail"}
#: Our termination reason for each of v1's endings (the replay's names).
OUR_ENDING = {
    "user_stop": "user_stop",
    "terminate_tool": "terminate_tool",
    "max_steps": "max_steps",
    "not_done": "agent_error",
}


# -- our side: the same steps and the same user answers --------------------------------------------
class StepsPolicy:
    """Plays the steps, then sends an empty message (the session ends the episode on it: v1's
    replay has simply run out of actions, ``not_done``)."""

    def __init__(self, steps: list[ref.Step]) -> None:
        self.steps = list(steps)

    async def start(self, context: Any) -> None:
        return None

    async def act(self, observation: list[Any]) -> Any:
        t = get_domain("tau1-airline").tau2
        if not self.steps:
            return t.AssistantMessage(role="assistant", content=None)
        step = self.steps.pop(0)
        if step[0] == "say":
            return t.AssistantMessage(role="assistant", content=step[1])
        pairs = [(step[1], step[2])] if step[0] == "call" else step[1]
        text = step[2] if step[0] == "calls" else None
        return t.AssistantMessage(
            role="assistant",
            content=text,
            tool_calls=[
                t.ToolCall(id=f"c{len(self.steps)}_{i}", name=n, arguments=dict(k))
                for i, (n, k) in enumerate(pairs)
            ],
        )

    async def close(self) -> None:
        return None


class RepliesUser:
    """Opens with the task, then answers each agent text with the next scripted line."""

    def __init__(self, replies: list[str], default: str = "ok") -> None:
        self.replies = list(replies)
        self.default = default
        self.heard: list[str] = []
        self.opened = False
        self.task: Any = None

    async def start(self, context: Any, history: list[Any]) -> None:
        self.task = context.task

    async def respond(self, message: Any) -> Any:
        t = get_domain("tau1-airline").tau2
        if not self.opened:
            self.opened = True
            return t.UserMessage(role="user", content=self.task.user_scenario.instructions)
        self.heard.append(message.content)
        text = self.replies.pop(0) if self.replies else self.default
        return t.UserMessage(role="user", content=text)

    async def close(self) -> None:
        return None


def ours(
    env_name: str, index: int, steps: list[ref.Step], replies: list[str], max_num_steps: int = 30
) -> tuple[Any, RepliesUser]:
    domain = DOMAINS[env_name]
    task = get_domain(domain).task(f"test-{index}")
    config = EpisodeConfig.build(domain=domain, split="test", tau1_max_num_steps=max_num_steps)
    user = RepliesUser(replies)
    trajectory = asyncio.run(rollout(task, config, policy=StepsPolicy(steps), user=user))
    return trajectory, user


def check(
    env_name: str, index: int, steps: list[ref.Step], replies: list[str] = (), **kw: Any
) -> dict[str, Any]:
    """Assert that our live episode and our rescore agree with v1's replay; v1's result."""
    replies = list(replies)
    v1 = ref.replay(env_name, index, steps, user_replies=replies, **kw)
    trajectory, user = ours(env_name, index, steps, replies, **kw)
    where = (env_name, index, v1["ended"], trajectory.termination_reason, trajectory.error)
    assert trajectory.status != "failed", where
    assert trajectory.termination_reason == OUR_ENDING[v1["ended"]], where
    assert trajectory.reward == v1["reward"], where
    info = trajectory.reward_info
    assert info.tau_adapters["ending"] == v1["ended"], where
    assert info.tau_adapters["data_hash"] == v1["data_hash"], where
    if v1["done"]:
        assert info.model_dump(mode="json")["info"] == v1["reward_info"]["info"], where
        assert [a.model_dump() for a in info.actions] == v1["reward_info"]["actions"]
    # What the agent saw from its tools and what the user heard are v1's.
    tool_texts = [m.content for m in trajectory.messages if m.role == "tool"]
    v1_tool_texts = [
        o for o, h in zip(v1["observations"], _action_kinds(steps), strict=False) if h == "tool"
    ]
    assert tool_texts == v1_tool_texts, where
    assert user.heard == v1["user_heard"], where
    # `tau-adapters score` re-derives the ending from the messages; the stored label is ignored.
    row = trajectory.to_row()
    row["termination_reason"] = "agent_stop"
    again = rescore_row(row)
    assert again["reward"] == v1["reward"], where
    assert again["ending"] == v1["ended"], where
    return v1


def _action_kinds(steps: list[ref.Step]) -> list[str]:
    return ["respond" if s[0] == "say" else "tool" for s in steps]


def _uid(env_name: str, index: int) -> str:
    return ref.task_of(env_name, index).user_id


# -- one test per rule ---------------------------------------------------------------------------
def test_agent_stop_is_a_reply_and_the_user_may_go_on() -> None:
    uid = _uid("airline", 13)
    v1 = check("airline", 13, [call("get_user_details", user_id=uid), say("Done. " + STOP)])
    assert (v1["done"], v1["reward"], v1["ended"]) == (False, 0.0, "not_done")  # v1's own verdict


def test_agent_stop_then_user_stop_is_scored() -> None:
    uid = _uid("airline", 13)
    v1 = check("airline", 13, [call("get_user_details", user_id=uid), say(STOP)], [STOP])
    assert (v1["ended"], v1["reward"]) == ("user_stop", 1.0)


@pytest.mark.parametrize("index", [13, 38])
def test_dropped_transfer(index: int) -> None:
    gold = ref.gold_steps("airline", index)
    assert gold[-1][1] == "transfer_to_human_agents"
    without = [*gold[:-1], say("I cannot help with that. " + STOP)]
    # v1 compares only data and outputs: when the user then stops, a dropped transfer scores 1.0.
    v1 = check("airline", index, without, [STOP])
    assert (v1["ended"], v1["reward"]) == ("user_stop", 1.0)
    # Without the user's stop the episode never ends: 0.
    v1 = check("airline", index, without, ["ok"])
    assert (v1["ended"], v1["reward"]) == ("not_done", 0.0)
    # With the transfer, the transfer ends it.
    v1 = check("airline", index, gold)
    assert (v1["ended"], v1["reward"]) == ("terminate_tool", 1.0)


def test_max_steps_with_a_transfer() -> None:
    uid = _uid("airline", 13)
    look = call("get_user_details", user_id=uid)
    transfer = call("transfer_to_human_agents", summary="x")
    v1 = check("airline", 13, [look] * 29 + [transfer])
    assert (v1["ended"], v1["reward"]) == ("terminate_tool", 1.0)  # the 30th action ends it
    v1 = check("airline", 13, [look] * 30 + [transfer])
    assert (v1["ended"], v1["reward"]) == ("max_steps", 0.0)
    v1 = check("airline", 13, [look] * 30)
    assert (v1["ended"], v1["reward"]) == ("max_steps", 0.0)
    # The limit is a setting (v1's max_num_steps): with 5, the transfer as 5th action still ends.
    v1 = check("airline", 13, [look] * 4 + [transfer], max_num_steps=5)
    assert (v1["ended"], v1["reward"]) == ("terminate_tool", 1.0)
    v1 = check("airline", 13, [look] * 5 + [transfer], max_num_steps=5)
    assert (v1["ended"], v1["reward"]) == ("max_steps", 0.0)


def test_a_user_reply_on_the_last_action_still_ends_and_scores() -> None:
    uid = _uid("airline", 13)
    steps = [call("get_user_details", user_id=uid)] * 29 + [say("bye")]
    v1 = check("airline", 13, steps, [STOP])
    assert (v1["ended"], v1["reward"]) == ("user_stop", 1.0)


def test_two_tool_calls_in_one_message_run_the_first_only() -> None:
    uid = _uid("airline", 13)
    both = [("get_user_details", {"user_id": uid}), ("transfer_to_human_agents", {"summary": "x"})]
    v1 = check("airline", 13, [calls(both, "I will transfer you now.")])
    assert v1["ended"] == "not_done"  # the transfer never ran
    v1 = check("airline", 13, [calls(both[::-1])])
    assert (v1["ended"], v1["reward"]) == ("terminate_tool", 1.0)
    trajectory, _ = ours("airline", 13, [calls(both)], [])
    assert trajectory.counts["dropped_tool_calls"] == 1
    assert [len(m.tool_calls or []) for m in trajectory.messages if m.role == "assistant"][1] == 1


def test_text_sent_with_a_tool_call_never_reaches_the_user_nor_the_outputs() -> None:
    """#25: retail test-2 requires the output '10'; v1 replays text beside a tool call as the tool
    call alone."""
    task = ref.task_of("retail", 2)
    assert task.outputs == ["10"]
    gold = ref.gold_steps("retail", 2)
    beside = calls([("think", {"thought": "x"})], "The answer is 10.")
    v1 = check("retail", 2, [*gold, beside, say("Anything else?")], [STOP])
    assert (v1["ended"], v1["reward"]) == ("user_stop", 0.0)
    assert v1["reward_info"]["info"] == {"r_outputs": 0.0, "outputs": {"10": False}}
    assert v1["user_heard"] == ["Anything else?"]
    v1 = check("retail", 2, [*gold, say("The answer is 10.")], [STOP])
    assert (v1["ended"], v1["reward"]) == ("user_stop", 1.0)


def test_error_answers_are_tool_errors_and_never_end_the_episode() -> None:
    """#25: v1's tools answer "Error: ..." (their own, or Env.step's catch); v1 has no error limit,
    so more failed calls than tau2's max_errors (10) still leave the episode running."""
    uid = _uid("airline", 13)
    bad = [
        call("get_user_details", user_id="nobody"),
        call("get_user_details", user_id=uid, bogus=1),
        call("calculate", expression="1/0"),
        call("no_such_tool"),
    ]
    v1 = check("airline", 13, bad * 3 + [call("transfer_to_human_agents", summary="x")])
    assert v1["observations"][:4] == [
        "Error: user not found",
        "Error: GetUserDetails.invoke() got an unexpected keyword argument 'bogus'",
        "Error: division by zero",
        "Unknown action no_such_tool",
    ]
    assert (v1["ended"], v1["reward"]) == ("terminate_tool", 1.0)
    trajectory, _ = ours(
        "airline", 13, bad * 3 + [call("transfer_to_human_agents", summary="x")], []
    )
    errors = [m.error for m in trajectory.messages if m.role == "tool"]
    # the three "Error: ..." answers are errors; so is an unknown tool (a failed call, though v1's
    # text for it does not start with "Error")
    assert errors == [True, True, True, True] * 3 + [False]
    assert trajectory.counts["tool_errors"] == 12


def test_gt_data_hash_is_v1s_string_and_absent_with_outputs() -> None:
    backend = get_domain("tau1-retail")
    for index in (0, 2, 5):
        v1 = ref.replay(
            "retail", index, [*ref.gold_steps("retail", index), say("10")], user_replies=[STOP]
        )
        trajectory, _ = ours("retail", index, [*ref.gold_steps("retail", index), say("10")], [STOP])
        mine = trajectory.reward_info.model_dump(mode="json")["info"]
        assert mine == v1["reward_info"]["info"]
        if ref.task_of("retail", index).outputs:
            assert "gt_data_hash" not in mine
        else:
            assert len(mine["gt_data_hash"]) == 64
        assert trajectory.reward_info.tau_adapters["gt_data_hash"] is not None
    assert backend.episode_rules.agent_stop_ends_episode is False


# -- every test task, perturbed ------------------------------------------------------------------
def _perturbations(env_name: str, index: int) -> dict[str, tuple[list[ref.Step], list[str]]]:
    task = ref.task_of(env_name, index)
    gold = ref.gold_steps(env_name, index)
    closing = say(" | ".join(task.outputs) if task.outputs else "Anything else?")
    uid = task.user_id
    look = call("get_user_details", user_id=uid)
    ends_in_transfer = bool(gold) and gold[-1][1] == "transfer_to_human_agents"
    body = gold[:-1] if ends_in_transfer else gold
    out: dict[str, tuple[list[ref.Step], list[str]]] = {
        "gold": (gold + ([] if ends_in_transfer else [closing]), [STOP]),
        "agent_stop_user_goes_on": ([*body, say(closing[1] + " " + STOP)], ["ok"]),
        "agent_stop_user_stops": ([*body, closing, say(STOP)], ["ok", STOP]),
        "drop_transfer": ([*body, closing], [STOP]),
        "transfer_at_limit": ([look] * 29 + [call("transfer_to_human_agents", summary="x")], []),
        "transfer_after_limit": ([look] * 30 + [call("transfer_to_human_agents", summary="x")], []),
        "paired_calls": (
            [calls([(s[1], s[2]), ("think", {"thought": "t"})]) for s in body] + [closing],
            [STOP],
        ),
        "text_beside_call": (
            [*body, calls([("think", {"thought": "t"})], closing[1]), say("Anything else?")],
            [STOP],
        ),
        "errors_first": (
            [
                call("get_user_details", user_id="nobody"),
                call("no_such_tool"),
                call("calculate", expression="1/0"),
                *gold,
                closing,
            ],
            [STOP],
        ),
    }
    return out


def _sample(env_name: str) -> list[int]:
    return list(range(0, len(ref._env(env_name, "test").tasks), STRIDE))


@pytest.mark.parametrize("env_name", ["airline", "retail"])
def test_perturbed_trajectories_of_test_tasks_agree_with_v1(env_name: str) -> None:
    endings: dict[str, int] = {}
    for index in _sample(env_name):
        for kind, (steps, replies) in _perturbations(env_name, index).items():
            try:
                v1 = check(env_name, index, steps, replies)
            except AssertionError as exc:
                raise AssertionError(f"{env_name} test-{index} {kind}: {exc}") from exc
            endings[v1["ended"]] = endings.get(v1["ended"], 0) + 1
    # every kind of ending occurred
    assert set(endings) == {"user_stop", "terminate_tool", "max_steps", "not_done"}, endings


def test_only_stop_ends_the_users_side() -> None:
    """v1 knows no ###TRANSFER### / ###OUT-OF-SCOPE###: such a reply is just text."""
    uid = _uid("airline", 13)
    steps = [call("get_user_details", user_id=uid), say("Anything else?"), say("Bye.")]
    v1 = check("airline", 13, steps, ["###TRANSFER###", STOP])
    assert (v1["ended"], v1["reward"], v1["actions"]) == ("user_stop", 1.0, 3)
