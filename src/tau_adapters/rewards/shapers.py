"""Reward shapers, looked up by name. The official tau2 reward is always kept next to the shaped one.

- ``binary`` (also ``official``): the official reward, unchanged.
- ``official-no-judge``: binary over the grading that leaves natural-language assertions out
  (``EpisodeConfig.grading``); not the official score, and labelled so wherever it appears.
- ``partial``: official + alpha_domain x partial score, where the partial score is a weighted mean
  over the components the task actually has: fraction of gold actions matched, fraction of
  communicate checks met, fraction of env assertions met, DB match (weights renormalised over
  present components). An episode tau2 does not score (anything but a user/agent stop) has no
  components, so its partial score is 0. Defaults follow existing tau2 recipes: alpha 0.25 scaled by
  airline 1.0, retail 0.8, telecom 1.6; weights action 0.5, communicate 0.15, env assertion 0.35,
  DB 0.0.
- ``curriculum``: the official reward, plus a per-task weight from a process-local sliding window
  of recent successes (bounded memory): tasks solved more often than the solved threshold, or less
  often than the hard threshold, are down-weighted. Hosts use the weight as a sample weight.

Users add shapers through the ``register_reward_shapers`` hook: ``factory(config) -> shaper`` where
a shaper has ``shape(reward_info, *, domain, task_id, official) -> Shaped`` and ``observe(...)``.
A factory with a pydantic ``settings_model`` attribute is called ``factory(config, settings)``,
its settings validated from ``reward_options`` at start-up (see `tau_adapters.plugins`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from tau_adapters.config import EpisodeConfig
from tau_adapters.plugins import make_shaper
from tau_adapters.rewards.success import is_success


@dataclass
class Shaped:
    """A shaped reward and how it was obtained; ``official`` is tau2's reward, untouched."""

    name: str
    value: float
    official: float
    components: dict[str, float] = field(default_factory=dict)
    weight: float = 1.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class RewardShaper(Protocol):
    name: str

    def shape(self, reward_info: Any, *, domain: str, task_id: str, official: float) -> Shaped: ...

    def observe(self, *, domain: str, task_id: str, official: float) -> None: ...


def _get(info: Any, key: str) -> Any:
    if info is None:
        return None
    return info.get(key) if isinstance(info, dict) else getattr(info, key, None)


def _fraction(items: Any, flag: str) -> float | None:
    if not items:
        return None
    values = [bool(_get(item, flag)) for item in items]
    return sum(values) / len(values)


def components(reward_info: Any) -> dict[str, float]:
    """The partial-credit components present in a tau2 RewardInfo (object or its JSON)."""
    found: dict[str, float] = {}
    action = _fraction(_get(reward_info, "action_checks"), "action_match")
    if action is not None:
        found["action"] = action
    communicate = _fraction(_get(reward_info, "communicate_checks"), "met")
    if communicate is not None:
        found["communicate"] = communicate
    env_assertion = _fraction(_get(reward_info, "env_assertions"), "met")
    if env_assertion is not None:
        found["env_assertion"] = env_assertion
    basis = [str(getattr(b, "value", b)) for b in (_get(reward_info, "reward_basis") or [])]
    db_check = _get(reward_info, "db_check")
    if db_check is not None and "DB" in basis:
        found["db"] = 1.0 if _get(db_check, "db_match") else 0.0
    return found


class BinaryShaper:
    name = "binary"

    def __init__(self, name: str = "binary") -> None:
        self.name = name

    def shape(self, reward_info: Any, *, domain: str, task_id: str, official: float) -> Shaped:
        return Shaped(self.name, official, official)

    def observe(self, *, domain: str, task_id: str, official: float) -> None:
        return None


class PartialShaper:
    name = "partial"

    def __init__(
        self,
        *,
        alpha: float = 0.25,
        domain_alpha_scale: dict[str, float] | None = None,
        weights: dict[str, float] | None = None,
    ) -> None:
        self.alpha = alpha
        self.domain_alpha_scale = dict(domain_alpha_scale or {})
        self.weights = dict(
            weights or {"action": 0.5, "communicate": 0.15, "env_assertion": 0.35, "db": 0.0}
        )

    def alpha_for(self, domain: str) -> float:
        return self.alpha * self.domain_alpha_scale.get(domain, 1.0)

    def partial_score(self, reward_info: Any) -> tuple[float, dict[str, float]]:
        present = components(reward_info)
        weighted = {k: v for k, v in present.items() if self.weights.get(k, 0.0) > 0}
        total = sum(self.weights[k] for k in weighted)
        score = sum(self.weights[k] * v for k, v in weighted.items()) / total if total else 0.0
        return score, present

    def shape(self, reward_info: Any, *, domain: str, task_id: str, official: float) -> Shaped:
        score, present = self.partial_score(reward_info)
        value = official + self.alpha_for(domain) * score
        return Shaped(self.name, value, official, {**present, "partial_score": score})

    def observe(self, *, domain: str, task_id: str, official: float) -> None:
        return None


