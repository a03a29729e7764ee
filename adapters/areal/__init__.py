"""AReaL adapter: tau2 as an AReaL workflow, in both of AReaL's modes.

- Engine mode, token-exact: ``workflow="tau_adapters.areal.Tau2Workflow"`` with
  ``workflow_kwargs={"econfig": ..., "gconfig": ..., "tokenizer": ...}``. Each ``arun_episode``
  runs one token-level tau2 episode whose every model turn is ``engine.agenerate(ModelRequest)``
  and returns AReaL's tensor dict (``input_ids, logprobs, loss_mask, versions, rewards,
  attention_mask``), or ``None`` for an episode that must not be trained on.
- Proxy (agent) mode: ``workflow="tau_adapters.areal.Tau2Agent"`` with the kwargs of AReaL's own
  tau2 example (``econfig``, ``gen_args``, ``timeout``); ``run`` returns a float reward.

``econfig`` takes our `EpisodeConfig` names and those of AReaL's tau2 example
(`config_from_econfig`). The episode itself is `tau_adapters.episode.rollout`; this package only
translates AReaL's types.
"""

from __future__ import annotations

try:
    import areal  # noqa: F401  (the host: installed in AReaL's own environment)
except ImportError as exc:  # say what to install, not where the import failed
    raise ImportError(
        "tau_adapters.areal needs AReaL (module `areal`), which is not installed: use AReaL's "
        "image or installation guide, then install tau-adapters into it (adapters/areal/README.md)"
    ) from exc

from tau_adapters.areal.adapter import (
    ArealEngineClient,
    ArealOptions,
    Tau2Agent,
    Tau2Workflow,
    config_from_econfig,
    task_ref_from_row,
    trajectory_tensors,
)

__all__ = [
    "ArealEngineClient",
    "ArealOptions",
    "Tau2Agent",
    "Tau2Workflow",
    "config_from_econfig",
    "task_ref_from_row",
    "trajectory_tensors",
]
