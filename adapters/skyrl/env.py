"""skyrl-gym types <-> tau-adapters episodes. No episode logic here: see `tau_adapters.episode.text_episode`.

SkyRL's generator, per trajectory (``skyrl/train/generators/skyrl_gym_generator.py``)::

    env = skyrl_gym.make(env_class, env_config=..., extras=row_extras | {"max_turns": ...})
    chat, _ = env.init(row_prompt)            # in its thread pool
    while not done: out = env.step(model_text)  # observations, reward, done, metadata
    env.get_metrics(); env.close()

It does not catch environment exceptions (one kills the batch), so nothing here raises after
construction: a failure ends the episode with reward 0, ``metadata["remove_sample"] = True`` and
the reason, and `get_metrics` carries the same flag into SkyRL's trajectory output, where
`tau_adapters.skyrl.generator.TauSkyRLGymGenerator` zeroes the sample's loss mask.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Mapping
from typing import Any

from skyrl_gym.envs.base_text_env import BaseTextEnv, BaseTextEnvStepOutput

from tau_adapters.config import EpisodeConfig
from tau_adapters.episode.rollout import Trajectory
from tau_adapters.episode.tasks import TaskRef
from tau_adapters.episode.text_episode import SyncTextEpisode, turns_needed
from tau_adapters.errors import ConfigError
from tau_adapters.hosts.common import aggregate_episode_metrics
from tau_adapters.hosts.samples import episode_metadata
from tau_adapters.runtime.logs import get_logger
from tau_adapters.runtime.mappings import as_mapping

logger = get_logger("tau_adapters.skyrl")

#: Environment ids this adapter registers, and the class behind each. The tau-bench v1 backend
#: adds ``"tau_bench"`` here (same class: the domain name picks the benchmark in the core).
#: One env class serves both benchmarks: the episode's domain (``tau1-*`` for tau-bench v1) picks
#: the backend; the ids match what ``tasks export --format skyrl`` writes as ``env_class``.
ENV_CLASSES: dict[str, str] = {
    "tau2": "tau_adapters.skyrl.env:Tau2Env",
    "tau_bench": "tau_adapters.skyrl.env:Tau2Env",
}

#: What SkyRL users do with ``metadata["remove_sample"]`` / ``env_metrics["remove_sample"]``.
FILTER_HINT = (
    "do not train on this sample: SkyRL's generator ignores step metadata, so run the trainer "
    "with tau_adapters.skyrl.generator.TauSkyRLGymGenerator (python -m "
    "tau_adapters.skyrl.entrypoint does), which zeroes the loss mask of samples whose "
    "env_metrics['remove_sample'] is 1"
)

_register_lock = threading.Lock()
_warned: set[tuple[str, int]] = set()


def config_from_env_config(env_config: Any = None) -> EpisodeConfig:
    """The episode settings: ``TAU_ADAPTERS_*`` / ``TAU2_*`` environment variables, overridden by
    ``env_config`` (SkyRL's ``environment.skyrl_gym.<env id>`` block, a dict or an OmegaConf
    node) with the same names as `EpisodeConfig`. Raises `ConfigError` naming a bad setting."""
    overrides = as_mapping(env_config)
    if overrides is None:
        raise ConfigError(
            f"SkyRL env_config for tau2 must be a mapping of EpisodeConfig settings, got "
            f"{type(env_config).__name__}"
        )
    return EpisodeConfig.from_env(**overrides)


def task_ref_from_extras(extras: Mapping[str, Any], config: EpisodeConfig) -> TaskRef:
    """The task a dataset row names: ``extra_info`` {domain, split, task_id} (what
    ``tau-adapters tasks export --format skyrl`` writes), else ``reward_spec["ground_truth"]``
    as ``domain/split/task_id``."""
    spec = as_mapping(extras.get("reward_spec")) or {}
    return TaskRef.parse(
        extras.get("extra_info"),
        spec.get("ground_truth"),
        default_split=config.split,
        what="a SkyRL dataset row",
        hint="write the dataset with `tau-adapters tasks export --format skyrl`",
    )


def register(ids: list[str] | tuple[str, ...] | None = None, env_config: Any = None) -> list[str]:
    """Register the tau environments with skyrl-gym (call it inside SkyRL's Ray entrypoint).

    Idempotent (skyrl-gym raises on a duplicate id; a second call here is a no-op), and it checks
    the episode configuration now, so a bad setting fails at start-up rather than in a worker.
    Returns the registered ids.
    """
    from skyrl_gym.envs import registration

    config = config_from_env_config(env_config)
    from tau_adapters.plugins import make_parser

    make_parser(config.parser)
    chosen = list(ids) if ids is not None else list(ENV_CLASSES)
    with _register_lock:
        for env_id in chosen:
            if env_id not in ENV_CLASSES:
                raise ConfigError(
                    f"unknown tau environment id {env_id!r}; available: {sorted(ENV_CLASSES)}"
                )
            existing = registration.registry.get(env_id)
            if existing is not None:
                if existing.entry_point != ENV_CLASSES[env_id]:
                    raise ConfigError(
                        f"skyrl-gym already has an environment {env_id!r} from "
                        f"{existing.entry_point!r}; deregister it or pick another id"
                    )
                continue
            registration.register(id=env_id, entry_point=ENV_CLASSES[env_id])
    return chosen


class Tau2Env(BaseTextEnv):
    """One tau2 episode per instance, as SkyRL makes them: one per trajectory."""

    def __init__(self, env_config: Any = None, extras: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        extras = dict(extras or {})
        self.extras = extras
        self.max_turns = _max_turns(extras.get("max_turns"))
        self.config: EpisodeConfig | None = None
        self.ref: TaskRef | None = None
        self._run: SyncTextEpisode | None = None
        self._failure: str | None = None
        self._closed = False
        try:
            self.config = config_from_env_config(env_config)
            self.ref = task_ref_from_extras(extras, self.config)
            trial = int((as_mapping(extras.get("extra_info")) or {}).get("trial") or 0)
            self._run = SyncTextEpisode(
                self.ref, self.config, trial=trial, max_turns=self.max_turns
            )
        except Exception as exc:  # construction runs inside SkyRL's agent loop: never raise
            self._failure = f"environment could not be built: {exc}"
            logger.warning("tau2 episode failed (reward 0, not trained on): %s", self._failure)

    # -- skyrl-gym API ---------------------------------------------------------------------------
    def init(self, prompt: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The system prompt (domain policy, call format, tool schemas) and the opening exchange;
        they replace the row's prompt, which only names the task."""
        messages = None
        if self._run is not None:
            self._warn_turn_limit(self._run)
            messages = self._run.start()
        return (messages if messages is not None else list(prompt or [])), self._info()

    def step(self, action: str) -> BaseTextEnvStepOutput:
        """Parse the model's text, run tools or the user simulator; the reward at the end."""
        self.turns += 1
        observation = self._run.step(action) if self._run is not None else None
        if observation is not None:
            return BaseTextEnvStepOutput(
                observations=observation, reward=0.0, done=False, metadata={},
                postprocessed_action=None,
            )  # fmt: skip
        metadata = self._final_metadata()
        return BaseTextEnvStepOutput(
            observations=[], reward=metadata["reward"], done=True, metadata=metadata,
            postprocessed_action=None,
        )  # fmt: skip

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._run is not None:
                self._run.finish()

    def get_metrics(self) -> dict[str, Any]:
        """Per episode: success, reward, turns, tool calls/errors, parse errors, termination
        reason, status and the do-not-train flag. An unfinished episode (the host stopped at its
        length limit) is ended here as truncated."""
        if self._run is not None:
            self._run.finish()
        metadata = self._final_metadata()
        keys = ("reward", "raw_reward", "turns", "tool_calls", "tool_errors", "parse_errors")
        return {
            "success": float(metadata["raw_reward"] >= 1.0),
            **{key: metadata[key] for key in keys},
            "remove_sample": float(metadata["remove_sample"]),
            "termination_reason": metadata["termination_reason"],
            "status": metadata["status"],
        }

    @staticmethod
    def aggregate_metrics(metrics: list[dict[str, Any]]) -> dict[str, Any]:
        """Means of the numbers; shares of each termination reason and status."""
        return aggregate_episode_metrics(metrics)

    @property
    def trajectory(self) -> Any | None:
        """The finished episode (tau2 messages, reward info, counts), for logging or saving with
        ``trajectory.to_row()``; None while it runs or when it could not run."""
        return self._run.trajectory if self._run is not None else None

    # -- internals -------------------------------------------------------------------------------
    def _info(self) -> dict[str, Any]:
        ref = self.ref
        return {"task": ref.to_row() if ref is not None else None, "max_turns": self.max_turns}

    def _warn_turn_limit(self, run: SyncTextEpisode) -> None:
        if self.max_turns is None:
            return
        try:
            needed = turns_needed(run.ref.load())
        except Exception:  # a task that does not load: start() reports it as the failure
            return
        key = (run.ref.domain, self.max_turns)
        if self.max_turns >= needed or key in _warned:
            return
        _warned.add(key)
        message = (
            f"SkyRL's turn limit cuts tau2 episodes: generator.max_turns={self.max_turns} (SkyRL "
            f"overwrites extras['max_turns'] with it; its default is 1), but task "
            f"{run.ref.domain}/{run.ref.task_id} needs at least {needed} model turns to "
            f"succeed. Cut episodes end as truncated with reward 0. Set generator.max_turns=30 "
            f"(or more) in the SkyRL command."
        )
        logger.warning(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)

    def _final_metadata(self) -> dict[str, Any]:
        trajectory = self.trajectory
        if trajectory is None:  # never ran, or broke: a failed episode, never trained on
            ref, config = self.ref, self.config
            trajectory = Trajectory.failed(
                ref.domain if ref else "",
                ref.split if ref else None,
                ref.task_id if ref else "",
                trial=0,
                seed=config.seed if config else 0,
                error=self._failure
                or (self._run.failure if self._run is not None else None)
                or "the episode did not run",
                benchmark="tau2" if ref is None else None,
            )
        metadata = episode_metadata(trajectory)
        if self.trajectory is None:
            metadata["turns"] = self.turns
        # SkyRL trains on the step's reward: the configured (shaped) one, 0 for a removed sample.
        metadata["reward"] = 0.0 if metadata["remove_sample"] else metadata["shaped_reward"]
        metadata["do_not_train"] = metadata["remove_sample"]
        if metadata["remove_sample"]:
            metadata["how_to_filter"] = FILTER_HINT
        return metadata


def mask_removed_sample(output: Any) -> bool:
    """Zero the loss mask of a SkyRL agent-loop output whose episode must not train.

    `output` is SkyRL's ``TrajectoryOutput`` (``env_metrics``, ``loss_mask``) or
    ``StepWiseOutput`` (``step_outputs``, the flag in the last step's ``env_metrics``). Returns
    whether the sample was masked. The reward is already 0; with the mask at 0 the sample adds no
    gradient (it still counts in its GRPO group's mean, as SkyRL has no per-sample removal).
    """
    steps = getattr(output, "step_outputs", None)
    parts = list(steps) if steps is not None else [output]
    flagged = any(
        float((getattr(part, "env_metrics", None) or {}).get("remove_sample", 0.0)) > 0.0
        for part in parts
    )
    if flagged:
        for part in parts:
            part.loss_mask = [0] * len(part.loss_mask or [])
    return flagged


def _max_turns(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None
