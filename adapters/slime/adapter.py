"""slime types <-> tau-adapters episodes. No episode logic here: see `tau_adapters.episode.rollout`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tau_adapters.config import EpisodeConfig
from tau_adapters.episode.tasks import TaskRef
from tau_adapters.errors import ConfigError
from tau_adapters.hosts import partial
from tau_adapters.hosts.common import (
    groups_of,
    has_spread,
    host_config,
    normalise_groups,
    shape_from_metadata,
)
from tau_adapters.hosts.samples import episode_metadata, top_p_replay

#: slime sampling parameters passed through to the engine (the adapter owns max_new_tokens).
PASSTHROUGH_SAMPLING = (
    "top_k", "min_p", "sampling_seed", "stop", "stop_token_ids", "min_new_tokens",
    "repetition_penalty", "frequency_penalty", "presence_penalty",
    "spaces_between_special_tokens", "custom_params",
)  # fmt: skip
GRPO_FAMILY = ("grpo", "gspo", "cispo", "reinforce_plus_plus_baseline")

_configs: dict[int, tuple[Any, EpisodeConfig]] = {}


def config_from_args(args: Any) -> EpisodeConfig:
    """The episode configuration for a slime run: environment variables (the ``TAU2_*`` names
    recipes use and ``TAU_ADAPTERS_*``) plus what slime's own arguments say (the tokenizer from
    ``--hf-checkpoint``, ``--rollout-max-context-len``). Built once per ``args`` object."""
    cached = _configs.get(id(args))
    if cached is not None and cached[0] is args:
        return cached[1]
    config = host_config(
        "slime",
        policy="sglang:slime-router",
        tokenizer=getattr(args, "hf_checkpoint", None),
        tokenizer_setting="--hf-checkpoint",
        max_context_tokens=getattr(args, "rollout_max_context_len", None),
    )
    _configs[id(args)] = (args, config)
    return config


def router_url(args: Any) -> str:
    return f"http://{args.sglang_router_ip}:{args.sglang_router_port}"


def task_ref_from_sample(sample: Any, default_split: str | None = None) -> TaskRef:
    """The task a sample names: ``metadata`` {domain, split, task_id} (what ``tau-adapters tasks
    export --format slime`` writes), or a ``domain/split/task_id`` prompt string."""
    return TaskRef.parse(
        sample.metadata,
        sample.prompt,
        default_split=default_split,
        what="a slime sample",
        hint="write the dataset with `tau-adapters tasks export --format slime`, and keep "
        "slime's --metadata-key at its default 'metadata'",
    )


def _abort_flag(args: Any) -> Any:
    """slime's "stop now" (``GenerateState.aborted``), read at every turn boundary, with
    ``--partial-rollout`` (see `tau_adapters.hosts.partial`); None otherwise."""
    if not getattr(args, "partial_rollout", False):
        return None
    from slime.rollout.sglang_rollout import GenerateState

    state = GenerateState(args)
    return lambda: bool(state.aborted)


def _reset(sample: Any) -> None:
    """An aborted sample without a snapshot (no --partial-rollout) starts a fresh episode."""
    sample.tokens = []
    sample.response = ""
    sample.response_length = 0
    sample.loss_mask = None
    sample.rollout_log_probs = None
    sample.reward = None
    sample.remove_sample = False
    for name in ("rollout_top_p_token_ids", "rollout_top_p_token_offsets"):
        if hasattr(sample, name):
            setattr(sample, name, None)


async def generate(
    args: Any, sample: Any, sampling_params: dict[str, Any], evaluation: bool = False
) -> Any:
    """slime's custom generate function: one tau2 episode per sample."""
    from slime.utils.types import Sample
    from tau_adapters.agents.thunderagent import ensure_router
    from tau_adapters.agents.token_policy import TokenPolicy, template_for
    from tau_adapters.episode.rollout import rollout

    config = config_from_args(args)
    custom = sampling_params.get("custom_params") or {}
    replay_top_p = isinstance(custom, dict) and bool(custom.get("return_top_p_token_ids"))
    ref = task_ref_from_sample(sample, config.split)
    budget = int(sampling_params.get("max_new_tokens") or config.max_response_tokens or 0) or None
    if config.max_response_tokens and budget:
        budget = min(budget, config.max_response_tokens)
    episode = config.model_copy(
        update={
            "domain": ref.domain,
            "split": ref.split,
            "temperature": float(sampling_params.get("temperature", config.temperature)),
            "top_p": float(sampling_params.get("top_p", config.top_p)),
            "max_response_tokens": budget,
        }
    )
    task = ref.load()
    # --partial-rollout: an aborted sample carries its episode's snapshot and resumes from it.
    resume = partial.snapshot_to_resume(
        sample.status.name,
        sample.metadata,
        sample.loss_mask,
        sample.response_length,
        mask_off=bool(getattr(args, "mask_offpolicy_in_partial_rollout", False)),
    )
    if resume is None and (sample.status != Sample.Status.PENDING or sample.response_length):
        _reset(sample)
    # Once per process: is slime's router what the settings expect (ThunderAgent with /generate)?
    await ensure_router(router_url(args), "sglang", thunderagent=episode.thunderagent)
    template = template_for(episode)
    policy = TokenPolicy(
        router_url(args),
        episode,
        template=template,
        sampling={k: sampling_params[k] for k in PASSTHROUGH_SAMPLING if k in sampling_params},
        episode_id=getattr(sample, "session_id", None) or None,
    )
    trajectory = await rollout(
        task,
        episode,
        policy=policy,
        trial=int(sample.index or 0),
        split=ref.split,
        on_cancel="return",
        resume=resume,
        should_suspend=_abort_flag(args),
    )
    fill_sample(sample, trajectory, template, evaluation=evaluation, episode_id=policy.episode_id)
    if replay_top_p and trajectory.transcript is not None and trajectory.transcript.ids:
        ids, offsets = top_p_replay(trajectory.transcript, policy.top_p_turns)
        sample.rollout_top_p_token_ids = ids
        sample.rollout_top_p_token_offsets = offsets
    return sample


