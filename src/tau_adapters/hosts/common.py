"""What every host adapter shares, so that slime, AReaL and SkyRL train on the same numbers.

- the removal policy: which finished episodes must not be trained on (infrastructure failures,
  episodes the malformed-output policy marks for removal, episodes that produced no tokens);
- the training reward: the configured shaper's reward (or tau2's official one), less an optional
  penalty per malformed model turn; the official reward is always kept beside it;
- GRPO-style group normalisation that leaves removed samples out of each group's statistics;
- the episode configuration for a host: the host's own settings, the environment, and the
  tokenizer/context limits the host already knows.

Adapters translate their host's types to and from these; none of this imports a host.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Any, TypeVar

from tau_adapters.config import EpisodeConfig
from tau_adapters.core import Status
from tau_adapters.episode.rollout import Trajectory
from tau_adapters.errors import ConfigError
from tau_adapters.runtime.logs import get_logger

log = get_logger("tau_adapters.hosts")

T = TypeVar("T")


def should_remove(
    trajectory: Trajectory, *, evaluation: bool = False, drop_aborted: bool = False
) -> bool:
    """Whether a host must leave this episode out of training.

    A failed episode (user simulator, environment or engine gave up, scoring broke) says nothing
    about the model, so it must not train as a reward of 0; neither may an episode the
    ``on_malformed="remove"`` policy marked, nor a token-level episode with no tokens at all.
    ``drop_aborted``: also an aborted one (engine abort, cancellation, a deadline), for hosts that
    cannot retry a sample. Evaluation keeps every episode (a failure there is reported, not
    hidden)."""
    if evaluation:
        return False
    if drop_aborted and trajectory.status == Status.ABORTED:
        return True
    transcript = getattr(trajectory, "transcript", None)
    no_tokens = bool(getattr(trajectory, "token_level", False)) and (
        transcript is None or not len(transcript.ids)
    )
    return bool(trajectory.remove_sample or trajectory.status == Status.FAILED or no_tokens)


def removal_reason(
    trajectory: Trajectory, *, evaluation: bool = False, drop_aborted: bool = False
) -> str | None:
    """Why `should_remove` leaves this episode out (for the host's logs and metadata), or None."""
    if not should_remove(trajectory, evaluation=evaluation, drop_aborted=drop_aborted):
        return None
    detail = trajectory.error or trajectory.termination_reason
    if trajectory.status == Status.FAILED:
        return f"failed episode: {detail}"
    if trajectory.remove_sample:
        return f"removed by on_malformed=remove: {detail}"
    if trajectory.status == Status.ABORTED:
        return f"aborted episode: {detail}"
    return "no tokens"


def training_reward(
    trajectory: Trajectory, *, shaped: bool = True, format_penalty: float = 0.0
) -> float:
    """The reward a host trains on: the shaper's value (``shaped``) or tau2's official reward,
    minus ``format_penalty`` for each model turn that could not be parsed."""
    value = trajectory.shaped_reward if shaped else trajectory.reward
    rejected = int(trajectory.counts.get("rejected_turns", 0)) if format_penalty else 0
    return float(value) - float(format_penalty) * rejected


def normalise_groups(
    values: Sequence[float],
    groups: Sequence[Sequence[int]],
    removed: Sequence[bool],
    *,
    use_std: bool = True,
    eps: float = 1e-6,
) -> list[float]:
    """Per group: ``value - mean`` (divided by ``std + eps`` with `use_std`, sample std), over
    the samples that are kept. Removed samples get 0.0 and count in no group's mean or std; a
    group with one kept sample gets 0.0 for it (nothing to compare with)."""
    out = [0.0] * len(values)
    for group in groups:
        kept = [i for i in group if not removed[i]]
        if not kept:
            continue
        mean = sum(values[i] for i in kept) / len(kept)
        var = sum((values[i] - mean) ** 2 for i in kept) / (len(kept) - 1) if len(kept) > 1 else 0.0
        std = math.sqrt(var)
        for i in kept:
            out[i] = (values[i] - mean) / (std + eps) if use_std else values[i] - mean
    return out


def groups_of(
    count: int, size: int, keys: Sequence[Hashable | None] | None = None
) -> list[list[int]]:
    """Indices grouped by `keys` when every sample has one, else consecutive blocks of `size`."""
    if keys is not None and count and all(k is not None for k in keys):
        found: dict[Hashable, list[int]] = {}
        for i, key in enumerate(keys):
            found.setdefault(key, []).append(i)
        return list(found.values())
    size = max(1, int(size or 1))
    return [list(range(i, min(i + size, count))) for i in range(0, count, size)]


def host_config(
    host: str,
    settings: Mapping[str, Any] | None = None,
    *,
    policy: str,
    tokenizer: str | None = None,
    tokenizer_setting: str | None,
    max_context_tokens: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> EpisodeConfig:
    """The episode configuration for a host run: the environment (``TAU_ADAPTERS_*`` and the
    ``TAU2_*`` names), then `settings` (the host's own config block, which wins), then what the
    host already knows: its model's tokenizer and its context length, used where no setting names
    them. A token-level host (`tokenizer_setting` names the host's setting) without any tokenizer
    fails here, naming both ways to give one; text-level hosts pass ``None``.

    An explicit setting wins over the host's own value (a user who sets
    ``TAU_ADAPTERS_MAX_CONTEXT_TOKENS`` means it), but where the two differ a warning names both:
    a context above the host's makes the engine refuse long episodes, and a tokenizer other than
    the host's model's gives token ids the model never saw."""
    values = {k: v for k, v in (settings or {}).items() if v is not None}
    values["policy"] = policy
    base = EpisodeConfig.from_env(environ, **values)
    extra: dict[str, Any] = {}
    if not base.tokenizer and tokenizer_setting is not None:
        if not tokenizer:
            raise ConfigError(
                f"the {host} adapter needs a tokenizer: set {tokenizer_setting} ({host}'s own "
                "setting) or `tokenizer` (TAU_ADAPTERS_TOKENIZER) to a local Hugging Face "
                "tokenizer folder"
            )
        extra["tokenizer"] = tokenizer
    if max_context_tokens and not base.max_context_tokens:
        extra["max_context_tokens"] = int(max_context_tokens)
    elif max_context_tokens and int(base.max_context_tokens or 0) != int(max_context_tokens):
        log.warning(
            "%s: max_context_tokens=%d (set explicitly: TAU_ADAPTERS_MAX_CONTEXT_TOKENS or the "
            "%s config) wins over %s's own context length %d%s",
            host,
            base.max_context_tokens,
            host,
            host,
            int(max_context_tokens),
            "; the engine will refuse episodes longer than its own limit"
            if int(base.max_context_tokens or 0) > int(max_context_tokens)
            else "",
        )
    if (
        tokenizer
        and base.tokenizer
        and tokenizer_setting is not None
        and base.tokenizer != tokenizer
    ):
        log.warning(
            "%s: tokenizer %r (set explicitly) wins over %s's own %s %r: token ids must be the "
            "trained model's",
            host,
            base.tokenizer,
            host,
            tokenizer_setting,
            tokenizer,
        )
    config = EpisodeConfig.from_env(environ, **values, **extra) if extra else base
    from tau_adapters.plugins import check_names

    # A misspelt reward/parser/user name fails at start-up, not in every episode; the policy is
    # the host's own engine client, not a name to look up.
    check_names(config, check_policy=False)
    # A domain tau2 refuses in solo mode fails here, not in an episode: the domain set for the
    # run. Hosts whose rows name the domain (slime metadata, AReaL and SkyRL rows) leave it unset;
    # the default ('airline') is nobody's choice then, and a row naming a domain without solo
    # mode is refused with the same ConfigError when its episode starts (as a row naming
    # another domain's task is: the dataset does not fit the settings).
    if config.solo_mode and "domain" in config.model_fields_set:
        from tau_adapters.domains import get_domain
        from tau_adapters.episode.tasks import check_solo_domain

        check_solo_domain(get_domain(config.domain))
    return config


async def rollout_within(
    task: Any,
    config: EpisodeConfig,
    policy: Any,
    *,
    trial: int = 0,
    split: str | None = None,
    timeout_s: float | None = None,
) -> Any:
    """`tau_adapters.episode.rollout.rollout` under a host's per-episode deadline: an episode past it is
    cancelled and comes back ``aborted`` with its partial transcript, never as an exception."""
    from tau_adapters.episode.rollout import rollout

    episode = asyncio.ensure_future(
        rollout(task, config, policy=policy, trial=trial, split=split, on_cancel="return")
    )
    try:
        done, _ = await asyncio.wait({episode}, timeout=timeout_s)
    except asyncio.CancelledError:  # the host cancelled us: the episode must not run on orphaned
        episode.cancel()
        raise
    if not done:
        episode.cancel()
    return await episode


def aggregate_episode_metrics(metrics: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per-batch means of every numeric per-episode metric, plus the share of each termination
    reason (``termination/<reason>``) and status (``status/<status>``)."""
    if not metrics:
        return {}
    out: dict[str, Any] = {}
    numbers: dict[str, list[float]] = {}
    reasons: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    for entry in metrics:
        for key, value in entry.items():
            if isinstance(value, bool | int | float):
                numbers.setdefault(key, []).append(float(value))
        reasons[str(entry.get("termination_reason"))] += 1
        statuses[str(entry.get("status"))] += 1
    for key, values in numbers.items():
        out[key] = sum(values) / len(values)
    for reason, count in reasons.items():
        out[f"termination/{reason}"] = count / len(metrics)
    for status, count in statuses.items():
        out[f"status/{status}"] = count / len(metrics)
    return out


def shape_from_metadata(shaper: Any, metadata: Mapping[str, Any], fallback: float) -> Any:
    """The shaper's verdict on a finished sample from the fields `hosts.samples.episode_metadata`
    stored (the official reward, tau2's reward info, the task); `fallback` is the host's own
    reward for a sample made elsewhere."""
    raw = metadata.get("raw_reward")
    official = float(fallback if raw is None else raw)
    return shaper.shape(
        metadata.get("reward_info"),
        domain=str(metadata.get("domain", "")),
        task_id=str(metadata.get("task_id", "")),
        official=official,
    )


def has_spread(values: Sequence[float], tolerance: float = 1e-6) -> tuple[bool, float]:
    """(whether a group's rewards differ: sample std above `tolerance`, their mean): a group
    whose rewards are all equal gives GRPO no signal."""
    mean = sum(values) / len(values) if values else 0.0
    if len(values) < 2:
        return False, mean
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return std > tolerance, mean


async def run_group(
    run_one: Callable[[int], Awaitable[tuple[T, float] | None]],
    size: int,
    *,
    use_std: bool = True,
) -> list[tuple[T, float]]:
    """Run `size` episodes of one task at once (member ``k`` is ``run_one(k)``: it returns the
    episode and its training reward, or None when the removal rule drops it) and normalise the
    kept rewards against each other (`normalise_groups`). Returns (episode, advantage-ready
    value) for the kept members, in member order; empty when every member was removed."""
    runs = await asyncio.gather(*(run_one(k) for k in range(size)))
    removed = [run is None for run in runs]
    rewards = [0.0 if run is None else run[1] for run in runs]
    values = normalise_groups(rewards, [range(size)], removed, use_std=use_std)
    return [(run[0], value) for run, value in zip(runs, values, strict=True) if run is not None]


class GroupMembers:
    """Numbers the members of groups that a host runs as `size` separate calls with the same row
    and no index (AReaL's ``gconfig.n_samples``: its grouped workflow calls ``arun_episode``
    `size` times with one row object). Each call of a group takes the next index, 0..size-1,
    from `next(key)`, where `key` names the group (the host's id for the submitted row); the
    member's trial is then the row's trial plus its index (`member_trial`), so every member
    meets its own user seed, as with the adapter's own ``group_size`` (`run_group`).

    `next` must run before the host's call first awaits: the host starts a group's calls
    together and their synchronous starts run back to back, in member order. A group's entry is
    dropped once its last member is numbered, so the table holds only groups being started."""

    def __init__(self, size: int) -> None:
        self.size = max(1, int(size or 1))
        self._next: dict[Hashable, int] = {}

    def next(self, key: Hashable) -> int:
        if self.size == 1:
            return 0
        member = self._next.pop(key, 0)
        if member + 1 < self.size:
            self._next[key] = member + 1
        return member

    def __len__(self) -> int:
        """Groups whose members are still being numbered."""
        return len(self._next)


def member_trial(base_trial: int, member: int) -> int:
    """The trial a group member runs as: the row's trial plus the member's index, so member k
    of a group gets user seed ``config.seed + base_trial + k`` (`rollout` seeds by trial)."""
    return int(base_trial) + int(member)
