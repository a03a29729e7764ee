"""What a host's sample says about the episode behind it: one metadata builder for every adapter,
so slime's ``Sample.metadata``, SkyRL's step metadata and AReaL's logs carry the same fields."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tau_adapters.episode.rollout import Trajectory
from tau_adapters.errors import ConfigError
from tau_adapters.hosts.common import removal_reason


def episode_metadata(
    trajectory: Trajectory,
    *,
    evaluation: bool = False,
    drop_aborted: bool = False,
    episode_id: str | None = None,
) -> dict[str, Any]:
    """The finished episode as plain JSON fields: task, official and shaped reward, tau2's
    reward info, ending, status, error, whether (and why) the host must not train on it, counts,
    timings and usage. Removal follows `tau_adapters.hosts.common.should_remove`."""
    removal = removal_reason(trajectory, evaluation=evaluation, drop_aborted=drop_aborted)
    counts = trajectory.counts
    metadata: dict[str, Any] = {
        "benchmark": trajectory.benchmark,
        "domain": trajectory.domain,
        "split": trajectory.split,
        "task_id": trajectory.task_id,
        "trial": trajectory.trial,
        "raw_reward": float(trajectory.reward),
        "shaped_reward": float(trajectory.shaped_reward),
        "reward_info": (
            trajectory.reward_info.model_dump(mode="json")
            if trajectory.reward_info is not None
            else None
        ),
        "termination_reason": trajectory.termination_reason,
        "status": str(trajectory.status),
        "error": trajectory.error,
        "remove_sample": removal is not None,
        "removal_reason": removal,
        "turns": counts.get("agent_turns", 0),
        "tool_calls": counts.get("tool_calls", 0),
        "tool_errors": counts.get("tool_errors", 0),
        "parse_errors": counts.get("rejected_turns", 0),
        "prompt_tokens": counts.get("prompt_tokens", 0),
        "response_tokens": counts.get("response_tokens", 0),
        "sampled_tokens": counts.get("sampled_tokens", 0),
        "timings": dict(trajectory.timings),
        "duration_s": trajectory.duration_s,
    }
    # How the reward was earned (as the trajectory row says it): a solo score is tau2's
    # solo_mode=True evaluation, not comparable with a score against a user; think calls were
    # left out of what tau2 scored.
    if getattr(trajectory, "solo_mode", False):
        metadata["solo_mode"] = True
    if getattr(trajectory, "thinking_tool", False):
        metadata["thinking_tool"] = True
    if episode_id is not None:
        metadata["episode_id"] = episode_id
    if trajectory.shaped is not None:
        metadata["reward_shaping"] = trajectory.shaped.to_json()
    # ThunderAgent release outcome (program_released / _not_registered / _release_failed)
    metadata.update({k: v for k, v in counts.items() if k.startswith("program_")})
    if trajectory.usage:
        metadata["usage"] = dict(trajectory.usage)
    return metadata


def top_p_replay(transcript: Any, turns: Sequence[Any]) -> tuple[list[int], list[int]]:
    """slime's top-p replay arrays over the response part: each sampled token keeps the set the
    engine reported; template and observation tokens get empty spans (offsets has one entry more
    than the response)."""
    ids: list[int] = []
    offsets = [0]
    model_turns = iter(turns)
    for span in transcript.spans[1:]:
        length = span.end - span.start
        data = next(model_turns, None) if span.kind == "model" else None
        if span.kind == "model" and data is None and length:
            raise ConfigError(
                "slime asked for top-p replay (--rollout-top-p below 1.0) but the engine returned "
                "no top-p token data: use an SGLang build that supports return_top_p_token_ids, "
                "or --rollout-top-p 1.0"
            )
        if data is None:
            offsets.extend([offsets[-1]] * length)
            continue
        kept, kept_offsets = data
        base = len(ids)
        ids.extend(kept)
        offsets.extend(base + o for o in kept_offsets[1:])
    return ids, offsets