class CurriculumShaper:
    """Per-task success over a sliding window; a weight for mastered or hopeless tasks."""

    name = "curriculum"

    def __init__(
        self,
        *,
        window: int = 16,
        min_attempts: int = 4,
        solved_threshold: float = 0.75,
        hard_threshold: float = 0.25,
        solved_weight: float = 0.5,
        hard_weight: float = 0.5,
        max_tasks: int = 100_000,
        base: Any = None,
    ) -> None:
        self.window = window
        self.min_attempts = min_attempts
        self.solved_threshold = solved_threshold
        self.hard_threshold = hard_threshold
        self.solved_weight = solved_weight
        self.hard_weight = hard_weight
        self.max_tasks = max_tasks
        self.base = base or BinaryShaper()
        self._history: OrderedDict[tuple[str, str], deque[bool]] = OrderedDict()
        self._lock = threading.Lock()

    def success_rate(self, domain: str, task_id: str) -> tuple[float | None, int]:
        with self._lock:
            history = self._history.get((domain, task_id))
            if not history:
                return None, 0
            return sum(history) / len(history), len(history)

    def weight(self, domain: str, task_id: str) -> float:
        rate, attempts = self.success_rate(domain, task_id)
        if rate is None or attempts < self.min_attempts:
            return 1.0
        if rate > self.solved_threshold:
            return self.solved_weight
        if rate < self.hard_threshold:
            return self.hard_weight
        return 1.0

    def observe(self, *, domain: str, task_id: str, official: float) -> None:
        key = (domain, task_id)
        with self._lock:
            history = self._history.get(key)
            if history is None:
                history = self._history[key] = deque(maxlen=self.window)
            history.append(is_success(official))
            self._history.move_to_end(key)
            while len(self._history) > self.max_tasks:
                self._history.popitem(last=False)

    def shape(self, reward_info: Any, *, domain: str, task_id: str, official: float) -> Shaped:
        shaped = self.base.shape(reward_info, domain=domain, task_id=task_id, official=official)
        rate, attempts = self.success_rate(domain, task_id)
        shaped.name = self.name
        shaped.weight = self.weight(domain, task_id)
        shaped.components = {**shaped.components, "attempts": float(attempts)}
        if rate is not None:
            shaped.components["success_rate"] = rate
        return shaped


def make_binary(config: EpisodeConfig) -> BinaryShaper:
    """``binary``: the official reward, unchanged."""
    return BinaryShaper()


def make_official(config: EpisodeConfig) -> BinaryShaper:
    """``official``: the benchmark's reward, unchanged (the same as ``binary``)."""
    return BinaryShaper("official")


def make_official_no_judge(config: EpisodeConfig) -> BinaryShaper:
    """``official-no-judge``: the reward of grading ``official-no-judge`` (every component but the
    natural-language assertions, so no judge is called). For training without a judge; it is not
    the benchmark's official score, and rows, summaries and reports say so."""
    return BinaryShaper("official-no-judge")


def make_partial(config: EpisodeConfig) -> PartialShaper:
    """``partial``: official + alpha x partial score (settings: ``reward_alpha`` and weights)."""
    return PartialShaper(
        alpha=config.reward_alpha,
        domain_alpha_scale=config.reward_domain_alpha_scale,
        weights={
            "action": config.reward_action_weight,
            "communicate": config.reward_communicate_weight,
            "env_assertion": config.reward_env_assertion_weight,
            "db": config.reward_db_weight,
        },
    )


def make_curriculum(config: EpisodeConfig) -> CurriculumShaper:
    """``curriculum``: the official reward with a per-task sample weight (``curriculum_*``)."""
    return CurriculumShaper(
        window=config.curriculum_window,
        min_attempts=config.curriculum_min_attempts,
        solved_threshold=config.curriculum_solved_threshold,
        hard_threshold=config.curriculum_hard_threshold,
        solved_weight=config.curriculum_solved_weight,
        hard_weight=config.curriculum_hard_weight,
    )


_shapers: dict[str, Any] = {}
_shapers_lock = threading.Lock()


def get_shaper(config: EpisodeConfig) -> Any:
    """The process-wide shaper for this configuration (curriculum state lives here)."""
    key = config.model_dump_json(
        include={
            "reward", "reward_options", "reward_alpha", "reward_domain_alpha_scale", "reward_action_weight",
            "reward_communicate_weight", "reward_env_assertion_weight", "reward_db_weight",
            "curriculum_window", "curriculum_min_attempts", "curriculum_solved_threshold",
            "curriculum_hard_threshold", "curriculum_solved_weight", "curriculum_hard_weight",
        }
    )  # fmt: skip
    with _shapers_lock:
        shaper = _shapers.get(key)
        if shaper is None:
            shaper = _shapers[key] = make_shaper(config)
        return shaper