def fill_sample(
    sample: Any,
    trajectory: Any,
    template: Any,
    *,
    evaluation: bool = False,
    episode_id: str | None = None,
) -> Any:
    """Write an episode's tokens, reward, status and metadata into a slime Sample."""
    from slime.utils.types import Sample

    if trajectory.snapshot is not None:  # suspended: back to slime's buffer, resumed later
        return partial.write_suspended_slime(sample, trajectory, template, Sample.Status.ABORTED)
    transcript = trajectory.transcript
    ids = transcript.ids.tolist() if transcript is not None else []
    if ids:
        prompt_len = transcript.prompt_len
        sample.tokens = ids
        sample.response_length = len(ids) - prompt_len
        sample.response = template.decode(ids[prompt_len:])
        sample.loss_mask = transcript.loss_mask.tolist()
        sample.rollout_log_probs = transcript.logprobs.tolist()
    else:
        _placeholder_tokens(sample, template)
    sample.reward = float(trajectory.reward)
    sample.status = Sample.Status[str(trajectory.status).upper()]  # same four names
    # Failed episodes (user simulator, environment, engine gave up) must not train with reward 0.
    fields = episode_metadata(trajectory, episode_id=episode_id)
    remove = fields["remove_sample"] or not ids
    if remove and not evaluation:
        sample.remove_sample = True
        sample.loss_mask = [0] * sample.response_length
    metadata = dict(sample.metadata) if isinstance(sample.metadata, dict) else {}
    metadata.pop(partial.SNAPSHOT_KEY, None)
    metadata.update(fields, remove_sample=remove)
    sample.metadata = metadata
    return sample


def _placeholder_tokens(sample: Any, template: Any) -> None:
    """Tokens for an episode that ended before the first model call (environment or user
    simulator down): the prompt, as slime's own generate path always keeps it, and one masked
    end-of-turn token as the response. A sample with no tokens would be scheduled as a
    zero-length sequence in a training micro-batch; this one is well formed and removed."""
    prompt = sample.prompt if isinstance(sample.prompt, str) and sample.prompt else "tau2 episode"
    prompt_ids = list(template.prompt_ids([{"role": "user", "content": prompt}], None))
    sample.tokens = [*prompt_ids, template.eot_id]
    sample.response_length = 1
    sample.response = ""
    sample.loss_mask = [0]
    sample.rollout_log_probs = [0.0]


