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
from collections import Counter
from collections.abc import Mapping
from typing import Any

from skyrl_gym.envs.base_text_env import BaseTextEnv, BaseTextEnvStepOutput

from tau_adapters.config import EpisodeConfig
from tau_adapters.episode.tasks import TaskRef
from tau_adapters.episode.text_episode import TextEpisode, turns_needed
from tau_adapters.errors import ConfigError
from tau_adapters.hosts.common import removal_reason
from tau_adapters.runtime import background_loop
from tau_adapters.runtime.logs import get_logger

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
    overrides = _plain(env_config) if env_config is not None else {}
    if not isinstance(overrides, dict):
        raise ConfigError(
            f"SkyRL env_config for tau2 must be a mapping of EpisodeConfig settings, got "
            f"{type(env_config).__name__}"
        )
    return EpisodeConfig.from_env(**overrides)


def task_ref_from_extras(extras: Mapping[str, Any], config: EpisodeConfig) -> TaskRef:
    """The task a dataset row names: ``extra_info`` {domain, split, task_id} (what
    ``tau-adapters tasks export --format skyrl`` writes), else ``reward_spec["ground_truth"]``
    as ``domain/split/task_id``."""
    info = extras.get("extra_info")
    info = _plain(info) if info is not None else {}
    if isinstance(info, dict) and info.get("task_id") is not None and info.get("domain"):
        split = info.get("split") or config.split
        return TaskRef(str(info["domain"]), str(split), str(info["task_id"]))
    spec = _plain(extras.get("reward_spec")) or {}
    truth = spec.get("ground_truth") if isinstance(spec, dict) else None
    parts = truth.split("/") if isinstance(truth, str) else []
    if len(parts) == 3 and all(parts):
        return TaskRef(*parts)
    raise ConfigError(
        "a SkyRL dataset row does not name a tau2 task: expected extra_info {domain, split, "
        "task_id} (write the dataset with `tau-adapters tasks export --format skyrl`); got "
        f"extra_info={info!r}, reward_spec={spec!r}"
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
        self._lock = threading.Lock()
        self._episode: TextEpisode | None = None
        self._trajectory: Any | None = None
        self._failure: str | None = None
        self._closed = False
        self.config: EpisodeConfig | None = None
        self.ref: TaskRef | None = None
        try:
            self.config = config_from_env_config(env_config)
            self.ref = task_ref_from_extras(extras, self.config)
            self._timeout = self.config.user_timeout_s * self.config.user_attempts + 60.0
            self._episode = TextEpisode(
                self.ref,
                self.config,
                trial=int(_plain(extras.get("extra_info") or {}).get("trial") or 0),
                max_turns=self.max_turns,
            )
        except Exception as exc:  # construction runs inside SkyRL's agent loop: never raise
            self._fail(f"environment could not be built: {exc}")

    # -- skyrl-gym API ---------------------------------------------------------------------------
    def init(self, prompt: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The system prompt (domain policy, call format, tool schemas) and the opening exchange;
        they replace the row's prompt, which only names the task."""
        with self._lock:
            episode = self._episode
            if episode is None:
                return list(prompt or []), self._info()
            try:
                self._warn_turn_limit(episode)
                messages = background_loop.call(episode.start(), self._timeout)
            except Exception as exc:
                self._abandon(episode)
                self._fail(f"episode start failed: {exc!r}")
                return list(prompt or []), self._info()
            if episode.done:
                self._trajectory = episode.trajectory
            return messages, self._info()

    def step(self, action: str) -> BaseTextEnvStepOutput:
        """Parse the model's text, run tools or the user simulator; the reward at the end."""
        with self._lock:
            self.turns += 1
            episode = self._episode
            if self._trajectory is None and self._failure is None and episode is not None:
                try:
                    turn = background_loop.call(episode.step(action), self._timeout)
                except Exception as exc:
                    self._abandon(episode)
                    self._fail(f"environment step failed: {exc!r}")
                else:
                    if not turn.done:
                        return BaseTextEnvStepOutput(
                            observations=turn.observation,
                            reward=0.0,
                            done=False,
                            metadata={},
                            postprocessed_action=None,
                        )
                    self._trajectory = turn.trajectory
            elif self._trajectory is None and self._failure is None:
                self._fail("step() before a successful init()")
            self._release()
            metadata = self._final_metadata()
            return BaseTextEnvStepOutput(
                observations=[],
                reward=metadata["reward"],
                done=True,
                metadata=metadata,
                postprocessed_action=None,
            )

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._finish_unfinished()
            self._release()

    def get_metrics(self) -> dict[str, Any]:
        """Per episode: success, reward, turns, tool calls/errors, parse errors, termination
        reason, status and the do-not-train flag. An unfinished episode (the host stopped at its
        length limit) is ended here as truncated."""
        with self._lock:
            self._finish_unfinished()
            metadata = self._final_metadata()
        return {
            "success": float(metadata["raw_reward"] >= 1.0),
            "reward": metadata["reward"],
            "raw_reward": metadata["raw_reward"],
            "turns": metadata["turns"],
            "tool_calls": metadata["tool_calls"],
            "tool_errors": metadata["tool_errors"],
            "parse_errors": metadata["parse_errors"],
            "remove_sample": float(metadata["remove_sample"]),
            "termination_reason": metadata["termination_reason"],
            "status": metadata["status"],
        }

    @staticmethod
    def aggregate_metrics(metrics: list[dict[str, Any]]) -> dict[str, Any]:
        """Means of the numbers; shares of each termination reason and status."""
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

    @property
    def trajectory(self) -> Any | None:
        """The finished episode (tau2 messages, reward info, counts), for logging or saving with
        ``trajectory.to_row()``; None while it runs or when it could not run."""
        return self._trajectory

    # -- internals -------------------------------------------------------------------------------
    def _info(self) -> dict[str, Any]:
        ref = self.ref
        return {"task": ref.to_row() if ref is not None else None, "max_turns": self.max_turns}

    def _warn_turn_limit(self, episode: TextEpisode) -> None:
        if self.max_turns is None:
            return
        needed = turns_needed(episode.ref.load())
        key = (episode.ref.domain, self.max_turns)
        if self.max_turns >= needed or key in _warned:
            return
        _warned.add(key)
        message = (
            f"SkyRL's turn limit cuts tau2 episodes: generator.max_turns={self.max_turns} (SkyRL "
            f"overwrites extras['max_turns'] with it; its default is 1), but task "
            f"{episode.ref.domain}/{episode.ref.task_id} needs at least {needed} model turns to "
            f"succeed. Cut episodes end as truncated with reward 0. Set generator.max_turns=30 "
            f"(or more) in the SkyRL command."
        )
        logger.warning(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)

    def _fail(self, reason: str) -> None:
        if self._failure is None and self._trajectory is None:
            self._failure = reason
            logger.warning("tau2 episode failed (reward 0, not trained on): %s", reason)

    def _abandon(self, episode: TextEpisode) -> None:
        try:
            background_loop.call(episode.cancel(), 30.0)
        except Exception as exc:  # best effort: the episode is failed either way
            logger.warning("could not cancel a tau2 episode: %r", exc)

    def _finish_unfinished(self) -> None:
        episode = self._episode
        if episode is None or self._trajectory is not None or self._failure is not None:
            return
        try:
            self._trajectory = background_loop.call(episode.stop(), self._timeout)
        except Exception as exc:
            self._abandon(episode)
            self._fail(f"ending the episode failed: {exc!r}")

    def _release(self) -> None:
        self._episode = None  # keeps RSS flat: the session, its env and queues go with it

    def _final_metadata(self) -> dict[str, Any]:
        trajectory = self._trajectory
        ref = self.ref
        base: dict[str, Any] = {
            "domain": ref.domain if ref else None,
            "split": ref.split if ref else None,
            "task_id": ref.task_id if ref else None,
        }
        if trajectory is None:
            reason = self._failure or "the episode did not run"
            base.update(
                reward=0.0,
                raw_reward=0.0,
                shaped_reward=0.0,
                reward_info=None,
                termination_reason="agent_error",
                status="failed",
                error=reason,
                turns=self.turns,
                tool_calls=0,
                tool_errors=0,
                parse_errors=0,
                remove_sample=True,
                removal_reason=reason,
            )
        else:
            removal = removal_reason(trajectory)
            counts = trajectory.counts
            base.update(
                reward=0.0 if removal else float(trajectory.shaped_reward),
                raw_reward=float(trajectory.reward),
                shaped_reward=float(trajectory.shaped_reward),
                reward_info=(
                    trajectory.reward_info.model_dump(mode="json")
                    if trajectory.reward_info is not None
                    else None
                ),
                termination_reason=trajectory.termination_reason,
                status=trajectory.status,
                error=trajectory.error,
                turns=counts.get("agent_turns", 0),
                tool_calls=counts.get("tool_calls", 0),
                tool_errors=counts.get("tool_errors", 0),
                parse_errors=counts.get("rejected_turns", 0),
                remove_sample=removal is not None,
                removal_reason=removal,
            )
            if trajectory.shaped is not None:
                base["reward_shaping"] = trajectory.shaped.to_json()
        base["do_not_train"] = base["remove_sample"]
        if base["remove_sample"]:
            base["how_to_filter"] = FILTER_HINT
        return base


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


def _plain(value: Any) -> Any:
    """OmegaConf nodes (SkyRL's config) as plain containers; anything else unchanged."""
    if value is None:
        return None
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(value, DictConfig | ListConfig):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover - skyrl-gym depends on omegaconf
        pass
    if isinstance(value, Mapping):
        return dict(value)
    return value
