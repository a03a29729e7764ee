"""Drive one episode (session + policy + user) to a `Trajectory`. Never raises for episode faults.

Every way an episode can go wrong ends in a trajectory with a ``status`` (completed, truncated,
aborted, failed), tau2's termination reason and, where something broke, an ``error``; the reward is
then tau2's (0.0 for anything but a user or agent stop). Cancellation propagates by default, after
the policy and user are closed (a ThunderAgent program is released); with ``on_cancel="return"``
the aborted trajectory is returned instead, for hosts that want a sample back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from tau_adapters.agents.oracle import MalformedTurn
from tau_adapters.config import EpisodeConfig
from tau_adapters.core import Policy, Status, User
from tau_adapters.domains import benchmark_of, get_domain
from tau_adapters.episode.session import Session, SoloUser
from tau_adapters.episode.user_side import user_side
from tau_adapters.errors import EndpointError, EpisodeSignal
from tau_adapters.plugins import make_policy, make_user
from tau_adapters.rewards.grading import grading_note, reward_components
from tau_adapters.rewards.shapers import get_shaper
from tau_adapters.runtime.scheduling import run_cpu

if TYPE_CHECKING:
    from tau2.data_model.tasks import Task


@dataclass
class Trajectory:
    """One finished episode: the messages, tau2's verdict, the tokens and what it cost."""

    domain: str
    split: str | None
    task_id: str
    trial: int
    seed: int
    messages: list[Any]
    termination_reason: str
    status: str
    reward: float
    reward_info: Any | None
    error: str | None = None
    duration_s: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    token_level: bool = False
    transcript: Any | None = None
    token_check: Any | None = None
    rejected_turns: list[dict[str, Any]] = field(default_factory=list)
    remove_sample: bool = False
    usage: dict[str, Any] = field(default_factory=dict)
    shaped: Any | None = None
    #: Per agent turn: seconds in the policy (engine call included) and in the environment/user.
    turn_timings: list[dict[str, float]] = field(default_factory=list)
    #: Content hash of the task (`row_checks.task_fingerprint`): `score` checks rows against it.
    task_fingerprint: str | None = None
    #: Which benchmark judged the episode: ``tau2`` or ``tau1`` (tau-bench v1).
    benchmark: str = "tau2"
    #: ``official`` or ``official-no-judge`` (NL assertions left out: not the official score).
    grading: str = "official"
    #: The NL-assertion judge that graded the episode (`Judge.describe()`), if one was called.
    judge: str | None = None
    #: The installed release that ran and scored it: ``tau2 26.3 (nvidia)``, ``tau2 1.0.1``.
    benchmark_version: str | None = None
    #: tau2's solo protocol (scored with ``solo_mode=True``); the think tool was offered (its
    #: calls stay in `messages` and are left out when scoring). Written to rows when set.
    solo_mode: bool = False
    thinking_tool: bool = False
    #: Who played the user and how (`tau_adapters.users.fingerprint`); None if unknown.
    user_fingerprint: dict[str, Any] | None = None

    @classmethod
    def failed(
        cls,
        domain: str,
        split: str | None,
        task_id: str,
        *,
        trial: int,
        seed: int,
        error: str,
        benchmark: str | None = None,
    ) -> Trajectory:
        """An episode that infrastructure lost before or while it ran (status ``failed``, the
        reason kept, reward 0 that no metric counts): the one way every caller builds one."""
        return cls(
            domain=domain,
            split=split,
            task_id=task_id,
            trial=trial,
            seed=seed,
            messages=[],
            termination_reason="agent_error",
            status=Status.FAILED.value,
            reward=0.0,
            reward_info=None,
            error=error,
            benchmark=benchmark or benchmark_of(domain),
        )

    @property
    def shaped_reward(self) -> float:
        """The configured shaper's reward (the official `reward` when no shaping is set)."""
        return float(self.shaped.value) if self.shaped is not None else self.reward

    def to_row(self) -> dict[str, Any]:
        """The JSON line written to ``trajectories.jsonl`` (tau2's JSON for messages/reward)."""
        row: dict[str, Any] = {
            "benchmark": self.benchmark,
            "benchmark_version": self.benchmark_version,
            "domain": self.domain,
            "split": self.split,
            "task_id": self.task_id,
            "task_fingerprint": self.task_fingerprint,
            "trial": self.trial,
            "seed": self.seed,
            "status": self.status,
            "termination_reason": self.termination_reason,
            "reward": self.reward,
            "grading": self.grading,
            "reward_components": reward_components(self.reward_info),
            "shaped_reward": self.shaped_reward,
            "reward_info": (
                self.reward_info.model_dump(mode="json") if self.reward_info is not None else None
            ),
            "error": self.error,
            "duration_s": round(self.duration_s, 6),
            "timings": {k: round(v, 6) for k, v in self.timings.items()},
            "counts": dict(self.counts),
            "turn_timings": [
                {k: round(v, 6) for k, v in turn.items()} for turn in self.turn_timings
            ],
            "token_level": self.token_level,
            "remove_sample": self.remove_sample,
            "messages": [m.model_dump(mode="json") for m in self.messages],
        }
        if self.grading != "official":
            row["grading_note"] = grading_note(self.grading)
        if self.judge is not None:
            row["judge"] = self.judge
        if self.solo_mode:
            row["solo_mode"] = True
        if self.thinking_tool:
            row["thinking_tool"] = True
        row["user_fingerprint"] = self.user_fingerprint
        row["user_side"] = user_side(row)
        if self.rejected_turns:
            row["rejected_turns"] = list(self.rejected_turns)
        if self.shaped is not None:
            row["reward_shaping"] = self.shaped.to_json()
        if self.usage:
            row["usage"] = dict(self.usage)
        if self.transcript is not None:
            row["transcript"] = self.transcript.to_json()
        if self.token_check is not None:
            row["token_check"] = self.token_check.to_json()
        return row