def reward_post_process(args: Any, samples: Sequence[Any]) -> tuple[list[float], list[float]]:
    """``--custom-reward-post-process-path``: shaping, then GRPO group normalisation.

    Returns ``(rewards, advantages_input)`` as slime expects. Removed samples get 0.0 and are
    left out of their group's mean and std; the official reward stays in
    ``metadata["raw_reward"]`` and the shaped one is written to ``metadata["shaped_reward"]``.
    """
    from tau_adapters.rewards.shapers import get_shaper

    shaper = get_shaper(config_from_args(args))
    shaped: list[float] = []
    for sample in samples:
        metadata = sample.metadata if isinstance(sample.metadata, dict) else {}
        result = shape_from_metadata(shaper, metadata, _reward_value(args, sample))
        metadata.update(
            raw_reward=result.official, shaped_reward=result.value, reward_weight=result.weight
        )
        sample.metadata = metadata
        shaped.append(float(result.value))
    estimator = getattr(args, "advantage_estimator", "grpo")
    if estimator not in GRPO_FAMILY or not getattr(args, "rewards_normalization", True):
        return shaped, list(shaped)
    use_std = estimator in ("grpo", "gspo", "cispo") and getattr(
        args, "grpo_std_normalization", True
    )
    groups = groups_of(
        len(samples),
        getattr(args, "n_samples_per_prompt", 1),
        [getattr(s, "group_index", None) for s in samples],
    )
    removed = [bool(getattr(s, "remove_sample", False)) for s in samples]
    return shaped, normalise_groups(shaped, groups, removed, use_std=use_std)


def _reward_value(args: Any, sample: Any) -> float:
    """A sample's reward as slime holds it (a float, or a dict under ``--reward-key``)."""
    value = sample.reward
    if isinstance(value, dict):
        value = value.get(getattr(args, "reward_key", None) or "reward", 0.0)
    return float(value or 0.0)


def shaped_rewards(args: Any, samples: Sequence[Any]) -> list[float]:
    """The configured shaper's reward per sample, from what `generate` stored in metadata."""
    from tau_adapters.rewards.shapers import get_shaper

    shaper = get_shaper(config_from_args(args))
    return [
        shape_from_metadata(
            shaper, s.metadata if isinstance(s.metadata, dict) else {}, _reward_value(args, s)
        ).value
        for s in samples
    ]


def dynamic_filter(args: Any, samples: Sequence[Any], **kwargs: Any) -> Any:
    """``--dynamic-sampling-filter-path tau_adapters.slime.dynamic_filter``: keep a group whose
    *shaped* rewards differ (std above 1e-6), leaving out removed samples.

    slime's ``check_reward_nonzero_std`` reads ``sample.reward``, tau2's official 0/1, before
    `reward_post_process` shapes it: with ``partial`` shaping it would drop every all-zero group
    although partial credit gives it a learning signal. This filter sees what training sees.
    """
    kept = [s for s in samples if not getattr(s, "remove_sample", False)]
    keep, mean = has_spread(shaped_rewards(args, kept))
    reason = None if keep else f"zero_std_shaped_{round(mean, 1)}"
    try:
        from slime.rollout.filter_hub.base_types import DynamicFilterOutput
    except ImportError:  # older slime: a bare bool is accepted
        return keep
    return DynamicFilterOutput(keep=keep, reason=reason)


async def reward_func(args: Any, sample: Any, **kwargs: Any) -> Any:
    """``--custom-rm-path``: tau2's official reward, for evaluation-only use.

    A sample produced by `generate` already carries it; a sample from elsewhere must carry tau2
    messages in ``metadata["messages"]`` (tau2 JSON) and a task reference, and is scored again.
    Accepts a list of samples too (slime's batched reward path).
    """
    if isinstance(sample, list):
        return [await reward_func(args, s, **kwargs) for s in sample]
    metadata = sample.metadata if isinstance(sample.metadata, dict) else {}
    if metadata.get("raw_reward") is not None:
        return float(metadata["raw_reward"])
    messages = metadata.get("messages")
    if messages is None:
        raise ConfigError(
            "tau_adapters.slime.reward_func scores samples made by tau_adapters.slime.generate, or "
            "samples whose metadata carries tau2 'messages' and a task reference"
        )
    from tau_adapters.evaluation.rescore import rescore_row

    ref = task_ref_from_sample(sample)
    row = {
        "domain": ref.domain,
        "task_id": ref.task_id,
        "messages": messages,
        "termination_reason": metadata.get("termination_reason", "user_stop"),
    }
    return float(rescore_row(row)["reward"])
