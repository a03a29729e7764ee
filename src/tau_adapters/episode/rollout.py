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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from tau_adapters.agents.oracle import MalformedTurn
from tau_adapters.config import EpisodeConfig
from tau_adapters.core import Policy, Role, Status, User
from tau_adapters.domains import benchmark_of, get_domain
from tau_adapters.episode import snapshot as snapshots
from tau_adapters.episode.session import Session, SoloUser, agent_visible
from tau_adapters.episode.user_side import user_side
from tau_adapters.errors import EndpointError, EpisodeSignal, EpisodeSuspended
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
    #: A knowledge domain's retrieval setup (``banking_knowledge``: ``bm25`` ...): its tools and
    #: scoring depend on it, so rows record it and `score` rebuilds the same one.
    retrieval_variant: str | None = None
    thinking_tool: bool = False
    #: Who played the user and how (`tau_adapters.users.fingerprint`); None if unknown.
    user_fingerprint: dict[str, Any] | None = None
    #: A suspended episode (status ``aborted``): what `rollout(..., resume=...)` continues from
    #: (`tau_adapters.episode.snapshot`). Not scored; None for every finished episode.
    snapshot: dict[str, Any] | None = None

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
        if self.retrieval_variant is not None:
            row["retrieval_variant"] = self.retrieval_variant
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
    resume: dict[str, Any] | None = None,
    should_suspend: Callable[[], bool] | None = None,
) -> Trajectory:
    """Run one episode of `task`. `policy`/`user` default to the ones `config` names.

    Suspension (issue 23): with `should_suspend` (the host's "stop now" flag, read at every turn
    boundary) and a policy and user that can save their state, an engine abort, the flag, or a
    host cancellation during a user or tool call ends this call with an ``aborted`` trajectory
    carrying `Trajectory.snapshot`; `resume` continues such a snapshot (in any process).
    """
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
    suspendable = (should_suspend is not None or resume is not None) and snapshots.can_suspend(
        policy, user
    )
    if suspendable:
        setattr(policy, "suspendable", True)  # noqa: B010 - not part of the Policy protocol
    snapshot: dict[str, Any] | None = None
    suspensions = 0
    observation: list[Any] | None = None

    def suspend(where: str, reason: str) -> dict[str, Any]:
        progress = {
            "timings": dict(timings),
            "turn_timings": [dict(turn) for turn in turns],
            "duration_s": time.perf_counter() - started,
            "suspensions": suspensions + 1,
        }
        return snapshots.capture(
            session,
            policy,
            user,
            task=task,
            config=config,
            trial=trial,
            seed=seed,
            observation=observation if where in ("boundary", "policy") else None,
            where=where,
            reason=reason,
            progress=progress,
        )

    try:
        mark = time.perf_counter()
        if resume is not None:
            progress = resume.get("progress") or {}
            timings.update(progress.get("timings") or {})
            turns.extend(dict(turn) for turn in progress.get("turn_timings") or [])
            started -= float(progress.get("duration_s") or 0.0)
            suspensions = int(progress.get("suspensions") or 0)
            observation = await _resume(session, policy, user, task, config, seed, resume)
        else:
            observation = await session.start()
            if not session.done:
                try:
                    await policy.start(session.context)
                except Exception as exc:
                    session.fail(f"policy failed to start: {exc!r}")
        timings["env_user_s"] += time.perf_counter() - mark
        while not session.done:
            if suspendable and should_suspend is not None and should_suspend():
                snapshot = suspend("boundary", "the host asked to stop between turns")
                break
            mark = time.perf_counter()
            turn = {"policy_s": 0.0, "env_user_s": 0.0}
            turns.append(turn)
            try:
                message = await policy.act(observation)
            except EpisodeSuspended as signal:
                turn["policy_s"] = time.perf_counter() - mark
                timings["policy_s"] += turn["policy_s"]
                turn["suspended"] = 1.0
                snapshot = suspend(signal.where, str(signal))
                break
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
                if "suspended" not in turn:
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
                try:
                    result = await session.step(message)
                except asyncio.CancelledError:
                    if suspendable and not session.done:
                        # Cut inside a user or tool call: resume makes that call again.
                        where = "env" if session._to is Role.ENV else "user"
                        snapshot = suspend(where, "cancelled by the host during a call")
                        turn["env_user_s"] = time.perf_counter() - mark
                        timings["env_user_s"] += turn["env_user_s"]
                        break
                    raise
            turn["env_user_s"] = time.perf_counter() - mark
            timings["env_user_s"] += turn["env_user_s"]
            observation = result.observation
    except asyncio.CancelledError as exc:
        session.fail("cancelled by the host", "agent_error", "aborted")
        cancelled = exc
    finally:
        if snapshot is not None and not session.done:
            session.fail(
                f"suspended ({snapshot['suspended']['where']}): {snapshot['suspended']['reason']}",
                "agent_error",
                "aborted",
            )
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
        _finish,
        session,
        policy,
        user,
        config,
        task,
        trial,
        seed,
        split,
        timings,
        remove,
        snapshot is not None,
    )
    trajectory.duration_s = time.perf_counter() - started
    trajectory.turn_timings = turns
    trajectory.snapshot = snapshot
    if suspensions:
        trajectory.counts["resumed"] = suspensions
    return trajectory


async def _resume(
    session: Session,
    policy: Any,
    user: Any,
    task: Any,
    config: EpisodeConfig,
    seed: int,
    snapshot: dict[str, Any],
) -> list[Any]:
    """Rebuild a suspended episode; the agent's next observation (empty when it ended)."""
    problem = snapshots.mismatch(snapshot, task, config, seed)
    if problem is None and not snapshots.can_suspend(policy, user):
        problem = "this policy or user simulator cannot restore a snapshot"
    if problem is not None:
        session.fail(f"resume: {problem}")
        return []
    await session.restore(snapshot["session"])
    if session.done:
        return []
    try:
        await policy.start(session.context)
        policy.restore(snapshot["policy"])
        user.restore(session.context, snapshot["user"])
    except Exception as exc:
        session.fail(f"resume: restoring the policy or user failed: {exc!r}")
        return []
    observation = snapshots.observation_of(session.tau2, snapshot)
    if observation is not None:
        return observation
    # Suspended inside a user or tool call: make it again, then show the agent what its last
    # message brought back (as `Session.step` does).
    after = max(i for i, m in enumerate(session.messages) if m.role == "assistant")
    await session._advance()
    return [m for m in session.messages[after + 1 :] if agent_visible(m)]


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
    suspended: bool = False,
) -> Trajectory:
    mark = time.perf_counter()
    reward_info = None
    reward = 0.0
    status = session.status or "failed"
    error = session.error
    try:
        if not suspended:  # a suspended episode is scored once, when it ends
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
    if status not in ("failed", "aborted"):  # infrastructure says nothing about difficulty
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
        retrieval_variant=getattr(session.domain, "retrieval_variant", None),
        thinking_tool=session.think,
        user_fingerprint=getattr(user, "fingerprint", None),
    )
