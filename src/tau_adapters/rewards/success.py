"""What counts as a success, and pass^k / pass@k from (trials, successes) per task.

pass^k is the tau-bench paper's: the chance that k i.i.d. trials of a task *all* succeed, estimated
per task as C(c, k) / C(n, k) and averaged over tasks. pass@k is the chance that *at least one* of k
trials succeeds, 1 - C(n - c, k) / C(n, k).
"""

from __future__ import annotations

from collections.abc import Iterable
from math import comb

SUCCESS_TOLERANCE = 1e-6


def is_success(reward: float) -> bool:
    """tau2's success test: a reward of 1 (within floating-point tolerance)."""
    return abs(float(reward) - 1.0) <= SUCCESS_TOLERANCE


def pass_hat_k(trials_and_successes: Iterable[tuple[int, int]], k: int) -> float | None:
    """Mean over tasks of C(c, k) / C(n, k); None if no task has k trials."""
    values = [comb(c, k) / comb(n, k) for n, c in trials_and_successes if n >= k]
    return sum(values) / len(values) if values else None


def pass_at_k(trials_and_successes: Iterable[tuple[int, int]], k: int) -> float | None:
    """Mean over tasks of 1 - C(n - c, k) / C(n, k); None if no task has k trials."""
    values = [1.0 - comb(n - c, k) / comb(n, k) for n, c in trials_and_successes if n >= k]
    return sum(values) / len(values) if values else None
