"""Which grading produced a reward, and how rows, summaries and reports label it.

``official`` is the benchmark's own rule: every component of a task's reward basis, natural-language
assertions graded by a judge model where the task has them (tau2 v1.0.x retail and
banking_knowledge). ``official-no-judge`` applies tau2's rule to the basis without NL_ASSERTION, so
it needs no judge (for training); on a task with assertions it can give 1.0 where the official
score gives 0, so it is never the official score, and everything that shows it says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tau_adapters.config import NO_JUDGE

OFFICIAL = "official"


def grading_note(grading: str) -> str:
    """The label printed wherever a grading's numbers appear."""
    if grading == OFFICIAL:
        return "official score"
    if grading == NO_JUDGE:
        return f"{NO_JUDGE}: NOT the official score (natural-language assertions not judged)"
    return f"{grading}: NOT the official score"


def row_grading(row: Mapping[str, Any]) -> str:
    """A row's grading; rows written before gradings existed were graded officially."""
    return str(row.get("grading") or OFFICIAL)


def reward_components(reward_info: Any) -> list[str]:
    """The reward types the episode's reward multiplies (tau2's ``reward_basis`` as scored; empty
    when tau2 did not score it, e.g. a max-steps end): what the RL reward was made of."""
    if reward_info is None:
        return []
    if isinstance(reward_info, Mapping):
        basis = reward_info.get("reward_basis")
    else:
        basis = getattr(reward_info, "reward_basis", None)
    return [str(getattr(b, "value", b)) for b in basis or []]


__all__ = ["NO_JUDGE", "OFFICIAL", "grading_note", "reward_components", "row_grading"]
