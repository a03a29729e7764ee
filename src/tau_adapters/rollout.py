"""Drive one episode (session + policy + user) to a `Trajectory`. Never raises for episode faults.

Every way an episode can go wrong ends in a trajectory with a ``status`` (completed, truncated,
aborted, failed), tau2's termination reason and, where something broke, an ``error``; the reward is
then tau2's (0.0 for anything but a user or agent stop). Only cancellation propagates, after the
policy and user are closed, because asyncio needs it to.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from tau_adapters.config import EpisodeConfig
from tau_adapters.domains import get_domain
from tau_adapters.plugins import make_policy, make_user
from tau_adapters.session import Session

STATUSES = ("completed", "truncated", "aborted", "failed")


@dataclass
class Trajectory:
    """One finished episode: the messages, tau2's verdict and what it cost."""

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

    def to_row(self) -> dict[str, Any]:
        """The JSON line written to ``trajectories.jsonl`` (tau2's JSON for messages/reward)."""
        return {
            "domain": self.domain,
            "split": self.split,
            "task_id": self.task_id,
            "trial": self.trial,
            "seed": self.seed,
            "status": self.status,
            "termination_reason": self.termination_reason,
            "reward": self.reward,
            "reward_info": (
                self.reward_info.model_dump(mode="json") if self.reward_info is not None else None
            ),
            "error": self.error,
            "duration_s": round(self.duration_s, 6),
            "timings": {k: round(v, 6) for k, v in self.timings.items()},
            "counts": dict(self.counts),
            "messages": [m.model_dump(mode="json") for m in self.messages],
        }


async def rollout(
    task: Any,
    config: EpisodeConfig,
    policy: Any | None = None,
    user: Any | None = None,
    *,
    trial: int = 0,
    split: str | None = None,
) -> Trajectory:
    """Run one episode of `task`. `policy`/`user` default to the ones `config` names."""
    started = time.perf_counter()
    seed = config.seed + trial
    domain = get_domain(config.domain)
    policy = policy if policy is not None else make_policy(config.policy, config)
    user = user if user is not None else make_user(config.user, config)
    session = Session(task, config, user, seed=seed, domain=domain)
    timings = {"policy_s": 0.0, "env_user_s": 0.0, "score_s": 0.0}
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
            try:
                message = await policy.act(observation)
            except Exception as exc:
                session.fail(f"policy failed: {exc!r}")
                break
            finally:
                timings["policy_s"] += time.perf_counter() - mark
            mark = time.perf_counter()
            result = await session.step(message)
            timings["env_user_s"] += time.perf_counter() - mark
            observation = result.observation
    finally:
        for party in (policy, user):
            # Closing is best effort: the episode's outcome is already known.
            with contextlib.suppress(Exception):
                await party.close()
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
    counters = session.counters
    return Trajectory(
        domain=domain.name,
        split=split,
        task_id=task.id,
        trial=trial,
        seed=seed,
        messages=session.messages,
        termination_reason=session.termination_reason or "agent_error",
        status=status,
        reward=reward,
        reward_info=reward_info,
        error=error,
        duration_s=time.perf_counter() - started,
        timings=timings,
        counts={
            "steps": counters.steps,
            "agent_turns": counters.agent_turns,
            "user_turns": counters.user_turns,
            "tool_calls": counters.tool_calls,
            "tool_errors": counters.tool_errors,
            "messages": len(session.messages),
        },
    )