async def rollout(
    task: Task,
    config: EpisodeConfig,
    policy: Policy | None = None,
    user: User | None = None,
    *,
    trial: int = 0,
    split: str | None = None,
    on_cancel: Literal["raise", "return"] = "raise",
) -> Trajectory:
    """Run one episode of `task`. `policy`/`user` default to the ones `config` names."""
    started = time.perf_counter()
    seed = config.seed + trial
    domain = get_domain(config.domain, retrieval_variant=config.retrieval_variant)
    from tau_adapters.episode.row_checks import check_task_for_domain

    check_task_for_domain(task, domain)  # a wrong object or another domain's task: say so now
    policy = policy if policy is not None else make_policy(config.policy, config)
    if user is None:
        # Solo mode has no user (tau2's DummyUser): the configured one is not even built.
        user = SoloUser() if config.solo_mode else make_user(config.user, config)
    session = Session(task, config, user, seed=seed, domain=domain)
    timings = {"policy_s": 0.0, "env_user_s": 0.0, "score_s": 0.0}
    turns: list[dict[str, float]] = []
    remove = False
    cancelled: asyncio.CancelledError | None = None
    try:
        mark = time.perf_counter()
        observation = await session.start()
        if not session.done:
            try:
                await policy.start(session.context)
            except Exception as exc:
                session.fail(f"policy failed to start: {exc!r}")
        timings["env_user_s"] += time.perf_counter() - mark
        while not session.done:
            mark = time.perf_counter()
            turn = {"policy_s": 0.0, "env_user_s": 0.0}
            turns.append(turn)
            try:
                message = await policy.act(observation)
            except EpisodeSignal as signal:
                if getattr(signal, "turn_taken", False):
                    session.counters.agent_turns += 1  # e.g. a model turn cut at its length
                session.fail(str(signal), signal.termination_reason, signal.status)
                break
            except EndpointError as exc:
                session.fail(f"policy endpoint: {exc}")
                break
            except asyncio.CancelledError as exc:
                session.fail("cancelled by the host", "agent_error", "aborted")
                cancelled = exc
                break
            except Exception as exc:
                session.fail(f"policy failed: {exc!r}")
                break
            finally:
                turn["policy_s"] = time.perf_counter() - mark
                timings["policy_s"] += turn["policy_s"]
            mark = time.perf_counter()
            if isinstance(message, MalformedTurn):
                if config.on_malformed == "observe":
                    result = session.reject(message.text, message.error)
                else:
                    session.rejected.append({"text": message.text, "error": message.error})
                    session.fail(f"malformed model output: {message.error}", status="completed")
                    remove = config.on_malformed == "remove"
                    break
            else:
                result = await session.step(message)
            turn["env_user_s"] = time.perf_counter() - mark
            timings["env_user_s"] += turn["env_user_s"]
            observation = result.observation
    except asyncio.CancelledError as exc:
        session.fail("cancelled by the host", "agent_error", "aborted")
        cancelled = exc
    finally:
        for party in (policy, user):
            # Closing is best effort: the episode's outcome is already known.
            with contextlib.suppress(Exception):
                await party.close()
    if cancelled is not None and on_cancel == "raise":
        raise cancelled
    # Scoring replays the episode in tau2: a few milliseconds of CPU, off the event loop. An
    # episode with a judge waits on its request there: on a pool of its own, not the CPU pool.
    run = run_cpu
    if session.judge is not None:
        from tau_adapters.rewards.judge import run_judged

        run = run_judged
    trajectory = await run(
        _finish, session, policy, user, config, task, trial, seed, split, timings, remove
    )
    trajectory.duration_s = time.perf_counter() - started
    trajectory.turn_timings = turns
    return trajectory


