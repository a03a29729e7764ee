"""slime adapter: ``--custom-generate-function-path tau_adapters.slime.generate``.

Each slime `Sample` becomes one token-level tau2 episode against slime's router; the sample comes
back with ``tokens``, ``response``, ``response_length``, ``loss_mask``, ``rollout_log_probs``,
``reward`` (tau2's official reward, so slime skips its reward model), ``status`` as slime's enum
and ``metadata`` (raw reward, reward_info, termination reason, turns, tokens, timings).

Also here: `reward_post_process` for ``--custom-reward-post-process-path`` (shaping + GRPO group
normalisation that leaves removed samples out of the statistics) and `reward_func` for
``--custom-rm-path`` (evaluation-only scoring of saved trajectories), and `dynamic_filter` for
``--dynamic-sampling-filter-path`` (groups filtered on the shaped reward that training uses). This module only translates
slime's types; the episode is `tau_adapters.episode.rollout`.
"""

from __future__ import annotations

from tau_adapters.slime.adapter import (
    config_from_args,
    dynamic_filter,
    generate,
    reward_func,
    reward_post_process,
    task_ref_from_sample,
)

__all__ = [
    "config_from_args",
    "dynamic_filter",
    "generate",
    "reward_func",
    "reward_post_process",
    "task_ref_from_sample",
]
