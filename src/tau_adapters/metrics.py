"""pass^k and pass@k, per domain, from trajectory rows.

pass^k is the tau-bench paper's: the chance that k i.i.d. trials of a task *all* succeed, estimated
per task as C(c, k) / C(n, k) and averaged over tasks. pass@k is the chance that *at least one* of k
trials succeeds, 1 - C(n - c, k) / C(n, k). Recipes often call one the other; here they are labelled.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from math import comb
from typing import Any

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


def summarize(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per-domain summary: tasks, trials, average reward, pass^k, pass@k, terminations, statuses."""
    by_domain: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        by_domain[str(row["domain"])].append(row)
    summary: dict[str, dict[str, Any]] = {}
    for domain, domain_rows in sorted(by_domain.items()):
        per_task: dict[str, list[float]] = defaultdict(list)
        for row in domain_rows:
            per_task[str(row["task_id"])].append(float(row.get("reward") or 0.0))
        counts = [(len(r), sum(is_success(x) for x in r)) for r in per_task.values()]
        max_k = min(n for n, _ in counts) if counts else 0
        rewards = [float(row.get("reward") or 0.0) for row in domain_rows]
        summary[domain] = {
            "tasks": len(per_task),
            "trials": max_k,
            "episodes": len(domain_rows),
            "avg_reward": sum(rewards) / len(rewards) if rewards else 0.0,
            "pass_hat_k": {str(k): pass_hat_k(counts, k) for k in range(1, max_k + 1)},
            "pass_at_k": {str(k): pass_at_k(counts, k) for k in range(1, max_k + 1)},
            "terminations": dict(
                Counter(str(row.get("termination_reason")) for row in domain_rows)
            ),
            "statuses": dict(Counter(str(row.get("status")) for row in domain_rows)),
        }
    return summary