def _finish(
    session: Session,
    policy: Any,
    user: Any,
    config: EpisodeConfig,
    task: Any,
    trial: int,
    seed: int,
    split: str | None,
    timings: dict[str, float],
    remove: bool,
) -> Trajectory:
    mark = time.perf_counter()
    reward_info = None
    reward = 0.0
    status = session.status or "failed"
    error = session.error
    try:
        reward_info = session.score()
        reward = float(reward_info.reward)
    except Exception as exc:
        status, error = "failed", f"scoring failed: {exc!r}"
    timings["score_s"] = time.perf_counter() - mark
    transcript = getattr(policy, "transcript", None)
    token_check = None
    if transcript is not None and config.check_tokens and transcript.ids:
        token_check = transcript.check()
    counters = session.counters
    counts = {
        "steps": counters.steps,
        "agent_turns": counters.agent_turns,
        "user_turns": counters.user_turns,
        "tool_calls": counters.tool_calls,
        "tool_errors": counters.tool_errors,
        "think_calls": counters.think_calls,
        "rejected_turns": len(session.rejected),
        "messages": len(session.messages),
    }
    if counters.dropped_tool_calls:  # v1's rule: calls after a message's first never ran
        counts["dropped_tool_calls"] = counters.dropped_tool_calls
    if transcript is not None:
        counts.update(
            prompt_tokens=transcript.prompt_len,
            response_tokens=transcript.response_length,
            sampled_tokens=transcript.sampled_tokens,
        )
    counts.update(getattr(policy, "counts", None) or {})  # e.g. ThunderAgent release outcome
    usage = dict(getattr(policy, "usage", None) or {})
    user_usage = getattr(user, "usage", None)
    if user_usage:
        usage["user"] = dict(user_usage)
    judge = session.judge
    if judge is not None and judge.usage["calls"]:
        usage["judge"] = dict(judge.usage)
    shaper = get_shaper(config)
    shaped = shaper.shape(reward_info, domain=session.domain.name, task_id=task.id, official=reward)
    if status != "failed":  # infrastructure failures say nothing about the task's difficulty
        shaper.observe(domain=session.domain.name, task_id=task.id, official=reward)
    from tau_adapters.episode.row_checks import task_fingerprint

    return Trajectory(
        domain=session.domain.name,
        split=split,
        task_id=task.id,
        task_fingerprint=task_fingerprint(task),
        trial=trial,
        seed=seed,
        messages=session.messages,
        termination_reason=session.termination_reason or "agent_error",
        status=status,
        reward=reward,
        reward_info=reward_info,
        error=error,
        timings=timings,
        counts=counts,
        token_level=bool(getattr(policy, "token_level", False)),
        transcript=transcript,
        token_check=token_check,
        rejected_turns=list(session.rejected),
        remove_sample=remove,
        usage=usage,
        shaped=shaped,
        benchmark=session.domain.benchmark,
        grading=config.grading,
        judge=judge.describe() if judge is not None else None,
        benchmark_version=session.domain.version,
        solo_mode=session.solo,
        thinking_tool=session.think,
        user_fingerprint=getattr(user, "fingerprint", None),
    )
